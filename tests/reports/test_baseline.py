"""--baseline: findings marked new/unchanged by fingerprint, absent ones listed as fixed."""

from __future__ import annotations

import dataclasses
import json

import pytest
from report_fixtures import FINDINGS

from nhiaudit.baseline import apply_baseline
from nhiaudit.errors import NhiauditError
from nhiaudit.reports import json_, sarif


def _previous(report, findings) -> str:
    return json_.render(dataclasses.replace(report, findings=tuple(findings)))


def test_marks_new_and_unchanged_and_lists_fixed(report):
    previous = _previous(report, FINDINGS[:3])
    current = (*FINDINGS[1:3], *FINDINGS[3:])
    marked, fixed = apply_baseline(current, previous)
    assert [f.baseline for f in marked] == ["unchanged", "unchanged", "new", "new"]
    assert [f.fingerprint for f in marked] == [f.fingerprint for f in current]
    assert [item["fingerprint"] for item in fixed] == [FINDINGS[0].fingerprint]
    assert fixed[0]["message"] == FINDINGS[0].message  # the previous JSON object, as written


def test_same_findings_are_all_unchanged(report):
    marked, fixed = apply_baseline(FINDINGS, _previous(report, FINDINGS))
    assert {f.baseline for f in marked} == {"unchanged"}
    assert fixed == ()


def test_matching_ignores_everything_but_the_fingerprint(report):
    reworded = tuple(dataclasses.replace(f, message="reworded", severity="low") for f in FINDINGS)
    marked, fixed = apply_baseline(reworded, _previous(report, FINDINGS))
    assert {f.baseline for f in marked} == {"unchanged"} and fixed == ()


def test_fixed_lists_each_fingerprint_once(report):
    duplicated = json.loads(_previous(report, FINDINGS[:1]))
    duplicated["findings"] *= 2
    _, fixed = apply_baseline((), json.dumps(duplicated))
    assert len(fixed) == 1


def test_empty_previous_report_makes_everything_new(report):
    marked, fixed = apply_baseline(FINDINGS, _previous(report, ()))
    assert {f.baseline for f in marked} == {"new"} and fixed == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "prev.json:1: not valid JSON"),
        ("[]", "prev.json: not an nhiaudit JSON report (not a JSON object)"),
        ('{"findings": []}', 'prev.json: not an nhiaudit JSON report (no "tool": {"name": "nhiaudit"})'),
        ('{"tool": {"name": "other"}, "findings": []}', "prev.json: not an nhiaudit JSON report"),
        ('{"tool": {"name": "nhiaudit"}}', 'prev.json: "findings" is missing or not a list'),
        (
            '{"tool": {"name": "nhiaudit"}, "findings": [{"rule": "x"}]}',
            'prev.json: findings[0] has no "fingerprint"',
        ),
    ],
)
def test_rejects_what_is_not_an_nhiaudit_json_report(text, message):
    with pytest.raises(NhiauditError) as excinfo:
        apply_baseline(FINDINGS, text, where="prev.json")
    assert str(excinfo.value).startswith(message)
    assert str(excinfo.value).endswith("Pass a report written by `nhiaudit report --json FILE`.")


def test_a_sarif_file_is_named_as_such(report):
    with pytest.raises(NhiauditError, match="this is a SARIF file"):
        apply_baseline(FINDINGS, sarif.render(report))
