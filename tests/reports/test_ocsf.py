"""OCSF 1.3 Detection Finding JSON lines: one parseable class-2004 object per finding."""

from __future__ import annotations

import json

import pytest
from report_fixtures import FINDINGS, empty_report

from nhiaudit.reports import json_, ocsf


def _events(report) -> list[dict]:
    return [json.loads(line) for line in ocsf.render(report).splitlines()]


def test_one_detection_finding_per_line(report):
    events = _events(report)
    assert len(events) == len(FINDINGS)
    for event, finding in zip(events, FINDINGS, strict=True):
        assert (event["class_uid"], event["category_uid"], event["type_uid"], event["activity_id"]) == (
            2004,
            2,
            200401,
            1,
        )
        assert event["metadata"]["version"] == "1.3.0"
        assert event["metadata"]["product"] == {
            "name": "nhiaudit",
            "vendor_name": "nhiaudit",
            "version": "0.1.0",
        }
        assert event["metadata"]["uid"] == event["finding_info"]["uid"] == finding.fingerprint
        assert event["finding_info"]["types"] == [finding.rule]
        assert event["finding_info"]["analytic"] == {
            "name": finding.rule,
            "type_id": 1,
            "type": "Rule",
            "uid": finding.rule,
        }
        assert event["message"] == finding.message
        assert event["evidences"][0]["data"]["line"] == finding.evidence.line
        assert event["evidences"][0]["data"]["file"] == finding.evidence.file


def test_lines_are_sorted_compact_json(report):
    for line in ocsf.render(report).splitlines():
        assert line == json_.dumps(json.loads(line))
        assert line.isascii() and "<" not in line


def test_severity_and_status(report):
    events = _events(report)
    assert [(e["severity_id"], e["severity"]) for e in events] == [
        (5, "Critical"),
        (4, "High"),
        (4, "High"),
        (4, "High"),
        (3, "Medium"),
    ]
    assert [(e["status_id"], e["status"]) for e in events] == [(1, "New")] * 4 + [(3, "Suppressed")]
    assert "JIT rollout" in events[4]["status_detail"]


def test_time_is_when_the_action_occurred(report):
    event = _events(report)[0]
    assert event["time"] == 1793610720000  # 2026-11-02T09:12:00Z


def test_actor_and_resource_only_when_known(report):
    events = _events(report)
    assert events[0]["actor"] == {"user": {"uid": FINDINGS[0].actor_id}}
    assert events[0]["resources"] == [{"uid": FINDINGS[0].resource, "name": FINDINGS[0].resource}]
    assert "resources" not in events[3]


def test_empty_report_is_empty():
    assert ocsf.render(empty_report()) == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-02T09:12:00Z", 1793610720000),
        ("2026-11-02T09:12:00.250Z", 1793610720250),
        ("2026-11-02T10:12:00+01:00", 1793610720000),
        ("2026-11-02T09:12:00", 1793610720000),
        ("not a time", None),
    ],
)
def test_epoch_ms(text, expected):
    assert ocsf.epoch_ms(text) == expected
