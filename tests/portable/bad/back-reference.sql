-- expect: a back-reference
SELECT source, event_id, regexp_replace(action, '^([a-z]+):.*\z', '\1') AS message FROM chains
