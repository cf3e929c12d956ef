"""Auth0: the shared log-stream sample loads cleanly, spot checks against values read in it; M2M
issuance, delegation (act), sign-in failures, revocation, the Management API layout, bad records
and re-ingest."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pytest

from nhiaudit import ingest
from nhiaudit.sources import auth0

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples"
SAMPLE = SAMPLES / "idp_oauth" / "elastic__auth0_test-token-xchg-success.first3.logstream.ndjson"
OTHER_SAMPLES = (
    sorted(p for p in SAMPLES.rglob("*") if p.is_file() and p != SAMPLE) if SAMPLES.is_dir() else []
)


def rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params or [])
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def event(con: duckdb.DuckDBPyConnection, event_id: str) -> dict[str, Any]:
    found = rows(con, "SELECT * FROM events WHERE source = 'auth0' AND event_id = ?", [event_id])
    assert len(found) == 1, f"{event_id}: {len(found)} events"
    found[0]["details"] = json.loads(found[0]["details"]) if found[0]["details"] else None
    return found[0]


def load(con: duckdb.DuckDBPyConnection, path: Path) -> ingest.FileResult:
    result = ingest.ingest(con, [path])
    assert not result.unrecognized, f"{path.name} was not recognized"
    (file_result,) = result.files
    assert file_result.source == "auth0"
    return file_result


def write(path: Path, *lines: dict[str, Any] | str) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def stream(log_id: str, type_: str, **data: Any) -> dict[str, Any]:
    """A log-stream record: {log_id, data:{…}} (Auth0 log streams, custom webhook)."""
    body = {
        "date": "2026-11-02T09:05:00.000Z",
        "type": type_,
        "client_id": "bot-client",
        "client_name": "report-bot",
        "ip": "10.1.1.1",
        "user_agent": "python-requests/2.31",
        "hostname": "acme.eu.auth0.com",
        "log_id": log_id,
    }
    body.update(data)
    return {"log_id": log_id, "data": body}


@pytest.fixture
def sample() -> Path:
    if not SAMPLE.is_file():
        pytest.skip(f"shared sample not found at {SAMPLE}")
    return SAMPLE


def test_sample_loads_without_rejections(store: duckdb.DuckDBPyConnection, sample: Path) -> None:
    assert auth0.detect(sample)
    result = load(store, sample)
    assert (result.read, result.loaded, result.rejected) == (3, 3, 0)


def test_sample_fields(store: duckdb.DuckDBPyConnection, sample: Path) -> None:
    load(store, sample)
    log_id = "90020211104001514276223441402873466602396154780480176194"  # line 1
    e = event(store, log_id)
    assert e["occurred_at"] == datetime(2021, 11, 4, 0, 15, 10, 907000, tzinfo=timezone.utc)
    # seacft: authorization code exchanged for an access token
    assert (e["category"], e["action"], e["outcome"]) == ("credential_issue", "auth0:seacft", "success")
    assert e["credential_id"] == f"auth0:aI61p8I8aFjmYRliLWgvM9ev97kCCNDB:{log_id}"
    assert e["credential_type"] == "oauth_access_token"
    assert (e["actor_id"], e["actor_type"]) == ("auth0|618223a4e3f49e006948565c", "unknown")
    assert e["details"]["holder"] == "auth0|618223a4e3f49e006948565c"
    assert e["details"]["user_name"] == "dev@test.com"
    assert e["details"]["client_name"] == "Default App"
    assert (e["src_ip"], e["user_agent"]) == ("114.76.60.57", "Go-http-client/2.0")
    assert (e["account"], e["resource"]) == (
        "dev-yoj8axza.au.auth0.com",
        "auth0:dev-yoj8axza.au.auth0.com/aI61p8I8aFjmYRliLWgvM9ev97kCCNDB",
    )
    assert e["parent_credential_id"] is None
    assert (e["record_index"], e["line"]) == (0, 1)
    assert "code" not in e["details"]  # the masked authorization code is not copied out of raw


def test_m2m_issuance_and_delegation(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    act = json.dumps({"sub": "orchestrator", "act": {"sub": "bob@example.com"}})
    path = write(
        tmp_path / "auth0.ndjson",
        stream(
            "m2m", "seccft", user_id="", audience="https://reports.example.com/api", scope="reports:write"
        ),
        stream("cte", "secte", user_id="auth0|bob", details={"act": act}),
    )
    load(store, path)
    e = event(store, "m2m")
    assert (e["category"], e["actor_id"], e["actor_type"]) == ("credential_issue", "bot-client", "service")
    assert e["credential_id"] == "auth0:bot-client:m2m"
    assert e["resource"] == "https://reports.example.com/api"
    assert (e["details"]["holder"], e["details"]["scope"]) == ("bot-client", "reports:write")
    e = event(store, "cte")  # custom token exchange with an RFC 8693 actor claim
    assert e["details"]["act_chain"] == ["orchestrator", "bob@example.com"]
    assert e["parent_credential_id"] == "orchestrator"
    assert e["details"]["token_exchange"] is True
    assert (e["actor_id"], e["actor_type"]) == ("auth0|bob", "unknown")


def test_signin_revocation_and_flat_layout(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = write(
        tmp_path / "auth0.ndjson",
        stream(
            "fp-1", "fp", client_id="web", user_name="eve@example.com", description="Wrong email or password."
        ),
        stream(
            "feccft-1",
            "feccft",
            details={"error": {"oauthError": "access_denied", "type": "oauth-authorization"}},
        ),
        stream("blocked", "limit_wc", user_name="eve@example.com"),
        # Management API /api/v2/logs: the same fields, not wrapped in "data"
        {
            "date": "2026-11-02T09:07:00.000Z",
            "type": "srrt",
            "client_id": "web",
            "user_id": "auth0|1",
            "log_id": "flat",
        },
    )
    load(store, path)
    e = event(store, "fp-1")
    assert (e["category"], e["outcome"], e["error_code"], e["actor_id"]) == (
        "signin",
        "failure",
        "fp",
        "eve@example.com",
    )
    assert e["credential_id"] is None
    assert event(store, "feccft-1")["error_code"] == "access_denied"
    assert (event(store, "blocked")["category"], event(store, "blocked")["outcome"]) == ("signin", "denied")
    e = event(store, "flat")
    assert (e["category"], e["actor_id"], e["credential_type"]) == (
        "credential_revoke",
        "auth0|1",
        "oauth_refresh_token",
    )
    assert e["occurred_at"] == datetime(2026, 11, 2, 9, 7, tzinfo=timezone.utc)


def test_webhook_batch_array(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "batch.json"
    path.write_text(json.dumps([stream("b1", "seccft"), stream("b2", "s", user_id="auth0|2")]))
    assert auth0.detect(path)
    result = load(store, path)
    assert (result.loaded, result.rejected) == (2, 0)


def test_bad_records_are_rejected_with_a_reason(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = write(
        tmp_path / "auth0.ndjson",
        stream("good-1", "seccft"),
        '{"log_id": "cut", "data": {"date": "2026-',
        {"log_id": "bad-data", "data": "oops"},
        stream("bad-date", "s", date="yesterday"),
        stream("bad-type", 42),
        stream("good-2", "s", user_id="auth0|2"),
    )
    result = load(store, path)
    assert (result.loaded, result.rejected) == (2, 4)
    assert result.read == result.loaded + result.rejected + result.duplicates
    reasons = {r["line"]: r["reason"] for r in rows(store, "SELECT line, reason FROM rejected")}
    assert reasons == {
        2: "line 2: not valid JSON (truncated or malformed record)",
        3: "data is a JSON varchar, expected an object",
        4: "date 'yesterday' is not an ISO-8601 time",
        5: "type is a JSON ubigint, expected a string",
    }


def test_reingest_is_a_noop_and_duplicates_are_skipped(
    store: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    first = write(tmp_path / "a.ndjson", stream("r1", "seccft"), stream("r2", "seccft"))
    load(store, first)
    assert load(store, first).already_ingested
    result = load(store, write(tmp_path / "b.ndjson", stream("r2", "seccft"), stream("r3", "seccft")))
    assert (result.read, result.loaded, result.duplicates) == (2, 1, 1)
    assert store.execute("SELECT count(*) FROM events").fetchone()[0] == 3


@pytest.mark.parametrize("path", OTHER_SAMPLES, ids=[str(p.relative_to(SAMPLES)) for p in OTHER_SAMPLES])
def test_detect_does_not_claim_other_samples(path: Path) -> None:
    assert not auth0.detect(path)
