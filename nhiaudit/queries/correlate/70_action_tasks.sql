-- The task of each audited action: from its credential chain (a task id stamped on an issuance, or
-- the task the issuance is joined to below), from the task id the event itself carries, or through
-- trace context (a gateway call's traceparent names the calling span; its nearest ancestor span
-- that carries a task id gives the task).

-- Issuances joined to the task that ran them, when the issuance record carries no task id (DESIGN §4).
-- GitHub Actions: an AssumeRoleWithWebIdentity by GitHub's OIDC provider. The actor is
-- <provider ARN>:<audience>:<sub>, sub = repo:OWNER/REPO:environment:NAME (or :ref:refs/heads/B).
-- The run is the one the user agent names (configure-aws-credentials >= v6.2.0 adds the run id and
-- attempt), else the one a numeric role session name names when that run is in the evidence, else
-- the only run of that repository whose job for that environment (or branch) was running at the
-- issuance, within clock skew. Two candidate runs give none: a guess would be worse than no link.
CREATE OR REPLACE TEMP TABLE github_oidc AS
SELECT e.credential_id, e.source, e.event_id, e.occurred_at, sub,
       regexp_extract(sub, '^repo:([^:]+):(?s:.*)\z', 1) AS repository,
       nullif(regexp_extract(sub, '^(?s:.*?):environment:([^:]+)(?s:.*)\z', 1), '') AS environment,
       nullif(regexp_extract(sub, '^(?s:.*?):ref:refs/heads/([^:]+)(?s:.*)\z', 1), '') AS head_branch,
       nullif(regexp_extract(e.user_agent, '^(?is:.*?run[-_]?id[/#=:]([0-9]+).*)\z', 1), '') AS ua_run,
       nullif(regexp_extract(e.user_agent, '^(?is:.*?run[-_]?attempt[/#=:]([0-9]+).*)\z', 1), '') AS ua_attempt,
       nullif(regexp_extract(json_extract_string(e.details, '$.role_session_name'), '^(?s:.*?)([0-9]{7,})(?:[-_.]([0-9]{1,3}))?\z', 1), '')
           AS session_run,
       nullif(regexp_extract(json_extract_string(e.details, '$.role_session_name'), '^(?s:.*?)([0-9]{7,})(?:[-_.]([0-9]{1,3}))?\z', 2), '')
           AS session_attempt
FROM (SELECT *, regexp_extract(actor_id, '^(?s:.*?)oidc-provider/token\.actions\.githubusercontent\.com(?:/[^:]*)?:[^:]*:(repo:.*)\z', 1)
                    AS sub
      FROM events
      WHERE category = 'credential_issue' AND action = 'sts:AssumeRoleWithWebIdentity' AND credential_id IS NOT NULL) e
WHERE sub <> '';

-- The runs in the evidence, one row per task record of a run (a job gives its environment and window).
CREATE OR REPLACE TEMP TABLE github_windows AS
SELECT task_id, split_part(task_id, ':', 2) AS run_id, split_part(task_id, ':', 3) AS attempt,
       json_extract_string(details, '$.repository') AS repository,
       json_extract_string(details, '$.environment') AS environment,
       json_extract_string(details, '$.head_branch') AS head_branch,
       occurred_at AS window_start,
       -- a job still running in the evidence: GitHub-hosted jobs stop after 6 hours
       coalesce(ended_at, occurred_at + INTERVAL 6 HOUR) AS window_end
FROM events
WHERE source = 'github_actions' AND category = 'task' AND task_id LIKE 'github-run:%' AND occurred_at IS NOT NULL;

CREATE OR REPLACE TEMP TABLE issuance_task AS
WITH skew AS (SELECT to_seconds(clock_skew_s) AS s FROM policy_params),
named AS (
    -- the run id given; the attempt given, else the latest known attempt of that run, else 1
    SELECT o.credential_id, o.source, o.event_id, o.environment,
           'github-run:' || coalesce(o.ua_run, o.session_run) || ':' || coalesce(
               CASE WHEN o.ua_run IS NOT NULL THEN o.ua_attempt ELSE o.session_attempt END,
               (SELECT max(try_cast(w.attempt AS INTEGER))::VARCHAR FROM github_windows w
                WHERE w.run_id = coalesce(o.ua_run, o.session_run)), '1')
               AS task_id,
           CASE WHEN o.ua_run IS NOT NULL THEN 'github_oidc_user_agent' ELSE 'github_oidc_session_name' END AS task_link
    FROM github_oidc o
    WHERE o.ua_run IS NOT NULL
       OR EXISTS (SELECT 1 FROM github_windows w WHERE w.run_id = o.session_run)
), windowed AS (
    SELECT o.credential_id, o.source, o.event_id, o.environment,
           min(w.task_id) AS task_id, count(DISTINCT w.task_id) AS candidates,
           CASE WHEN o.environment IS NOT NULL THEN 'github_oidc_environment_window'
                ELSE 'github_oidc_branch_window' END AS task_link
    FROM github_oidc o CROSS JOIN skew
    JOIN github_windows w ON w.repository = o.repository
         AND (CASE WHEN o.environment IS NOT NULL THEN w.environment = o.environment
                   ELSE w.head_branch = o.head_branch END)
         AND o.occurred_at BETWEEN w.window_start - skew.s AND w.window_end + skew.s
    WHERE o.credential_id NOT IN (SELECT credential_id FROM named)
    GROUP BY o.credential_id, o.source, o.event_id, o.environment
), teleport_sessions AS (
    -- Teleport AWS app access: the app service assumes the role the user chose (aws_role_arn), with
    -- the Teleport user as the role session name, while the app session runs.
    SELECT json_extract_string(details, '$.sid') AS sid,
           any_value(actor_id) AS teleport_user,
           any_value(json_extract_string(details, '$.aws_role_arn'))
               FILTER (WHERE json_extract_string(details, '$.aws_role_arn') IS NOT NULL) AS role_arn,
           min(task_id) AS task_id, count(DISTINCT task_id) AS tasks,
           min(occurred_at) AS session_start, max(occurred_at) AS session_end
    FROM events
    WHERE source = 'teleport' AND json_extract_string(details, '$.sid') IS NOT NULL AND occurred_at IS NOT NULL
    GROUP BY json_extract_string(details, '$.sid')
), teleport AS (
    SELECT e.credential_id, e.source, e.event_id, NULL AS environment, min(ts.task_id) AS task_id,
           count(DISTINCT ts.task_id) AS candidates, 'teleport_app_session' AS task_link
    FROM events e CROSS JOIN skew
    JOIN teleport_sessions ts ON ts.role_arn = json_extract_string(e.details, '$.role_arn')
         AND ts.teleport_user = json_extract_string(e.details, '$.role_session_name')
         AND ts.task_id IS NOT NULL AND ts.tasks = 1
         AND e.occurred_at BETWEEN ts.session_start - skew.s AND ts.session_end + skew.s
    WHERE e.category = 'credential_issue' AND e.action = 'sts:AssumeRole' AND e.credential_id IS NOT NULL
    GROUP BY e.credential_id, e.source, e.event_id
)
-- environment: the GitHub environment the OIDC subject names (the gate the job passed), else NULL.
SELECT credential_id, task_id, task_link, environment, source AS issuance_source, event_id AS issuance_event_id
FROM named
UNION ALL
SELECT credential_id, task_id, task_link, environment, source, event_id FROM windowed WHERE candidates = 1
UNION ALL
SELECT credential_id, task_id, task_link, environment, source, event_id FROM teleport WHERE candidates = 1;

-- Per audited credential: the joined task nearest to it on its chain (itself, its parent, …).
CREATE OR REPLACE TEMP TABLE chain_issuance_task AS
SELECT a.credential_id,
       arg_min(it.task_id, (anc.depth, it.task_id)) FILTER (WHERE it.task_id IS NOT NULL) AS task_id,
       arg_min(it.task_link, (anc.depth, it.task_id)) FILTER (WHERE it.task_link IS NOT NULL) AS task_link,
       arg_min(anc.ancestor_id, (anc.depth, it.task_id))
           FILTER (WHERE anc.ancestor_id IS NOT NULL) AS task_credential_id,
       arg_min(it.environment, (anc.depth, it.task_id)) FILTER (WHERE it.environment IS NOT NULL) AS environment,
       list(DISTINCT it.task_id ORDER BY it.task_id) AS task_ids
FROM (SELECT DISTINCT credential_id FROM audited WHERE credential_id IS NOT NULL) a
JOIN credential_ancestry anc ON anc.credential_id = a.credential_id
JOIN issuance_task it ON it.credential_id = anc.ancestor_id
GROUP BY a.credential_id;

-- Grant windows: elevated access that the cloud logs under the principal's own name, with no id of
-- the elevation on its calls. A window's task covers the principal's own calls, in the source it
-- names, inside the window (clock skew allowed) and its scope (account, tenant, ARM path prefix;
-- NULL: any); two windows of different tasks over one call give none. One row per name the
-- principal goes by, lower-cased after [identities] aliases (canonical_identity). implied_by: the
-- gate the window itself proves was passed (chains.approval_implied_by), NULL when it proves none.
--   * GCP Privileged Access Manager: a grant gives its requester the entitlement's roles for the
--     requested duration from its approval (else from the request, an entitlement without
--     approvers), until revoked or withdrawn, in the grant's project (any project for a folder or
--     organization entitlement). A denied grant is never activated: it has no window. A request
--     proves no gate: implied_by NULL.
--   * Entra PIM: an activation ("Add member to role completed (PIM activation)") gives the member
--     the role from StartTime to ExpirationTime (else 24 hours, PIM's longest activation), until
--     the expiry or deactivation record. Directory roles: tenant-wide (the action's tenant, when
--     both records name one); Azure resource roles: actions on resources under the assignment's ARM
--     scope; an Azure resource or group role whose record names no ARM scope gives no window (a
--     guess would be worse than no link). PIM activates a role only once its activation policy
--     passed, approval included: the window implies the approval when no record of it is loaded.
CREATE OR REPLACE TEMP TABLE grant_windows AS
WITH g AS (
    SELECT task_id,
           arg_min(json_extract_string(details, '$.requested_by'), (occurred_at, event_id))
               FILTER (WHERE json_extract_string(details, '$.requested_by') IS NOT NULL) AS requester,
           arg_min(json_extract_string(details, '$.grant'), (occurred_at, event_id))
               FILTER (WHERE json_extract_string(details, '$.grant') IS NOT NULL) AS grant_name,
           max(try_cast(json_extract_string(details, '$.requested_duration_s') AS BIGINT)) AS duration_s,
           min(occurred_at) AS requested_at, min(ended_at) AS ended_at
    FROM events
    WHERE source = 'gcp_audit' AND category = 'task' AND task_id LIKE 'gcp-pam-grant:%' AND occurred_at IS NOT NULL
    GROUP BY task_id
), a AS (
    SELECT task_id, min(decided_at) AS approved_at, max(expires_at) AS approval_expires_at FROM approvals
    WHERE source = 'gcp_audit' AND decision = 'approved' AND decided_at IS NOT NULL GROUP BY task_id
), pam AS (
    SELECT g.task_id, g.requester AS principal, 'gcp_audit' AS covers_source,
           nullif(regexp_extract(g.grant_name, '^projects/([^/]+)/(?s:.*)\z', 1), '') AS account,
           CAST(NULL AS VARCHAR) AS tenant, CAST(NULL AS VARCHAR) AS resource_prefix,
           coalesce(a.approved_at, g.requested_at) AS window_start,
           least(coalesce(g.ended_at, 'infinity'::TIMESTAMPTZ),
                 coalesce(a.approval_expires_at, coalesce(a.approved_at, g.requested_at) + to_seconds(g.duration_s),
                          coalesce(a.approved_at, g.requested_at) + INTERVAL 24 HOUR)) AS window_end,
           'gcp_pam_grant_window' AS task_link, CAST(NULL AS VARCHAR) AS implied_by
    FROM g LEFT JOIN a USING (task_id)
    WHERE g.requester IS NOT NULL
      AND (a.approved_at IS NOT NULL OR NOT EXISTS (
              SELECT 1 FROM approvals d WHERE d.task_id = g.task_id AND d.decision = 'denied'))
), activation AS (
    SELECT e.task_id, e.account AS tenant,
           json_extract_string(e.details, '$.member_upn') AS member_upn,
           json_extract_string(e.details, '$.member_id') AS member_id,
           json_extract_string(e.details, '$.approver') AS member,
           json_extract_string(e.details, '$.role') AS role,
           json_extract_string(e.details, '$.role_kind') AS role_kind,
           rtrim(json_extract_string(e.details, '$.arm_scope'), '/') AS arm_scope,
           coalesce(try_cast(json_extract_string(e.details, '$.role_start') AS TIMESTAMPTZ), e.occurred_at) AS starts,
           e.expires_at,
           (SELECT min(t.ended_at) FROM events t
            WHERE t.source = 'entra_audit' AND t.category = 'task' AND t.task_id = e.task_id
              AND t.ended_at IS NOT NULL) AS ended_at
    FROM events e
    WHERE e.source = 'entra_audit' AND e.category = 'grant' AND e.task_id LIKE 'pim-request:%'
      AND e.occurred_at IS NOT NULL
), pim AS (
    SELECT v.task_id, n.name AS principal, 'azure' AS covers_source, CAST(NULL AS VARCHAR) AS account,
           lower(v.tenant) AS tenant,
           CASE WHEN v.role_kind = 'directory' THEN NULL ELSE v.arm_scope END AS resource_prefix,
           v.starts AS window_start,
           least(coalesce(v.ended_at, 'infinity'::TIMESTAMPTZ), coalesce(v.expires_at, v.starts + INTERVAL 24 HOUR))
               AS window_end,
           'entra_pim_activation_window' AS task_link,
           'the action ran inside the PIM activation of role ' || coalesce(v.role, '?') || ' for '
           || coalesce(v.member, '?') || ' (request ' || replace(v.task_id, 'pim-request:', '') || ', from '
           || strftime(v.starts, '%Y-%m-%dT%H:%M:%SZ') || '): PIM activates a role only once its activation '
           || 'policy passed, approval included when the role requires it' AS implied_by
    FROM activation v
    -- the member by UPN or object id (a display name is no identity)
    JOIN (SELECT task_id, member_upn AS name FROM activation UNION SELECT task_id, member_id FROM activation) n
         ON n.task_id = v.task_id AND n.name IS NOT NULL
    -- an ARM scope is a subscription or management group path (a bare "/" or a stray string is none)
    WHERE v.role_kind = 'directory'
       OR regexp_full_match(v.arm_scope, '^/(subscriptions|providers/microsoft\.management/managementgroups)/[^/]+(/.*)?\z')
)
SELECT task_id, lower(canonical_identity(principal)) AS principal, covers_source, account, tenant, resource_prefix,
       window_start, window_end, task_link, implied_by
FROM (SELECT * FROM pam UNION ALL SELECT * FROM pim);

CREATE OR REPLACE TEMP TABLE window_task AS
WITH acts AS (
    SELECT au.source, au.event_id, au.occurred_at, au.resource, e.account,
           lower(json_extract_string(e.details, '$.tenant_id')) AS tenant,
           lower(canonical_identity(au.actor_id)) AS actor_name,
           lower(canonical_identity(json_extract_string(e.details, '$.object_id'))) AS object_name
    FROM audited au
    JOIN events e ON e.source = au.source AND e.event_id = au.event_id AND e.category = 'action'
    WHERE au.source IN (SELECT DISTINCT covers_source FROM grant_windows)
)
SELECT c.source, c.event_id, min(w.task_id) AS task_id, min(w.task_link) AS task_link,
       max(w.implied_by) AS implied_by
FROM acts c
CROSS JOIN (SELECT to_seconds(clock_skew_s) AS s FROM policy_params) skew
JOIN grant_windows w ON w.covers_source = c.source
     AND (w.principal = c.actor_name OR w.principal = c.object_name)
     AND (w.account IS NULL OR w.account = c.account)
     AND (w.tenant IS NULL OR c.tenant IS NULL OR w.tenant = c.tenant)
     AND (w.resource_prefix IS NULL OR c.resource = w.resource_prefix
          OR substring(c.resource, 1, length(w.resource_prefix) + 1) = w.resource_prefix || '/')
     AND c.occurred_at BETWEEN w.window_start - skew.s AND w.window_end + skew.s
GROUP BY c.source, c.event_id
HAVING count(DISTINCT w.task_id) = 1;

CREATE OR REPLACE TEMP TABLE spans AS
SELECT e.source, e.event_id, e.trace_id, e.span_id, e.parent_span_id, e.occurred_at, e.ended_at, e.category,
       st.task_id, coalesce(json_extract_string(e.details, '$.agent_id'), e.actor_id) AS agent_id
FROM events e LEFT JOIN span_task st USING (source, event_id)
WHERE e.span_id IS NOT NULL AND e.trace_id IS NOT NULL AND e.category IN ('task', 'tool_call', 'other');

CREATE OR REPLACE TEMP TABLE trace_task AS
WITH RECURSIVE up(source, event_id, trace_id, span_id, depth) AS (
    SELECT source, event_id, trace_id, parent_span_id, 0 FROM audited
    WHERE trace_id IS NOT NULL AND parent_span_id IS NOT NULL
    UNION ALL
    SELECT up.source, up.event_id, up.trace_id, s.parent_span_id, up.depth + 1
    FROM up JOIN spans s ON s.trace_id = up.trace_id AND s.span_id = up.span_id
    WHERE s.task_id IS NULL AND s.parent_span_id IS NOT NULL AND up.depth < 64
), hits AS (
    SELECT up.source, up.event_id, up.depth, s.task_id, s.source AS span_source, s.event_id AS span_event_id
    FROM up JOIN spans s ON s.trace_id = up.trace_id AND s.span_id = up.span_id
    WHERE s.task_id IS NOT NULL
), fallback AS (
    -- The named span is not in the evidence: a task span of the same trace covering the call.
    SELECT a.source, a.event_id, 1000 AS depth,
           arg_min(s.task_id, (s.occurred_at, s.source, s.event_id, s.task_id))
               FILTER (WHERE s.task_id IS NOT NULL) AS task_id,
           arg_min(s.source, (s.occurred_at, s.source, s.event_id, s.task_id))
               FILTER (WHERE s.source IS NOT NULL) AS span_source,
           arg_min(s.event_id, (s.occurred_at, s.source, s.event_id, s.task_id))
               FILTER (WHERE s.event_id IS NOT NULL) AS span_event_id
    FROM audited a JOIN spans s ON s.trace_id = a.trace_id AND s.category = 'task' AND s.task_id IS NOT NULL
    WHERE a.trace_id IS NOT NULL
      AND a.occurred_at BETWEEN s.occurred_at - to_seconds((SELECT clock_skew_s FROM policy_params))
                            AND coalesce(s.ended_at, s.occurred_at) + to_seconds((SELECT clock_skew_s FROM policy_params))
    GROUP BY a.source, a.event_id
)
-- The nearest span wins; spans at the same depth are ordered by their own key (a total order, so
-- the task and its evidence come from one span, the same one on every run).
SELECT source, event_id, arg_min(task_id, (depth, span_source, span_event_id, task_id))
    FILTER (WHERE task_id IS NOT NULL) AS task_id,
       arg_min(span_source, (depth, span_source, span_event_id, task_id))
           FILTER (WHERE span_source IS NOT NULL) AS span_source,
       arg_min(span_event_id, (depth, span_source, span_event_id, task_id))
           FILTER (WHERE span_event_id IS NOT NULL) AS span_event_id
FROM (SELECT * FROM hits UNION ALL SELECT * FROM fallback)
GROUP BY source, event_id;

-- The gates a credential on the action's chain proves were passed (DESIGN §4, "approval implied,
-- record missing"), the one definition chains.approval_implied_by reads:
--   * a GitHub OIDC subject naming an environment that is protected: policy lists it in
--     [approval] protected_roles, or the evidence shows its required reviewers (github_actions grants);
--   * a Teleport session listing access requests (Teleport honours a request only once approved);
--   * SSM just-in-time credentials (GetAccessToken) issued while the request's status was Approved.
-- And the protected-role check: a GitHub OIDC issuance of a role [approval] protected_roles maps to
-- an environment, whose subject does not name that environment, bypassed its reviewers.
CREATE OR REPLACE TEMP TABLE credential_gate AS
SELECT o.credential_id,
       CASE WHEN o.environment IS NOT NULL AND (
                 EXISTS (SELECT 1 FROM policy_protected_roles pr WHERE pr.environment = o.environment)
                 OR EXISTS (SELECT 1 FROM grants g WHERE g.role = 'github:' || o.repository || ':environment:'
                                                             || o.environment || ':reviewer'))
            THEN 'the OIDC token''s subject ' || o.sub || ' names protected environment ' || o.environment
                 || ': GitHub issued it only after the environment''s protection rules passed' END AS implied_by,
       pr.environment AS protected_environment, json_extract_string(e.details, '$.role_arn') AS protected_role
FROM github_oidc o
JOIN events e ON e.source = o.source AND e.event_id = o.event_id
LEFT JOIN (SELECT * FROM policy_protected_roles) pr
     ON regexp_full_match(coalesce(json_extract_string(e.details, '$.role_arn'), ''), pr.regex)
    AND o.environment IS DISTINCT FROM pr.environment
UNION ALL
SELECT e.credential_id,
       'SSM just-in-time credentials of access request ' || json_extract_string(e.details, '$.access_request_id')
       || ' were issued with the request Approved (GetAccessToken)', NULL, NULL
FROM events e
WHERE e.category = 'credential_issue' AND e.action = 'ssm:GetAccessToken' AND e.credential_id IS NOT NULL
  AND lower(json_extract_string(e.details, '$.access_request_status')) = 'approved'
UNION ALL
SELECT it.credential_id,
       'the Teleport app session carries access request ' || replace(it.task_id, 'teleport-request:', '')
       || ', which Teleport honours only once approved', NULL, NULL
FROM issuance_task it WHERE it.task_link = 'teleport_app_session';

-- Per audited credential: the gate nearest to it on its chain; a protected-role bypass anywhere on it.
CREATE OR REPLACE TEMP TABLE chain_gate AS
SELECT a.credential_id,
       arg_min(g.implied_by, (anc.depth, g.implied_by))
           FILTER (WHERE g.implied_by IS NOT NULL) AS approval_implied_by,
       arg_min(g.protected_environment, (anc.depth, g.protected_role))
           FILTER (WHERE g.protected_environment IS NOT NULL) AS protected_environment,
       arg_min(g.protected_role, (anc.depth, g.protected_role))
           FILTER (WHERE g.protected_environment IS NOT NULL AND g.protected_role IS NOT NULL) AS protected_role,
       arg_min(c.issuance_source, (anc.depth, g.protected_role))
           FILTER (WHERE g.protected_environment IS NOT NULL AND c.issuance_source IS NOT NULL) AS protected_issuance_source,
       arg_min(c.issuance_event_id, (anc.depth, g.protected_role))
           FILTER (WHERE g.protected_environment IS NOT NULL AND c.issuance_event_id IS NOT NULL) AS protected_issuance_event_id
FROM (SELECT DISTINCT credential_id FROM audited WHERE credential_id IS NOT NULL) a
JOIN credential_ancestry anc ON anc.credential_id = a.credential_id
JOIN credential_gate g ON g.credential_id = anc.ancestor_id
LEFT JOIN credentials c ON c.credential_id = anc.ancestor_id
GROUP BY a.credential_id;

CREATE OR REPLACE TEMP TABLE action_task AS
SELECT a.source, a.event_id,
       coalesce(cc.task_id, ct.task_id, a.event_task_id, wt.task_id, tt.task_id) AS task_id,
       CASE WHEN cc.task_id IS NOT NULL THEN cc.task_link
            WHEN ct.task_id IS NOT NULL THEN ct.task_link
            WHEN a.event_task_id IS NOT NULL THEN 'event'
            WHEN wt.task_id IS NOT NULL THEN wt.task_link
            WHEN tt.task_id IS NOT NULL THEN 'trace' END AS task_link,
       coalesce(cc.task_credential_id, ct.task_credential_id) AS task_credential_id,
       -- the environment the credential's OIDC subject names: only approvals for it cover the action
       CASE WHEN cc.task_id IS NULL THEN ct.environment END AS task_environment,
       tt.span_source, tt.span_event_id,
       -- sorted: list_distinct does not keep an order
       list_sort(list_distinct(list_filter(coalesce(cc.task_ids, []) || coalesce(ct.task_ids, [])
                                           || [a.event_task_id, wt.task_id, tt.task_id], x -> x IS NOT NULL)))
           AS task_ids,
       -- a credential's gate, else the gate of the grant window that gave the task (a PIM activation)
       coalesce(gi.approval_implied_by,
                CASE WHEN cc.task_id IS NULL AND ct.task_id IS NULL AND a.event_task_id IS NULL THEN wt.implied_by END)
           AS approval_implied_by,
       gi.protected_environment, gi.protected_role, gi.protected_issuance_source,
       gi.protected_issuance_event_id
FROM audited a
LEFT JOIN credential_chain cc ON cc.credential_id = a.credential_id
LEFT JOIN chain_issuance_task ct ON ct.credential_id = a.credential_id
LEFT JOIN window_task wt ON wt.source = a.source AND wt.event_id = a.event_id
LEFT JOIN trace_task tt ON tt.source = a.source AND tt.event_id = a.event_id
LEFT JOIN chain_gate gi ON gi.credential_id = a.credential_id;
