-- expect: unnest() outside a SELECT list
SELECT c.source, c.event_id, u.t AS message FROM chains c, unnest(c.task_ids) AS u(t)
