"""JUnit XML for CI test views: one testcase per audited action, one failure per unwaived finding.

Valid against the Jenkins xUnit ``junit-10.xsd`` (Surefire style), the strictest common reader:
``testcase`` takes only ``name``/``classname``/``time``/``group`` and no ``properties``, so waived
findings are listed in the testcase's ``system-out``. ``failures`` counts failed testcases, so CI
shows "N of M actions failed". Log text is made XML 1.0-safe with :func:`visible` before
ElementTree escapes it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from nhiaudit.model import AuditedAction, Finding, Report
from nhiaudit.reports._common import findings_by_action, pointer, visible
from nhiaudit.reports.json_ import TOOL_NAME

SUITE_NAME = TOOL_NAME


def render(report: Report) -> str:
    groups = findings_by_action(report)
    cases = [_testcase(action, findings) for action, findings in groups]
    failed = sum(1 for case in cases if case.find("failure") is not None)
    counts = {"tests": str(len(cases)), "failures": str(failed), "errors": "0"}

    root = ET.Element("testsuites", {"name": SUITE_NAME, **counts})
    suite = ET.SubElement(root, "testsuite", {"name": SUITE_NAME, **counts, "skipped": "0"})
    if report.generated_at:
        suite.set("timestamp", visible(report.generated_at))
    properties = ET.SubElement(suite, "properties")
    for name, value in _properties(report):
        ET.SubElement(properties, "property", {"name": name, "value": visible(value)})
    suite.extend(cases)

    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'


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


def _testcase(action: AuditedAction | None, findings: list[Finding]) -> ET.Element:
    if action is not None:
        source, event_id, actor = action.source, action.event_id, action.actor_id
        verb, resource = action.action, action.resource
    else:  # a finding whose action record is missing: still one testcase, so nothing is lost
        first = findings[0]
        source, event_id, actor = first.source, first.event_id, first.actor_id
        verb, resource = first.action, first.resource
    name = " ".join(part for part in (f"{source}:{event_id}", verb, resource) if part)
    case = ET.Element(
        "testcase", {"classname": visible(f"{source}.{actor or 'unknown'}"), "name": visible(name)}
    )

    waived = []
    for f in findings:
        if f.waived:
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
    line = f"waived [{f.severity}] {f.rule}: {f.message} ({pointer(f.evidence)})"
    if f.waiver is not None:
        w = f.waiver
        line += f" -- {w.reason}; owner {w.owner}; expires {w.expires}"
    return line
