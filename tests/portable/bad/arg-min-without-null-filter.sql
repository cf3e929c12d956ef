-- expect: arg_min without explicit NULL handling
SELECT source, arg_min(event_id, occurred_at) AS event_id, 'first' AS message FROM chains GROUP BY source
