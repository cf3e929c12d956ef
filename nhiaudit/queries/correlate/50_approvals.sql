-- Approvals and the approvers' role grants: provenance records and the approval systems' own
-- (GitHub deployment reviews, Teleport access request reviews).
-- decision: approved or denied is a decision; pending is a stage recorded while the approval as a
-- whole is still undecided (a Teleport review below the role's threshold): it covers nothing.
-- decided_at may be NULL: the evidence does not say when the decision was taken (a GitHub
-- deployment_review webhook); decision_time_unknown says why, and such an approval makes the
-- verdict unknown, never on time.
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
    json_extract_string(details, '$.environment') AS environment,
    json_extract_string(details, '$.stage') AS stage,
    json_extract_string(details, '$.stage_decision') AS stage_decision,
    CASE WHEN occurred_at IS NULL
         THEN coalesce(json_extract_string(details, '$.decision_time'), 'the record has no decision time') END
        AS decision_time_unknown,
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
