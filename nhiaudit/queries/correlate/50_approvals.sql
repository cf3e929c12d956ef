-- Approvals and the approvers' role grants: provenance records and the approval systems' own
-- (GitHub deployment reviews, Teleport access request reviews).
-- decision: approved or denied is a decision; pending is a stage recorded while the approval as a
-- whole is still undecided (a Teleport review below the role's threshold): it covers nothing.
-- decided_at may be NULL: the evidence does not say when the decision was taken (a GitHub
-- deployment_review webhook); decision_time_unknown says why, and such an approval makes the
-- verdict unknown, never on time.
-- approver is the person's one name under [identities] aliases (canonical_identity, the macro
-- nhiaudit.policy.install creates), approver_as_logged the name the record gives; approver_is_human
-- holds when either name, or another alias of that person, is human under [identities] humans.
-- An SSM just-in-time signal names an Automation execution, not the access request. The request of
-- an execution is the unique one named by either
--   * an Automation record of that execution that names an oi-… request id (StartAutomationExecution
--     parameters, a signal's payload; assumed: AWS documents no such record), or
--   * the approval procedure AWS documents: the approver reads the request's OpsItem (GetOpsItem
--     oi-…, the request id; its OperationalData /aws/accessrequest names the execution, but CloudTrail
--     keeps no read's response) and then signals the execution: the only known access request the
--     signer read in the hour before the signal (clock skew allowed), a request that a
--     StartAccessRequest or GetAccessToken record names.
-- Two candidate requests give none: the decision then has no task.
CREATE OR REPLACE TEMP TABLE automation_request AS
WITH named AS (
    SELECT json_extract_string(details, '$.automation_execution_id') AS execution_id,
           json_extract_string(details, '$.access_request_id') AS access_request_id
    FROM events
    WHERE source = 'cloudtrail' AND json_extract_string(details, '$.automation_execution_id') IS NOT NULL
      AND json_extract_string(details, '$.access_request_id') IS NOT NULL
), signal_reads AS (
    SELECT json_extract_string(s.details, '$.automation_execution_id') AS execution_id,
           min(json_extract_string(g.details, '$.access_request_id')) AS access_request_id
    FROM events s
    CROSS JOIN (SELECT to_seconds(clock_skew_s) AS skew FROM policy_params) p
    JOIN events g ON g.source = 'cloudtrail' AND g.action = 'ssm:GetOpsItem' AND g.outcome = 'success'
         AND g.actor_id = s.actor_id AND json_extract_string(g.details, '$.access_request_id') IS NOT NULL
         AND g.occurred_at BETWEEN s.occurred_at - INTERVAL 1 HOUR AND s.occurred_at + p.skew
    WHERE s.source = 'cloudtrail' AND s.category = 'approval' AND s.task_id IS NULL
      AND json_extract_string(s.details, '$.automation_execution_id') IS NOT NULL
      AND EXISTS (SELECT 1 FROM events t WHERE t.source = 'cloudtrail'
                     AND t.task_id = 'ssm-access-request:' || json_extract_string(g.details, '$.access_request_id'))
    GROUP BY s.source, s.event_id, json_extract_string(s.details, '$.automation_execution_id')
    HAVING count(DISTINCT json_extract_string(g.details, '$.access_request_id')) = 1
)
SELECT execution_id, min(access_request_id) AS access_request_id
FROM (SELECT * FROM named UNION ALL SELECT * FROM signal_reads)
GROUP BY execution_id HAVING count(DISTINCT access_request_id) = 1;

CREATE OR REPLACE TEMP TABLE approval_rows AS
SELECT e.*, coalesce(json_extract_string(e.details, '$.approver'), e.actor_id) AS logged_approver,
       canonical_identity(coalesce(json_extract_string(e.details, '$.approver'), e.actor_id)) AS canonical_approver,
       coalesce(e.task_id, 'ssm-access-request:' || ar.access_request_id) AS resolved_task_id
FROM events e
LEFT JOIN automation_request ar ON e.source = 'cloudtrail' AND e.task_id IS NULL
     AND ar.execution_id = json_extract_string(e.details, '$.automation_execution_id')
WHERE e.category = 'approval';

-- The logged approver names that are human: the name, its canonical name or another alias of that
-- person matches an [identities] humans glob. A join, not a subquery nested in one (Spark cannot
-- correlate a subquery with a query two levels out).
CREATE OR REPLACE TEMP TABLE human_approvers AS
SELECT DISTINCT n.logged_approver AS human_name
FROM (SELECT DISTINCT logged_approver, canonical_approver FROM approval_rows) n
LEFT JOIN policy_aliases a ON a.canonical = n.canonical_approver
JOIN policy_identity pi ON pi.kind = 'human'
     AND (regexp_full_match(n.logged_approver, pi.regex) OR regexp_full_match(n.canonical_approver, pi.regex)
          OR regexp_full_match(a.name, pi.regex));

CREATE OR REPLACE TABLE approvals AS
SELECT
    coalesce(json_extract_string(details, '$.approval_id'), event_id) AS approval_id,
    resolved_task_id AS task_id,
    canonical_approver AS approver,
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
    source || ':' || file_sha256 || ':' || record_index AS approval_key,
    logged_approver AS approver_as_logged,
    EXISTS (SELECT 1 FROM human_approvers h WHERE h.human_name = logged_approver) AS approver_is_human
FROM approval_rows;

-- Role grants: the records that say so (category grant), and IAM Identity Center account assignments
-- (CloudTrail sso:CreateAccountAssignment, an audited action too): the principal holds the
-- permission set in the account, role aws-sso:<permission set ARN>@<account>, until a
-- DeleteAccountAssignment of the same three.
CREATE OR REPLACE TEMP TABLE sso_assignments AS
SELECT source, event_id, occurred_at, action,
       json_extract_string(details, '$.assignment.principal_id') AS principal_id,
       'aws-sso:' || json_extract_string(details, '$.assignment.permission_set_arn') || '@'
           || coalesce(json_extract_string(details, '$.assignment.target_id'), '?') AS role
FROM events
WHERE source = 'cloudtrail' AND outcome = 'success'
  AND action IN ('sso:CreateAccountAssignment', 'sso:DeleteAccountAssignment')
  AND json_extract_string(details, '$.assignment.principal_id') IS NOT NULL;

CREATE OR REPLACE TABLE grants AS
SELECT
    canonical_identity(coalesce(json_extract_string(details, '$.approver'), actor_id)) AS approver,
    json_extract_string(details, '$.role') AS role,
    occurred_at AS valid_from,
    expires_at AS valid_to,
    source, event_id
FROM events WHERE category = 'grant'
UNION ALL
SELECT canonical_identity(c.principal_id), c.role, c.occurred_at,
       min(d.occurred_at) AS valid_to, c.source, c.event_id
FROM sso_assignments c
LEFT JOIN sso_assignments d ON d.action = 'sso:DeleteAccountAssignment' AND d.principal_id = c.principal_id
     AND d.role = c.role AND d.occurred_at > c.occurred_at
WHERE c.action = 'sso:CreateAccountAssignment'
GROUP BY ALL;
