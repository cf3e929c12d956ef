-- expect: a computed list index
SELECT source, event_id, task_ids[chain_depth + 1] AS message FROM chains
