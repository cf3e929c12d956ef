"""Provenance NDJSON (DESIGN §4): tasks, approvals and grants load with the documented columns and
details; every malformed record is rejected with a reason a person can act on."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from helpers import event, load, rows, utc, write_lines

from nhiaudit import ingest
from nhiaudit.sources import provenance

# The three records of DESIGN §4, verbatim.
TASK = {
    "record_type": "task",
    "task_id": "t-7f3a",
    "agent_id": "report-bot",
    "intent": "Publish the November sales report",
    "requested_by": "bob@example.com",
    "started_at": "2026-11-02T09:00:00Z",
    "ended_at": "2026-11-02T09:40:00Z",
    "status": "completed",
}
APPROVAL = {
    "record_type": "approval",
    "approval_id": "APR-1042",
    "task_id": "t-7f3a",
    "approver": "alice@example.com",
    "decision": "approved",
    "decided_at": "2026-11-02T08:55:00Z",
    "expires_at": "2026-11-02T17:00:00Z",
    "scope": {"actions": ["s3:PutObject", "s3:GetObject"], "resources": ["arn:aws:s3:::reports-prod/*"]},
    "justification": "Monthly report",
    "ticket": "CHG0031337",
}
GRANT = {
    "record_type": "grant",
    "approver": "alice@example.com",
    "role": "change-manager",
    "valid_from": "2026-01-01T00:00:00Z",
    "valid_to": "2027-01-01T00:00:00Z",
}


@pytest.fixture
def design_records(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> duckdb.DuckDBPyConnection:
    path = write_lines(tmp_path / "provenance.ndjson", [TASK, APPROVAL, GRANT])
    assert provenance.detect(path) and ingest.detect(path) == "provenance"
    result = load(store, "provenance", path)
    assert (result.read, result.loaded, result.rejected) == (3, 3, 0)
    return store


def test_task_record(design_records: duckdb.DuckDBPyConnection) -> None:
    task = event(design_records, "provenance", "t-7f3a")
    assert task["category"] == "task" and task["task_id"] == "t-7f3a"
    assert task["actor_id"] == "report-bot" and task["actor_type"] == "agent"
    assert task["occurred_at"] == utc(2026, 11, 2, 9) and task["ended_at"] == utc(2026, 11, 2, 9, 40)
    assert task["record_index"] == 0 and task["line"] == 1
    assert task["details"] == {
        "agent_id": "report-bot",
        "intent": "Publish the November sales report",
        "requested_by": "bob@example.com",
        "status": "completed",
        "known_from": "provenance",
    }
    assert json.loads(task["raw"]) == TASK


def test_approval_record(design_records: duckdb.DuckDBPyConnection) -> None:
    approval = event(design_records, "provenance", "APR-1042")
    assert approval["category"] == "approval" and approval["task_id"] == "t-7f3a"
    assert approval["actor_id"] == "alice@example.com"
    assert approval["occurred_at"] == utc(2026, 11, 2, 8, 55) and approval["expires_at"] == utc(2026, 11, 2, 17)
    assert approval["details"] == {
        "approval_id": "APR-1042",
        "approver": "alice@example.com",
        "decision": "approved",
        "scope_actions": ["s3:PutObject", "s3:GetObject"],
        "scope_resources": ["arn:aws:s3:::reports-prod/*"],
        "justification": "Monthly report",
        "ticket": "CHG0031337",
    }


def test_grant_record(design_records: duckdb.DuckDBPyConnection) -> None:
    grant = event(design_records, "provenance", "alice@example.com|change-manager|2026-01-01T00:00:00Z")
    assert grant["category"] == "grant" and grant["actor_id"] == "alice@example.com"
    assert grant["occurred_at"] == utc(2026, 1, 1) and grant["expires_at"] == utc(2027, 1, 1)
    assert grant["details"] == {"approver": "alice@example.com", "role": "change-manager"}
    assert grant["task_id"] is None


def test_optional_keys_may_be_absent(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    lines = [
        {k: v for k, v in TASK.items() if k not in ("ended_at", "status", "intent")} | {"task_id": "t-open"},
        {k: v for k, v in APPROVAL.items() if k not in ("expires_at", "scope", "ticket")} | {"approval_id": "APR-2"},
        {k: v for k, v in APPROVAL.items() if k != "scope"}
        | {"approval_id": "APR-3", "decision": "denied", "scope": {"actions": []}},
        {k: v for k, v in GRANT.items() if k != "valid_to"},
    ]
    result = load(store, "provenance", write_lines(tmp_path / "optional.ndjson", lines))
    assert (result.loaded, result.rejected) == (4, 0)
    open_task = event(store, "provenance", "t-open")
    assert open_task["ended_at"] is None and "status" not in open_task["details"]
    unscoped = event(store, "provenance", "APR-2")
    assert unscoped["expires_at"] is None
    assert "scope_actions" not in unscoped["details"] and "scope_resources" not in unscoped["details"]
    denied = event(store, "provenance", "APR-3")  # an empty list is a scope that allows nothing, not "no scope"
    assert denied["details"]["decision"] == "denied" and denied["details"]["scope_actions"] == []
    grant = event(store, "provenance", "alice@example.com|change-manager|2026-01-01T00:00:00Z")
    assert grant["expires_at"] is None


def test_bad_records_are_rejected_with_a_reason(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    lines = [
        TASK,
        '{"record_type": "task", "task_id": "t-broken"',
        {"record_type": "memo", "text": "hello"},
        {"task_id": "t-1"},
        APPROVAL | {"task_id": 42},
        {k: v for k, v in APPROVAL.items() if k != "task_id"},
        {k: v for k, v in APPROVAL.items() if k != "approver"},
        APPROVAL | {"decision": "yes"},
        APPROVAL | {"decided_at": "last tuesday"},
        APPROVAL | {"expires_at": 1767225600},
        APPROVAL | {"scope": ["s3:*"]},
        APPROVAL | {"scope": {"action": ["s3:*"]}},
        APPROVAL | {"scope": {"actions": "s3:*"}},
        APPROVAL | {"scope": {"resources": ["arn:aws:s3:::a", 7]}},
        TASK | {"task_id": "t-2", "ended_at": "2026-11-02T08:00:00Z"},
        {k: v for k, v in TASK.items() if k != "started_at"},
        {k: v for k, v in GRANT.items() if k != "role"},
        GRANT | {"valid_to": "2025-01-01T00:00:00Z"},
        APPROVAL,
    ]
    result = load(store, "provenance", write_lines(tmp_path / "bad.ndjson", lines))
    reasons = [(r["line"], r["reason"]) for r in rows(store, "SELECT line, reason FROM rejected ORDER BY line")]
    assert reasons == [
        (2, "line 2: not valid JSON (truncated or malformed record)"),
        (3, "record_type 'memo' is not task, approval or grant"),
        (4, "no record_type (expected task, approval or grant)"),
        (5, "task_id is a JSON number, expected a string"),
        (6, "approval record has no task_id"),
        (7, "approval record has no approver"),
        (8, "decision 'yes' is not approved or denied"),
        (9, "decided_at 'last tuesday' is not an RFC 3339 time"),
        (10, "expires_at is a JSON number, expected an RFC 3339 time string"),
        (11, 'scope is a JSON array, expected an object {"actions": [...], "resources": [...]}'),
        (12, "scope has unknown key 'action' (expected actions, resources)"),
        (13, "scope.actions must be a list of strings"),
        (14, "scope.resources must be a list of strings"),
        (15, "ended_at is before started_at"),
        (16, "task record has no started_at"),
        (17, "grant record has no role"),
        (18, "valid_to is before valid_from"),
    ]
    assert (result.loaded, result.rejected, result.duplicates) == (2, 17, 0)
    assert result.read == result.loaded + result.rejected + result.duplicates


def test_reingest_and_duplicates(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.ndjson", [TASK, APPROVAL, GRANT, TASK])
    first = load(store, "provenance", path)
    assert (first.read, first.loaded, first.duplicates) == (4, 3, 1)
    assert ingest.ingest(store, [path]).files[0].already_ingested
    # Appended to: old records are duplicates, the task now completed differently is a new event.
    updated = TASK | {"ended_at": "2026-11-02T10:00:00Z"}
    grown = write_lines(tmp_path / "p2.ndjson", [TASK, APPROVAL, GRANT, json.dumps(GRANT, indent=None), updated])
    second = load(store, "provenance", grown)
    assert (second.loaded, second.duplicates) == (1, 4)
    assert store.execute("SELECT count(*) FROM events WHERE event_id = 't-7f3a'").fetchone()[0] == 2


def test_detect_reads_the_record_type_of_the_first_line(tmp_path: Path) -> None:
    other = write_lines(tmp_path / "other.ndjson", [{"record_type": "invoice", "task_id": "x"}])
    assert not provenance.detect(other)
    long_first = write_lines(tmp_path / "long.ndjson", [APPROVAL | {"justification": "x" * 20000}])
    assert provenance.detect(long_first)
