-- expect: a parameter
SELECT source, event_id, 'hit' AS message FROM chains WHERE event_id = $event_id
