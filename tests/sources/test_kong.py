"""Kong: the shared sample loads cleanly, spot checks against values read in it, the traceparent
join keys, outcomes, bad records and re-ingest."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pytest
from helpers import SAMPLES, event, load, rows, sample, write_lines

from nhiaudit.sources import kong

SAMPLE = SAMPLES / "api_gateway" / "kong-docs__file-log_log-format_3.4.ndjson"

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"


def record(request_id: str, **overrides: Any) -> dict[str, Any]:
    """A Kong 3.x file-log record in the serializer's shape (Kong docs, log-format)."""
    rec: dict[str, Any] = {
        "request": {
            "id": request_id,
            "method": "POST",
            "uri": "/reports/2026-11?draft=1",
            "url": "http://gw.example.com:8000/reports/2026-11?draft=1",
            "querystring": {"draft": "1"},
            "headers": {"host": "gw.example.com:8000", "user-agent": "report-bot/1.0"},
            "size": 120,
        },
        "response": {"status": 201, "size": 40, "headers": {}},
        "route": {"id": "r-1", "name": "reports", "paths": ["/reports"]},
        "service": {"id": "s-1", "name": "reports-svc", "host": "reports.internal", "path": "/"},
        "consumer": {"id": "c-1", "username": "report-bot"},
        "authenticated_entity": {"id": "3f2a9c1e-key"},
        "latencies": {"request": 12, "kong": 2, "proxy": 10},
        "client_ip": "10.0.0.7",
        "upstream_uri": "/reports/2026-11?draft=1",
        "started_at": 1793610300123,
        "workspace_name": "default",
    }
    for key, value in overrides.items():
        rec[key] = value
    return rec


@pytest.fixture(name="sample")
def shared_sample() -> Path:
    return sample(SAMPLE)


def test_sample_fields(store: duckdb.DuckDBPyConnection, sample: Path) -> None:
    result = load(store, "kong", sample)
    assert (result.read, result.loaded) == (1, 1)  # every record one event
    # The sample has neither request.id nor x-kong-request-id: its id is the record's MD5.
    line = sample.read_bytes().splitlines()[0]
    e = event(store, "kong", hashlib.md5(line).hexdigest())
    assert e["occurred_at"] == datetime(2021, 2, 25, 5, 57, 48, 342000, tzinfo=timezone.utc)  # 1614232668342
    assert e["category"] == "action"
    assert e["actor_id"] == "kong-consumer:foo"
    assert e["credential_id"] == "kong:c62c1455-9b1d-4f2d-8797-509ba83b8ae8"
    assert e["credential_type"] == "kong_credential"
    assert e["action"] == "http:GET"
    assert e["resource"] == "kong:httpbin.org/log"
    assert e["read_only"] is True
    assert e["outcome"] == "success"
    assert e["src_ip"] == "192.168.144.1"
    assert e["user_agent"] == "HTTPie/2.4.0"
    assert e["trace_id"] is None and e["parent_span_id"] is None
    assert e["record_index"] == 0 and e["line"] == 1
    assert e["details"]["consumer"] == {"id": "ae974d6c-0f8a-4dc5-b701-fa0aa38592bd", "username": "foo"}
    assert e["details"]["route"]["id"] == "78f79740-c410-4fd9-a998-d0a60a99dc9b"
    assert e["details"]["service"]["host"] == "httpbin.org"
    assert json.loads(e["raw"])["upstream_uri"] == "/anything"


def test_traceparent_joins_the_agent_span(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    rec = record("req-1")
    rec["request"]["headers"]["traceparent"] = f"00-{TRACE_ID}-{SPAN_ID}-01"
    path = write_lines(tmp_path / "kong.log", [rec])
    load(store, "kong", path)
    e = event(store, "kong", "req-1")
    assert e["trace_id"] == TRACE_ID
    # the span in traceparent is the caller's (the agent's execute_tool span)
    assert e["parent_span_id"] == SPAN_ID
    assert e["span_id"] is None


def test_traceparent_is_lowercased_and_invalid_ones_are_ignored(
    store: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    def with_traceparent(request_id: str, value: Any) -> dict[str, Any]:
        rec = record(request_id)
        rec["request"]["headers"]["traceparent"] = value
        return rec

    path = write_lines(
        tmp_path / "kong.log",
        [
            with_traceparent("upper", f"00-{TRACE_ID.upper()}-{SPAN_ID.upper()}-01"),
            with_traceparent("repeated", [f"00-{TRACE_ID}-{SPAN_ID}-01", "00-garbage"]),
            with_traceparent("short", "00-4bf92f35-00f067aa-01"),
            with_traceparent("zeros", f"00-{'0' * 32}-{SPAN_ID}-01"),
            with_traceparent("version-ff", f"ff-{TRACE_ID}-{SPAN_ID}-01"),
            with_traceparent("junk", "not a traceparent"),
        ],
    )
    result = load(store, "kong", path)
    assert (result.loaded, result.rejected) == (6, 0)
    upper = event(store, "kong", "upper")
    assert (upper["trace_id"], upper["parent_span_id"]) == (TRACE_ID, SPAN_ID)
    assert event(store, "kong", "repeated")["trace_id"] == TRACE_ID
    for bad in ("short", "zeros", "version-ff", "junk"):
        e = event(store, "kong", bad)
        assert (e["trace_id"], e["parent_span_id"]) == (None, None), bad


def test_ids_resource_and_outcomes(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    no_id = record("x")
    del no_id["request"]["id"]
    no_id["request"]["headers"]["x-kong-request-id"] = "kong-hdr-1"
    path = write_lines(
        tmp_path / "kong.log",
        [
            record("ok"),
            record("unauthorized", response={"status": 401}),
            record("forbidden", response={"status": 403}),
            record("redirect", response={"status": 302}),
            record("broken", response={"status": 502}),
            no_id,
        ],
    )
    load(store, "kong", path)
    e = event(store, "kong", "ok")
    assert e["resource"] == "kong:reports-svc/reports/2026-11"  # service name + path, query string dropped
    assert e["action"] == "http:POST" and e["read_only"] is False
    assert e["actor_id"] == "kong-consumer:report-bot"
    assert e["credential_id"] == "kong:3f2a9c1e-key"
    assert e["occurred_at"] == datetime(2026, 11, 2, 9, 5, 0, 123000, tzinfo=timezone.utc)
    assert e["user_agent"] == "report-bot/1.0"
    assert e["details"]["upstream_uri"] == "/reports/2026-11"
    outcomes = {r["event_id"]: (r["outcome"], r["error_code"]) for r in rows(store, "SELECT * FROM events")}
    assert outcomes["ok"] == ("success", None)
    assert outcomes["unauthorized"] == ("denied", "401")
    assert outcomes["forbidden"] == ("denied", "403")
    assert outcomes["redirect"] == ("success", None)
    assert outcomes["broken"] == ("failure", "502")
    assert event(store, "kong", "kong-hdr-1")["action"] == "http:POST"


def test_anonymous_call_has_no_credential(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    anonymous = record("anon")
    del anonymous["consumer"], anonymous["authenticated_entity"]
    load(store, "kong", write_lines(tmp_path / "kong.log", [anonymous]))
    e = event(store, "kong", "anon")
    assert (e["actor_id"], e["credential_id"], e["credential_type"]) == (None, None, None)
    assert "consumer" not in e["details"]


def test_bad_records_are_rejected_with_a_reason(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "kong.log",
        [
            record("good-1"),
            '{"request": {"id": "truncated", "method": "GE',
            record("bad-time", started_at="yesterday"),
            record("bad-status", response={"status": "ok"}),
            record("bad-request", request="GET /"),
            record("good-2"),
        ],
    )
    result = load(store, "kong", path)
    assert (result.loaded, result.rejected) == (2, 4)
    assert result.read == result.loaded + result.rejected + result.duplicates
    reasons = {r["line"]: r["reason"] for r in rows(store, "SELECT line, reason FROM rejected")}
    assert reasons == {
        2: "line 2: not valid JSON (truncated or malformed record)",
        3: "started_at is a JSON string, expected epoch milliseconds (a number)",
        4: "response.status is a JSON string, expected an HTTP status (a number)",
        5: "request is a JSON string, expected an object",
    }
    assert {r["event_id"] for r in rows(store, "SELECT event_id FROM events")} == {"good-1", "good-2"}


def test_reingest_is_a_noop_and_duplicates_are_skipped(
    store: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    first = write_lines(tmp_path / "a.log", [record("r1"), record("r2")])
    load(store, "kong", first)
    again = load(store, "kong", first)
    assert again.already_ingested
    overlapping = write_lines(tmp_path / "b.log", [record("r2"), record("r3")])
    result = load(store, "kong", overlapping)
    assert (result.read, result.loaded, result.duplicates) == (2, 1, 1)
    assert store.execute("SELECT count(*) FROM events").fetchone()[0] == 3


def test_http_log_batch_array(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "batch.json"
    path.write_text(json.dumps([record("b1"), record("b2")], indent=2))
    assert kong.detect(path)
    result = load(store, "kong", path)
    assert (result.loaded, result.rejected) == (2, 0)
