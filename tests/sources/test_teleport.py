"""Teleport: the shared audit-event samples load cleanly, spot checks against values read in them; access
requests, reviews under a threshold, downstream events carrying access_requests; bad records; detection."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pytest
from helpers import SAMPLES, event, load, other_samples, rows, sample, sample_files, write_lines

from nhiaudit import ingest
from nhiaudit.sources import teleport

FOLDER = SAMPLES / "teleport"
GENERATED = FOLDER / "elastic__teleport_test-teleport-generated.log"
ALL_EVENTS = FOLDER / "elastic__teleport_test-teleport-all-events.lines-5-10-11-12-13-45-46.log"
REQUEST = "3f1c4a52-0b8e-4c1e-9d0a-2b7e5c1d9a11"


def ev(event_: str, code: str, uid: str, time: str = "2026-11-02T09:00:00Z", **extra: Any) -> dict[str, Any]:
    body = {"event": event_, "code": code, "uid": uid, "time": time, "cluster_name": "acme"}
    body.update(extra)
    return body


def request_events() -> list[dict[str, Any]]:
    """A request for role prod-admin whose role needs two approvals (threshold 2): one review."""
    return [
        ev(
            "access_request.create",
            "T5000I",
            "u1",
            id=REQUEST,
            user="bob@example.com",
            roles=["prod-admin"],
            state="PENDING",
            reason="INC-42 hotfix",
            max_duration="2026-11-02T13:00:00Z",
            expires="2026-11-02T10:00:00Z",
        ),
        ev(
            "access_request.review",
            "T5002I",
            "u2",
            "2026-11-02T09:02:00Z",
            id=REQUEST,
            reviewer="alice@example.com",
            proposed_state="APPROVED",
            state="PENDING",
            reason="ok",
        ),
        ev(
            "app.session.start",
            "T2007I",
            "u3",
            "2026-11-02T09:05:00Z",
            user="bob@example.com",
            sid="s1",
            app_name="aws-console",
            aws_role_arn="arn:aws:iam::111111111111:role/prod-admin",
            access_requests=[REQUEST],
            **{"addr.remote": "10.0.0.5:51234"},
        ),
    ]


@pytest.mark.parametrize("path", sample_files(FOLDER), ids=lambda p: p.name)
def test_every_sample_loads_with_zero_rejected(store: duckdb.DuckDBPyConnection, path: Path) -> None:
    result = load(store, "teleport", sample(path))
    assert result.rejected == 0
    assert result.read == result.loaded > 0


def test_detection_claims_the_folder_and_nothing_else() -> None:
    mine = sample_files(sample(FOLDER))
    assert len(mine) == 2 and all(teleport.detect(p) for p in mine)
    assert [p for p in other_samples(*mine) if teleport.detect(p)] == []


def test_sample_generated(store: duckdb.DuckDBPyConnection) -> None:
    result = load(store, "teleport", sample(GENERATED))
    assert result.read == 28 + 18  # 28 events, 2 roles on each of the 9 certificates
    login = event(store, "teleport", "b675d102-fc25-4f7a-bf5d-96468cc176ea")
    assert (login["category"], login["actor_id"], login["src_ip"]) == ("signin", "teleport-admin", "198.51.100.196")
    failed = event(store, "teleport", "6bf5553c-f162-4cb2-85f5-479be47b2aa0")
    assert (failed["outcome"], failed["error_code"]) == ("failure", "T1000W")
    db = event(store, "teleport", "373ad109-851b-4126-ac61-2819c328b0ae")
    assert (db["category"], db["outcome"], db["resource"]) == ("action", "denied", "teleport:db/example-dynamodb")
    assert db["occurred_at"] == datetime(2024, 2, 23, 19, 16, 47, 720000, tzinfo=timezone.utc)
    grants = rows(
        store,
        """SELECT details ->> '$.role' AS role, expires_at FROM events
                          WHERE event_id LIKE 'efd326fc-dd13-4df8-acef-3102c2d717d3:role:%' ORDER BY 1""",
    )
    assert [g["role"] for g in grants] == ["teleport:access", "teleport:editor"]
    assert grants[0]["expires_at"] == datetime(2024, 2, 24, 6, 56, 50, 648137, tzinfo=timezone.utc)
    start = event(store, "teleport", "fff30583-13be-49e8-b159-32952c6ea34f")
    assert start["resource"] == "teleport:node/ip-198-51-100-163.us-east-2.compute.internal"
    assert start["details"]["login"] == "ec2-user"


def test_sample_access_request_lines(store: duckdb.DuckDBPyConnection) -> None:
    load(store, "teleport", sample(ALL_EVENTS))
    # the documentation-style lines share one uid: the code keeps their ids apart
    create = event(store, "teleport", "68a83a99-73ce-4bd7-bbf7-99103c2ba6a0:T5000I")
    assert (create["category"], create["task_id"]) == ("task", "teleport-request:66b827b2-1b0b-512b-965d-6c789388d3c9")
    assert create["details"]["requested_by"] == "Carrie_Sandoval"
    assert create["details"]["roles"] == ["admin"]
    update = event(store, "teleport", "68a83a99-73ce-4bd7-bbf7-99103c2ba6a0:T5001I")
    assert (update["category"], update["actor_id"]) == ("approval", "Sam_Waters")
    assert update["details"]["decision"] == "approved"
    assert event(store, "teleport", "68a83a99-73ce-4bd7-bbf7-99103c2ba6a0:T5003I")["category"] == "other"
    app = event(store, "teleport", "80400ed9-644e-4a6e-ab99-b264b34d0f55")
    assert (app["category"], app["resource"], app["src_ip"]) == ("action", "teleport:app/test", "81.2.69.193")


def test_review_below_threshold_is_a_pending_stage(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    load(store, "teleport", write_lines(tmp_path / "audit.log", request_events()))
    task = event(store, "teleport", "u1")
    assert task["ended_at"] == datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc)
    assert task["details"]["intent"] == "INC-42 hotfix"
    stage = event(store, "teleport", "u2")
    assert (stage["category"], stage["actor_id"], stage["task_id"]) == (
        "approval",
        "alice@example.com",
        f"teleport-request:{REQUEST}",
    )
    assert (stage["details"]["decision"], stage["details"]["stage_decision"]) == ("pending", "approved")
    app = event(store, "teleport", "u3")
    assert (app["task_id"], app["src_ip"]) == (f"teleport-request:{REQUEST}", "10.0.0.5")
    assert app["details"]["aws_role_arn"] == "arn:aws:iam::111111111111:role/prod-admin"


def test_bad_records_are_rejected_with_a_reason(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "audit.log",
        [
            ev("user.login", "T1000I", "ok", user="bob"),
            ev("user.login", "T1000I", "b1", time="yesterday"),
            ev("access_request.review", "T5002I", "b2", id=REQUEST, proposed_state="APPROVED"),
            ev("cert.create", "TC000I", "b3", identity={"user": "bob", "roles": "admin"}),
            ev("app.session.start", "T2007I", "b4", access_requests=REQUEST),
            {"code": "T1000I", "time": "2026-11-02T09:00:00Z"},
        ],
    )
    result = ingest.ingest(store, [path])
    reasons = [r for (r,) in store.execute("SELECT reason FROM rejected ORDER BY line").fetchall()]
    assert reasons == [
        "time 'yesterday' is not an RFC 3339 time",
        "access_request.review has no reviewer or proposed_state",
        "identity.roles is a JSON string, expected a list of role names",
        "access_requests is a JSON string, expected a list of request ids",
        'not a Teleport audit event (no "event")',
    ]
    assert (result.files[0].loaded, result.files[0].rejected) == (1, 5)
