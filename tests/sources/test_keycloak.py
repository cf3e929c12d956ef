"""Keycloak: the shared sample (undated JBoss event lines) loads cleanly, spot checks against values
read in it; token issuances, delegation (act) and refresh chains; the JSON layouts; bad lines,
skipped non-event lines and re-ingest."""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest
from helpers import SAMPLES, event, load, rows, sample, write_lines

from nhiaudit.sources import keycloak

SAMPLE = SAMPLES / "idp_oauth" / "elastic__keycloak_test-log.events-lines.log"

CLIENT_LOGIN = (
    '2026-11-02 09:00:00,123 INFO  [org.keycloak.events] (executor-thread-1) type="CLIENT_LOGIN", '
    'realmId="agents", clientId="report-bot", userId="sa-1", sessionId="s-1", ipAddress="10.0.0.5", '
    'grant_type="client_credentials", token_id="jti-111", scope="profile email", '
    'username="service-account-report-bot"'
)
EXCHANGE_WITH_ACT = (
    "2026-11-02 09:00:05,000 INFO  [org.keycloak.events] (executor-thread-2) type=TOKEN_EXCHANGE, "
    "realmId=agents, clientId=agent-gw, userId=u-bob, sessionId=s-1, ipAddress=10.0.0.6, token_id=jti-222, "
    'subject_token_client_id=web-app, audience=reports-api, act="{\\"sub\\": \\"agent-gw\\", '
    '\\"act\\": {\\"sub\\": \\"report-bot\\"}}"'
)
EXCHANGE = (
    "09:00:06,000 INFO  [org.keycloak.events] (default task-3) type=TOKEN_EXCHANGE, realmId=agents, "
    "clientId=agent-gw, userId=u-bob, ipAddress=10.0.0.6, token_id=jti-223, subject_token_client_id=web-app"
)
REFRESH = (
    "2026-11-02 09:01:00,000 INFO  [org.keycloak.events] (executor-thread-3) type=REFRESH_TOKEN, "
    "realmId=agents, clientId=web-app, userId=u-bob, token_id=jti-333, refresh_token_id=rt-1, "
    "access_token_expiration_time=300"
)
EXCHANGE_ERROR = (
    "2026-11-02 09:02:00,000 WARN  [org.keycloak.events] (executor-thread-3) type=TOKEN_EXCHANGE_ERROR, "
    "realmId=agents, clientId=agent-gw, userId=null, ipAddress=10.0.0.6, error=not_allowed"
)
JSON_LOG = {
    "timestamp": "2026-11-02T10:03:00.5+01:00",
    "sequence": 9,
    "loggerClassName": "org.jboss.logging.Logger",
    "loggerName": "org.keycloak.events",
    "level": "INFO",
    "message": 'type="LOGIN", realmId="agents", clientId="web-app", userId="u-bob", ipAddress="10.0.0.7", '
    'username="bob@example.com"',
    "threadName": "executor-thread-4",
}
JSON_EVENT = {
    "id": "ev-9",
    "time": 1793610240000,
    "type": "CODE_TO_TOKEN",
    "realmId": "agents",
    "clientId": "web-app",
    "userId": "u-bob",
    "sessionId": "s-2",
    "ipAddress": "10.0.0.7",
    "details": {"token_id": "jti-444", "grant_type": "authorization_code", "refresh_token_id": "rt-2"},
}


def line_id(line: str) -> str:
    """Text events carry no id: theirs is the MD5 of the line."""
    return hashlib.md5(line.encode()).hexdigest()


@pytest.fixture(name="sample")
def shared_sample() -> Path:
    return sample(SAMPLE)


def test_sample_fields(store: duckdb.DuckDBPyConnection, sample: Path) -> None:
    result = load(store, "keycloak", sample)
    assert (result.read, result.loaded) == (15, 15)  # every record one event
    lines = sample.read_text().splitlines()
    e = event(store, "keycloak", line_id(lines[0]))
    # The JBoss layout of the sample prints no date: no occurred_at, the time of day is kept.
    assert e["occurred_at"] is None
    assert e["details"]["time_of_day"] == "21:01:45,403"
    assert (e["category"], e["action"], e["outcome"]) == ("signin", "keycloak:LOGIN_ERROR", "failure")
    assert (e["error_code"], e["account"], e["src_ip"]) == ("invalid_redirect_uri", "test", "172.18.0.1")
    assert e["actor_id"] is None  # userId=null and no username: the client only names the application
    assert e["resource"] == "keycloak:test/test"
    assert (e["record_index"], e["line"]) == (0, 1)
    assert json.loads(e["raw"]) == lines[0]

    e = event(store, "keycloak", line_id(lines[8]))
    assert e["actor_id"] == "cc74404c-de7e-482a-98f7-b271ff3c49be"
    assert (e["error_code"], e["details"]["username"]) == ("invalid_user_credentials", "admin")

    e = event(store, "keycloak", line_id(lines[10]))
    assert (e["actor_id"], e["account"], e["error_code"]) == ("asdf", "master", "user_not_found")
    assert e["resource"] == "keycloak:master/security-admin-console"
    categories = {r["category"] for r in rows(store, "SELECT category FROM events")}
    assert categories == {"signin"}


def test_token_issuance_and_delegation(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "server.log", [CLIENT_LOGIN, EXCHANGE_WITH_ACT, EXCHANGE, REFRESH, EXCHANGE_ERROR])
    result = load(store, "keycloak", path)
    assert (result.loaded, result.rejected) == (5, 0)

    e = event(store, "keycloak", line_id(CLIENT_LOGIN))  # client credentials, values in Keycloak 26 "quotes"
    assert e["occurred_at"] == datetime(2026, 11, 2, 9, 0, 0, 123000, tzinfo=timezone.utc)
    assert (e["category"], e["credential_id"], e["credential_type"]) == (
        "credential_issue",
        "jti-111",
        "oauth_access_token",
    )
    assert (e["actor_id"], e["actor_type"]) == ("report-bot", "service")
    assert e["details"]["holder"] == "sa-1"
    assert e["details"]["scope"] == "profile email"
    assert e["details"]["long_term"] is False

    e = event(store, "keycloak", line_id(EXCHANGE_WITH_ACT))  # RFC 8693: act names the current actor, then prior ones
    assert e["credential_id"] == "jti-222"
    assert e["details"]["act_chain"] == ["agent-gw", "report-bot"]
    assert e["parent_credential_id"] == "agent-gw"
    assert e["resource"] == "reports-api"  # the audience

    e = event(store, "keycloak", line_id(EXCHANGE))  # no act claim: the subject token's client is the parent
    assert (e["credential_id"], e["parent_credential_id"]) == ("jti-223", "web-app")
    assert e["occurred_at"] is None and e["details"]["time_of_day"] == "09:00:06,000"

    e = event(store, "keycloak", line_id(REFRESH))  # the refresh token used is the parent
    assert (e["credential_id"], e["parent_credential_id"]) == ("jti-333", "rt-1")
    assert e["expires_at"] == e["occurred_at"] + timedelta(seconds=300)
    assert e["details"]["ttl_seconds"] == 300

    e = event(store, "keycloak", line_id(EXCHANGE_ERROR))  # a refused exchange issues nothing
    assert (e["category"], e["outcome"], e["error_code"]) == ("signin", "denied", "not_allowed")
    assert e["credential_id"] is None


def test_json_layouts(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    load(store, "keycloak", write_lines(tmp_path / "keycloak.json.log", [JSON_LOG, JSON_EVENT]))
    e = event(store, "keycloak", line_id(json.dumps(JSON_LOG)))  # KC_LOG_CONSOLE_OUTPUT=json
    assert e["occurred_at"] == datetime(2026, 11, 2, 9, 3, 0, 500000, tzinfo=timezone.utc)
    assert (e["category"], e["actor_id"], e["outcome"]) == ("signin", "u-bob", "success")
    assert e["details"]["username"] == "bob@example.com"
    e = event(store, "keycloak", "ev-9")  # an event object as the admin REST API returns it
    assert e["occurred_at"] == datetime(2026, 11, 2, 9, 4, tzinfo=timezone.utc)
    assert (e["category"], e["credential_id"], e["actor_id"]) == ("credential_issue", "jti-444", "u-bob")
    assert e["details"]["refresh_token_id"] == "rt-2"


def test_admin_api_export_array(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    path.write_text(json.dumps([JSON_EVENT, {**JSON_EVENT, "id": "ev-10", "type": "LOGOUT"}], indent=2))
    assert keycloak.detect(path)
    result = load(store, "keycloak", path)
    assert (result.loaded, result.rejected) == (2, 0)
    assert event(store, "keycloak", "ev-10")["category"] == "other"


def test_issued_token_links_to_the_gateway_call(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    """The chain key: Keycloak's token_id is the jti an Envoy json_format log records."""
    load(store, "keycloak", write_lines(tmp_path / "server.log", [CLIENT_LOGIN]))
    call = {
        "start_time": "2026-11-02T09:00:30Z",
        "method": "PUT",
        "path": "/v1/reports",
        "response_code": 200,
        "x_request_id": "gw-1",
        "jwt_jti": "jti-111",
        "jwt_sub": "sa-1",
        "authority": "reports.internal",
    }
    load(store, "envoy", write_lines(tmp_path / "access.log", [call]))
    linked = rows(
        store,
        """SELECT a.event_id AS action_id, i.event_id AS issue_id, a.actor_id, i.details->>'holder' AS holder
        FROM events a JOIN events i ON a.credential_id = i.credential_id
        WHERE a.category = 'action' AND i.category = 'credential_issue'""",
    )
    assert linked == [
        {"action_id": "gw-1", "issue_id": line_id(CLIENT_LOGIN), "actor_id": "sa-1", "holder": "sa-1"}
    ]


def test_bad_and_skipped_lines(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "server.log",
        [
            CLIENT_LOGIN,
            "2026-11-02 09:00:06,000 INFO  [org.keycloak.services] (main) KC-SERVICES0001: Loading config",
            "this is garbage",
            "2026-11-02 09:00:07,000 WARN  [org.keycloak.events] (main) something that is not an event",
            {**JSON_EVENT, "id": "ev-bad", "time": "soon"},
            {**JSON_EVENT, "id": "ev-bad2", "details": "token_id=1"},
            '{"id": "cut", "time": 17',
            REFRESH,
        ],
    )
    result = load(store, "keycloak", path)
    # the [org.keycloak.services] line is a log line, not an event: skipped on purpose, not "read"
    assert (result.loaded, result.rejected) == (2, 5)
    assert result.read == result.loaded + result.rejected + result.duplicates
    reasons = {r["line"]: r["reason"] for r in rows(store, "SELECT line, reason FROM rejected")}
    assert reasons == {
        3: "line 3: not a Keycloak event line (expected 'HH:mm:ss,SSS LEVEL [org.keycloak.events] (thread) "
        "type=…', a JSON log line or a JSON event object)",
        4: "line 4: an [org.keycloak.events] line whose message is not 'type=…' or 'operationType=…' "
        "(not a Keycloak event)",
        5: "line 5: time is a JSON string, expected epoch milliseconds (a number)",
        6: "line 6: details is a JSON string, expected an object",
        7: "line 7: not valid JSON (truncated or malformed record)",
    }


def test_gzipped_server_log(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "server.log.gz"
    path.write_bytes(gzip.compress(f"{CLIENT_LOGIN}\n{REFRESH}\n".encode()))
    assert keycloak.detect(path)
    result = load(store, "keycloak", path)
    assert (result.loaded, result.rejected) == (2, 0)
    assert event(store, "keycloak", line_id(REFRESH))["credential_id"] == "jti-333"


def test_reingest_is_a_noop_and_duplicates_are_skipped(
    store: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    first = write_lines(tmp_path / "a.log", [CLIENT_LOGIN, REFRESH])
    load(store, "keycloak", first)
    assert load(store, "keycloak", first).already_ingested
    result = load(store, "keycloak", write_lines(tmp_path / "b.log", [REFRESH, JSON_EVENT]))
    assert (result.read, result.loaded, result.duplicates) == (2, 1, 1)
    assert store.execute("SELECT count(*) FROM events").fetchone()[0] == 3
