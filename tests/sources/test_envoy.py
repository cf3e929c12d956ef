"""Envoy: the shared default-format sample (plain, ACCESS-prefixed, container-wrapped, TCP lines)
loads cleanly, spot checks against values read in it, json_format logs with the traceparent join
keys and identity fields, FIELD_MAP overrides, bad lines and re-ingest."""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pytest
from helpers import SAMPLES, event, load, rows, sample, write_lines

from nhiaudit import ingest
from nhiaudit.errors import NhiauditError
from nhiaudit.policy import load_policy
from nhiaudit.sources import envoy

SAMPLE = SAMPLES / "api_gateway" / "elastic__envoyproxy_test-log.log"

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
TEXT_LINE = (
    '[2026-11-02T09:05:00.123Z] "POST /v1/reports?token=s3cret HTTP/1.1" 201 - 120 40 12 10 '
    '"10.0.0.7, 10.0.0.1" "report-bot/1.0" "req-text-1" "reports.internal" "10.0.0.9:8080"'
)


def json_line(request_id: str, **extra: Any) -> dict[str, Any]:
    """A json_format access-log line with Envoy's documented command-operator names."""
    line: dict[str, Any] = {
        "start_time": "2026-11-02T09:05:00.123Z",
        "method": "POST",
        "path": "/v1/reports?draft=1",
        "protocol": "HTTP/1.1",
        "response_code": 201,
        "response_flags": "-",
        "x_request_id": request_id,
        "authority": "reports.internal",
        "upstream_host": "10.0.0.9:8080",
        "user_agent": "report-bot/1.0",
        "downstream_remote_address": "10.0.0.7:51234",
    }
    line.update(extra)
    return line


@pytest.fixture(name="sample")
def shared_sample() -> Path:
    return sample(SAMPLE)


def test_sample_fields(store: duckdb.DuckDBPyConnection, sample: Path) -> None:
    result = load(store, "envoy", sample)
    assert (result.read, result.loaded) == (7, 7)  # every record one event
    lines = sample.read_bytes().splitlines()

    e = event(store, "envoy", "c219f6da-2b7f-483e-9ced-ec323d9330a9")  # line 2
    assert e["occurred_at"] == datetime(2019, 4, 8, 16, 16, 55, 931000, tzinfo=timezone.utc)
    assert (e["category"], e["action"], e["resource"]) == ("action", "http:GET", "localhost:8000/service/1")
    assert (e["outcome"], e["error_code"], e["read_only"]) == ("success", None, True)
    assert e["user_agent"] == "curl/7.54.0"
    assert e["src_ip"] is None  # X-Forwarded-For is "-"
    assert (e["record_index"], e["line"]) == (1, 2)
    assert e["details"]["upstream_host"] == "172.27.0.3:80"
    assert e["details"]["duration_ms"] == 5 and e["details"]["bytes_sent"] == 89
    assert json.loads(e["raw"]) == lines[1].decode()

    e = event(store, "envoy", "58436667-bf70-4fd0-9fe9-cdadadecfd55")  # 404 NR (no route)
    assert (e["outcome"], e["error_code"], e["src_ip"]) == ("failure", "404", "172.17.0.3")
    assert e["details"]["response_flags"] == "NR"
    assert e["resource"] == "192.168.99.107:30901/elastic"

    e = event(store, "envoy", "b7ba9b4c-f4b7-47c2-9718-c23aa1465f49")  # ACCESS prefix
    assert e["occurred_at"] == datetime(2024, 4, 25, 17, 51, 55, 294000, tzinfo=timezone.utc)
    assert e["resource"] == "localhost:9001/backend/"

    tcp = event(store, "envoy", hashlib.md5(lines[0]).hexdigest())  # "- - -": a TCP proxy line, no request id
    assert (tcp["category"], tcp["action"], tcp["resource"]) == ("other", "tcp:connect", "172.27.0.2:80")
    assert (tcp["outcome"], tcp["read_only"]) == ("success", None)

    wrapped = event(store, "envoy", "413bf460-bd56-4515-ada4-2a69c5e78e54")  # Kubernetes JSON wrapper
    assert wrapped["occurred_at"] == datetime(2019, 4, 10, 3, 49, 34, 451000, tzinfo=timezone.utc)
    assert (wrapped["outcome"], wrapped["error_code"]) == ("failure", "501")
    assert wrapped["resource"] == "httpbin.org/httpbin/status/501"
    assert wrapped["details"]["format"] == "text-wrapped"
    assert json.loads(wrapped["raw"])["kubernetes"]["pod"]["name"] == "ambassador-76c58d9df4-jwhsg"

    failed_tcp = event(store, "envoy", hashlib.md5(lines[6]).hexdigest())
    assert (failed_tcp["outcome"], failed_tcp["error_code"]) == ("failure", "UF,URX")


def test_json_format_traceparent_joins_the_agent_span(
    store: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "access.log", [json_line("req-1", traceparent=f"00-{TRACE_ID}-{SPAN_ID}-01")])
    assert envoy.detect(path)
    load(store, "envoy", path)
    e = event(store, "envoy", "req-1")
    assert e["trace_id"] == TRACE_ID
    assert e["parent_span_id"] == SPAN_ID  # the caller's (agent execute_tool) span
    assert e["span_id"] is None
    assert e["resource"] == "reports.internal/v1/reports"  # query string dropped
    assert e["src_ip"] == "10.0.0.7"
    assert e["occurred_at"] == datetime(2026, 11, 2, 9, 5, 0, 123000, tzinfo=timezone.utc)
    assert (e["outcome"], e["read_only"], e["details"]["format"]) == ("success", False, "json")


def test_json_format_identity_fields(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    spiffe = "spiffe://example.org/ns/agents/sa/report-bot"
    path = write_lines(
        tmp_path / "access.log",
        [
            json_line("mtls", downstream_peer_uri_san=spiffe),
            json_line(
                "jwt", jwt_jti="jti-444", jwt_sub="u-bob", traceparent=f"00-{TRACE_ID.upper()}-{SPAN_ID}-01"
            ),
            json_line("sub-only", jwt_sub="u-bob"),
            json_line("client", client_id="report-bot"),
            json_line("anonymous", traceparent="00-zz-00f067aa0ba902b7-01"),
        ],
    )
    result = load(store, "envoy", path)
    assert (result.loaded, result.rejected) == (5, 0)
    e = event(store, "envoy", "mtls")
    assert (e["credential_id"], e["credential_type"], e["actor_id"]) == (
        spiffe,
        "mtls_peer_certificate",
        spiffe,
    )
    e = event(store, "envoy", "jwt")  # the jti is the credential: it links to the IdP issuance (Keycloak token_id)
    assert (e["credential_id"], e["credential_type"], e["actor_id"]) == ("jti-444", "jwt", "u-bob")
    assert e["trace_id"] == TRACE_ID
    e = event(store, "envoy", "sub-only")
    assert (e["credential_id"], e["credential_type"]) == ("jwt-sub:u-bob", "jwt_subject")
    e = event(store, "envoy", "client")
    assert (e["credential_id"], e["credential_type"], e["actor_id"]) == (
        "oauth-client:report-bot",
        "oauth_client",
        "report-bot",
    )
    e = event(store, "envoy", "anonymous")
    assert (e["credential_id"], e["actor_id"], e["trace_id"], e["parent_span_id"]) == (None, None, None, None)


def test_field_map_names_the_json_keys(
    store: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(envoy.FIELD_MAP, "request_id", ("req_id",))
    monkeypatch.setitem(envoy.FIELD_MAP, "traceparent", ("trace_context", "traceparent"))
    monkeypatch.setitem(envoy.FIELD_MAP, "jwt_sub", ("$.jwt.sub",))
    line = json_line(
        "ignored", req_id="custom-1", trace_context=f"00-{TRACE_ID}-{SPAN_ID}-01", jwt={"sub": "u-9"}
    )
    del line["x_request_id"]
    load(store, "envoy", write_lines(tmp_path / "access.log", [line]))
    e = event(store, "envoy", "custom-1")
    assert (e["trace_id"], e["parent_span_id"], e["actor_id"]) == (TRACE_ID, SPAN_ID, "u-9")


def test_text_line_and_docker_wrapper(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    docker = {"log": TEXT_LINE.replace("req-text-1", "req-docker-1") + "\n", "stream": "stdout", "time": "x"}
    path = write_lines(tmp_path / "access.log", [TEXT_LINE, docker])
    load(store, "envoy", path)
    e = event(store, "envoy", "req-text-1")
    assert e["resource"] == "reports.internal/v1/reports"  # the token in the query string is not kept
    assert e["src_ip"] == "10.0.0.7"  # the first X-Forwarded-For hop
    assert e["details"]["x_forwarded_for"] == "10.0.0.7, 10.0.0.1"
    assert event(store, "envoy", "req-docker-1")["details"]["format"] == "text-wrapped"


def test_mixed_container_log_and_gzip(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    """Ambassador pods log their own diagnostics next to ACCESS lines; rotated logs are gzipped."""
    diagnostic = {"message": "[2026-11-02 09:04:59.000][1][info][main] starting workers", "stream": "stderr"}
    access = {"message": "ACCESS " + TEXT_LINE, "stream": "stdout"}
    path = tmp_path / "ambassador.log.gz"
    path.write_bytes(gzip.compress((json.dumps(diagnostic) + "\n" + json.dumps(access) + "\n").encode()))
    assert envoy.detect(path)
    result = load(store, "envoy", path)
    assert (result.loaded, result.rejected) == (1, 1)
    assert event(store, "envoy", "req-text-1")["action"] == "http:POST"


def test_bad_lines_are_rejected_with_a_reason(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "access.log",
        [
            TEXT_LINE,
            "2026-11-02 09:05:01 some application log line",
            TEXT_LINE.replace("2026-11-02T09:05:00.123Z", "yesterday").replace("req-text-1", "bad-time"),
            {"message": "not an access log", "stream": "stdout"},
            {"level": "info", "msg": "hello"},
            json_line("bad-code", response_code="teapot"),
            json_line("good-json"),
            '{"start_time": "2026-11-02T09:05:00Z", "method": "GE',
        ],
    )
    result = load(store, "envoy", path)
    assert (result.loaded, result.rejected) == (2, 6)
    assert result.read == result.loaded + result.rejected + result.duplicates
    reasons = {r["line"]: r["reason"] for r in rows(store, "SELECT line, reason FROM rejected")}
    expected_format = (
        'not an Envoy access-log line (expected the default format: [START_TIME] "METHOD PATH PROTOCOL" ...)'
    )
    assert reasons == {
        2: f"line 2: {expected_format}",
        3: "line 3: START_TIME 'yesterday' is not an ISO-8601 time",
        4: f"line 4: {expected_format}",
        5: "line 5: a JSON object that is neither a json_format access log "
        '(no start_time/response_code keys) nor a container log wrapper ("message"/"log")',
        6: "line 6: RESPONSE_CODE 'teapot' is not a number",
        8: "line 8: not valid JSON (truncated or malformed record)",
    }
    assert {r["event_id"] for r in rows(store, "SELECT event_id FROM events")} == {"req-text-1", "good-json"}


def test_reingest_is_a_noop_and_duplicates_are_skipped(
    store: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    first = write_lines(tmp_path / "a.log", [json_line("r1"), json_line("r2")])
    load(store, "envoy", first)
    assert load(store, "envoy", first).already_ingested
    result = load(store, "envoy", write_lines(tmp_path / "b.log", [json_line("r2"), json_line("r3")]))
    assert (result.read, result.loaded, result.duplicates) == (2, 1, 1)
    assert store.execute("SELECT count(*) FROM events").fetchone()[0] == 3


# --- [sources.envoy] fields: json_format logs with their own key names -----------------------------

POLICY_FIELDS = """\
[sources.envoy]
fields = { start_time = "ts", method = "verb", path = "uri", response_code = "status", authority = "host", \
request_id = ["req_id", "x_request_id"], traceparent = "trace_parent", jwt_id = "$.jwt.jti", jwt_sub = "$.jwt.sub" }
"""


def custom_line(request_id: str) -> dict[str, Any]:
    """A json_format line whose config renamed every key, START_TIME and RESPONSE_CODE included."""
    return {
        "ts": "2026-11-02T09:05:00.123Z",
        "verb": "DELETE",
        "uri": "/v1/reports/7?force=1",
        "status": 204,
        "host": "reports.internal",
        "req_id": request_id,
        "trace_parent": f"00-{TRACE_ID}-{SPAN_ID}-01",
        "jwt": {"sub": "u-9", "jti": "jti-9"},
    }


def policy_options(tmp_path: Path) -> dict[str, dict[str, Any]]:
    path = tmp_path / "nhiaudit.toml"
    path.write_text(POLICY_FIELDS)
    return load_policy(path).sources


def test_policy_fields_read_a_json_format_log_with_its_own_keys(
    store: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "access.log", [custom_line("custom-1")])
    assert ingest.detect(path) is None  # detection reads the default keys: --source envoy is needed
    result = ingest.ingest(store, [path], source="envoy", options=policy_options(tmp_path))
    assert (result.files[0].loaded, result.files[0].rejected) == (1, 0)
    e = event(store, "envoy", "custom-1")
    assert e["occurred_at"] == datetime(2026, 11, 2, 9, 5, 0, 123000, tzinfo=timezone.utc)
    assert (e["action"], e["resource"], e["read_only"], e["outcome"]) == (
        "http:DELETE",
        "reports.internal/v1/reports/7",
        False,
        "success",
    )
    assert (e["trace_id"], e["parent_span_id"]) == (TRACE_ID, SPAN_ID)
    assert (e["credential_id"], e["credential_type"], e["actor_id"]) == ("jti-9", "jwt", "u-9")
    assert e["details"]["request_id"] == "custom-1" and e["details"]["format"] == "json"
    assert envoy.FIELD_MAP["request_id"] == ("x_request_id", "request_id")  # the defaults are untouched


def test_without_the_policy_fields_the_line_is_rejected(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "access.log", [custom_line("custom-1")])
    result = ingest.ingest(store, [path], source="envoy")
    assert (result.files[0].loaded, result.files[0].rejected) == (0, 1)
    assert rows(store, "SELECT line, reason FROM rejected") == [
        {
            "line": 1,
            "reason": "line 1: a JSON object that is neither a json_format access log "
            '(no start_time/response_code keys) nor a container log wrapper ("message"/"log")',
        }
    ]


def test_the_rejection_names_the_configured_keys(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "access.log", [json_line("default-keys")])  # start_time, not ts
    ingest.ingest(store, [path], source="envoy", options=policy_options(tmp_path))
    (reason,) = store.execute("SELECT reason FROM rejected").fetchone()
    assert reason == (
        'line 1: a JSON object that is neither a json_format access log (no ts/status keys) nor a container '
        'log wrapper ("message"/"log")'
    )


def test_a_policy_entry_replaces_the_default_keys(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    """Default START_TIME/RESPONSE_CODE keys keep detection; a mapped field no longer reads its default."""
    line = json_line("x-1", req_id="custom-2", jwt_sub="ignored", who={"sub": "u-7"})
    path = write_lines(tmp_path / "access.log", [line])
    assert envoy.detect(path)
    ingest.ingest(store, [path], options={"envoy": {"fields": {"request_id": "req_id", "jwt_sub": "$.who.sub"}}})
    e = event(store, "envoy", "custom-2")
    assert (e["actor_id"], e["credential_id"]) == ("u-7", "jwt-sub:u-7")


@pytest.mark.parametrize("shape", ["plain", "truncated-gzip", "non-utf8-line"])
def test_policy_fields_reach_every_load_path_and_every_worker(
    store: duckdb.DuckDBPyConnection, tmp_path: Path, shape: str
) -> None:
    """Parallel staging runs several loads at once, and damaged files are loaded again by other
    paths (gzip salvage, UTF-8 salvage): each gets the mapping."""
    store.execute("SET threads = 4")
    files = []
    for n in range(3):
        text = "".join(json.dumps(custom_line(f"c-{n}-{i}")) + "\n" for i in range(2))
        path = tmp_path / f"{n}.log"
        if shape == "truncated-gzip":
            path = tmp_path / f"{n}.log.gz"
            path.write_bytes(gzip.compress((text + text.replace('"c-', '"d-')).encode())[:-8])
        elif shape == "non-utf8-line":
            path.write_bytes(text.encode() + b'{"ts": "\xff"}\n')
        else:
            path.write_text(text)
        files.append(path)
    result = ingest.ingest(store, files, source="envoy", options=policy_options(tmp_path))
    assert all(f.loaded >= 2 for f in result.files), [(f.path.name, f.loaded, f.note) for f in result.files]
    loaded = {r["event_id"] for r in rows(store, "SELECT event_id FROM events")}
    assert {f"c-{n}-{i}" for n in range(3) for i in range(2)} <= loaded


def test_bad_options_are_refused_and_nothing_is_stored(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "access.log", [json_line("r1")])
    with pytest.raises(NhiauditError, match=r"^ingest options: unknown source 'envvoy'\. Did you mean 'envoy'\?"):
        ingest.ingest(store, [path], options={"envvoy": {"fields": {}}})
    with pytest.raises(NhiauditError, match=r"^ingest options: kong\.load does not take fields "):
        ingest.ingest(store, [path], options={"kong": {"fields": {}}})
    with pytest.raises(NhiauditError, match=r"^envoy fields: unknown field 'reqest_id'\. Did you mean 'request_id'\?"):
        ingest.ingest(store, [path], options={"envoy": {"fields": {"reqest_id": "req_id"}}})
    assert store.execute("SELECT count(*) FROM evidence_files").fetchone() == (0,)
