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

from nhiaudit.sources import _sql
from nhiaudit.sources._read import RAW_EXCERPT, EvidenceFile, first_json_line, head, stage_json_records

NAME = "provenance"
READS = "nhiaudit provenance NDJSON: task, approval and grant records (record_type says which)"
DETECTION = 'NDJSON whose first record has "record_type" equal to "task", "approval" or "grant"'

RECORD_TYPES = ("task", "approval", "grant")
STRING_FIELDS = (
    "task_id",
    "agent_id",
    "intent",
    "requested_by",
    "status",
    "approval_id",
    "approver",
    "decision",
    "justification",
    "ticket",
    "role",
)
# Time fields and the name of their parsed column.
TIME_FIELDS = {
    "started_at": "started",
    "ended_at": "ended",
    "decided_at": "decided",
    "expires_at": "expires",
    "valid_from": "valid_from",
    "valid_to": "valid_to",
}
# Keys without which a record is not usable evidence, per record type.
REQUIRED = {
    "task": ("task_id", "started_at"),
    "approval": ("task_id", "approver", "decision", "decided_at"),
    "grant": ("approver", "role", "valid_from"),
}
SCOPE_KEYS = ("actions", "resources")

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



def _text(field: str) -> str:
    return f"json_extract_string(r.{field}, '$')"


def _reason_sql() -> str:
    """SQL naming the first problem of a record, or NULL when it is good."""
    s = _sql
    unknown_scope_keys = "list_filter(json_keys(r.scope), k -> k NOT IN ('actions', 'resources'))"
    record_type = [
        "CASE WHEN r.record_type IS NULL OR json_type(r.record_type) = 'NULL' "
        "THEN 'no record_type (expected task, approval or grant)' END",
        s.wrong_type("json_type(r.record_type)", "record_type", s.STRING, "task, approval or grant"),
        f"CASE WHEN record_type NOT IN ({', '.join(repr(t) for t in RECORD_TYPES)}) "
        "THEN 'record_type ''' || left(record_type, 60) || ''' is not task, approval or grant' END",
    ]
    types = [
        s.wrong_type(f"json_type(r.{field})", field, s.STRING, "an RFC 3339 time string" if field in TIME_FIELDS else "a string")
        for field in (*STRING_FIELDS, *TIME_FIELDS)
    ]
    values = [
        f"WHEN record_type = '{record_type}' AND coalesce(trim({_text(field)}), '') = '' "
        f"THEN '{record_type} record has no {field}'"
        for record_type, fields in REQUIRED.items()
        for field in fields
    ]
    values += [
        f"WHEN json_type(r.{field}) = 'VARCHAR' AND try_cast({_text(field)} AS TIMESTAMPTZ) IS NULL "
        f"THEN '{field} ''' || left({_text(field)}, 60) || ''' is not an RFC 3339 time'"
        for field in TIME_FIELDS
    ]
    values += [
        f"WHEN record_type = 'approval' AND {_text('decision')} NOT IN ('approved', 'denied') "
        f"THEN 'decision ''' || left({_text('decision')}, 60) || ''' is not approved or denied'",
        "WHEN ended < started THEN 'ended_at is before started_at'",
        "WHEN valid_to < valid_from THEN 'valid_to is before valid_from'",
    ]
    scope = [
        # An unknown key is most likely a typo ("action"): ignoring it would widen the approval.
        f"WHEN json_type(r.scope) = 'OBJECT' AND len({unknown_scope_keys}) > 0 "
        f"THEN 'scope has unknown key ''' || left({unknown_scope_keys}[1], 60) "
        "|| ''' (expected actions, resources)'",
    ]
    scope += [
        f"WHEN json_type(r.scope, '$.{key}') NOT IN ('ARRAY', 'NULL') "
        "OR NOT coalesce((SELECT bool_and(json_type(e) = 'VARCHAR') "
        f"FROM unnest(CAST(json_extract(r.scope, '$.{key}[*]') AS JSON[])) AS t(e)), true) "
        f"THEN 'scope.{key} must be a list of strings'"
        for key in SCOPE_KEYS
    ]
    return s.first_problem(
        *record_type,
        *types,
        "CASE " + "\n".join(values) + " END",
        s.wrong_type("json_type(r.scope)", "scope", s.OBJECT, 'an object {"actions": [...], "resources": [...]}'),
        "CASE " + "\n".join(scope) + " END",
    )


def _normalize(con: duckdb.DuckDBPyConnection) -> None:
    times = ", ".join(f"try_cast({_text(field)} AS TIMESTAMPTZ) AS {name}" for field, name in TIME_FIELDS.items())
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE prov AS
        SELECT record_index, line, doc, r, {_text("record_type")} AS record_type, {times}
        FROM (SELECT *, json_transform(doc, '{_STRUCT}') AS r FROM records)"""
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE prov_checked AS SELECT *, {_reason_sql()} AS reason FROM prov")
    con.execute(
        """INSERT INTO staged_rejected SELECT record_index, line, reason, left(doc::VARCHAR, ?)
        FROM prov_checked WHERE reason IS NOT NULL""",
        [RAW_EXCERPT],
    )
    strings = ", ".join(f"{_text(field)} AS {field}" for field in STRING_FIELDS)
    parsed = ", ".join(TIME_FIELDS.values())
    # json_merge_patch('{}', x) drops the keys whose value is null: details keys are absent when unknown.
    con.execute(
        f"""INSERT INTO staged BY NAME
        WITH p AS (
            SELECT record_index, line, doc, record_type, {parsed}, {strings},
                   {_text("valid_from")} AS valid_from_text,
                   CASE WHEN json_type(r.scope) = 'OBJECT' THEN r.scope END AS scope
            FROM prov_checked WHERE reason IS NULL
        )
        SELECT
            CASE record_type WHEN 'task' THEN task_id WHEN 'approval' THEN approval_id
                 ELSE approver || '|' || role || '|' || valid_from_text END AS event_id,
            record_index, line,
            CASE record_type WHEN 'task' THEN started WHEN 'approval' THEN decided ELSE valid_from END
                AS occurred_at,
            record_type AS category,
            CASE record_type WHEN 'task' THEN agent_id ELSE approver END AS actor_id,
            CASE WHEN record_type = 'task' AND agent_id IS NOT NULL THEN 'agent'
                 WHEN record_type <> 'task' THEN 'unknown' END AS actor_type,
            CASE WHEN record_type <> 'grant' THEN task_id END AS task_id,
            CASE record_type WHEN 'approval' THEN expires WHEN 'grant' THEN valid_to END AS expires_at,
            CASE WHEN record_type = 'task' THEN ended END AS ended_at,
            json_merge_patch('{{}}', CASE record_type
                WHEN 'task' THEN json_object(
                    'agent_id', agent_id, 'intent', intent, 'requested_by', requested_by, 'status', status,
                    'known_from', 'provenance')
                WHEN 'approval' THEN json_object(
                    'approval_id', approval_id, 'approver', approver, 'decision', decision,
                    'scope_actions', json_extract(scope, '$.actions'),
                    'scope_resources', json_extract(scope, '$.resources'),
                    'justification', justification, 'ticket', ticket)
                ELSE json_object('approver', approver, 'role', role) END) AS details,
            doc AS raw,
            -- The same record twice is one event; a changed record (a task now completed, an
            -- approval re-decided) is a new one. Times are compared parsed, not as spelled.
            record_type || '|' || CASE record_type
                WHEN 'task' THEN concat_ws('|', task_id, started, coalesce(ended::VARCHAR, ''),
                                           coalesce(status, ''), coalesce(agent_id, ''))
                WHEN 'approval' THEN concat_ws('|', coalesce(approval_id, ''), task_id, approver, decided,
                                               decision, coalesce(expires::VARCHAR, ''),
                                               md5(coalesce(scope::VARCHAR, '')))
                ELSE concat_ws('|', approver, role, valid_from, coalesce(valid_to::VARCHAR, ''))
            END AS dedupe_key
        FROM p"""
    )
