-- expect: unanchored regex
SELECT source, event_id, 'iam' AS message FROM chains WHERE regexp_matches(action, 'iam:.*')
