"""JUnit XML for CI test views: one testcase per audited action, failing as ``--fail-on`` says.

A testcase fails with one ``failure`` per finding that counts toward ``--fail-on`` (unwaived, at or
above the threshold, new when a baseline is given): the CI view and the exit code agree. Findings
below the threshold and waived ones are listed in the testcase's ``system-out``.

Valid against the Jenkins xUnit ``junit-10.xsd`` (Surefire style), the strictest common reader:
``testcase`` takes only ``name``/``classname``/``time``/``group`` and no ``properties``.
``failures`` counts failed testcases, so CI shows "N of M actions failed". Past ``max_cases``
testcases (GitLab refuses reports over 30 MB; a testcase is about 0.5–1 KB) the failing actions are
kept first, most severe first, and the rest are folded into one testcase per rule (failing) or per
source (passing) with their count; the suite's properties say how many. Log text is made XML
1.0-safe with :func:`visible` before ElementTree escapes it.

With ``report --compliance FRAMEWORK`` a second testsuite holds one testcase per control of the
framework, failing when the control fails (a finding at or above ``--fail-on`` from one of its
rules); the root's counts add both suites up.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from nhiaudit.model import SEVERITY_RANK, Finding, Report
from nhiaudit.reports._common import findings_by_action, pointer, visible
from nhiaudit.reports.json_ import TOOL_NAME

SUITE_NAME = TOOL_NAME


MAX_CASES = 10_000


def render(report: Report, *, max_cases: int = MAX_CASES, compliance: dict | None = None) -> str:
    counted = {id(f) for f in counting(report)}
    cases, folded = _cases(report, counted, max_cases)
    failed = sum(1 for case in cases if case.find("failure") is not None)
    counts = {"tests": str(len(cases)), "failures": str(failed), "errors": "0"}

    controls = _control_cases(compliance) if compliance is not None else []
    control_failed = sum(1 for case in controls if case.find("failure") is not None)
    totals = {"tests": str(len(cases) + len(controls)), "failures": str(failed + control_failed), "errors": "0"}

    root = ET.Element("testsuites", {"name": SUITE_NAME, **totals, "time": "0"})
    suite = ET.SubElement(root, "testsuite", {"name": SUITE_NAME, **counts, "skipped": "0", "time": "0"})
    if report.generated_at:
        suite.set("timestamp", visible(report.generated_at))
    properties = ET.SubElement(suite, "properties")
    for name, value in _properties(report) + [(f"folded.{k}", str(v)) for k, v in folded.items()]:
        ET.SubElement(properties, "property", {"name": name, "value": visible(value)})
    suite.extend(cases)
    if compliance is not None:
        counts = {"tests": str(len(controls)), "failures": str(control_failed), "errors": "0"}
        name = f"{SUITE_NAME}.compliance.{compliance['framework']}"
        controls_suite = ET.SubElement(root, "testsuite", {"name": name, **counts, "skipped": "0", "time": "0"})
        props = ET.SubElement(controls_suite, "properties")
        ET.SubElement(props, "property", {"name": "framework", "value": visible(compliance["title"])})
        controls_suite.extend(controls)

    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'


def counting(report: Report) -> list[Finding]:
    """The findings that count toward ``--fail-on`` (as ``Report.summary['failing']`` counts them)."""
    threshold = SEVERITY_RANK.get(report.fail_on, len(SEVERITY_RANK))
    return [
        f
        for f in report.findings
        if not f.waived
        and SEVERITY_RANK[f.severity] >= threshold
        and (report.baseline_path is None or f.baseline == "new")
    ]


def _cases(report: Report, counted: set[int], max_cases: int) -> tuple[list[ET.Element], dict[str, int]]:
    """One testcase per action (and per group of findings without one), in report order; past
    ``max_cases`` the failing actions are kept first, most severe first, and the rest are folded.

    The actions are streamed twice (:func:`findings_by_action`) and never held: the first pass
    ranks the failing ones (at most one per finding), the second builds the cases it keeps."""
    total = 0
    failing_ranks: list[tuple[int, int]] = []  # (-worst counted severity, position)
    rules: set[str] = set()
    sources: set[str] = set()
    for i, (action, findings) in enumerate(findings_by_action(report)):
        total += 1
        sources.add(action.source if action else findings[0].source)
        hits = [f for f in findings if id(f) in counted]
        if hits:
            failing_ranks.append((-max(SEVERITY_RANK[f.severity] for f in hits), i))
            rules.update(f.rule for f in hits)
    if total <= max_cases:
        return [_testcase(action, findings, counted) for action, findings in findings_by_action(report)], {}
    # Room for the folded cases: one per rule plus one per source at most.
    room = max(1, max_cases - len(rules) - len(sources))
    failing_ranks.sort()
    kept = {i for _, i in failing_ranks[:room]}
    folded_rank = {i: rank for rank, (_, i) in enumerate(failing_ranks[room:])}
    passing_room = max(0, room - len(failing_ranks))  # passing actions kept, the first ones in order
    cases: list[ET.Element] = []
    folded_failing: list[tuple[int, str, list[Finding]]] = []
    passing: dict[str, int] = {}
    for i, (action, findings) in enumerate(findings_by_action(report)):
        if i in kept:
            cases.append(_testcase(action, findings, counted))
        elif i in folded_rank:
            key = f"{action.source}:{action.event_id}" if action else f"{findings[0].source}:{findings[0].event_id}"
            folded_failing.append((folded_rank[i], key, [f for f in findings if id(f) in counted]))
        elif passing_room:
            passing_room -= 1
            cases.append(_testcase(action, findings, counted))
        else:
            source = action.source if action else findings[0].source
            passing[source] = passing.get(source, 0) + 1
    failing: dict[str, list[tuple[str, str]]] = {}
    for _, key, hits in sorted(folded_failing, key=lambda item: item[0]):
        for f in hits:
            failing.setdefault(f.rule, []).append((key, f.severity))
    for rule in sorted(failing):
        listed = failing[rule]
        case = ET.Element(
            "testcase",
            {"classname": "nhiaudit.folded", "name": visible(f"{len(listed)} more actions: {rule}"), "time": "0"},
        )
        failure = ET.SubElement(
            case, "failure", {"message": visible(f"{len(listed)} more actions failed {rule}"), "type": visible(rule)}
        )
        failure.text = visible(
            "not listed one by one (the report's size is bounded); the JSON report and `nhiaudit sql "
            f"\"SELECT * FROM findings WHERE rule = '{rule}'\"` have them all. First: "
            + ", ".join(key for key, _ in listed[:20])
        )
        cases.append(case)
    for source in sorted(passing):
        cases.append(
            ET.Element(
                "testcase",
                {
                    "classname": "nhiaudit.folded",
                    "name": visible(f"{passing[source]} more passing {source} actions"),
                    "time": "0",
                },
            )
        )
    rest = len(folded_failing) + sum(passing.values())
    return cases, {"actions": rest, "failing_rules": len(failing), "passing_sources": len(passing)}


def _control_cases(compliance: dict) -> list[ET.Element]:
    """One testcase per control of the framework: failing when the control fails."""
    cases = []
    for c in compliance["controls"]:
        rules = ", ".join(c["rules"])
        case = ET.Element(
            "testcase",
            {
                "classname": visible(f"{SUITE_NAME}.compliance.{compliance['framework']}"),
                "name": visible(f"{c['control']} ({rules})"),
                "time": "0",
            },
        )
        if c["status"] == "fail":
            failure = ET.SubElement(
                case,
                "failure",
                {"message": visible(f"{c['control']}: {c['failing']} failing findings"), "type": "compliance"},
            )
            failure.text = visible(
                f"{compliance['title']} {c['control']} fails: {c['failing']} of {c['findings']} findings of "
                f"{rules} are at or above --fail-on."
            )
        cases.append(case)
    return cases


def _properties(report: Report) -> list[tuple[str, str]]:
    summary = report.summary
    props = [
        ("nhiaudit.version", report.tool_version),
        ("fail_on", report.fail_on),
        ("failing", str(summary["failing"])),
        ("waived", str(summary["waived"])),
        ("expired_waivers", str(summary["expired_waivers"])),
    ]
    if report.policy_path:
        props.append(("policy", report.policy_path))
    if report.baseline_path:
        props += [
            ("baseline", report.baseline_path),
            ("new", str(summary["new"])),
            ("fixed", str(summary["fixed"])),
        ]
    for w in report.expired_waivers:
        props.append(("expired_waiver", f"{w.rule} expired {w.expires} (owner {w.owner}): {w.reason}"))
    return props


def _testcase(action: Any, findings: list[Finding], counted: set[int]) -> ET.Element:
    if action is not None:
        source, event_id, actor = action.source, action.event_id, action.actor_id
        verb, resource = action.action, action.resource
    else:  # a finding whose action record is missing: still one testcase, so nothing is lost
        first = findings[0]
        source, event_id, actor = first.source, first.event_id, first.actor_id
        verb, resource = first.action, first.resource
    name = " ".join(part for part in (f"{source}:{event_id}", verb, resource) if part)
    case = ET.Element(
        "testcase", {"classname": visible(f"{source}.{actor or 'unknown'}"), "name": visible(name), "time": "0"}
    )

    waived = []
    for f in findings:
        if id(f) not in counted:
            waived.append(f)
            continue
        failure = ET.SubElement(
            case,
            "failure",
            {"message": visible(f"[{f.severity}] {f.rule}: {f.message}"), "type": visible(f.rule)},
        )
        failure.text = visible(_failure_text(f))
    if waived:
        out = ET.SubElement(case, "system-out")
        out.text = visible("\n".join(_waived_line(f) for f in waived))
    return case


def _failure_text(f: Finding) -> str:
    e = f.evidence
    lines = [
        f"evidence: {pointer(e)} (record {e.record_index}, event {e.source}:{e.event_id}, sha256 {e.sha256})",
        f"frameworks: {', '.join(f.frameworks) or '-'}",
        f"fingerprint: {f.fingerprint}",
    ]
    if f.baseline:
        lines.append(f"baseline: {f.baseline}")
    return "\n".join(lines)


def _waived_line(f: Finding) -> str:
    why = "waived" if f.waived else "below --fail-on" if f.baseline != "unchanged" else "in the baseline"
    line = f"{why} [{f.severity}] {f.rule}: {f.message} ({pointer(f.evidence)})"
    if f.waiver is not None:
        w = f.waiver
        line += f" -- {w.reason}; owner {w.owner}; expires {w.expires}"
    return line
