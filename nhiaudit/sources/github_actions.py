"""GitHub Actions: webhook deliveries and the organization/enterprise audit log (FORMATS §9, DESIGN §4).

Webhook payloads are stored as delivered in the HTTP body, one JSON object per file or per line. The
event type is in the ``X-GitHub-Event`` header, which such files do not keep, so it is told from the
payload's own keys (``KINDS``). Audit-log entries are the streamed JSON lines or the REST export
pages (a JSON array): ``action`` is ``<category>.<verb>`` and the time is epoch milliseconds.

What becomes what (https://docs.github.com/en/webhooks/webhook-events-and-payloads):
- a workflow run attempt (``workflow_run.id`` + ``run_attempt``) is a ``task``: ``github-run:<id>:<attempt>``
  (run ids are unique across GitHub). ``workflow_run`` and ``workflow_job`` payloads and the run a
  ``deployment_review`` names are task records of it; a job gives the time window and environment;
- a ``deployment_review`` that is ``approved``/``rejected``, and the audit log's
  ``workflows.approve_workflow_job`` / ``reject_workflow_job``, are ``approval`` events of that run for
  that environment. The webhook payload holds no decision time (the delivery time is a header), so its
  approval has none: correlation reports such an approval as ``unknown``, never as on time;
- the reviewers a review lists are the environment's required reviewers: ``grant`` events of the role
  ``github:<owner/repo>:environment:<env>:reviewer`` from the review's ``since`` on.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from nhiaudit.sources import _sql
from nhiaudit.sources._read import RAW_EXCERPT, EvidenceFile, first_json_line, head, stage_json_records

NAME = "github_actions"
READS = (
    "GitHub webhook payloads (workflow_run, workflow_job, deployment_review, deployment_protection_rule, "
    "workflow_dispatch; one object per file or per line) and organization/enterprise audit-log entries "
    "(streamed JSON lines or REST export pages)"
)
DETECTION = (
    'a JSON object (or array of them) with a "workflow_run", "workflow_job" or "workflow_job_run" object, a '
    '"deployment_callback_url", or "inputs" with a ".github/workflows/" "workflow"; or an audit-log entry: '
    '"action" of the form category.verb with "actor" and an epoch-millisecond "@timestamp" or "created_at" '
    "(in the head of a pretty-printed export page too)"
)

# Webhook payload kinds, from the keys that only that event's payload has (checked in this order).
KINDS = (
    (
        "deployment_review",
        "json_type(doc, '$.workflow_job_run') = 'OBJECT' OR json_type(doc, '$.workflow_job_runs') = 'ARRAY'",
    ),
    ("deployment_protection_rule", "json_type(doc, '$.deployment_callback_url') = 'VARCHAR'"),
    ("workflow_job", "json_type(doc, '$.workflow_job') = 'OBJECT'"),
    ("workflow_run", "json_type(doc, '$.workflow_run') = 'OBJECT'"),
    ("workflow_dispatch", "json_type(doc, '$.inputs') IS NOT NULL AND json_type(doc, '$.workflow') = 'VARCHAR'"),
)
# Audit-log actions that are approval decisions (docs: "Audit log events for your organization").
DECISIONS = {"workflows.approve_workflow_job": "approved", "workflows.reject_workflow_job": "denied"}
# Audit-log actions that describe a run of a workflow (a task record of that run).
RUN_ACTIONS = ("workflows.created_workflow_run", "workflows.completed_workflow_run")

_AUDIT_ACTION = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$"
_HEAD_WEBHOOK = re.compile(
    r'"(workflow_run|workflow_job|workflow_job_run)"\s*:\s*\{|"workflow_job_runs"\s*:\s*\[|"deployment_callback_url"\s*:'
)
_HEAD_DISPATCH = re.compile(r'"inputs"\s*:.*"workflow"\s*:\s*"\.github/workflows/', re.DOTALL)
# A pretty-printed REST export page (`gh api /orgs/ORG/audit-log` prints an indented array): its first
# entry's keys, in any order, within the head.
_HEAD_AUDIT = (
    re.compile(r'"action"\s*:\s*"[a-z][a-z0-9_]*(\.[a-z0-9_]+)+"'),
    re.compile(r'"actor"\s*:'),
    re.compile(r'"(@timestamp|created_at)"\s*:\s*[0-9]{12,}'),
)


def _is_audit_entry(record: object) -> bool:
    return (
        isinstance(record, dict)
        and isinstance(record.get("action"), str)
        and re.match(_AUDIT_ACTION, record["action"]) is not None
        and "actor" in record
        and any(isinstance(record.get(k), int) for k in ("@timestamp", "created_at"))
    )


def detect(path: Path) -> bool:
    text = head(path)
    first = first_json_line(text)
    if isinstance(first, list):
        first = first[0] if first else None
    if isinstance(first, dict):
        return _is_audit_entry(first) or _is_webhook(first)
    stripped = text.lstrip()
    # A pretty-printed payload or export page (or a first line longer than the head): the keys are in its head.
    return stripped[:1] in ("{", "[") and (
        _HEAD_WEBHOOK.search(text) is not None
        or _HEAD_DISPATCH.search(text) is not None
        or (stripped[:1] == "[" and all(p.search(text) for p in _HEAD_AUDIT))
    )


def _is_webhook(record: dict) -> bool:
    if any(isinstance(record.get(k), dict) for k in ("workflow_run", "workflow_job", "workflow_job_run")):
        return True
    if isinstance(record.get("workflow_job_runs"), list) or isinstance(record.get("deployment_callback_url"), str):
        return True
    return "inputs" in record and str(record.get("workflow", "")).startswith(".github/workflows/")


def load(con: duckdb.DuckDBPyConnection, files: list[EvidenceFile]) -> None:
    for file in files:
        stage_json_records(con, file)
        _normalize(con)


_s = _sql.json_text  # a string field: NULL for an object, an array or an empty string


def _epoch_ms(path: str) -> str:
    """Epoch milliseconds (an ISO string is accepted too); NULL outside years 1970..9999, so that a
    hostile number cannot overflow the timestamp and fail the whole file."""
    number = f"TRY_CAST(json_extract(doc, '{path}') AS DOUBLE)"
    return (
        f"CASE WHEN json_type(doc, '{path}') IN ('UBIGINT', 'BIGINT', 'DOUBLE') AND {number} BETWEEN 0 AND 253402300799999 "
        f"THEN make_timestamptz({number}::BIGINT * 1000) "
        f"WHEN json_type(doc, '{path}') = 'VARCHAR' THEN try_cast(json_extract_string(doc, '{path}') AS TIMESTAMPTZ) END"
    )


def _time(path: str) -> str:
    return f"try_cast({_s(path)} AS TIMESTAMPTZ)"


def _reason_sql() -> str:
    """The first problem of a classified record (``kind`` column), or NULL."""
    s = _sql
    number = "a number"
    checks = {
        "workflow_run": [("$.workflow_run.id", s.INTEGER, number), ("$.workflow_run.run_attempt", s.INTEGER, number)],
        "workflow_job": [
            ("$.workflow_job.id", s.INTEGER, number),
            ("$.workflow_job.run_id", s.INTEGER, number),
            ("$.workflow_job.run_attempt", s.INTEGER, number),
        ],
        "deployment_review": [
            ("$.workflow_run.id", s.INTEGER, number),
            ("$.workflow_run.run_attempt", s.INTEGER, number),
            ("$.environment", s.STRING, "a string"),
            ("$.reviewers", s.ARRAY, "a list"),
        ],
    }
    times = {
        "workflow_run": ["$.workflow_run.run_started_at", "$.workflow_run.created_at", "$.workflow_run.updated_at"],
        "workflow_job": ["$.workflow_job.started_at", "$.workflow_job.created_at", "$.workflow_job.completed_at"],
        "deployment_review": ["$.since", "$.workflow_run.run_started_at"],
        "deployment_protection_rule": ["$.deployment.created_at"],
    }
    parts = [
        "CASE WHEN kind IS NULL THEN 'not a GitHub Actions webhook payload (workflow_run, workflow_job, "
        "deployment_review, deployment_protection_rule, workflow_dispatch) or an audit-log entry' END",
        "CASE WHEN kind = 'audit' AND occurred_at IS NULL THEN 'audit-log entry has no @timestamp or created_at "
        "in epoch milliseconds (or RFC 3339)' END",
    ]
    for kind, fields in checks.items():
        for path, allowed, expected in fields:
            parts.append(
                f"CASE WHEN kind = '{kind}' THEN {s.wrong_type(f'json_type(doc, {chr(39)}{path}{chr(39)})', path[2:], allowed, expected)} END"
            )
        parts.append(
            f"CASE WHEN kind = '{kind}' AND json_type(doc, '{fields[0][0]}') IS NULL THEN '{kind} payload has no {fields[0][0][2:]}' END"
        )
    for kind, paths in times.items():
        for path in paths:
            parts.append(
                f"CASE WHEN kind = '{kind}' THEN {s.wrong_time(f'json_extract(doc, {chr(39)}{path}{chr(39)})', path[2:])} END"
            )
    parts.append(
        "CASE WHEN kind = 'deployment_review' AND review_action IN ('approved', 'rejected') AND approver IS NULL "
        "THEN 'deployment_review ' || review_action || ' has no approver.login' END"
    )
    return s.first_problem(*parts)


def _normalize(con: duckdb.DuckDBPyConnection) -> None:
    kind = "CASE " + " ".join(f"WHEN {cond} THEN '{name}'" for name, cond in KINDS)
    audit = (
        f"json_type(doc, '$.action') = 'VARCHAR' AND regexp_matches(json_extract_string(doc, '$.action'), '{_AUDIT_ACTION}') "
        "AND (json_type(doc, '$.actor') IS NOT NULL OR json_type(doc, '$.\"@timestamp\"') IN ('UBIGINT', 'BIGINT') "
        "OR json_type(doc, '$.created_at') IN ('UBIGINT', 'BIGINT'))"
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE gh AS
        SELECT record_index, line, doc, kind,
               CASE WHEN kind = 'audit' THEN coalesce({_epoch_ms('$."@timestamp"')}, {_epoch_ms("$.created_at")}) END
                   AS occurred_at,
               {_s("$.action")} AS review_action,
               {_s("$.approver.login")} AS approver
        FROM (SELECT *, CASE WHEN {audit} THEN 'audit' ELSE {kind} END END AS kind FROM records)"""
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE gh_checked AS SELECT *, {_reason_sql()} AS reason FROM gh")
    con.execute(
        """INSERT INTO staged_rejected SELECT record_index, line, reason, left(doc::VARCHAR, ?)
        FROM gh_checked WHERE reason IS NOT NULL""",
        [RAW_EXCERPT],
    )
    con.execute(_STAGE_SQL)


def _run_task(run: str) -> str:
    """The task id of the run object at ``run`` (``$.workflow_run``)."""
    return (
        f"'github-run:' || json_extract_string(doc, '{run}.id') || ':' "
        f"|| coalesce(json_extract_string(doc, '{run}.run_attempt'), '1')"
    )


_REPO = _s("$.repository.full_name")
_AGENT = f"{_REPO} || ':' || {_s('$.workflow_run.path')}"
_RUN_DETAILS = f"""'repository', {_REPO}, 'run_id', json_extract(doc, '$.workflow_run.id'),
    'run_attempt', json_extract(doc, '$.workflow_run.run_attempt'), 'workflow_path', {_s("$.workflow_run.path")},
    'head_branch', {_s("$.workflow_run.head_branch")}, 'head_sha', {_s("$.workflow_run.head_sha")},
    'event', {_s("$.workflow_run.event")}"""
# The audit log names the run in data{} (REST export) or at the top level (streaming).
_A_RUN = "coalesce(json_extract_string(doc, '$.data.workflow_run_id'), json_extract_string(doc, '$.workflow_run_id'))"
_A_ATTEMPT = "coalesce(json_extract_string(doc, '$.data.run_attempt'), json_extract_string(doc, '$.run_attempt'), '1')"
_A_ENV = (
    f"coalesce({_s('$.environment_name')}, {_s('$.data.environment_name')}, {_s('$.environment')}, "
    f"{_s('$.data.environment')})"
)

# One row per event. A deployment_review record gives its review (approval or request), the run it
# names (task) and one grant per listed reviewer; every other record gives one event.
_STAGE_SQL = f"""
INSERT INTO staged BY NAME
WITH ok AS (SELECT * FROM gh_checked WHERE reason IS NULL),
runs AS (
    SELECT record_index, line, doc,
           kind || ':' || json_extract_string(doc, '$.workflow_run.id') || ':'
               || coalesce(json_extract_string(doc, '$.workflow_run.run_attempt'), '1') || ':'
               || coalesce(review_action, 'run') || CASE WHEN kind = 'deployment_review' THEN ':run' ELSE '' END
               AS event_id,
           coalesce({_time("$.workflow_run.run_started_at")}, {_time("$.workflow_run.created_at")}) AS occurred_at,
           'task' AS category, {_AGENT} AS actor_id, 'workload' AS actor_type,
           'github:' || kind || coalesce('.' || review_action, '') AS action,
           {_REPO} AS resource, {_s("$.workflow_run.triggering_actor.login")} AS requested_by,
           {_run_task("$.workflow_run")} AS task_id,
           CASE WHEN kind = 'workflow_run' AND {_s("$.workflow_run.status")} = 'completed'
                THEN {_time("$.workflow_run.updated_at")} END AS ended_at,
           NULL::TIMESTAMPTZ AS expires_at,
           json_object('agent_id', {_AGENT}, 'intent', {_s("$.workflow_run.display_title")},
                       'requested_by', {_s("$.workflow_run.triggering_actor.login")},
                       'status', coalesce({_s("$.workflow_run.conclusion")}, {_s("$.workflow_run.status")}),
                       'known_from', 'github_actions', 'actor', {_s("$.workflow_run.actor.login")}, {_RUN_DETAILS})
               AS details
    FROM ok WHERE kind IN ('workflow_run', 'deployment_review')
), jobs AS (
    SELECT record_index, line, doc,
           'workflow_job:' || json_extract_string(doc, '$.workflow_job.id') || ':'
               || coalesce(json_extract_string(doc, '$.workflow_job.run_attempt'), '1') || ':'
               || coalesce(review_action, 'job') AS event_id,
           coalesce({_time("$.workflow_job.started_at")}, {_time("$.workflow_job.created_at")}) AS occurred_at,
           'task', NULL, 'workload', 'github:workflow_job' || coalesce('.' || review_action, ''), {_REPO}, NULL,
           'github-run:' || json_extract_string(doc, '$.workflow_job.run_id') || ':'
               || coalesce(json_extract_string(doc, '$.workflow_job.run_attempt'), '1'),
           {_time("$.workflow_job.completed_at")}, NULL::TIMESTAMPTZ,
           json_object('known_from', 'github_actions', 'repository', {_REPO},
                       'run_id', json_extract(doc, '$.workflow_job.run_id'),
                       'run_attempt', json_extract(doc, '$.workflow_job.run_attempt'),
                       'job_id', json_extract(doc, '$.workflow_job.id'), 'job_name', {_s("$.workflow_job.name")},
                       'workflow_name', {_s("$.workflow_job.workflow_name")},
                       'status', coalesce({_s("$.workflow_job.conclusion")}, {_s("$.workflow_job.status")}),
                       'head_branch', {_s("$.workflow_job.head_branch")},
                       'environment', {_s("$.deployment.environment")},
                       'deployment_id', json_extract(doc, '$.deployment.id'),
                       'deployment_creator', {_s("$.deployment.creator.login")})
    FROM ok WHERE kind = 'workflow_job'
), reviews AS (
    SELECT record_index, line, doc,
           'deployment_review:' || json_extract_string(doc, '$.workflow_run.id') || ':'
               || coalesce(json_extract_string(doc, '$.workflow_run.run_attempt'), '1') || ':'
               || coalesce({_s("$.environment")}, '') || ':' || coalesce(review_action, '')
               || coalesce(':' || approver, ''),
           -- approved/rejected: no decision time in the payload (see the module docstring)
           CASE WHEN review_action IN ('approved', 'rejected') THEN NULL ELSE {_time("$.since")} END,
           CASE WHEN review_action IN ('approved', 'rejected') THEN 'approval' ELSE 'other' END,
           coalesce(approver, {_s("$.requestor.login")}, {_s("$.sender.login")}), 'unknown',
           'github:deployment_review' || coalesce('.' || review_action, ''), {_REPO}, NULL,
           {_run_task("$.workflow_run")}, NULL::TIMESTAMPTZ, NULL::TIMESTAMPTZ,
           json_object('approval_id', 'deployment_review:' || json_extract_string(doc, '$.workflow_run.id') || ':'
                           || coalesce(json_extract_string(doc, '$.workflow_run.run_attempt'), '1') || ':'
                           || coalesce({_s("$.environment")}, ''),
                       'approver', approver,
                       'decision', CASE review_action WHEN 'approved' THEN 'approved' WHEN 'rejected' THEN 'denied' END,
                       'decision_time', CASE WHEN review_action IN ('approved', 'rejected') THEN 'not in the evidence: '
                           || 'a deployment_review webhook payload carries no decision time' END,
                       'justification', {_s("$.comment")}, 'environment', {_s("$.environment")},
                       'requested_at', {_s("$.since")}, 'requestor', {_s("$.requestor.login")},
                       'job_run_ids', CASE WHEN json_type(doc, '$.workflow_job_runs') = 'ARRAY'
                                           THEN json_extract(doc, '$.workflow_job_runs[*].id')
                                           ELSE json_array(json_extract(doc, '$.workflow_job_run.id')) END,
                       'reviewers', json_extract(doc, '$.reviewers'), {_RUN_DETAILS})
    FROM ok WHERE kind = 'deployment_review'
), reviewer_grants AS (
    SELECT record_index, line, doc,
           'deployment_review:' || json_extract_string(doc, '$.workflow_run.id') || ':'
               || coalesce({_s("$.environment")}, '') || ':' || coalesce(review_action, '') || ':reviewer:' || who,
           {_time("$.since")}, 'grant', who, 'unknown', 'github:environment.reviewer', {_REPO}, NULL, NULL,
           NULL::TIMESTAMPTZ, NULL::TIMESTAMPTZ,
           json_object('approver', who, 'role', 'github:' || {_REPO} || ':environment:' || {_s("$.environment")}
                       || ':reviewer', 'environment', {_s("$.environment")}, 'repository', {_REPO},
                       'reviewer_type', reviewer_type)
    FROM (
        SELECT *, CASE WHEN json_extract_string(rv, '$.type') = 'Team'
                       THEN 'team:' || coalesce(json_extract_string(doc, '$.organization.login'),
                                                split_part({_REPO}, '/', 1)) || '/'
                            || json_extract_string(rv, '$.reviewer.slug')
                       ELSE json_extract_string(rv, '$.reviewer.login') END AS who,
                  json_extract_string(rv, '$.type') AS reviewer_type
        FROM (SELECT *, unnest(CAST(json_extract(doc, '$.reviewers[*]') AS JSON[])) AS rv
              FROM ok WHERE kind = 'deployment_review' AND json_type(doc, '$.reviewers') = 'ARRAY')
    ) WHERE who IS NOT NULL AND {_s("$.environment")} IS NOT NULL AND {_time("$.since")} IS NOT NULL
), other_hooks AS (
    SELECT record_index, line, doc,
           kind || ':' || md5(doc::VARCHAR),
           CASE WHEN kind = 'deployment_protection_rule' THEN {_time("$.deployment.created_at")} END,
           'other', {_s("$.sender.login")}, 'unknown', 'github:' || kind || coalesce('.' || review_action, ''),
           {_REPO}, NULL, NULL, NULL::TIMESTAMPTZ, NULL::TIMESTAMPTZ,
           json_object('repository', {_REPO}, 'environment', {_s("$.environment")},
                       'run_id', try_cast(regexp_extract({_s("$.deployment_callback_url")}, '/runs/([0-9]+)/', 1) AS BIGINT),
                       'ref', {_s("$.ref")}, 'workflow', {_s("$.workflow")}, 'event', {_s("$.event")})
    FROM ok WHERE kind IN ('deployment_protection_rule', 'workflow_dispatch')
), audit AS (
    SELECT record_index, line, doc,
           coalesce({_s("$._document_id")}, 'audit:' || md5(doc::VARCHAR)),
           occurred_at,
           CASE WHEN {_s("$.action")} IN ({", ".join(repr(a) for a in DECISIONS)}) THEN 'approval'
                WHEN {_s("$.action")} IN ({", ".join(repr(a) for a in RUN_ACTIONS)}) AND {_A_RUN} IS NOT NULL
                    THEN 'task'
                ELSE 'other' END,
           {_s("$.actor")},
           CASE WHEN json_extract_string(doc, '$.actor_is_bot') = 'true' OR {_s("$.actor")} LIKE '%[bot]' THEN 'service'
                WHEN json_extract_string(doc, '$.actor_is_bot') = 'false' THEN 'human' ELSE 'unknown' END,
           'github:' || {_s("$.action")},
           coalesce({_s("$.repo")}, {_s("$.repository")}), NULL,
           CASE WHEN {_A_RUN} IS NOT NULL THEN 'github-run:' || {_A_RUN} || ':' || {_A_ATTEMPT} END,
           NULL::TIMESTAMPTZ, NULL::TIMESTAMPTZ,
           json_object('approval_id', CASE WHEN {_s("$.action")} IN ({", ".join(repr(a) for a in DECISIONS)})
                                           THEN coalesce({_s("$._document_id")}, 'audit:' || md5(doc::VARCHAR)) END,
                       'approver', CASE WHEN {_s("$.action")} IN ({", ".join(repr(a) for a in DECISIONS)})
                                        THEN {_s("$.actor")} END,
                       'decision', CASE {_s("$.action")} {" ".join(f"WHEN {a!r} THEN {d!r}" for a, d in DECISIONS.items())} END,
                       'known_from', CASE WHEN {_s("$.action")} IN ({", ".join(repr(a) for a in RUN_ACTIONS)})
                                          THEN 'github_actions' END,
                       'environment', {_A_ENV}, 'org', {_s("$.org")}, 'business', {_s("$.business")},
                       'operation_type', {_s("$.operation_type")}, 'token_id', json_extract(doc, '$.token_id'),
                       'programmatic_access_type', {_s("$.programmatic_access_type")},
                       'run_id', {_A_RUN}, 'head_branch', coalesce({_s("$.data.head_branch")}, {_s("$.head_branch")}))
    FROM ok WHERE kind = 'audit'
), rows(record_index, line, doc, event_id, occurred_at, category, actor_id, actor_type, action, resource,
        requested_by, task_id, ended_at, expires_at, details) AS (
    SELECT * FROM runs UNION ALL SELECT * FROM jobs UNION ALL SELECT * FROM reviews
    UNION ALL SELECT * FROM reviewer_grants UNION ALL SELECT * FROM other_hooks UNION ALL SELECT * FROM audit
)
SELECT r.event_id, r.record_index, r.line, r.occurred_at, r.category, r.actor_id, r.actor_type, r.action,
       r.resource, r.task_id, r.ended_at, r.expires_at,
       CASE WHEN json_type(r.doc, '$.actor_ip') = 'VARCHAR' THEN json_extract_string(r.doc, '$.actor_ip') END AS src_ip,
       CASE WHEN json_type(r.doc, '$.user_agent') = 'VARCHAR' THEN json_extract_string(r.doc, '$.user_agent') END
           AS user_agent,
       CASE WHEN json_type(r.doc, '$.org') = 'VARCHAR' THEN json_extract_string(r.doc, '$.org')
            ELSE json_extract_string(r.doc, '$.organization.login') END AS account,
       -- json_merge_patch('{{}}', x) drops the null keys: details keys are absent when unknown
       json_merge_patch('{{}}', r.details) AS details,
       r.doc AS raw,
       r.event_id || '|' || md5(r.doc::VARCHAR) AS dedupe_key
FROM rows r
"""
