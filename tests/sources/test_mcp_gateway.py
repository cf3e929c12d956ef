"""MCP gateway message logs: the sample world's gateway log loads and pairs, tool calls are actions on
their arguments' target, the gateway credential is the credential (never its secret), the trace
context in params._meta (or the session's) joins the agent, outcomes come from the response, and bad
records are rejected with a reason. Records are written in the MCPG rpc-messages.jsonl shape
(FORMATS §6) with the session and auth fields a gateway adds (synthetic: no open sample exists)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from helpers import event, load, other_samples, rows, utc, write_lines

from nhiaudit import ingest
from nhiaudit.sources import mcp_gateway

WORLD_LOG = Path(__file__).resolve().parents[2] / "sample_logs" / "mcp" / "gateway.rpc-messages.jsonl"
SESSION = "mcp-sess-0001"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
AUTH = {"subject": "report-bot", "client_id": "report-bot-client", "token_id": "jti-0001"}


def message(
    kind: str, rpc_id: int | str | None, time: str, *, server: str = "github", session: str | None = SESSION,
    auth: dict[str, Any] | None = None, **payload: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"jsonrpc": "2.0", **({"id": rpc_id} if rpc_id is not None else {}), **payload}
    record: dict[str, Any] = {
        "timestamp": f"2026-11-02T{time}.000000000Z",
        "direction": "IN" if kind == "REQUEST" else "OUT",
        "type": kind,
        "server_id": server,
        "method": payload.get("method", "tools/call"),
        "payload": body,
    }
    if session:
        record["session_id"] = session
    record["auth"] = AUTH if auth is None else auth
    return record


def call(rpc_id: int | str, time: str, tool: str, arguments: dict[str, Any], traceparent: str | None = TRACEPARENT,
         **options: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"name": tool, "arguments": arguments}
    if traceparent:
        params["_meta"] = {"traceparent": traceparent}
    return message("REQUEST", rpc_id, time, method="tools/call", params=params, **options)


def response(rpc_id: int | str, time: str, is_error: bool = False, **options: Any) -> dict[str, Any]:
    return message("RESPONSE", rpc_id, time, result={"content": [{"type": "text", "text": "ok"}], "isError": is_error},
                   **options)


def ingest_lines(store: duckdb.DuckDBPyConnection, tmp_path: Path, lines: list[Any]) -> ingest.FileResult:
    return load(store, "mcp_gateway", write_lines(tmp_path / "rpc-messages.jsonl", lines))


def sid(rpc_id: int | str, session: str = SESSION, server: str = "github") -> str:
    return f"{session}/{server}/{json.dumps(rpc_id)}"


# --- the sample world's log -----------------------------------------------------------------------


def test_the_sample_world_log_is_claimed_and_pairs_every_exchange(store: duckdb.DuckDBPyConnection) -> None:
    assert mcp_gateway.detect(WORLD_LOG) and ingest.detect(WORLD_LOG) == "mcp_gateway"
    result = load(store, "mcp_gateway", WORLD_LOG)
    # 9 messages: 4 request/response pairs and a notification
    assert (result.read, result.loaded, result.rejected) == (5, 5, 0)
    refund = event(store, "mcp_gateway", "mcp-sess-5b1e2c7a9d034f61/billing/3")
    assert (refund["category"], refund["action"], refund["outcome"]) == (
        "action", "mcp:billing:issue_refund", "success")
    assert (refund["actor_id"], refund["credential_id"], refund["credential_type"]) == (
        "support-bot", "jti-5b1e2c7a-support-bot-0001", "jwt")
    assert (refund["trace_id"], refund["parent_span_id"]) == ("63377377699dcc73de733d3485a39f36", "7dfd19249fee8612")
    assert refund["occurred_at"] == utc(2026, 11, 2, 9, 46, 10, 120000)
    assert refund["ended_at"] == utc(2026, 11, 2, 9, 46, 11, 380000)
    assert refund["line"] == 8  # the request line is the evidence pointer
    assert refund["details"]["duration_ms"] == 1260 and refund["details"]["halves"] == "request+response"
    raw = json.loads(refund["raw"])
    assert raw["request"]["payload"]["params"]["name"] == "issue_refund" and raw["response"]["type"] == "RESPONSE"
    assert {r["category"] for r in rows(store, "SELECT category FROM events WHERE action NOT LIKE '%:tools/call'")} == {
        "action", "other"}


def test_detection_claims_no_other_sample() -> None:
    assert not [p for p in other_samples(WORLD_LOG) if mcp_gateway.detect(p)]


# --- pairing --------------------------------------------------------------------------------------


def test_requests_pair_with_responses_by_id_within_a_session_and_server(
    store: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    result = ingest_lines(store, tmp_path, [
        call(1, "09:00:00", "get_file_contents", {"owner": "octo-org", "repo": "site"}),
        call(1, "09:00:01", "get_file_contents", {"owner": "octo-org", "repo": "docs"}, session="mcp-sess-0002"),
        response(1, "09:00:02", session="mcp-sess-0002"),
        response(1, "09:00:03"),
        call("a-7", "09:01:00", "list_issues", {"owner": "octo-org", "repo": "site"}),  # no response logged
        response(99, "09:02:00"),  # a response whose request is not in the file
        # JSON-RPC's answer to a request it could not read: id null, so no id to pair on
        message("RESPONSE", None, "09:02:30", error={"code": -32700, "message": "Parse error"}) | {
            "payload": {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}}},
        # the same id reused in one session: the n-th request pairs with the n-th response
        call(5, "09:03:00", "create_issue", {"owner": "octo-org", "repo": "site"}),
        response(5, "09:03:01"),
        call(5, "09:04:00", "create_issue", {"owner": "octo-org", "repo": "site"}),
        response(5, "09:04:01", is_error=True),
    ])
    assert (result.read, result.loaded, result.rejected) == (7, 7, 0)  # 11 lines: 6 exchanges and a lone error
    got = {r["event_id"]: (r["line"], r["outcome"], r["ended_at"] is not None, r["category"]) for r in rows(
        store, "SELECT event_id, line, outcome, ended_at, category FROM events WHERE event_id NOT LIKE 'msg-%'")}
    assert got == {
        sid(1): (1, "success", True, "action"),
        sid(1, "mcp-sess-0002"): (2, "success", True, "action"),
        sid("a-7"): (5, None, False, "action"),  # no result field: outcome unknown, not failure
        sid(99): (6, "success", False, "other"),  # a lone response names no tool: evidence, not an action
        sid(5) + "#1": (8, "success", True, "action"),
        sid(5) + "#2": (10, "failure", True, "action"),
    }
    lone = rows(store, "SELECT event_id, outcome, error_code, category FROM events WHERE line = 7")
    assert [(r["event_id"][:4], r["outcome"], r["error_code"], r["category"]) for r in lone] == [
        ("msg-", "failure", "-32700", "other")]


# --- what a call acts on ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "resource", "resources"),
    [
        ({"owner": "octo-org", "repo": "site", "path": "README.md", "content": "x"},
         "github:octo-org/site/README.md", None),
        ({"owner": "octo-org", "repo": "site", "title": "Bug"}, "github:octo-org/site", None),
        ({"url": "https://api.example.com/v1/orders?token=s3cr3t#x"}, "https://api.example.com/v1/orders", None),
        ({"path": "/srv/reports/q3.csv"}, "github:/srv/reports/q3.csv", None),
        ({"paths": ["/srv/a.csv", "/srv/b.csv"]}, "github:/srv/a.csv", ["github:/srv/a.csv", "github:/srv/b.csv"]),
        ({"query": "refunds"}, None, None),
    ],
    ids=["repo-path", "repo", "url-without-query", "path", "several-paths", "none"],
)
def test_a_tool_call_acts_on_the_target_its_arguments_name(
    store: duckdb.DuckDBPyConnection, tmp_path: Path, arguments: dict[str, Any], resource: str | None,
    resources: list[str] | None,
) -> None:
    ingest_lines(store, tmp_path, [call(1, "09:00:00", "do_it", arguments), response(1, "09:00:01")])
    got = event(store, "mcp_gateway", sid(1))
    assert (got["action"], got["resource"]) == ("mcp:github:do_it", resource)
    assert got["details"].get("resources") == resources
    assert got["details"]["argument_keys"] == list(arguments)
    assert "s3cr3t" not in json.dumps({k: v for k, v in got.items() if k != "raw"}, default=str)


def test_resources_read_is_a_read_only_action_on_its_uri(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    ingest_lines(store, tmp_path, [
        message("REQUEST", 4, "09:00:00", method="resources/read", params={"uri": "file:///srv/reports/q3.csv"}),
        message("RESPONSE", 4, "09:00:01", result={"contents": []}),
    ])
    got = event(store, "mcp_gateway", sid(4))
    assert (got["action"], got["resource"], got["read_only"], got["category"]) == (
        "mcp:github:resources/read", "file:///srv/reports/q3.csv", True, "action")


# --- outcome, credential, trace ------------------------------------------------------------------


def test_the_response_decides_the_outcome(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    ingest_lines(store, tmp_path, [
        call(1, "09:00:00", "delete_repo", {"owner": "o", "repo": "r"}),
        message("RESPONSE", 1, "09:00:01", error={"code": -32001, "message": "Forbidden: denied by policy"}),
        call(2, "09:00:02", "merge_pull_request", {"owner": "o", "repo": "r"}),
        message("RESPONSE", 2, "09:00:03", error={"code": -32603, "message": "upstream timeout"}),
        call(3, "09:00:04", "create_branch", {"owner": "o", "repo": "r"}),
        response(3, "09:00:05", is_error=True),
    ])
    got = {r["event_id"]: (r["outcome"], r["error_code"]) for r in rows(store, "SELECT * FROM events")}
    assert got == {sid(1): ("denied", "-32001"), sid(2): ("failure", "-32603"), sid(3): ("failure", "isError")}
    assert event(store, "mcp_gateway", sid(2))["details"]["error_message"] == "upstream timeout"


@pytest.mark.parametrize(
    ("auth", "credential", "kind", "actor"),
    [
        ({"subject": "report-bot", "token_id": "jti-9", "client_id": "c-1"}, "jti-9", "jwt", "report-bot"),
        ({"client_id": "c-1", "key_id": "key-42", "api_key": "sk-live-SECRET"}, "mcp-key:github:key-42",
         "mcp_gateway_key", "c-1"),
        ({"client_id": "c-1"}, "oauth-client:c-1", "oauth_client", "c-1"),
        ({}, None, None, None),
    ],
    ids=["token", "api-key", "client", "anonymous"],
)
def test_the_gateway_credential_is_the_credential_never_its_secret(
    store: duckdb.DuckDBPyConnection, tmp_path: Path, auth: dict[str, Any], credential: str | None, kind: str | None,
    actor: str | None,
) -> None:
    ingest_lines(store, tmp_path, [call(1, "09:00:00", "t", {}, auth=auth), response(1, "09:00:01", auth=auth)])
    got = event(store, "mcp_gateway", sid(1))
    assert (got["credential_id"], got["credential_type"], got["actor_id"]) == (credential, kind, actor)
    assert "SECRET" not in json.dumps({k: v for k, v in got.items() if k != "raw"}, default=str)


def test_a_call_without_trace_context_takes_its_sessions_trace(
    store: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    ingest_lines(store, tmp_path, [
        call(1, "09:00:00", "a", {}),
        call(2, "09:00:05", "b", {}, traceparent=None),
        call(3, "09:00:06", "c", {}, traceparent=None, session="mcp-sess-other"),
        call(4, "09:00:07", "d", {}, traceparent="00-zz-not-valid-01"),
    ])
    got = {r["event_id"]: (r["trace_id"], r["parent_span_id"]) for r in rows(store, "SELECT * FROM events")}
    trace = TRACEPARENT.split("-")[1]
    assert got == {
        sid(1): (trace, "00f067aa0ba902b7"),
        sid(2): (trace, None),  # the session's trace: the covering task span decides (correlation)
        sid(3, "mcp-sess-other"): (None, None),
        sid(4): (trace, None),  # an invalid traceparent is none
    }
    assert event(store, "mcp_gateway", sid(2))["details"]["trace_link"] == "session"


# --- hostile input --------------------------------------------------------------------------------


def test_bad_records_are_rejected_with_a_reason_and_the_rest_load(
    store: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    good = call(1, "09:00:00", "a", {})
    no_payload = {k: v for k, v in call(2, "09:00:00", "a", {}).items() if k != "payload"}
    bad_time = {**call(3, "09:00:00", "a", {}), "timestamp": "yesterday"}
    bad_args = call(4, "09:00:00", "a", {})
    bad_args["payload"]["params"]["arguments"] = ["not", "an", "object"]
    bad_type = {**call(5, "09:00:00", "a", {}), "type": "BROADCAST"}
    result = ingest_lines(store, tmp_path, [good, no_payload, bad_time, bad_args, bad_type, "{not json"])
    assert (result.loaded, result.rejected) == (1, 5)
    reasons = sorted(r["reason"] for r in rows(store, "SELECT reason FROM rejected"))
    assert reasons == sorted([
        'no "payload" (the JSON-RPC message): not an MCP gateway message record',
        "timestamp 'yesterday' is not an RFC 3339 time",
        "payload.params.arguments is a JSON array, expected an object",
        "type 'BROADCAST' is not REQUEST or RESPONSE",
        "line 6: not valid JSON (truncated or malformed record)",
    ])


def test_reingest_counts_duplicates(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    lines = [call(1, "09:00:00", "a", {}), response(1, "09:00:01")]
    ingest_lines(store, tmp_path, lines)
    # the next rotated file repeats the exchange and adds one
    rotated = write_lines(tmp_path / "next.jsonl", [*lines, call(2, "09:00:02", "b", {})])
    again = ingest.ingest(store, [rotated]).files[0]
    assert (again.loaded, again.duplicates) == (1, 1)
