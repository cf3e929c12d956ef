"""Provenance records: tasks, approvals and approver role grants as NDJSON (DESIGN §4).

One object a line; ``record_type`` says which of the three it is. These records are the human side
of the chain (who asked, who approved what, who may approve), so they are checked strictly: a record
with a missing key, a bad time or a malformed scope is rejected with the reason rather than loaded as
weaker evidence (an approval whose scope silently vanished would approve everything).
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from nhiaudit.sources._read import RAW_EXCERPT, EvidenceFile, first_json_line, head, stage_json_records

NAME = "provenance"
READS = "nhiaudit provenance NDJSON: task, approval and grant records (one object a line, record_type says which)"
DETECTION = 'NDJSON whose first record has "record_type" equal to "task", "approval" or "grant"'

RECORD_TYPES = ("task", "approval", "grant")
STRING_FIELDS = (
    "task_id", "agent_id", "intent", "requested_by", "status", "approval_id", "approver", "decision",
    "justification", "ticket", "role",
)
TIME_FIELDS = ("started_at", "ended_at", "decided_at", "expires_at", "valid_from", "valid_to")
# Keys without which a record is not usable evidence, per record type.
REQUIRED = {
    "task": ("task_id", "started_at"),
    "approval": ("task_id", "approver", "decision", "decided_at"),
    "grant": ("approver", "role", "valid_from"),
}
SCOPE_KEYS = ("actions", "resources")

def _kind(expr: str) -> str:
    """SQL naming the JSON type of ``expr`` for a person: 'number' rather than 'ubigint'."""
    return f"CASE WHEN json_type({expr}) IN ('BIGINT', 'UBIGINT', 'DOUBLE') THEN 'number' ELSE lower(json_type({expr})) END"


_STRUCT = "{" + ", ".join(f'"{f}": "JSON"' for f in ("record_type", *STRING_FIELDS, *TIME_FIELDS, "scope")) + "}"
_FIRST_TYPE = re.compile(r'^\s*\{[^\n]*?"record_type"\s*:\s*"(task|approval|grant)"')


def detect(path: Path) -> bool:
    text = head(path)
    first = first_json_line(text)
    if isinstance(first, dict):
        return first.get("record_type") in RECORD_TYPES
    # The first line may not fit in the head (a long justification): look at its start.
    return first is None and _FIRST_TYPE.search(text) is not None


def load(con: duckdb.DuckDBPyConnection, files: list[EvidenceFile]) -> None:
    for file in files:
        stage_json_records(con, file)
        _normalize(con)


def _reason_sql() -> str:
    """The CASE that names the first problem of a record, or NULL when it is good."""
    branches = [
        "WHEN r.record_type IS NULL OR json_type(r.record_type) = 'NULL' "
        "THEN 'no record_type (expected task, approval or grant)'",
        f"WHEN json_type(r.record_type) <> 'VARCHAR' THEN 'record_type is a JSON ' || {_kind('r.record_type')} "
        "|| ', expected task, approval or grant'",
        f"WHEN record_type NOT IN ({', '.join(repr(t) for t in RECORD_TYPES)}) "
        "THEN 'record_type ''' || left(record_type, 60) || ''' is not task, approval or grant'",
    ]
    for field in STRING_FIELDS:
        branches.append(
            f"WHEN json_type(r.{field}) NOT IN ('VARCHAR', 'NULL') "
            f"THEN '{field} is a JSON ' || {_kind('r.' + field)} || ', expected a string'"
        )
    for field in TIME_FIELDS:
        branches.append(
            f"WHEN json_type(r.{field}) NOT IN ('VARCHAR', 'NULL') "
            f"THEN '{field} is a JSON ' || {_kind('r.' + field)} || ', expected an RFC 3339 time string'"
        )
    for record_type, fields in REQUIRED.items():
        for field in fields:
            branches.append(
                f"WHEN record_type = '{record_type}' AND coalesce(trim(json_extract_string(r.{field}, '$')), '') = '' "
                f"THEN '{record_type} record has no {field}'"
            )
    for field in TIME_FIELDS:
        branches.append(
            f"WHEN json_type(r.{field}) = 'VARCHAR' AND try_cast(json_extract_string(r.{field}, '$') AS TIMESTAMPTZ) IS NULL "
            f"THEN '{field} ''' || left(json_extract_string(r.{field}, '$'), 60) || ''' is not an RFC 3339 time'"
        )
    branches += [
        "WHEN record_type = 'approval' AND json_extract_string(r.decision, '$') NOT IN ('approved', 'denied') "
        "THEN 'decision ''' || left(json_extract_string(r.decision, '$'), 60) || ''' is not approved or denied'",
        "WHEN ended < started THEN 'ended_at is before started_at'",
        "WHEN valid_to < valid_from THEN 'valid_to is before valid_from'",
        f"WHEN json_type(r.scope) NOT IN ('OBJECT', 'NULL') THEN 'scope is a JSON ' || {_kind('r.scope')} "
        "|| ', expected an object {\"actions\": [...], \"resources\": [...]}'",
        "WHEN json_type(r.scope) = 'OBJECT' AND len(list_filter(json_keys(r.scope), k -> k NOT IN ('actions', 'resources'))) > 0 "
        "THEN 'scope has unknown key ''' || left(list_filter(json_keys(r.scope), k -> k NOT IN ('actions', 'resources'))[1], 60) "
        "|| ''' (expected actions, resources)'",
    ]
    for key in SCOPE_KEYS:
        branches.append(
            f"WHEN json_type(r.scope, '$.{key}') NOT IN ('ARRAY', 'NULL') OR NOT coalesce((SELECT bool_and(json_type(e) = 'VARCHAR') "
            f"FROM unnest(CAST(json_extract(r.scope, '$.{key}[*]') AS JSON[])) AS t(e)), true) "
            f"THEN 'scope.{key} must be a list of strings'"
        )
    return "CASE " + "\n".join(branches) + " END"


def _normalize(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE prov AS
        SELECT record_index, line, doc, r, json_extract_string(r.record_type, '$') AS record_type,
               try_cast(json_extract_string(r.started_at, '$') AS TIMESTAMPTZ) AS started,
               try_cast(json_extract_string(r.ended_at, '$') AS TIMESTAMPTZ) AS ended,
               try_cast(json_extract_string(r.decided_at, '$') AS TIMESTAMPTZ) AS decided,
               try_cast(json_extract_string(r.expires_at, '$') AS TIMESTAMPTZ) AS expires,
               try_cast(json_extract_string(r.valid_from, '$') AS TIMESTAMPTZ) AS valid_from,
               try_cast(json_extract_string(r.valid_to, '$') AS TIMESTAMPTZ) AS valid_to
        FROM (SELECT *, json_transform(doc, '{_STRUCT}') AS r FROM records)"""
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE prov_checked AS SELECT *, {_reason_sql()} AS reason FROM prov")
    con.execute(
        """INSERT INTO staged_rejected SELECT record_index, line, reason, left(doc::VARCHAR, ?)
        FROM prov_checked WHERE reason IS NOT NULL""",
        [RAW_EXCERPT],
    )
    # json_merge_patch('{}', x) drops the keys whose value is null: details keys are absent when unknown.
    con.execute(
        """INSERT INTO staged BY NAME
        WITH p AS (
            SELECT record_index, line, doc, record_type, started, ended, decided, expires, valid_from, valid_to,
                   json_extract_string(r.task_id, '$') AS task_id, json_extract_string(r.agent_id, '$') AS agent_id,
                   json_extract_string(r.intent, '$') AS intent, json_extract_string(r.requested_by, '$') AS requested_by,
                   json_extract_string(r.status, '$') AS status, json_extract_string(r.approval_id, '$') AS approval_id,
                   json_extract_string(r.approver, '$') AS approver, json_extract_string(r.decision, '$') AS decision,
                   json_extract_string(r.justification, '$') AS justification, json_extract_string(r.ticket, '$') AS ticket,
                   json_extract_string(r.role, '$') AS role, json_extract_string(r.valid_from, '$') AS valid_from_text,
                   CASE WHEN json_type(r.scope) = 'OBJECT' THEN r.scope END AS scope
            FROM prov_checked WHERE reason IS NULL
        )
        SELECT
            CASE record_type WHEN 'task' THEN task_id WHEN 'approval' THEN approval_id
                 ELSE approver || '|' || role || '|' || valid_from_text END AS event_id,
            record_index, line,
            CASE record_type WHEN 'task' THEN started WHEN 'approval' THEN decided ELSE valid_from END AS occurred_at,
            record_type AS category,
            CASE record_type WHEN 'task' THEN agent_id ELSE approver END AS actor_id,
            CASE WHEN record_type = 'task' AND agent_id IS NOT NULL THEN 'agent'
                 WHEN record_type <> 'task' THEN 'unknown' END AS actor_type,
            CASE WHEN record_type <> 'grant' THEN task_id END AS task_id,
            CASE record_type WHEN 'approval' THEN expires WHEN 'grant' THEN valid_to END AS expires_at,
            CASE WHEN record_type = 'task' THEN ended END AS ended_at,
            json_merge_patch('{}', CASE record_type
                WHEN 'task' THEN json_object('agent_id', agent_id, 'intent', intent, 'requested_by', requested_by,
                                             'status', status, 'known_from', 'provenance')
                WHEN 'approval' THEN json_object('approval_id', approval_id, 'approver', approver, 'decision', decision,
                                                 'scope_actions', json_extract(scope, '$.actions'),
                                                 'scope_resources', json_extract(scope, '$.resources'),
                                                 'justification', justification, 'ticket', ticket)
                ELSE json_object('approver', approver, 'role', role) END) AS details,
            doc AS raw,
            -- The same record twice is one event; a changed record (a task now completed, an
            -- approval re-decided) is a new one.
            record_type || '|' || CASE record_type
                WHEN 'task' THEN task_id || '|' || started::VARCHAR || '|' || coalesce(ended::VARCHAR, '')
                                 || '|' || coalesce(status, '') || '|' || coalesce(agent_id, '')
                WHEN 'approval' THEN coalesce(approval_id, '') || '|' || task_id || '|' || approver || '|'
                                     || decided::VARCHAR || '|' || decision || '|' || coalesce(expires::VARCHAR, '')
                                     || '|' || md5(coalesce(scope::VARCHAR, ''))
                ELSE approver || '|' || role || '|' || valid_from::VARCHAR || '|' || coalesce(valid_to::VARCHAR, '')
            END AS dedupe_key
        FROM p"""
    )
