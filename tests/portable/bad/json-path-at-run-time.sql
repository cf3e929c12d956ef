-- expect: a JSON path built at run time
SELECT c.source, c.event_id, json_extract_string(e.details, '$.' || c.task_link) AS message FROM chains c JOIN events e USING (source, event_id)
