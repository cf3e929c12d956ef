-- expect: * EXCLUDE
SELECT * EXCLUDE (message) FROM (SELECT source, event_id, action AS message, 1 AS message2 FROM chains)
