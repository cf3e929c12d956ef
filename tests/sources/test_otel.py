"""OTLP/JSON traces and logs: the OTLP samples load cleanly, agent spans become tasks and tool calls
(DESIGN §4), attributes are flattened in SQL, and malformed spans are rejected with a reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from helpers import SAMPLES, event, load, rows, sample_files, utc

from nhiaudit import ingest
from nhiaudit.sources import otel

OTEL_SAMPLES = SAMPLES / "genai_otel"
OTLP_FILES = sample_files(OTEL_SAMPLES, "otel-proto__examples_*.json")
# Invariant's agent-trace format is another format (no ids, no times): not OTLP, not claimed.
INVARIANT_FILES = sample_files(OTEL_SAMPLES, "invariant-explorer__*")

TRACE = "5b8efff798038103d269b633813fc60c"


def attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, list):
        return {"key": key, "value": {"arrayValue": {"values": [{"stringValue": v} for v in value]}}}
    return {"key": key, "value": {"stringValue": value}}


def span(
    span_id: str,
    name: str,
    start: int,
    end: int,
    parent: str = "",
    trace: str = TRACE,
    status: dict | None = None,
    **attrs: Any,
) -> dict[str, Any]:
    return {
        "traceId": trace,
        "spanId": span_id,
        "parentSpanId": parent,
        "name": name,
        "kind": 1,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(end),
        "attributes": [attr(k.replace("__", "."), v) for k, v in attrs.items()],
        "status": status or {},
    }


def document(*spans: dict[str, Any], service: str = "report-bot-svc") -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [attr("service.name", service)]},
                "scopeSpans": [
                    {
                        "scope": {
                            "name": "agent-sdk",
                            "version": "1.0",
                            "attributes": [attr("gen_ai.provider.name", "openai")],
                        },
                        "spans": list(spans),
                    }
                ],
            }
        ]
    }


T0 = 1793610000_000000000  # 2026-11-02T09:00:00Z in ns


# --- the shared samples -------------------------------------------------------------------------


@pytest.mark.parametrize("path", OTLP_FILES, ids=[p.name for p in OTLP_FILES])
def test_every_otlp_sample_loads_without_rejections(store: duckdb.DuckDBPyConnection, path: Path) -> None:
    assert otel.detect(path)
    assert ingest.detect(path) == "otel"
    result = load(store, "otel", path)
    assert result.rejected == 0, rows(store, "SELECT reason FROM rejected")
    doc = json.loads(path.read_text())
    items = [i for rs in doc.get("resourceSpans", []) for ss in rs["scopeSpans"] for i in ss["spans"]]
    items += [i for rl in doc.get("resourceLogs", []) for sl in rl["scopeLogs"] for i in sl["logRecords"]]
    assert result.read == len(items) == result.loaded + result.duplicates


def test_trace_sample_spot_checks(store: duckdb.DuckDBPyConnection) -> None:
    if not OTLP_FILES:
        pytest.skip("shared OTLP samples not found")
    load(store, "otel", OTEL_SAMPLES / "otel-proto__examples_trace.json")
    server = event(store, "otel", "eee19b7ec3c1b174")  # the sample's ids are upper-case hex
    assert server["trace_id"] == TRACE and server["span_id"] == "eee19b7ec3c1b174"
    assert server["parent_span_id"] == "eee19b7ec3c1b173"
    assert server["occurred_at"] == utc(2018, 12, 13, 14, 51) and server["ended_at"] == utc(2018, 12, 13, 14, 51, 1)
    assert server["category"] == "other" and server["outcome"] == "success"
    assert server["actor_id"] == "my.service" and server["actor_type"] == "service"
    assert server["details"]["attributes"] == {
        "service.name": "my.service",
        "my.scope.attribute": "some scope attribute",
        "my.span.attr": "some value",
    }
    assert server["details"]["name"] == "I'm a server span"
    assert json.loads(server["raw"])["spanId"] == "EEE19B7EC3C1B174"  # raw is the span, untouched


def test_logs_sample_flattens_every_value_type(store: duckdb.DuckDBPyConnection) -> None:
    if not OTLP_FILES:
        pytest.skip("shared OTLP samples not found")
    load(store, "otel", OTEL_SAMPLES / "otel-proto__examples_logs.json")
    (log,) = rows(store, "SELECT * FROM events WHERE source = 'otel'")
    assert log["category"] == "other" and log["occurred_at"] == utc(2018, 12, 13, 14, 51, 0, 300000)
    assert log["trace_id"] == TRACE and log["span_id"] == "eee19b7ec3c1b174"
    details = json.loads(log["details"])
    assert details["attributes"]["int.attribute"] == 10  # intValue is a string in OTLP/JSON
    assert details["attributes"]["double.attribute"] == 637.704
    assert details["attributes"]["boolean.attribute"] is True
    assert details["attributes"]["array.attribute"] == ["many", "values"]
    assert details["attributes"]["map.attribute"] == {"some.map.key": "some value"}
    assert details["body"] == "Example log record" and details["severity_number"] == 10


# --- agent traces (DESIGN §4) ----------------------------------------------------------------------


@pytest.fixture
def agent_trace(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> duckdb.DuckDBPyConnection:
    first = document(
        span(
            "a1a1a1a1a1a1a1a1",
            "invoke_agent report-bot",
            T0,
            T0 + 2_400_000_000_000,
            gen_ai__operation__name="invoke_agent",
            gen_ai__agent__id="report-bot",
            gen_ai__agent__name="Report Bot",
            nhiaudit__task__id="t-7f3a",
            gen_ai__conversation__id="conv_9",
            nhiaudit__task__intent="Publish the November sales report",
            enduser__id="bob@example.com",
        ),
        span(
            "b2b2b2b2b2b2b2b2",
            "execute_tool s3_put",
            T0 + 60_000_000_000,
            T0 + 61_500_000_000,
            parent="a1a1a1a1a1a1a1a1",
            status={"code": 2, "message": "AccessDenied"},
            gen_ai__operation__name="execute_tool",
            gen_ai__tool__name="s3_put",
            gen_ai__tool__call__id="call_1",
        ),
        span(
            "c3c3c3c3c3c3c3c3",
            "PUT",
            T0 + 60_100_000_000,
            T0 + 61_000_000_000,
            parent="b2b2b2b2b2b2b2b2",
            http__request__method="PUT",
        ),
    )
    # One document a line (collector file exporter); this one has a conversation id only, and ids in
    # the protobuf-JSON base64 spelling.
    second = document(
        span(
            "3T3T3T3T3T0=",
            "invoke_agent",
            T0,
            T0 + 1_000,
            trace="AAAAAAAAAAAAAAAAAAAAAQ==",
            gen_ai__operation__name="invoke_agent",
            gen_ai__agent__name="triage",
            gen_ai__conversation__id="conv_1",
            user__id="carol@example.com",
        ),
        service="triage-svc",
    )
    path = tmp_path / "traces.jsonl"
    path.write_text(json.dumps(first) + "\n" + json.dumps(second) + "\n")
    result = load(store, "otel", path)
    assert (result.read, result.loaded, result.rejected) == (4, 4, 0)
    return store


def test_invoke_agent_span_is_a_task(agent_trace: duckdb.DuckDBPyConnection) -> None:
    task = event(agent_trace, "otel", "a1a1a1a1a1a1a1a1")
    assert task["category"] == "task" and task["task_id"] == "t-7f3a"  # nhiaudit.task.id before the conversation
    assert task["actor_id"] == "report-bot" and task["actor_type"] == "agent"
    assert task["occurred_at"] == utc(2026, 11, 2, 9) and task["ended_at"] == utc(2026, 11, 2, 9, 40)
    assert task["record_index"] == 0 and task["line"] == 1
    details = task["details"]
    assert details["agent_id"] == "report-bot" and details["known_from"] == "trace"
    assert details["intent"] == "Publish the November sales report"
    assert details["requested_by"] == "bob@example.com"
    # Resource and scope attributes are merged under the span's own, all kept for correlation.
    assert details["attributes"]["service.name"] == "report-bot-svc"
    assert details["attributes"]["gen_ai.provider.name"] == "openai"
    assert details["attributes"]["gen_ai.conversation.id"] == "conv_9"


def test_execute_tool_span_is_a_tool_call(agent_trace: duckdb.DuckDBPyConnection) -> None:
    tool = event(agent_trace, "otel", "b2b2b2b2b2b2b2b2")
    assert tool["category"] == "tool_call"
    assert tool["details"]["tool_name"] == "s3_put" and tool["details"]["tool_call_id"] == "call_1"
    assert tool["outcome"] == "failure" and tool["error_code"] == "AccessDenied"  # status.code 2
    # The agent and task come from the invoke_agent span above it.
    assert tool["details"]["agent_id"] == "report-bot" and tool["actor_type"] == "agent"
    assert tool["task_id"] == "t-7f3a" and tool["details"]["task_link"] == "parent_span"
    assert tool["parent_span_id"] == "a1a1a1a1a1a1a1a1"
    http = event(agent_trace, "otel", "c3c3c3c3c3c3c3c3")  # two levels down: still the same task
    assert http["category"] == "other" and http["task_id"] == "t-7f3a" and http["actor_id"] == "report-bot"


def test_conversation_id_and_base64_ids(agent_trace: duckdb.DuckDBPyConnection) -> None:
    (task,) = rows(agent_trace, "SELECT * FROM events WHERE source = 'otel' AND line = 2")
    assert task["event_id"] == "dd3dd3dd3dd3dd3d" and task["trace_id"] == "00000000000000000000000000000001"
    assert task["task_id"] == "conv_1" and task["actor_id"] == "triage"
    assert task["record_index"] == 3
    assert json.loads(task["details"])["requested_by"] == "carol@example.com"


# --- bad input, re-ingest, detection ---------------------------------------------------------------


def test_bad_spans_are_rejected_with_a_reason(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    good = span("1111111111111111", "ok", T0, T0 + 1)
    bad_time = span("2222222222222222", "bad time", T0, T0 + 1)
    bad_time["startTimeUnixNano"] = "2026-11-02T09:00:00Z"
    no_id = span("", "no id", T0, T0 + 1)
    bad_attrs = span("4444444444444444", "bad attrs", T0, T0 + 1)
    bad_attrs["attributes"] = {"a": 1}
    wrong_type_id = span("5555555555555555", "number id", T0, T0 + 1)
    wrong_type_id["spanId"] = 5
    lines = [
        json.dumps(document(good, bad_time, no_id)),
        '{"resourceSpans": [{"scopeSpans": [{"spans": [',
        json.dumps(document(bad_attrs, wrong_type_id, span("6666666666666666", "ok too", T0, T0 + 2))),
        json.dumps({"resourceSpans": {"not": "a list"}}),
        json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": "nope"}]}]}),
        json.dumps({"resourceSpans": []}),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = load(store, "otel", path)
    reasons = sorted((r["line"], r["reason"]) for r in rows(store, "SELECT line, reason FROM rejected"))
    assert reasons == [
        (1, "span has no spanId"),
        (1, "startTimeUnixNano '2026-11-02T09:00:00Z' is not an integer nanosecond Unix time"),
        (2, "line 2: not valid JSON (truncated or malformed record)"),
        (3, "attributes is a JSON object, expected an array of {key, value}"),
        (3, "spanId '5' is not a hex span id"),
        (4, "resourceSpans is a JSON object, expected an array"),
        (5, "resourceSpans[0].scopeSpans[0].spans is a JSON string, expected an array"),
    ]
    assert sorted(r[0] for r in store.execute("SELECT event_id FROM events").fetchall()) == [
        "1111111111111111",
        "6666666666666666",
    ]
    assert result.read == result.loaded + result.rejected + result.duplicates == 9


def test_reingest_and_duplicate_spans(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    doc = json.dumps(document(span("7777777777777777", "x", T0, T0 + 1)))
    path = tmp_path / "dup.jsonl"
    path.write_text(doc + "\n" + doc + "\n")  # the exporter wrote the same batch twice
    first = load(store, "otel", path)
    assert (first.read, first.loaded, first.duplicates) == (2, 1, 1)
    assert ingest.ingest(store, [path]).files[0].already_ingested
    other = tmp_path / "pretty.json"
    other.write_text(json.dumps(json.loads(doc), indent=2))  # same span, other bytes
    assert load(store, "otel", other).duplicates == 1
    assert store.execute("SELECT count(*) FROM events").fetchone()[0] == 1


def test_detect_does_not_claim_metrics_or_quoted_otlp(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"resourceMetrics": []}))
    assert not otel.detect(metrics)  # OTLP metrics carry no spans: not claimed
    escaped = tmp_path / "k8s.log"
    escaped.write_text(json.dumps({"log": json.dumps({"resourceSpans": []})}) + "\n")
    assert not otel.detect(escaped)  # OTLP quoted inside another record's string
