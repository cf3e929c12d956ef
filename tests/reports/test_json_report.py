"""The JSON report: lossless for every log value, sorted keys, the documented shape."""

from __future__ import annotations

import json

from report_fixtures import ACTIONS, EXPIRED, FINDINGS

from nhiaudit.reports import json_


def test_shape(report):
    document = json.loads(json_.render(report))
    assert set(document) >= {
        "findings",
        "summary",
        "expired_waivers",
        "fixed",
        "actions",
        "generated_at",
        "tool",
    }
    assert document["tool"] == {"name": "nhiaudit", "version": "0.1.0"}
    assert document["generated_at"] == "2026-11-03T07:00:00Z"
    assert document["summary"] == json.loads(json.dumps(report.summary))
    first = document["findings"][0]
    assert set(first) == {
        "rule", "severity", "title", "source", "event_id", "occurred_at", "actor_id", "credential_id",
        "task_id", "agent_id", "action", "resource", "message", "evidence", "frameworks", "fingerprint",
        "waived", "waiver", "baseline",
    }  # fmt: skip
    assert set(first["evidence"]) == {"file", "sha256", "record_index", "line", "source", "event_id"}


def test_every_hostile_value_round_trips_exactly(report):
    document = json.loads(json_.render(report))
    for parsed, finding in zip(document["findings"], FINDINGS, strict=True):
        assert parsed == json_.finding_to_dict(finding)
        assert parsed["message"] == finding.message
    assert document["findings"][4]["waiver"]["reason"] == FINDINGS[4].waiver.reason
    assert document["expired_waivers"][0]["reason"] == EXPIRED.reason
    assert document["expired_waivers"][0]["expired"] is True
    links = document["actions"][0]["links"]
    assert [link["kind"] for link in links] == [link.kind for link in ACTIONS[0].links]
    assert links[4]["details"]["scope"]["note"] == ACTIONS[0].links[4].details["scope"]["note"]
    assert links[5]["evidence"] is None


def test_sorted_indented_ascii_with_trailing_newline(report):
    out = json_.render(report)
    assert out.endswith("}\n")
    assert out.isascii()
    reparsed = json.loads(out)
    assert out == json_.dumps(reparsed, indent=2) + "\n"
    assert list(reparsed) == sorted(reparsed)


def test_html_significant_characters_are_escaped(report):
    out = json_.render(report)
    assert "<" not in out and ">" not in out and "&" not in out
    assert "\\u003cscript\\u003e" in out


def test_unserializable_details_fall_back_to_text():
    assert json_.dumps({"b": {3, 1, 2}, "a": object.__name__}) == '{"a":"object","b":[1,2,3]}'


def test_compliance_result(report):
    from report_fixtures import COMPLIANCE

    document = json.loads(json_.render(report, compliance=COMPLIANCE))
    assert document["compliance"] == COMPLIANCE["controls"]
    assert document["compliance_framework"] == {"id": "owasp-agentic", "title": "OWASP Top 10 for Agentic Applications"}
