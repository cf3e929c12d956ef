-- expect: count(DISTINCT …) OVER
SELECT source, event_id, (count(DISTINCT task_id) OVER (PARTITION BY credential_id))::VARCHAR AS message FROM chains
