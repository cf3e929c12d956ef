"""OCSF 1.5 JSON lines: one Detection Finding (2004) per finding, valid against the OCSF schema.

Validation uses the official OCSF schema exports that ``ocsf-json-schema`` ships (schema.ocsf.io's
``/export/schema`` of each version, Apache-2.0) turned into a JSON Schema for the class and the
declared profiles (``additionalProperties: false`` at every level, enums as ``enum``), checked with
``jsonschema``. ``ocsf-validator`` was not used: it validates contributions to the schema repository,
not events.
"""

from __future__ import annotations

import functools
import json

import jsonschema
import pytest
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema
from report_fixtures import COMPLIANCE, FINDINGS, empty_report

from nhiaudit.reports import json_, ocsf

CLASSES = {2004: "detection_finding", 2003: "compliance_finding"}
@functools.cache
def _schema(version: str) -> dict:
    return get_ocsf_schema(version=version)


@functools.cache
def _validator(version: str, class_name: str, profiles: tuple[str, ...]) -> jsonschema.Draft202012Validator:
    schema = OcsfJsonSchemaEmbedded(_schema(version)).get_class_schema(class_name, list(profiles))
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def _errors(event: dict, version: str | None = None) -> list[str]:
    version = version or event["metadata"]["version"]
    validator = _validator(version, CLASSES[event["class_uid"]], tuple(event["metadata"].get("profiles", ())))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(event)]


def _events(report, **options) -> list[dict]:
    return [json.loads(line) for line in ocsf.render(report, **options).splitlines()]


def test_every_line_is_valid_against_the_declared_ocsf_version_and_profiles(report):
    events = _events(report, compliance=COMPLIANCE)
    assert [e["class_uid"] for e in events] == [2004] * len(FINDINGS) + [2003, 2003]
    for event in events:
        assert event["metadata"]["version"] == ocsf.OCSF_VERSION == "1.5.0"
        assert _errors(event) == []


def test_the_validation_can_fail(report):
    """The schema is strict: an attribute OCSF does not have, or a bad enum value, is an error."""
    event = _events(report)[0]
    assert _errors({**event, "no_such_attribute": 1})
    assert _errors({**event, "severity_id": 42})
    without_profile = {**event, "metadata": {**event["metadata"], "profiles": []}}
    assert any(e.startswith(": Additional properties") and "'actor'" in e for e in _errors(without_profile))


def test_the_declared_version_is_the_first_with_every_attribute_used(report):
    """evidences[].uid and .name are OCSF 1.5: the same lines are invalid as 1.4."""
    event = _events(report)[0]
    assert _errors(event, "1.5.0") == []
    assert any(e.startswith("evidences/0") for e in _errors(event, "1.4.0"))


def test_profile_attributes_are_declared(report):
    """Every top-level attribute that comes from a profile names its profile in metadata.profiles."""
    for event in _events(report, compliance=COMPLIANCE):
        attributes = _schema(event["metadata"]["version"])["classes"][CLASSES[event["class_uid"]]]["attributes"]
        needed = {attributes[key]["profile"] for key in event if attributes[key].get("profile")}
        assert needed <= set(event["metadata"]["profiles"]), needed


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


def test_compliance_findings_per_control(report):
    failed, passed = _events(report, compliance=COMPLIANCE)[len(FINDINGS) :]
    assert failed["compliance"] == {
        "standards": ["OWASP Top 10 for Agentic Applications"],
        "control": "ASI03",
        "status_id": 3,
        "status": "Fail",
        "desc": "Checked by the rules approval-denied, out-of-scope-action",
    }
    assert failed["finding_info"]["uid"] == "owasp-agentic:ASI03"
    assert failed["finding_info"]["related_events_count"] == 2
    assert (failed["severity_id"], passed["severity_id"]) == (4, 1)
    assert (passed["compliance"]["status_id"], passed["compliance"]["status"]) == (1, "Pass")
    # Not the clock: the newest audited action, so the lines are the same bytes on every run.
    assert failed["time"] == passed["time"] == ocsf.epoch_ms(max(a.occurred_at for a in report.actions))


def test_lines_are_sorted_compact_json(report):
    for line in ocsf.render(report, compliance=COMPLIANCE).splitlines():
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


def test_the_sample_worlds_ocsf_is_valid():
    """The golden report of the sample world (real evidence, every rule) is valid line by line."""
    from pathlib import Path

    golden = Path(__file__).parents[1] / "golden" / "sample_world.ocsf"
    lines = golden.read_text(encoding="utf-8").splitlines()
    assert len(lines) > 20
    for line in lines:
        assert _errors(json.loads(line)) == []
