"""JUnit XML: valid against junit-10.xsd, one testcase per audited action, hostile text survives as text."""

from __future__ import annotations

from lxml import etree
from report_fixtures import ACTIONS, CDATA_END, EV_ORPHAN, FINDINGS, SCRIPT

from nhiaudit.model import SEVERITY_RANK
from nhiaudit.reports import junit


def _parse(report) -> etree._Element:
    return etree.fromstring(junit.render(report).encode("utf-8"))


def test_validates_against_the_xsd(any_report, schemas):
    xsd = etree.XMLSchema(etree.parse(str(schemas / "junit-10.xsd")))
    document = etree.fromstring(junit.render(any_report).encode("utf-8"))
    assert xsd.validate(document), xsd.error_log


def test_one_testcase_per_action_plus_orphan_findings(report):
    cases = _parse(report).findall(".//testcase")
    assert len(cases) == len(ACTIONS) + 1
    names = [c.get("name") for c in cases]
    assert names[0] == f"cloudtrail:ev-1{SCRIPT} s3:PutObject arn:aws:s3:::reports-prod/{SCRIPT}{CDATA_END}"
    assert names[2] == "gcp:insert-3"
    assert names[3] == f"vault:{EV_ORPHAN.event_id}"
    assert cases[2].get("classname") == "gcp.unknown"


def test_a_failure_per_finding_at_or_above_fail_on_the_rest_in_system_out(report):
    root = _parse(report)
    failures = root.findall(".//failure")
    counting = [
        f
        for f in FINDINGS
        if not f.waived
        and SEVERITY_RANK[f.severity] >= SEVERITY_RANK["high"]
        and (report.baseline_path is None or f.baseline == "new")
    ]
    assert len(failures) == len(counting) == report.summary["failing"]
    assert {f.get("type") for f in failures} == {f.rule for f in counting}
    first = failures[0]
    assert first.get("message").startswith("[critical] approval-denied: Approval APR-1 denied by alice")
    assert "logs/ct <script>alert(1)</script>.json:1" in first.text
    assert "NHI5:2025, ASI03, AU-10" in first.text

    outs = " ".join(out.text for out in root.findall(".//testcase/system-out"))
    assert "waived [medium] long-lived-credential" in outs
    assert "JIT rollout" in outs and "2027-01-31" in outs
    below = [f for f in FINDINGS if not f.waived and f not in counting]
    assert below and all(f"[{f.severity}] {f.rule}" in outs for f in below)


def test_counts_are_failed_testcases(report):
    root = _parse(report)
    suite = root.find("testsuite")
    failed = sum(1 for c in suite.findall("testcase") if c.find("failure") is not None)
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", str(failed), "0")
    assert (root.get("tests"), root.get("failures")) == ("4", str(failed))
    assert suite.get("timestamp") == "2026-11-03T07:00:00Z"


def test_hostile_text_round_trips_as_text(report):
    root = _parse(report)
    text = etree.tostring(root, encoding="unicode", method="text") + " ".join(
        v for e in root.iter() for v in e.attrib.values()
    )
    assert CDATA_END in text and SCRIPT in text  # parsed back intact: it was escaped, not dropped
    assert "\\x1b[31mred" in text  # ESC spelled out, not emitted
    assert "\x1b" not in text and "\x00" not in text


def test_expired_waivers_are_suite_properties(report):
    props = {p.get("name"): p.get("value") for p in _parse(report).findall(".//property")}
    assert props["fail_on"] == "high"
    assert props["expired_waiver"].startswith("long-lived-credential expired 2026-01-31")


def test_empty_report_is_a_passing_suite(any_report):
    root = _parse(any_report)
    assert root.find("testsuite").get("name") == "nhiaudit"


def test_many_actions_are_folded_within_the_case_bound(report, schemas):
    import dataclasses

    action = ACTIONS[0]
    finding = next(f for f in FINDINGS if f.severity == "critical")
    actions = tuple(dataclasses.replace(action, event_id=f"e{i}") for i in range(30_000))
    findings = tuple(
        dataclasses.replace(finding, event_id=f"e{i}", rule=("approval-denied", "out-of-scope-action")[i % 2])
        for i in range(0, 30_000, 3)
    )
    big = dataclasses.replace(report, actions=actions, findings=findings, expired_waivers=())
    text = junit.render(big, max_cases=1_000)
    root = etree.fromstring(text.encode("utf-8"))
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) <= 1_000 and suite.get("tests") == str(len(cases))
    props = {p.get("name"): p.get("value") for p in suite.findall(".//property")}
    assert int(props["folded.actions"]) == 30_000 - (1_000 - 3)
    # Every failing action is either its own failing case or counted in a folded one.
    folded = sum(int(c.get("name").split()[0]) for c in cases if c.get("classname") == "nhiaudit.folded"
                 and c.find("failure") is not None)  # fmt: skip
    own = sum(1 for c in cases if c.get("classname") != "nhiaudit.folded" and c.find("failure") is not None)
    assert own + folded == 10_000
    assert len(text) < 2_000_000
    xsd = etree.XMLSchema(etree.parse(str(schemas / "junit-10.xsd")))
    assert xsd.validate(root), xsd.error_log


def test_compliance_is_a_testsuite_of_controls(report, schemas):
    from report_fixtures import COMPLIANCE

    document = etree.fromstring(junit.render(report, compliance=COMPLIANCE).encode("utf-8"))
    xsd = etree.XMLSchema(etree.parse(str(schemas / "junit-10.xsd")))
    assert xsd.validate(document), xsd.error_log
    findings_suite, controls = document.findall("testsuite")
    assert controls.get("name") == "nhiaudit.compliance.owasp-agentic"
    assert (controls.get("tests"), controls.get("failures")) == ("2", "1")
    cases = controls.findall("testcase")
    assert [c.get("name") for c in cases] == ["ASI03 (approval-denied, out-of-scope-action)", "ASI10 (self-approval)"]
    assert cases[0].find("failure").get("message") == "ASI03: 2 failing findings"
    assert cases[1].find("failure") is None
    # The root adds both suites up.
    assert int(document.get("tests")) == int(findings_suite.get("tests")) + 2
    assert int(document.get("failures")) == int(findings_suite.get("failures")) + 1
