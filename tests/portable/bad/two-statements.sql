-- expect: 2 statements
SELECT source, event_id, 'a' AS message FROM chains; SELECT source, event_id, 'b' AS message FROM chains
