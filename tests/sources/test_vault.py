"""Vault audit device: the shared samples load cleanly, request/response halves pair into one event,
and issuance, dynamic cloud credentials and revocation are normalized per DESIGN §4."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from helpers import SAMPLES, event, load, rows, sample_files, utc, write_lines

from nhiaudit import ingest
from nhiaudit.sources import vault

VAULT_SAMPLES = SAMPLES / "vault_audit"
SAMPLE_FILES = sample_files(VAULT_SAMPLES, "*.log")
AUDIT = "elastic__test-audit.first9lines.log"
FAKED = "elastic__test-faked-all-fields.log"


# --- the shared samples -------------------------------------------------------------------------


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=[p.name for p in SAMPLE_FILES])
def test_every_sample_loads_without_rejections(store: duckdb.DuckDBPyConnection, path: Path) -> None:
    assert vault.detect(path)
    assert ingest.detect(path) == "vault"
    result = load(store, "vault", path)
    assert result.rejected == 0, rows(store, "SELECT reason FROM rejected")
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    requests = {ln["request"].get("id") for ln in lines if ln["type"] == "request" and ln["request"].get("id")}
    responses = {ln["request"].get("id") for ln in lines if ln["type"] == "response" and ln["request"].get("id")}
    unpaired = sum(1 for ln in lines if not ln["request"].get("id"))
    # One event per request id (pairs and lone halves), plus lines without an id.
    assert result.loaded == len(requests | responses) + unpaired
    assert result.read == result.loaded + result.duplicates


def test_audit_sample_pairs_and_normalizes(store: duckdb.DuckDBPyConnection) -> None:
    if not SAMPLE_FILES:
        pytest.skip("shared vault samples not found")
    result = load(store, "vault", VAULT_SAMPLES / AUDIT)
    assert (result.read, result.loaded) == (5, 5)  # 9 lines: 4 pairs and one lone request

    oidc = event(store, "vault", "cd09708b-11cc-2985-648b-cfe262cf7e50")
    assert oidc["record_index"] == 0 and oidc["line"] == 1
    assert oidc["occurred_at"] == utc(2020, 12, 1, 20, 29, 4, 356625)  # the request half's time
    assert oidc["category"] == "action"
    assert oidc["action"] == "vault:update" and oidc["resource"] == "sys/capabilities-self"
    assert oidc["actor_id"] == "oidc-12349999999999999999" and oidc["actor_type"] == "unknown"
    assert oidc["credential_id"] == "hmac-sha256:eb605bd7f8a5ceb951b9ab42cae6d6c3f12f203cb2c2a78e33e899f77dceb931"
    assert oidc["credential_type"] == "vault_token"
    assert oidc["outcome"] == "success" and oidc["src_ip"] == "67.43.156.13"
    raw = json.loads(oidc["raw"])
    assert raw["request"]["type"] == "request" and raw["response"]["type"] == "response"
    assert raw["response"]["time"] == "2020-12-01T20:29:04.36089379Z"

    denied = event(store, "vault", "24ac580b-805a-d9ee-4d0d-7046932f4e05")
    assert denied["outcome"] == "denied" and denied["error_code"] == "permission denied"
    assert denied["action"] == "vault:update" and denied["resource"] == "internal-ca/issue/internal-server"
    assert denied["actor_id"] is None and denied["credential_id"] is None

    nomad = event(store, "vault", "0042ad1b-1400-7eb7-5e25-1dfc898c1998")
    assert nomad["actor_id"] == "token-375f9cb3-4355-42c7-eab5-029f8a310ca7-runner"
    assert nomad["actor_type"] == "workload"  # Nomad AllocationID metadata
    assert nomad["read_only"] is True and nomad["action"] == "vault:read"
    assert nomad["details"]["metadata"]["Task"] == "runner"

    # The last line is a request without an id: an event of its own, with a framework id.
    (lone,) = rows(store, "SELECT * FROM events WHERE record_index = 8")
    assert lone["action"] == "vault:help" and lone["event_id"].startswith("rec-")
    assert json.loads(lone["raw"])["response"] is None
    positions = {r[0] for r in store.execute("SELECT record_index FROM events").fetchall()}
    assert positions == {0, 2, 4, 6, 8}  # the response halves are not events of their own


def test_faked_sample_keeps_plain_accessors_and_wrap_info(store: duckdb.DuckDBPyConnection) -> None:
    if not SAMPLE_FILES:
        pytest.skip("shared vault samples not found")
    load(store, "vault", VAULT_SAMPLES / FAKED)
    kv = event(store, "vault", "002c8225-e859-44a0-9ccb-471c3655dbd8")
    assert kv["credential_id"] == "bar"  # auth.accessor wins over request.client_token_accessor
    assert kv["outcome"] == "failure" and kv["error_code"] == "this is an error"
    assert kv["category"] == "action"  # response.auth on a kv path is not an issuance
    assert kv["user_agent"] == "Go-http-client/2.0"
    assert kv["details"]["wrapped_accessor"] == "Bh57rT8zuhspG9APjXpGpiAJ"
    lookup = event(store, "vault", "b2f72168-6cba-1bab-808a-72d9304b82f8")
    assert lookup["resource"] == "auth/token/lookup-self" and lookup["category"] == "action"
    assert lookup["outcome"] == "success"  # "error": "" is no error


# --- issuance, cloud credentials, revocation (DESIGN §4) -----------------------------------------

ORCH = {
    "accessor": "acc-orch",
    "display_name": "token-orchestrator",
    "entity_id": "ent-orch",
    "metadata": {"service_account_name": "orchestrator", "service_account_namespace": "agents"},
    "token_policies": ["orchestrator"],
    "token_ttl": 3600,
}


def pair(
    rid: str,
    time: str,
    path: str,
    operation: str = "update",
    auth: dict | None = None,
    response: dict | None = None,
    error: str = "",
    req_data: dict | None = None,
    headers: dict | None = None,
    response_time: str | None = None,
) -> list[dict[str, Any]]:
    request = {
        "id": rid,
        "operation": operation,
        "path": path,
        "remote_address": "10.0.0.7",
        "client_token_accessor": (auth or {}).get("accessor", ""),
        "namespace": {"id": "root"},
    }
    if req_data is not None:
        request["data"] = req_data
    if headers is not None:
        request["headers"] = headers
    req = {"time": time, "type": "request", "auth": auth or {}, "request": request}
    resp = {
        "time": response_time or time,
        "type": "response",
        "auth": auth or {},
        "request": request,
        "response": response or {},
    }
    if error:
        req["error"] = resp["error"] = error
    return [req, resp]


@pytest.fixture
def world(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> duckdb.DuckDBPyConnection:
    child = {
        **ORCH,
        "accessor": "acc-child",
        "display_name": "token-report-bot",
        "metadata": {"task_id": "t-7f3a"},
        "token_ttl": 0,
    }
    lines = [
        *pair(
            "r-login",
            "2026-11-02T09:00:00.123456789Z",
            "auth/approle/login",
            response={
                "auth": {
                    "accessor": "acc-login",
                    "display_name": "approle",
                    "entity_id": "ent-app",
                    "token_ttl": 1800,
                    "token_issue_time": "2026-11-02T09:00:00Z",
                    "metadata": {"role_name": "deployer", "task_id": "t-login"},
                    "token_policies": ["deploy"],
                    "client_token": "hmac-sha256:aa",
                }
            },
        ),
        *pair(
            "r-create",
            "2026-11-02T09:01:00Z",
            "auth/token/create",
            auth=ORCH,
            response={
                "auth": {
                    "accessor": "acc-child",
                    "display_name": "token-report-bot",
                    "metadata": {"task_id": "t-7f3a"},
                    "token_policies": ["report"],
                    "client_token": "hmac-sha256:bb",
                }
            },
        ),
        *pair(
            "r-creds",
            "2026-11-02T09:02:00Z",
            "aws/creds/deploy-role",
            operation="read",
            auth=child,
            response={
                "mount_type": "aws",
                "secret": {"lease_id": "aws/creds/deploy-role/L1"},
                "data": {"access_key": "ASIAEXAMPLEKEY000001", "secret_key": "hmac-sha256:cc", "ttl": 900},
            },
        ),
        *pair(
            "r-kv",
            "2026-11-02T09:03:00Z",
            "secret/data/reports",
            operation="read",
            auth=child,
            headers={"traceparent": ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]},
        ),
        *pair(
            "r-revoke-lease",
            "2026-11-02T09:04:00Z",
            "sys/leases/revoke",
            auth=ORCH,
            req_data={"lease_id": "aws/creds/deploy-role/L1"},
        ),
        *pair(
            "r-revoke-tok",
            "2026-11-02T09:05:00Z",
            "auth/token/revoke-accessor",
            auth=ORCH,
            req_data={"accessor": "acc-child"},
        ),
        *pair("r-denied", "2026-11-02T09:06:00Z", "auth/token/create", auth=child, error="permission denied"),
        *pair(
            "r-hmac-key",
            "2026-11-02T09:07:00Z",
            "aws-prod/sts/ops",
            operation="read",
            auth=child,
            response={"mount_type": "aws", "data": {"access_key": "hmac-sha256:dd"}},
        ),
        # A response whose request half is in another (rotated) file.
        pair("r-rotated", "2026-11-02T09:08:00Z", "secret/data/x", operation="read", auth=child)[1],
        {"time": "2026-11-02T09:09:00Z", "type": "kmip-request", "auth": {}, "request": {"id": "k1"}},
    ]
    load(store, "vault", write_lines(tmp_path / "audit.log", lines))
    return store


def test_login_issues_a_token(world: duckdb.DuckDBPyConnection) -> None:
    login = event(world, "vault", "r-login")
    assert login["category"] == "credential_issue"
    assert login["credential_id"] == "acc-login" and login["credential_type"] == "vault_token"
    assert login["parent_credential_id"] is None  # a login has no parent token
    assert login["task_id"] == "t-login"
    assert login["actor_id"] == "approle" and login["actor_type"] == "workload"  # AppRole metadata
    assert login["occurred_at"] == utc(2026, 11, 2, 9, 0, 0, 123456)
    assert login["expires_at"] == utc(2026, 11, 2, 9, 30)  # token_issue_time + 1800 s
    details = login["details"]
    assert details["holder"] == "approle" and details["ttl_seconds"] == 1800 and details["long_term"] is False
    assert details["policies"] == ["deploy"] and details["task_link"] == "vault_metadata"
    assert "hmac-sha256:aa" not in login["details"].__repr__()  # no token (even hashed) in details


def test_token_create_without_ttl_is_long_term(world: duckdb.DuckDBPyConnection) -> None:
    create = event(world, "vault", "r-create")
    assert create["category"] == "credential_issue"
    assert create["credential_id"] == "acc-child" and create["parent_credential_id"] == "acc-orch"
    assert create["actor_id"] == "token-orchestrator" and create["actor_type"] == "workload"
    assert create["task_id"] == "t-7f3a"
    assert create["expires_at"] is None
    assert create["details"]["ttl_seconds"] == 0 and create["details"]["long_term"] is True
    assert create["details"]["holder"] == "token-report-bot"


def test_dynamic_cloud_credentials_are_issuances(world: duckdb.DuckDBPyConnection) -> None:
    creds = event(world, "vault", "r-creds")
    assert creds["category"] == "credential_issue"
    assert creds["credential_id"] == "ASIAEXAMPLEKEY000001" and creds["credential_type"] == "aws_temporary_key"
    assert creds["parent_credential_id"] == "acc-child"
    assert creds["task_id"] == "t-7f3a"  # the calling token's metadata
    assert creds["action"] == "vault:read" and creds["resource"] == "aws/creds/deploy-role"
    assert creds["expires_at"] == utc(2026, 11, 2, 9, 2) + timedelta(seconds=900)
    assert creds["details"]["lease_id"] == "aws/creds/deploy-role/L1"
    assert creds["details"]["role"] == "deploy-role" and creds["details"]["long_term"] is False
    hashed = event(world, "vault", "r-hmac-key")  # another aws mount, key HMACed: still recorded as logged
    assert hashed["category"] == "credential_issue" and hashed["credential_id"] == "hmac-sha256:dd"


def test_revocations(world: duckdb.DuckDBPyConnection) -> None:
    lease = event(world, "vault", "r-revoke-lease")
    assert lease["category"] == "credential_revoke"
    assert lease["credential_id"] == "ASIAEXAMPLEKEY000001"  # the key issued under that lease
    assert lease["details"]["lease_id"] == "aws/creds/deploy-role/L1"
    assert lease["details"]["by_credential_id"] == "acc-orch"
    token = event(world, "vault", "r-revoke-tok")
    assert token["category"] == "credential_revoke" and token["credential_id"] == "acc-child"
    assert token["credential_type"] == "vault_token"


def test_actions_denials_trace_context_and_lone_halves(world: duckdb.DuckDBPyConnection) -> None:
    kv = event(world, "vault", "r-kv")
    assert kv["category"] == "action" and kv["credential_id"] == "acc-child" and kv["task_id"] == "t-7f3a"
    assert kv["trace_id"] == "0af7651916cd43dd8448eb211c80319c" and kv["parent_span_id"] == "b7ad6b7169203331"
    denied = event(world, "vault", "r-denied")
    assert denied["category"] == "action" and denied["outcome"] == "denied"  # no token was issued
    rotated = event(world, "vault", "r-rotated")
    assert rotated["details"]["halves"] == "response" and json.loads(rotated["raw"])["request"] is None
    (kmip,) = rows(world, "SELECT * FROM events WHERE source = 'vault' AND category = 'other'")
    assert kmip["occurred_at"] == utc(2026, 11, 2, 9, 9)


# --- bad input, re-ingest, detection ---------------------------------------------------------------


def test_bad_records_are_rejected_with_a_reason(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    good = pair("ok-1", "2026-11-02T09:00:00Z", "secret/data/a", operation="read", auth=ORCH)
    lines = [
        *good,
        '{"time": "2026-11-02T09:00:01Z", "type": "request", "request": {"id": "broken"',
        {"time": 1762074000, "type": "request", "auth": {}, "request": {"id": "t1", "path": "a"}},
        {"time": "yesterday", "type": "request", "auth": {}, "request": {"id": "t2", "path": "a"}},
        {"time": "2026-11-02T09:00:02Z", "type": "audit", "request": {"id": "t3"}},
        {"time": "2026-11-02T09:00:03Z", "type": "request", "request": "secret/data/a"},
        {
            "time": "2026-11-02T09:00:04Z",
            "type": "response",
            "request": {"id": "t5", "path": "a"},
            "response": {"auth": {"accessor": "x", "token_ttl": "forever"}},
        },
        *pair("ok-2", "2026-11-02T09:00:05Z", "secret/data/b", operation="list", auth=ORCH),
    ]
    result = load(store, "vault", write_lines(tmp_path / "bad.log", lines))
    reasons = {r["line"]: r["reason"] for r in rows(store, "SELECT line, reason FROM rejected")}
    assert reasons == {
        3: "line 3: not valid JSON (truncated or malformed record)",
        4: "time is a JSON number, expected an RFC 3339 string",
        5: "time 'yesterday' is not an RFC 3339 time",
        6: "type 'audit' is not request, response, kmip-request or kmip-response",
        7: "request is a JSON string, expected an object",
        8: "response.auth.token_ttl is a JSON string, expected a number of seconds",
    }
    assert result.loaded == 2 and result.rejected == 6
    assert result.read == result.loaded + result.rejected + result.duplicates
    assert {e["event_id"] for e in rows(store, "SELECT event_id FROM events")} == {"ok-1", "ok-2"}


def test_duplicate_pairs_and_reingest(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    lines = pair("dup", "2026-11-02T09:00:00Z", "secret/data/a", operation="read", auth=ORCH)
    path = write_lines(tmp_path / "dup.log", lines + lines)  # the same pair logged twice
    first = load(store, "vault", path)
    assert (first.read, first.loaded, first.duplicates, first.rejected) == (2, 1, 1, 0)
    again = ingest.ingest(store, [path]).files[0]
    assert again.already_ingested and again.loaded == 0
    # The same records in a different file (other bytes) are duplicates, not new events.
    other = write_lines(tmp_path / "dup-copy.log", [*lines, lines[0]])
    copy = load(store, "vault", other)
    assert copy.loaded == 1 and copy.duplicates == 1  # the extra lone request is a distinct half
    assert store.execute("SELECT count(*) FROM events WHERE event_id = 'dup'").fetchone()[0] == 2


def test_detect_claims_only_vault_audit_lines(tmp_path: Path) -> None:
    mcp = write_lines(
        tmp_path / "rpc-messages.jsonl",
        [
            {
                "timestamp": "2026-01-01T00:00:00Z",
                "direction": "OUT",
                "type": "REQUEST",
                "method": "tools/call",
            }
        ],
    )
    assert not vault.detect(mcp)
    # A first line longer than the head is still recognized from its start.
    big = pair("big", "2026-11-02T09:00:00Z", "secret/data/a", auth=ORCH, response={"data": {"blob": "x" * 20000}})[1]
    long_line = write_lines(tmp_path / "long.log", [json.dumps(big)])
    assert vault.detect(long_line)


# --- KMIP secrets engine lines ----------------------------------------------------------------------
# Records written here in the shape of Vault's real KMIP audit lines (a public sample:
# elastic/integrations hashicorp_vault test-audit.log after its first 9 lines): no request.id, the
# TTLV message as {"tag", "type", "value"} nodes, "time"/"type" last, a response repeating its request.

SERIAL = "79311139933792246475030417908586135267121780671"


def ttlv(tag: str, value: Any, kind: str | None = None) -> dict:
    return {"tag": tag, **({"type": kind} if kind else {}), "value": value}


def kmip_request(address: str, *items: dict, serial: str | None = SERIAL) -> dict:
    header = ttlv("RequestHeader", [ttlv("BatchCount", f"0x{len(items):08x}", "Integer")])
    request: dict[str, Any] = {"client_certificate_serial_number": serial} if serial else {}
    request |= {
        "data": {"kmip_request": ttlv("RequestMessage", [header, *items])},
        "namespace": {"id": "root"},
        "remote_address": address,
    }
    return request


def request_item(operation: Any, uid: str | None = None, batch_id: str | None = None) -> dict:
    payload = [ttlv("UniqueIdentifier", uid, "TextString")] if uid else []
    return ttlv(
        "BatchItem",
        [
            ttlv("Operation", operation, "Enumeration"),
            *([ttlv("UniqueBatchItemID", batch_id, "ByteString")] if batch_id else []),
            ttlv("RequestPayload", payload),
        ],
    )


def response_item(
    operation: str,
    status: str,
    reason: str | None = None,
    batch_id: str | None = None,
    payload: list[dict] | None = None,
) -> dict:
    return ttlv(
        "BatchItem",
        [
            ttlv("Operation", operation, "Enumeration"),
            *([ttlv("UniqueBatchItemID", batch_id, "ByteString")] if batch_id else []),
            ttlv("ResultStatus", status, "Enumeration"),
            *([ttlv("ResultReason", reason, "Enumeration")] if reason else []),
            *([ttlv("ResponsePayload", payload)] if payload is not None else []),
        ],
    )


def kmip_line(time: str, request: dict, *items: dict, first: bool = False) -> dict:
    """A kmip-request line (no items) or a kmip-response line; "time"/"type" last as Vault writes
    them, or first (``first``)."""
    body: dict[str, Any] = {"request": request}
    if items:
        header = ttlv(
            "ResponseHeader",
            [ttlv("TimeStamp", time[:19] + "Z", "DateTime"), ttlv("BatchCount", f"0x{len(items):08x}", "Integer")],
        )
        body["response"] = {"data": {"kmip_response": ttlv("ResponseMessage", [header, *items])}}
    tail = {"time": time, "type": "kmip-response" if items else "kmip-request"}
    return {**tail, **body} if first else {**body, **tail}


HOSTILE = "\x1b[31mevil\u202e</td>'; DROP TABLE events;--"


@pytest.fixture
def kmip_world(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> duckdb.DuckDBPyConnection:
    get = kmip_request("192.168.0.10:36776", request_item("0x0000000a", uid="key-0001"))
    pair_of_two = kmip_request(
        "[2001:db8::10]:36778",
        request_item("0x00000014", uid="key-0002", batch_id="01"),
        request_item("0x0000001E", batch_id="02"),
    )
    no_serial = kmip_request("10.0.0.7:41000", request_item("0x0000000a", uid="key-0003"), serial=None)
    create = kmip_request("10.0.0.5:41002", request_item("0x00000001"))
    lines = [
        kmip_line("2026-05-20T13:49:00.313915809Z", get),
        kmip_line("2026-05-20T13:49:00.314367448Z", get, response_item("0x0000000a", "0x00000000")),
        # Response only, two batch items answered in the other order (matched by UniqueBatchItemID).
        kmip_line(
            "2026-05-20T13:50:00.100000000Z",
            pair_of_two,
            response_item("0x0000001e", "0x00000000", batch_id="02"),
            response_item("0x00000014", "0x00000001", reason="0x0000000C", batch_id="01"),
        ),
        kmip_line("2026-05-20T13:51:00Z", no_serial, response_item("0x0000000a", "0x00000002")),
        kmip_line(
            "2026-05-20T13:52:00Z",
            create,
            response_item("0x00000001", "0x00000000", payload=[ttlv("UniqueIdentifier", "key-0004", "TextString")]),
        ),
        kmip_line("2026-05-20T13:53:00Z", kmip_request("10.0.0.5", request_item("0x00000012", uid="key-0005"))),
        kmip_line(
            "2026-05-20T13:54:00Z",
            kmip_request("10.0.0.5:41004", request_item("0x000000EE", uid=HOSTILE)),
            response_item("0x000000EE", "0x00000001", reason="0x00000001"),
            first=True,
        ),
        kmip_line(
            "2026-05-20T13:55:00Z",
            kmip_request("10.0.0.5:41006", request_item("Locate")),
            response_item("Locate", "Success"),
        ),  # the names the KMIP JSON profile allows
        # An HTTP pair in the same file pairs by its id as before.
        *pair("http-1", "2026-05-20T13:56:00Z", "secret/data/a", operation="read", auth=ORCH),
    ]
    result = load(store, "vault", write_lines(tmp_path / "kmip.log", lines))
    assert result.rejected == 0, rows(store, "SELECT reason FROM rejected")
    # 7 KMIP messages (one of 2 batch items) and 1 HTTP pair: 9 events; "read" counts events, not lines
    assert (result.read, result.loaded, result.duplicates) == (9, 9, 0)
    return store


def kmip_events(con: duckdb.DuckDBPyConnection) -> dict[int, list[dict]]:
    by_line: dict[int, list[dict]] = {}
    for e in rows(con, "SELECT * FROM events WHERE action LIKE 'kmip:%' OR category = 'other' ORDER BY line, event_id"):
        by_line.setdefault(e["line"], []).append({**e, "details": json.loads(e["details"])})
    return by_line


def test_kmip_pairs_by_request_and_reads_the_ttlv_tree(kmip_world: duckdb.DuckDBPyConnection) -> None:
    by_line = kmip_events(kmip_world)
    assert sorted(by_line) == [1, 3, 4, 5, 6, 7, 8]  # line 2, the response of line 1, is consumed
    (got,) = by_line[1]
    assert got["category"] == "action" and got["action"] == "kmip:Get" and got["outcome"] == "success"
    assert got["credential_id"] == f"kmip-cert:{SERIAL}" and got["credential_type"] == "kmip_client_cert"
    assert got["actor_type"] == "unknown" and got["actor_id"] is None
    assert got["src_ip"] == "192.168.0.10" and got["resource"] == "key-0001" and got["error_code"] is None
    assert got["read_only"] is True and got["occurred_at"] == utc(2026, 5, 20, 13, 49, 0, 313915)
    assert got["details"] == {
        "halves": "request+response",
        "namespace": "root",
        "kmip_batch_count": 1,
        "result_status": "Success",
    }
    assert got["event_id"].startswith("rec-") and got["event_id"].endswith("-0")
    raw = json.loads(got["raw"])
    assert raw["request"]["type"] == "kmip-request" and raw["response"]["type"] == "kmip-response"

    destroy, discover = by_line[3]  # one message, one action per batch item
    assert destroy["action"] == "kmip:Destroy" and destroy["resource"] == "key-0002"
    assert destroy["outcome"] == "denied" and destroy["error_code"] == "OperationFailed: PermissionDenied"
    assert destroy["read_only"] is False and destroy["src_ip"] == "2001:db8::10"
    assert destroy["details"]["kmip_batch_item"] == 1 and destroy["details"]["kmip_batch_item_id"] == "01"
    assert discover["action"] == "kmip:DiscoverVersions" and discover["outcome"] == "success"
    assert discover["details"]["kmip_batch_item"] == 2 and discover["details"]["halves"] == "response"
    assert destroy["event_id"] != discover["event_id"] and destroy["dedupe_key"] != discover["dedupe_key"]
    assert destroy["credential_id"] == discover["credential_id"] == f"kmip-cert:{SERIAL}"

    (pending,) = by_line[4]  # no serial: no credential, not even a type
    assert pending["credential_id"] is None and pending["credential_type"] is None
    assert pending["actor_type"] is None and pending["src_ip"] == "10.0.0.7"
    assert pending["outcome"] is None and pending["error_code"] == "OperationPending"

    (create,) = by_line[5]  # the object a Create made is named by its response
    assert create["action"] == "kmip:Create" and create["resource"] == "key-0004" and create["read_only"] is False

    (lone,) = by_line[6]  # a request without its response: an action whose outcome is unknown
    assert lone["action"] == "kmip:Activate" and lone["outcome"] is None and lone["error_code"] is None
    assert lone["details"]["halves"] == "request" and lone["src_ip"] == "10.0.0.5"
    assert lone["credential_id"] == f"kmip-cert:{SERIAL}"

    (unknown,) = by_line[7]  # a code not in the table stays its hex; the object is kept as logged
    assert unknown["action"] == "kmip:0x000000ee" and unknown["read_only"] is None
    assert unknown["resource"] == HOSTILE and unknown["outcome"] == "failure"
    assert unknown["error_code"] == "OperationFailed: ItemNotFound"

    (named,) = by_line[8]
    assert named["action"] == "kmip:Locate" and named["outcome"] == "success" and named["read_only"] is True

    http = event(kmip_world, "vault", "http-1")
    assert http["action"] == "vault:read" and http["details"]["halves"] == "request+response"


def test_kmip_detection_does_not_depend_on_key_order(tmp_path: Path) -> None:
    get = kmip_request("192.168.0.10:36776", request_item("0x0000000a", uid="key-0001"))
    last = write_lines(tmp_path / "last.log", [kmip_line("2026-05-20T13:49:00Z", get)])
    first = write_lines(tmp_path / "first.log", [kmip_line("2026-05-20T13:49:00Z", get, first=True)])
    for path in (last, first):
        assert vault.detect(path) and ingest.detect(path) == "vault"
    # A first line longer than the head, "time"/"type" past it: recognized from the request's start.
    big = kmip_request("10.0.0.5:1", request_item("0x00000003", uid="k" * 20000))
    long_line = write_lines(tmp_path / "long.log", [kmip_line("2026-05-20T13:49:00Z", big)])
    assert vault.detect(long_line) and ingest.detect(long_line) == "vault"


def test_kmip_repeats_pair_in_order_and_duplicates_collapse(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    get = kmip_request("192.168.0.10:36776", request_item("0x0000000a", uid="key-0001"))
    two = kmip_request(
        "[2001:db8::10]:1", request_item("0x0000000a", batch_id="a"), request_item("0x0000000b", batch_id="b")
    )
    answer = kmip_line(
        "2026-05-20T13:49:01Z",
        two,
        response_item("0x0000000a", "0x00000000", batch_id="a"),
        response_item("0x0000000b", "0x00000000", batch_id="b"),
    )
    lines = [
        # The same request twice, then both answers: two operations, not one and not four.
        kmip_line("2026-05-20T13:49:00Z", get),
        kmip_line("2026-05-20T13:49:00.5Z", get),
        kmip_line("2026-05-20T13:49:01Z", get, response_item("0x0000000a", "0x00000000")),
        kmip_line("2026-05-20T13:49:02Z", get, response_item("0x0000000a", "0x00000001", reason="0x00000001")),
        answer,
        answer,  # logged twice: both items are duplicates
    ]
    result = load(store, "vault", write_lines(tmp_path / "repeat.log", lines))
    assert (result.read, result.loaded, result.duplicates, result.rejected) == (6, 4, 2, 0)
    gets = rows(store, "SELECT line, outcome FROM events WHERE resource = 'key-0001' ORDER BY line")
    assert gets == [{"line": 1, "outcome": "success"}, {"line": 2, "outcome": "failure"}]
    assert {e["action"] for e in rows(store, "SELECT action FROM events WHERE line = 5")} == {
        "kmip:Get",
        "kmip:GetAttributes",
    }


def test_kmip_bad_lines_are_rejected_with_a_reason(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    get = kmip_request("10.0.0.5:1", request_item("0x0000000a"))
    lines = [
        kmip_line("2026-05-20T13:49:00Z", {**get, "client_certificate_serial_number": 42}),
        kmip_line("2026-05-20T13:49:01Z", {**get, "data": {"kmip_request": "RequestMessage"}}),
        {
            "response": {"data": {"kmip_response": []}},
            "request": get,
            "time": "2026-05-20T13:49:02Z",
            "type": "kmip-response",
        },
        {"time": "2026-05-20T13:49:03Z", "type": "kmip-request"},
        kmip_line("2026-05-20T13:49:04Z", get),
        # A message with no batch item is still evidence: an event without an action.
        kmip_line("2026-05-20T13:49:05Z", {**get, "data": {"kmip_request": ttlv("RequestMessage", [])}}),
    ]
    result = load(store, "vault", write_lines(tmp_path / "bad.log", lines))
    reasons = {r["line"]: r["reason"] for r in rows(store, "SELECT line, reason FROM rejected")}
    assert reasons == {
        1: "request.client_certificate_serial_number is a JSON number, expected a string",
        2: "request.data.kmip_request is a JSON string, expected an object",
        3: "response.data.kmip_response is a JSON array, expected an object",
        4: 'a kmip-request line without a "request" object',
    }
    assert (result.loaded, result.rejected) == (2, 4)
    other = rows(store, "SELECT category, action FROM events WHERE line = 6")
    assert other == [{"category": "other", "action": None}]


def test_the_kmip_table_names_each_code_once(store: duckdb.DuckDBPyConnection) -> None:
    vault._install_kmip(store)
    table = rows(store, "SELECT * FROM kmip_enumerations")
    for column in ("code", "name"):  # a lookup by code or by name finds at most one row
        keys = [(r["enumeration"], r[column]) for r in table]
        assert len(keys) == len(set(keys)), column
    by_kind = {
        kind: {r["code"]: r for r in table if r["enumeration"] == kind} for kind in {r["enumeration"] for r in table}
    }
    assert set(by_kind) == {"Operation", "ResultStatus", "ResultReason"}
    assert sorted(by_kind["Operation"]) == list(range(1, 0x36))  # KMIP 1.0 to 2.0: Create .. ReProvision
    assert by_kind["Operation"][0x0A]["name"] == "Get" and by_kind["Operation"][0x1E]["name"] == "DiscoverVersions"
    assert {c: r["outcome"] for c, r in by_kind["ResultStatus"].items()} == {
        0: "success", 1: "failure", 2: None, 3: "failure"
    }  # fmt: skip
    assert (
        by_kind["ResultReason"][0x0C]["name"] == "PermissionDenied"
        and by_kind["ResultReason"][0x0C]["outcome"] == "denied"
    )
    assert all(r["read_only"] is None for r in table if r["enumeration"] != "Operation")
