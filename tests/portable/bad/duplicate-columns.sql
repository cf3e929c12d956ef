-- expect: duplicate output column
SELECT source, event_id, action AS message, resource AS message FROM chains
