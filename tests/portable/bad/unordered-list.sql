-- expect: list() without ORDER BY
SELECT min(source) AS source, min(event_id) AS event_id, array_to_string(list(action), ',') AS message FROM chains GROUP BY task_id
