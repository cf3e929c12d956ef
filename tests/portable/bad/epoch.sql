-- expect: epoch()
SELECT source, event_id, 'late' AS message FROM chains WHERE epoch(decided_at) > epoch(occurred_at)
