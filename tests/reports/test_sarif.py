"""SARIF: valid against the official 2.1.0 schema and carrying what GitHub code scanning reads."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from jsonschema.validators import validator_for
from report_fixtures import EV_ORPHAN, FINDINGS, RULES, empty_report

from nhiaudit.model import Report
from nhiaudit.reports import sarif

# RFC 3986 URI-reference characters: unreserved, reserved and percent-escapes only.
URI_REFERENCE = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+$")


def _run(report):
    return json.loads(sarif.render(report))["runs"][0]


def test_validates_against_the_official_schema(any_report, schemas):
    schema = json.loads((schemas / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
    validator = validator_for(schema)(schema)
    document = json.loads(sarif.render(any_report))
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])
    assert document["version"] == "2.1.0"
    assert document["$schema"].endswith("sarif-schema-2.1.0.json")


def test_driver_lists_every_rule_with_github_severity(report):
    driver = _run(report)["tool"]["driver"]
    assert (driver["name"], driver["version"]) == ("nhiaudit", "0.1.0")
    assert driver["informationUri"] == "https://github.com/nhiaudit/nhiaudit"
    assert [r["id"] for r in driver["rules"]] == [r.id for r in RULES]
    by_id = {r["id"]: r for r in driver["rules"]}
    denied = by_id["approval-denied"]
    assert denied["name"] == "ApprovalDenied"
    assert denied["shortDescription"]["text"] == RULES[0].title
    assert denied["fullDescription"]["text"] == RULES[0].description
    assert denied["help"]["text"] == RULES[0].remediation
    markdown = denied["help"]["markdown"]
    assert RULES[0].title in markdown and RULES[0].description in markdown and RULES[0].remediation in markdown
    assert denied["helpUri"] == "https://github.com/nhiaudit/nhiaudit/blob/main/docs/rules.md#approval-denied"
    assert denied["helpUri"] in markdown
    assert denied["defaultConfiguration"]["level"] == "error"
    assert denied["properties"]["tags"] == ["security", "NHI5:2025", "ASI03", "AU-10"]
    expected = {"critical": "9.5", "high": "8.0", "medium": "5.5"}
    for rule in RULES:
        assert by_id[rule.id]["properties"]["security-severity"] == expected[rule.severity]
    assert by_id["long-lived-credential"]["defaultConfiguration"]["level"] == "warning"


def test_each_result_points_at_its_rule_and_evidence_record(report):
    run = _run(report)
    rules = run["tool"]["driver"]["rules"]
    assert len(run["results"]) == len(FINDINGS)
    for result, finding in zip(run["results"], FINDINGS, strict=True):
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"] == finding.rule
        physical = result["locations"][0]["physicalLocation"]
        assert physical["region"]["startLine"] == finding.evidence.line >= 1
        assert URI_REFERENCE.match(physical["artifactLocation"]["uri"]), physical
        assert result["partialFingerprints"] == {"primaryLocationLineHash": finding.fingerprint}
        assert result["properties"]["event_id"] == finding.event_id
        assert result["properties"]["credential_id"] == finding.credential_id


def test_levels_follow_severity(report):
    levels = [r["level"] for r in _run(report)["results"]]
    assert levels == ["error", "error", "error", "error", "warning"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("logs/ct.json", {"uri": "logs/ct.json", "uriBaseId": "%SRCROOT%"}),
        ("./logs//ct.json", {"uri": "logs/ct.json", "uriBaseId": "%SRCROOT%"}),
        ("logs\\kong\\a b.log", {"uri": "logs/kong/a%20b.log", "uriBaseId": "%SRCROOT%"}),
        ("c:ct.json", {"uri": "c%3Act.json", "uriBaseId": "%SRCROOT%"}),  # not read as a URI scheme
        # One absolute path on its own: relative to its folder, the root (never a file: URI).
        ("/var/log/ct <x>.json", {"uri": "ct%20%3Cx%3E.json", "uriBaseId": "%SRCROOT%"}),
        ("C:\\evidence\\vault audit.log", {"uri": "vault%20audit.log", "uriBaseId": "%SRCROOT%"}),
    ],
)
def test_artifact_location(path, expected):
    assert sarif.artifact_location(path) == expected


def test_evidence_outside_the_root_has_its_own_base_never_a_file_uri(report):
    orphan = next(r for r in _run(report)["results"] if r["properties"]["event_id"] == EV_ORPHAN.event_id)
    location = orphan["locations"][0]["physicalLocation"]["artifactLocation"]
    assert location == {"uri": "vault%20audit.log", "uriBaseId": "NHIAUDIT_EVIDENCE"}
    assert "NHIAUDIT_EVIDENCE" in _run(report)["originalUriBaseIds"]


def test_logical_locations_only_for_what_is_known(report):
    results = _run(report)["results"]
    first = results[0]["locations"][0]["logicalLocations"]
    assert [loc["fullyQualifiedName"].split("/")[0] for loc in first] == ["agent", "task", "action"]
    assert first[0]["fullyQualifiedName"] == f"agent/{FINDINGS[0].agent_id}"
    assert first[2] == {
        "name": "s3:PutObject",
        "fullyQualifiedName": f"action/cloudtrail:{FINDINGS[0].event_id}",
        "kind": "object",
    }
    without_task = results[1]["locations"][0]["logicalLocations"]
    assert [loc["fullyQualifiedName"].split("/")[0] for loc in without_task] == ["action"]


def test_waived_findings_are_suppressed_with_the_reason(report):
    results = _run(report)["results"]
    suppressed = [r for r in results if "suppressions" in r]
    assert len(suppressed) == 1
    (suppression,) = suppressed[0]["suppressions"]
    assert suppression["kind"] == "external" and suppression["status"] == "accepted"
    assert "JIT rollout" in suppression["justification"]
    assert "@platform-team" in suppression["justification"] and "2027-01-31" in suppression["justification"]
    assert "\x1b" not in suppression["justification"]


def test_baseline_state_is_carried(report):
    states = [r.get("baselineState") for r in _run(report)["results"]]
    assert states == [f.baseline for f in FINDINGS]
    plain = dataclasses.replace(
        report, findings=tuple(dataclasses.replace(f, baseline=None) for f in FINDINGS), baseline_path=None
    )
    assert all("baselineState" not in r for r in _run(plain)["results"])


def test_fingerprints_do_not_depend_on_the_run_time(report):
    later = dataclasses.replace(report, generated_at="2031-01-01T00:00:00Z")
    fingerprints = [r["partialFingerprints"] for r in _run(report)["results"]]
    assert fingerprints == [r["partialFingerprints"] for r in _run(later)["results"]]


def test_message_brackets_cannot_form_embedded_links(report):
    texts = [r["message"]["text"] for r in _run(report)["results"]]
    assert "[link](http://evil.example)" not in "".join(texts)
    assert "\\[link\\](http://evil.example)" in texts[2]


def test_run_carries_summary_and_successful_invocation(report):
    run = _run(report)
    assert run["invocations"] == [{"executionSuccessful": True, "endTimeUtc": "2026-11-03T07:00:00Z"}]
    assert run["properties"]["summary"] == json.loads(json.dumps(report.summary))


def test_a_finding_for_an_unlisted_rule_still_gets_a_rule_descriptor(report):
    unlisted = dataclasses.replace(report, rules=RULES[:1])
    run = _run(unlisted)
    ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert ids[0] == "approval-denied" and set(ids) == {f.rule for f in FINDINGS}
    assert all(run["tool"]["driver"]["rules"][r["ruleIndex"]]["id"] == r["ruleId"] for r in run["results"])


# --------------------------------------------------------------------------------------------------
# GitHub code scanning's limits at scale
# --------------------------------------------------------------------------------------------------


def _many(n: int, credentials: int) -> Report:
    """``n`` findings of two rules on ``credentials`` credentials, evidence in one folder."""
    base = FINDINGS[0]
    findings = tuple(
        dataclasses.replace(
            base,
            rule=("credential-without-task", "long-lived-credential")[i % 2],
            event_id=f"e{i:07d}",
            credential_id=f"AKIA{i % credentials:016d}",
            fingerprint=f"{i:032d}",
            evidence=dataclasses.replace(
                base.evidence, file=f"/srv/evidence/cloudtrail/{i % 40:02d}.json.gz", line=i + 1
            ),
            waived=False,
            waiver=None,
        )
        for i in range(n)
    )
    return dataclasses.replace(empty_report(), findings=findings)


@pytest.mark.slow  # ~45 s on a loaded 2-core machine: CI's soak step runs it (pytest -m slow)
def test_100k_findings_fit_github_limits_and_validate(schemas):
    import gzip

    import jsonschema

    report = _many(100_000, credentials=3_000)
    text = sarif.render(report)
    run = json.loads(text)["runs"][0]
    assert len(run["results"]) <= sarif.MAX_RESULTS <= sarif.HARD_MAX_RESULTS
    aggregation = run["properties"]["aggregation"]
    assert aggregation["findings"] == 100_000 and aggregation["results"] == len(run["results"])
    assert sum(r["properties"]["count"] for r in run["results"]) == 100_000  # nothing lost
    assert all(len(r["relatedLocations"]) <= 100 for r in run["results"])
    assert all(len(rule["properties"]["tags"]) <= 10 for rule in run["tool"]["driver"]["rules"])
    assert len(gzip.compress(text.encode())) < 10 * 1024 * 1024  # GitHub's upload limit
    # The schema on the run with a sample of its results (every result has the same shape; validating
    # all 3,000 with their related locations takes ~20 s), the limits above on all of them.
    schema = json.loads((schemas / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
    document = json.loads(text)
    document["runs"][0]["results"] = document["runs"][0]["results"][:: len(run["results"]) // 50]
    jsonschema.validators.validator_for(schema)(schema).validate(document)
    assert "file:" not in text and "../" not in text
    assert sarif.aggregation_note(report).startswith("SARIF: 100,000 findings aggregated into ")


def test_aggregation_falls_back_to_coarser_groups():
    report = _many(12_000, credentials=12_000)  # one credential per finding: rule × credential won't fit
    run = json.loads(sarif.render(report, max_results=5_000))["runs"][0]
    assert run["properties"]["aggregation"]["grouped_by"].startswith("rule × agent")
    assert len(run["results"]) <= 5_000


def test_under_the_limit_nothing_is_aggregated(report):
    run = _run(report)
    assert "aggregation" not in run["properties"] and sarif.aggregation_note(report) is None


def test_category_and_source_root():
    report = _many(3, credentials=3)
    run = json.loads(sarif.render(report, category="nhiaudit/prod", source_root="/srv/evidence"))["runs"][0]
    assert run["automationDetails"] == {"id": "nhiaudit/prod/"}
    location = run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert location == {"uri": "cloudtrail/00.json.gz", "uriBaseId": "%SRCROOT%"}
    # Relative paths, as ingested, resolve against the working folder when all evidence is under it.
    cwd = json.loads(sarif.render(report, cwd="/srv"))["runs"][0]
    assert cwd["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == (
        "evidence/cloudtrail/00.json.gz"
    )


def test_compliance_goes_into_the_run_properties(report, schemas):
    from report_fixtures import COMPLIANCE

    document = json.loads(sarif.render(report, compliance=COMPLIANCE))
    schema = json.loads((schemas / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
    assert not list(validator_for(schema)(schema).iter_errors(document))
    assert document["runs"][0]["properties"]["compliance"] == COMPLIANCE
    assert "compliance" not in _run(report)["properties"]
