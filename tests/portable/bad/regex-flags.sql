-- expect: a regex flags argument
SELECT source, event_id, 'x' AS message FROM chains WHERE regexp_matches(action, '^iam:.*\z', 'i')
