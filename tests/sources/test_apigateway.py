"""AWS API Gateway access logs: the shared sample loads cleanly, spot checks against values read in
it, identity extras, the traceparent and X-Ray join keys, bad records and re-ingest."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pytest
from helpers import SAMPLES, event, load, rows, sample, write_lines

SAMPLE = SAMPLES / "api_gateway" / "elastic__aws-apigateway_test-apigateway-rest.log"

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"


def record(request_id: str, **extra: Any) -> dict[str, Any]:
    """The common JSON format (AWS docs) plus the identity/trace extras a stage may add."""
    rec: dict[str, Any] = {
        "requestId": request_id,
        "ip": "10.0.0.7",
        "caller": "AROAEXAMPLE:report-bot",
        "user": "AROAEXAMPLE:report-bot",
        "requestTime": "02/Nov/2026:10:05:00 +0100",
        "httpMethod": "PUT",
        "resourcePath": "/reports/{id}",
        "status": "201",
        "protocol": "HTTP/1.1",
        "responseLength": "40",
        "stage": "prod",
        "apiId": "a1b2c3d4e5",
        "domainName": "a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com",
        "accountId": "111111111111",
        "userArn": "arn:aws:sts::111111111111:assumed-role/report-bot/t-7f3a",
        "accessKey": "ASIAEXAMPLEKEY",
        "userAgent": "report-bot/1.0",
    }
    rec.update(extra)
    return rec


@pytest.fixture(name="sample")
def shared_sample() -> Path:
    return sample(SAMPLE)


def test_sample_fields(store: duckdb.DuckDBPyConnection, sample: Path) -> None:
    result = load(store, "apigateway", sample)
    assert (result.read, result.loaded) == (5, 5)  # every record one event
    e = event(store, "apigateway", "48752d0f-c99d-4cfa-a5a7-f3c6834d19e5")  # line 1
    assert e["occurred_at"] == datetime(2023, 6, 10, 15, 36, 28, tzinfo=timezone.utc)
    assert (e["category"], e["action"], e["resource"]) == ("action", "http:GET", "/pets")
    assert (e["outcome"], e["read_only"], e["src_ip"]) == ("success", True, "1.128.0.0")
    # caller and user are "-": an unauthenticated call
    assert (e["actor_id"], e["credential_id"], e["credential_type"]) == (None, None, None)
    assert (e["record_index"], e["line"]) == (0, 1)
    assert e["details"] == {
        "status": 200,
        "protocol": "HTTP/1.1",
        "response_length": 184,
        "resource_path": "/pets",
    }

    e = event(store, "apigateway", "c12d1542-b79e-4e79-a158-fdf36452a81b")  # line 4: with stage, apiId, domainName
    assert e["resource"] == "apigateway:asad15n3p0/prod/pets/{petId}"
    assert e["region"] == "us-east-1"
    assert e["occurred_at"] == datetime(2023, 7, 26, 12, 7, 3, tzinfo=timezone.utc)
    assert json.loads(e["raw"])["responseLength"] == "48"


def test_identity_extras(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    user_only = record("user-only", userArn="-", accessKey="-")
    path = write_lines(
        tmp_path / "access.log",
        [
            record("full"),
            user_only,
            record("long-term", accessKey="AKIAEXAMPLE"),
        ],
    )
    load(store, "apigateway", path)
    e = event(store, "apigateway", "full")
    assert e["occurred_at"] == datetime(2026, 11, 2, 9, 5, tzinfo=timezone.utc)  # +0100 -> UTC
    assert e["actor_id"] == "arn:aws:sts::111111111111:assumed-role/report-bot/t-7f3a"
    # the access key links the call to the CloudTrail issuance of that key
    assert (e["credential_id"], e["credential_type"]) == ("ASIAEXAMPLEKEY", "aws_temporary_key")
    assert (e["action"], e["read_only"], e["outcome"]) == ("http:PUT", False, "success")
    assert e["resource"] == "apigateway:a1b2c3d4e5/prod/reports/{id}"
    assert (e["account"], e["region"], e["user_agent"]) == ("111111111111", "eu-west-1", "report-bot/1.0")
    e = event(store, "apigateway", "user-only")
    assert (e["actor_id"], e["credential_id"]) == (
        "AROAEXAMPLE:report-bot",
        "apigw-user:AROAEXAMPLE:report-bot",
    )
    assert event(store, "apigateway", "long-term")["credential_type"] == "aws_long_term_key"


def test_traceparent_joins_the_agent_span(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "access.log", [record("traced", traceparent=f"00-{TRACE_ID}-{SPAN_ID}-01")])
    load(store, "apigateway", path)
    e = event(store, "apigateway", "traced")
    assert (e["trace_id"], e["parent_span_id"], e["span_id"]) == (TRACE_ID, SPAN_ID, None)


def test_xray_trace_id_maps_to_w3c(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "access.log",
        [
            record(
                "xray", xrayTraceId="Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=00f067aa0ba902b7;Sampled=1"
            ),
            record("bare", xrayTraceId="1-4bf92f35-77b34da6a3ce929d0e0e4736"),
            record("junk", xrayTraceId="-", traceparent="00-bad-01"),
        ],
    )
    load(store, "apigateway", path)
    xray, bare, junk = (event(store, "apigateway", event_id) for event_id in ("xray", "bare", "junk"))
    assert (xray["trace_id"], xray["parent_span_id"]) == (TRACE_ID, SPAN_ID)
    assert (bare["trace_id"], bare["parent_span_id"]) == (TRACE_ID, None)
    assert (junk["trace_id"], junk["parent_span_id"]) == (None, None)


def test_outcomes(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "access.log",
        [
            record("denied", status="403"),
            record("unauth", status=401),
            record("error", status="504"),
        ],
    )
    load(store, "apigateway", path)
    denied, error = event(store, "apigateway", "denied"), event(store, "apigateway", "error")
    assert (denied["outcome"], denied["error_code"]) == ("denied", "403")
    assert event(store, "apigateway", "unauth")["outcome"] == "denied"
    assert (error["outcome"], error["error_code"]) == ("failure", "504")


def test_bad_records_are_rejected_with_a_reason(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "access.log",
        [
            record("good-1"),
            '{"requestId": "cut", "ip": "1.2.3',
            record("bad-time", requestTime="2026-11-02T10:05:00Z"),
            record("bad-status", status="OK"),
            record("bad-method", httpMethod=7),
            record("good-2"),
        ],
    )
    result = load(store, "apigateway", path)
    assert (result.loaded, result.rejected) == (2, 4)
    assert result.read == result.loaded + result.rejected + result.duplicates
    reasons = {r["line"]: r["reason"] for r in rows(store, "SELECT line, reason FROM rejected")}
    assert reasons == {
        2: "line 2: not valid JSON (truncated or malformed record)",
        3: "requestTime '2026-11-02T10:05:00Z' is not a CLF time (dd/Mon/yyyy:HH:MM:SS +zzzz)",
        4: "status 'OK' is not an HTTP status",
        5: "httpMethod is a JSON number, expected a string",
    }


def test_reingest_is_a_noop_and_duplicates_are_skipped(
    store: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    first = write_lines(tmp_path / "a.log", [record("r1"), record("r2")])
    load(store, "apigateway", first)
    assert load(store, "apigateway", first).already_ingested
    result = load(store, "apigateway", write_lines(tmp_path / "b.log", [record("r2"), record("r3")]))
    assert (result.read, result.loaded, result.duplicates) == (2, 1, 1)
    assert store.execute("SELECT count(*) FROM events").fetchone()[0] == 3
