-- Approvals and the approvers' role grants, as recorded by the provenance source.
CREATE OR REPLACE TABLE approvals AS
SELECT
    coalesce(json_extract_string(details, '$.approval_id'), event_id) AS approval_id,
    task_id,
    coalesce(json_extract_string(details, '$.approver'), actor_id) AS approver,
    json_extract_string(details, '$.decision') AS decision,
    occurred_at AS decided_at,
    expires_at,
    coalesce(from_json(json_extract(details, '$.scope_actions'), '["VARCHAR"]'), []) AS scope_actions,
    coalesce(from_json(json_extract(details, '$.scope_resources'), '["VARCHAR"]'), []) AS scope_resources,
    json_extract(details, '$.scope_actions') IS NOT NULL
        OR json_extract(details, '$.scope_resources') IS NOT NULL AS has_scope,
    json_extract_string(details, '$.ticket') AS ticket,
    json_extract_string(details, '$.justification') AS justification,
    source, event_id,
    -- One row per approval record. approval_id is not unique: a provenance record re-emitted with
    -- a new decision keeps its id (and event_id), and ids may repeat across tasks.
    source || ':' || file_sha256 || ':' || record_index AS approval_key
FROM events WHERE category = 'approval';

CREATE OR REPLACE TABLE grants AS
SELECT
    coalesce(json_extract_string(details, '$.approver'), actor_id) AS approver,
    json_extract_string(details, '$.role') AS role,
    occurred_at AS valid_from,
    expires_at AS valid_to,
    source, event_id
FROM events WHERE category = 'grant';
