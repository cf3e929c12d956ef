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
from helpers import SAMPLES, event, load, rows, sample, write_lines

from nhiaudit.sources import auth0

SAMPLE = SAMPLES / "idp_oauth" / "elastic__auth0_test-token-xchg-success.first3.logstream.ndjson"


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


@pytest.fixture(name="sample")
def shared_sample() -> Path:
    return sample(SAMPLE)


def test_sample_fields(store: duckdb.DuckDBPyConnection, sample: Path) -> None:
    result = load(store, "auth0", sample)
    assert (result.read, result.loaded) == (3, 3)  # every record one event
    log_id = "90020211104001514276223441402873466602396154780480176194"  # line 1
    e = event(store, "auth0", log_id)
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
    path = write_lines(
        tmp_path / "auth0.ndjson",
        [
            stream(
                "m2m", "seccft", user_id="", audience="https://reports.example.com/api", scope="reports:write"
            ),
            stream("cte", "secte", user_id="auth0|bob", details={"act": act}),
        ],
    )
    load(store, "auth0", path)
    e = event(store, "auth0", "m2m")
    assert (e["category"], e["actor_id"], e["actor_type"]) == ("credential_issue", "bot-client", "service")
    assert e["credential_id"] == "auth0:bot-client:m2m"
    assert e["resource"] == "https://reports.example.com/api"
    assert (e["details"]["holder"], e["details"]["scope"]) == ("bot-client", "reports:write")
    e = event(store, "auth0", "cte")  # custom token exchange with an RFC 8693 actor claim
    assert e["details"]["act_chain"] == ["orchestrator", "bob@example.com"]
    assert e["parent_credential_id"] == "orchestrator"
    assert e["details"]["token_exchange"] is True
    assert (e["actor_id"], e["actor_type"]) == ("auth0|bob", "unknown")


def test_signin_revocation_and_flat_layout(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "auth0.ndjson",
        [
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
        ],
    )
    load(store, "auth0", path)
    e = event(store, "auth0", "fp-1")
    assert (e["category"], e["outcome"], e["error_code"], e["actor_id"]) == (
        "signin",
        "failure",
        "fp",
        "eve@example.com",
    )
    assert e["credential_id"] is None
    assert event(store, "auth0", "feccft-1")["error_code"] == "access_denied"
    blocked = event(store, "auth0", "blocked")
    assert (blocked["category"], blocked["outcome"]) == ("signin", "denied")
    e = event(store, "auth0", "flat")
    assert (e["category"], e["actor_id"]) == ("credential_revoke", "auth0|1")
    # Auth0 logs no id of the revoked refresh token: no credential, so no credential type either
    assert (e["credential_id"], e["credential_type"]) == (None, None)
    assert e["occurred_at"] == datetime(2026, 11, 2, 9, 7, tzinfo=timezone.utc)


def test_webhook_batch_array(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "batch.json"
    path.write_text(json.dumps([stream("b1", "seccft"), stream("b2", "s", user_id="auth0|2")]))
    assert auth0.detect(path)
    result = load(store, "auth0", path)
    assert (result.loaded, result.rejected) == (2, 0)


def test_bad_records_are_rejected_with_a_reason(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "auth0.ndjson",
        [
            stream("good-1", "seccft"),
            '{"log_id": "cut", "data": {"date": "2026-',
            {"log_id": "bad-data", "data": "oops"},
            stream("bad-date", "s", date="yesterday"),
            stream("bad-type", 42),
            stream("good-2", "s", user_id="auth0|2"),
        ],
    )
    result = load(store, "auth0", path)
    assert (result.loaded, result.rejected) == (2, 4)
    assert result.read == result.loaded + result.rejected + result.duplicates
    reasons = {r["line"]: r["reason"] for r in rows(store, "SELECT line, reason FROM rejected")}
    assert reasons == {
        2: "line 2: not valid JSON (truncated or malformed record)",
        3: "data is a JSON string, expected an object",
        4: "date 'yesterday' is not an ISO-8601 time",
        5: "type is a JSON number, expected a string",
    }


def test_reingest_is_a_noop_and_duplicates_are_skipped(
    store: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    first = write_lines(tmp_path / "a.ndjson", [stream("r1", "seccft"), stream("r2", "seccft")])
    load(store, "auth0", first)
    assert load(store, "auth0", first).already_ingested
    result = load(store, "auth0", write_lines(tmp_path / "b.ndjson", [stream("r2", "seccft"), stream("r3", "seccft")]))
    assert (result.read, result.loaded, result.duplicates) == (2, 1, 1)
    assert store.execute("SELECT count(*) FROM events").fetchone()[0] == 3


def management_api(log_id: str, type_: str, method: str, path: str, body: Any = None, response: Any = None,
                   status: int = 200) -> dict[str, Any]:
    """A Management API operation log (sapi / fapi) as a log stream delivers it (Auth0 log event
    schema: details.request.{method, path, body, auth.credentials.jti}, details.response)."""
    return stream(log_id, type_, description="Create a client" if method == "post" else "Get users",
                  client_id="mgmt-m2m", user_id="", details={
                      "request": {"method": method, "path": path, "query": {}, "body": body or {},
                                  "channel": "api", "ip": "10.1.1.1",
                                  "auth": {"strategy": "jwt", "credentials": {"jti": f"jti-{log_id}",
                                                                              "scopes": ["create:clients"]}}},
                      "response": {"statusCode": status, "body": response or {}}})


def test_management_api_calls_and_client_credentials_client(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    create = management_api("m-1", "sapi", "post", "/api/v2/clients",
                            body={"name": "report-bot", "app_type": "non_interactive",
                                  "grant_types": ["client_credentials"], "client_secret": "s3cr3t"},
                            response={"client_id": "NEWCLIENT1", "name": "report-bot"}, status=201)
    read = management_api("m-2", "sapi", "get", "/api/v2/users?q=email:x")
    failed = management_api("m-3", "fapi", "delete", "/api/v2/clients/NEWCLIENT1", status=403)
    load(store, "auth0", write_lines(tmp_path / "mgmt.ndjson", [create, read, failed]))
    got = {r["event_id"]: r for r in rows(store, "SELECT * FROM events")}
    issued = got["m-1"]
    assert (issued["category"], issued["credential_id"], issued["credential_type"]) == (
        "credential_issue", "oauth-client:NEWCLIENT1", "oauth_client")
    assert issued["parent_credential_id"] == "jti-m-1"
    assert json.loads(issued["details"])["long_term"] is True
    assert "s3cr3t" not in json.dumps([str(v) for k, v in issued.items() if k != "raw"])  # only raw keeps it
    assert (got["m-2"]["category"], got["m-2"]["credential_id"], got["m-2"]["credential_type"]) == (
        "action", "jti-m-2", "jwt")
    assert (got["m-2"]["action"], got["m-2"]["resource"], got["m-2"]["read_only"]) == (
        "auth0-mgmt:GET users", "auth0:acme.eu.auth0.com/api/v2/users", True)
    assert (got["m-3"]["outcome"], got["m-3"]["action"]) == ("failure", "auth0-mgmt:DELETE clients/NEWCLIENT1")
