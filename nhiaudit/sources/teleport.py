"""Teleport audit events (FORMATS §10, DESIGN §4): NDJSON, one event a line, as the audit log and the
event handler write them (https://goteleport.com/docs/reference/monitoring/audit/).

What becomes what:
- ``access_request.create``: a ``task``, ``teleport-request:<id>`` (requester ``user``, roles, reason);
  its end is the access expiry when the event has one;
- ``access_request.review``: one approval stage (``reviewer``, ``proposed_state``). Teleport applies
  the role's thresholds itself and logs the request's resulting ``state``: the stage is an approval
  decision only when that state is APPROVED or DENIED; otherwise the decision is ``pending``;
- ``access_request.update`` with state APPROVED/DENIED (``updated_by``, e.g. ``tctl request approve``):
  the decision;
- ``cert.create``: the roles the certificate grants its user until it expires, one ``grant`` per role
  (``teleport:<role>``): the reviewer's authority over time;
- ``user.login``: a ``signin``; session, app and database events: ``action`` events, whose
  ``access_requests`` (the requests the user's certificate carried) give their task.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from nhiaudit.sources import _sql
from nhiaudit.sources._read import RAW_EXCERPT, EvidenceFile, first_json_line, head, stage_json_records

NAME = "teleport"
READS = "Teleport audit events (NDJSON: event, code, time, uid), from the audit log or the event handler"
DETECTION = (
    'a first line that is a JSON object with an "event" string, a "time" and a Teleport "code" (T….. ending I, W or E)'
)

# Events that are access through Teleport (an action on a node, an app or a database).
ACTION_EVENTS = (
    "session.start",
    "session.command",
    "exec",
    "scp",
    "port",
    "app.session.start",
    "app.session.request",
    "db.session.start",
    "db.session.query",
    "kube.request",
    "desktop.session.start",
)
_CODE = r"^T[A-Z0-9]{4,6}[IWE]$"
_FIRST = re.compile(
    r'^\s*\{[^\n]*"event"\s*:\s*"[a-z_.]+"[^\n]*"code"\s*:\s*"T[A-Z0-9]{4,6}[IWE]"|'
    r'^\s*\{[^\n]*"code"\s*:\s*"T[A-Z0-9]{4,6}[IWE]"[^\n]*"event"\s*:\s*"[a-z_.]+"'
)


def detect(path: Path) -> bool:
    text = head(path)
    first = first_json_line(text)
    if isinstance(first, dict):
        return (
            isinstance(first.get("event"), str)
            and isinstance(first.get("code"), str)
            and re.match(_CODE, first["code"]) is not None
            and "time" in first
        )
    return first is None and _FIRST.search(text) is not None


def load(con: duckdb.DuckDBPyConnection, files: list[EvidenceFile]) -> None:
    for file in files:
        stage_json_records(con, file)
        _normalize(con)


_s = _sql.json_text  # a string field: NULL for an object, an array or an empty string


def _time(path: str) -> str:
    """A Teleport time; ``0001-01-01T00:00:00Z`` means none."""
    return f"CASE WHEN year(try_cast({_s(path)} AS TIMESTAMPTZ)) > 1 THEN try_cast({_s(path)} AS TIMESTAMPTZ) END"


def _reason_sql() -> str:
    s = _sql
    return s.first_problem(
        "CASE WHEN json_type(doc, '$.event') IS NULL THEN 'not a Teleport audit event (no \"event\")' END",
        s.wrong_type("json_type(doc, '$.event')", "event", s.STRING, "a string"),
        s.wrong_type("json_type(doc, '$.code')", "code", s.STRING, "a string"),
        "CASE WHEN json_type(doc, '$.time') IS NULL THEN 'event has no time' END",
        s.wrong_time("json_extract(doc, '$.time')", "time"),
        s.wrong_type("json_type(doc, '$.roles')", "roles", s.ARRAY, "a list of role names"),
        s.wrong_type("json_type(doc, '$.access_requests')", "access_requests", s.ARRAY, "a list of request ids"),
        s.wrong_type("json_type(doc, '$.identity')", "identity", s.OBJECT, "an object"),
        s.wrong_type("json_type(doc, '$.identity.roles')", "identity.roles", s.ARRAY, "a list of role names"),
        s.wrong_time("json_extract(doc, '$.identity.expires')", "identity.expires"),
        "CASE WHEN starts_with(json_extract_string(doc, '$.event'), 'access_request.') "
        "AND json_extract_string(doc, '$.event') NOT IN ('access_request.search') AND "
        f"{_s('$.id')} IS NULL THEN left(json_extract_string(doc, '$.event'), 60) || ' has no request id' END",
        "CASE WHEN json_extract_string(doc, '$.event') = 'access_request.review' AND "
        f"({_s('$.reviewer')} IS NULL OR {_s('$.proposed_state')} IS NULL) "
        "THEN 'access_request.review has no reviewer or proposed_state' END",
    )


def _normalize(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE OR REPLACE TEMP TABLE tp_checked AS SELECT *, {_reason_sql()} AS reason FROM records")
    con.execute(
        """INSERT INTO staged_rejected SELECT record_index, line, reason, left(doc::VARCHAR, ?)
        FROM tp_checked WHERE reason IS NOT NULL""",
        [RAW_EXCERPT],
    )
    con.execute(_STAGE_SQL)


_EVENT = "json_extract_string(doc, '$.event')"
_STATE = f"upper({_s('$.state')})"
_REQUEST = f"'teleport-request:' || {_s('$.id')}"
_ACCESS_REQUESTS = "from_json(json_extract(doc, '$.access_requests'), '[\"VARCHAR\"]')"
_EXPIRY = f"coalesce({_time('$.access_expiry')}, {_time('$.expires')})"

_STAGE_SQL = f"""
INSERT INTO staged BY NAME
WITH ok AS (
    SELECT record_index, line, doc, {_EVENT} AS event, {_s("$.code")} AS code,
           try_cast({_s("$.time")} AS TIMESTAMPTZ) AS occurred_at,
           coalesce({_s("$.user")}, {_s("$.identity.user")}, {_s("$.updated_by")}) AS who,
           coalesce({_s("$.uid")}, md5(doc::VARCHAR)) AS uid
    FROM tp_checked WHERE reason IS NULL
), ided AS (
    -- uid is the event id; Teleport's documentation examples reuse one uid across a request's
    -- create/update/delete, so a uid that several kinds of event share in a file gets the code too.
    SELECT *, CASE WHEN min(event) OVER (PARTITION BY uid) <> max(event) OVER (PARTITION BY uid)
                   THEN uid || ':' || coalesce(code, event) ELSE uid END AS event_id
    FROM ok
), base AS (
    SELECT *,
        CASE WHEN event = 'access_request.create' THEN 'task'
             WHEN event = 'access_request.review' THEN 'approval'
             WHEN event = 'access_request.update' AND {_STATE} IN ('APPROVED', 'DENIED') THEN 'approval'
             WHEN event = 'user.login' THEN 'signin'
             WHEN event IN ({", ".join(repr(e) for e in ACTION_EVENTS)}) THEN 'action'
             ELSE 'other' END AS category,
        CASE WHEN json_extract_string(doc, '$.success') = 'false' OR right(coalesce(code, 'I'), 1) IN ('W', 'E')
             THEN CASE WHEN regexp_matches(lower(coalesce({_s("$.error")}, {_s("$.message")}, '')), 'denied|not allowed|forbidden')
                       THEN 'denied' ELSE 'failure' END
             ELSE 'success' END AS outcome
    FROM ided
), events AS (
    SELECT record_index, line, doc, event_id, occurred_at, category,
        CASE WHEN event = 'access_request.review' THEN {_s("$.reviewer")}
             WHEN event = 'access_request.update' AND category = 'approval' THEN coalesce({_s("$.updated_by")}, who)
             ELSE who END AS actor_id,
        CASE WHEN json_extract_string(doc, '$.user_kind') = '2' THEN 'workload' ELSE 'unknown' END AS actor_type,
        'teleport:' || event AS action,
        CASE WHEN {_s("$.app_name")} IS NOT NULL THEN 'teleport:app/' || {_s("$.app_name")}
             WHEN {_s("$.db_service")} IS NOT NULL THEN 'teleport:db/' || {_s("$.db_service")}
             WHEN {_s("$.server_hostname")} IS NOT NULL THEN 'teleport:node/' || {_s("$.server_hostname")}
             WHEN {_s("$.server_id")} IS NOT NULL THEN 'teleport:server/' || {_s("$.server_id")}
             WHEN starts_with(event, 'access_request.') AND {_s("$.id")} IS NOT NULL THEN {_REQUEST} END AS resource,
        outcome, CASE WHEN outcome <> 'success' THEN code END AS error_code,
        {_s("$.cluster_name")} AS account,
        coalesce(regexp_extract({_s('$."addr.remote"')}, '^\\[?([^\\]]*?)\\]?:[0-9]+$', 1),
                 {_s('$."addr.remote"')}, {_s("$.identity.client_ip")}) AS src_ip,
        {_s("$.user_agent")} AS user_agent,
        CASE WHEN starts_with(event, 'access_request.') AND {_s("$.id")} IS NOT NULL THEN {_REQUEST}
             WHEN json_array_length(doc, '$.access_requests') > 0
             THEN 'teleport-request:' || list_sort({_ACCESS_REQUESTS})[1] END AS task_id,
        CASE WHEN category = 'task' THEN {_EXPIRY} END AS ended_at,
        CASE WHEN category = 'approval' THEN {_EXPIRY} END AS expires_at,
        json_merge_patch('{{}}', CASE category
            WHEN 'task' THEN json_object(
                'requested_by', who, 'intent', coalesce({_s("$.reason")},
                    'roles ' || array_to_string(from_json(json_extract(doc, '$.roles'), '["VARCHAR"]'), ', ')),
                'status', lower({_STATE}), 'known_from', 'teleport', 'roles', json_extract(doc, '$.roles'),
                'max_duration', {_s("$.max_duration")}, 'resource_ids', json_extract(doc, '$.resource_ids'))
            WHEN 'approval' THEN json_object(
                'approval_id', {_REQUEST},
                'approver', CASE WHEN event = 'access_request.review' THEN {_s("$.reviewer")}
                                 ELSE coalesce({_s("$.updated_by")}, who) END,
                -- the request's state after this event: Teleport has applied the thresholds
                'decision', CASE {_STATE} WHEN 'APPROVED' THEN 'approved' WHEN 'DENIED' THEN 'denied' ELSE 'pending' END,
                'stage', CASE WHEN event = 'access_request.review' THEN {_s("$.reviewer")} END,
                'stage_decision', CASE upper(coalesce({_s("$.proposed_state")}, {_STATE}))
                                  WHEN 'APPROVED' THEN 'approved' WHEN 'DENIED' THEN 'denied' END,
                'request_state', {_STATE}, 'justification', {_s("$.reason")},
                'roles', json_extract(doc, '$.roles'))
            ELSE json_object(
                'code', code, 'sid', {_s("$.sid")}, 'login', {_s("$.login")}, 'server_id', {_s("$.server_id")},
                'access_requests', json_extract(doc, '$.access_requests'),
                'aws_role_arn', {_s("$.aws_role_arn")}, 'app_name', {_s("$.app_name")},
                'db_service', {_s("$.db_service")}, 'db_user', {_s("$.db_user")}, 'error', {_s("$.error")},
                'cert_type', {_s("$.cert_type")}, 'roles', coalesce(json_extract(doc, '$.identity.roles'),
                                                                  json_extract(doc, '$.roles')),
                'cert_expires', {_s("$.identity.expires")}, 'method', {_s("$.method")})
            END) AS details,
        doc AS raw, event_id || '|' || md5(doc::VARCHAR) AS dedupe_key
    FROM base
), grants AS (
    -- cert.create: the certificate's roles, held by its user from issue to expiry
    SELECT record_index, line, doc, event_id || ':role:' || role AS event_id, occurred_at, 'grant' AS category,
           who AS actor_id, 'unknown' AS actor_type, 'teleport:role.grant' AS action, NULL AS resource,
           'success' AS outcome, NULL AS error_code, {_s("$.cluster_name")} AS account,
           {_s("$.identity.client_ip")} AS src_ip, NULL AS user_agent, NULL AS task_id,
           NULL::TIMESTAMPTZ AS ended_at, {_time("$.identity.expires")} AS expires_at,
           json_object('approver', who, 'role', 'teleport:' || role) AS details,
           doc AS raw, event_id || '|role|' || role || '|' || md5(doc::VARCHAR) AS dedupe_key
    FROM (SELECT *, unnest(from_json(json_extract(doc, '$.identity.roles'), '["VARCHAR"]')) AS role
          FROM base WHERE event = 'cert.create' AND json_type(doc, '$.identity.roles') = 'ARRAY')
    WHERE who IS NOT NULL AND role IS NOT NULL
)
SELECT * EXCLUDE (doc) FROM events UNION ALL BY NAME SELECT * EXCLUDE (doc) FROM grants
"""
