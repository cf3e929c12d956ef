"""SARIF 2.1.0 for GitHub code scanning and other SARIF viewers.

Each finding is a result located at its evidence record (file and line) with logical locations for
the agent, the task and the action. GitHub reads ``properties["security-severity"]`` on the rule
(a number as a string, 0.0-10.0) to show critical/high/medium/low, ``partialFingerprints`` to track
an alert across runs, and ``suppressions`` to show a waived finding as dismissed.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any
from urllib.parse import quote

from nhiaudit.model import Finding, Report, RuleInfo
from nhiaudit.reports._common import visible
from nhiaudit.reports.json_ import TOOL_NAME, dumps

SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
INFORMATION_URI = "https://github.com/nhiaudit/nhiaudit"
SRCROOT = "%SRCROOT%"

LEVELS = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
# GitHub maps >= 9.0 to critical, >= 7.0 high, >= 4.0 medium, > 0 low.
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0", "info": "0.0"}

_WINDOWS_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")


def render(report: Report) -> str:
    rules = _rules(report)
    index = {rule.id: i for i, rule in enumerate(rules)}
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": TOOL_NAME,
                "version": report.tool_version,
                "informationUri": INFORMATION_URI,
                "rules": [_rule(rule) for rule in rules],
            }
        },
        "invocations": [_invocation(report)],
        "results": [_result(f, index[f.rule]) for f in report.findings],
        "properties": {"summary": report.summary},
    }
    document = {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}
    return dumps(document, indent=2) + "\n"


def _rules(report: Report) -> list[RuleInfo]:
    """The report's rules, plus a stand-in for any rule a finding names but the report does not list."""
    rules = list(report.rules)
    known = {rule.id for rule in rules}
    extra: dict[str, RuleInfo] = {}
    for f in report.findings:
        if f.rule not in known and f.rule not in extra:
            extra[f.rule] = RuleInfo(f.rule, f.title, f.severity, f.frameworks, f.title, "")
    return rules + [extra[rule_id] for rule_id in sorted(extra)]


def camel_case(rule_id: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", rule_id) if part)


def _rule(rule: RuleInfo) -> dict[str, Any]:
    remediation = rule.remediation or rule.description or rule.title
    return {
        "id": rule.id,
        "name": camel_case(rule.id),
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": rule.description or rule.title},
        "help": {"text": remediation, "markdown": remediation},
        "defaultConfiguration": {"level": LEVELS.get(rule.severity, "warning")},
        "properties": {
            "tags": [*rule.frameworks, "security"],
            "security-severity": SECURITY_SEVERITY.get(rule.severity, "5.5"),
        },
    }


def _invocation(report: Report) -> dict[str, Any]:
    invocation: dict[str, Any] = {"executionSuccessful": True}
    if report.generated_at:
        invocation["endTimeUtc"] = report.generated_at
    return invocation


def artifact_location(path: str) -> dict[str, str]:
    """A SARIF artifactLocation for an evidence path as it was ingested.

    Absolute paths become ``file:`` URIs; relative ones stay relative to ``%SRCROOT%`` (the checkout
    GitHub resolves them against). Either way the result is a percent-encoded URI reference.
    """
    if _WINDOWS_ABSOLUTE.match(path):
        return {"uri": PureWindowsPath(path).as_uri()}
    if path.startswith("/"):
        return {"uri": PurePosixPath(path).as_uri()}
    relative = PurePosixPath(path.replace("\\", "/")).as_posix()
    return {"uri": quote(relative, safe="/", errors="replace"), "uriBaseId": SRCROOT}


def message_text(text: str) -> str:
    """A SARIF plain-text message: ``[text](target)`` there is an embedded link (SARIF 3.11.6), so
    literal brackets and backslashes are backslash-escaped; control characters are spelled out."""
    return re.sub(r"([\\\[\]])", r"\\\1", visible(text))


def _logical_locations(f: Finding) -> list[dict[str, str]]:
    locations = []
    if f.agent_id:
        locations.append({"name": f.agent_id, "fullyQualifiedName": f"agent/{f.agent_id}", "kind": "object"})
    if f.task_id:
        locations.append({"name": f.task_id, "fullyQualifiedName": f"task/{f.task_id}", "kind": "object"})
    action_id = f"{f.source}:{f.event_id}"
    locations.append(
        {"name": f.action or action_id, "fullyQualifiedName": f"action/{action_id}", "kind": "object"}
    )
    return locations


def _result(f: Finding, rule_index: int) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ruleId": f.rule,
        "ruleIndex": rule_index,
        "level": LEVELS.get(f.severity, "warning"),
        "message": {"text": message_text(f.message or f.title)},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": artifact_location(f.evidence.file),
                    "region": {"startLine": max(1, f.evidence.line)},
                },
                "logicalLocations": _logical_locations(f),
            }
        ],
        "partialFingerprints": {"primaryLocationLineHash": f.fingerprint},
        "properties": {
            "severity": f.severity,
            "source": f.source,
            "event_id": f.event_id,
            "occurred_at": f.occurred_at,
            "credential_id": f.credential_id,
            "task_id": f.task_id,
            "actor_id": f.actor_id,
            "evidence_sha256": f.evidence.sha256,
            "record_index": f.evidence.record_index,
            "tags": list(f.frameworks),
        },
    }
    if f.waived:
        justification = "waived"
        if f.waiver is not None:
            w = f.waiver
            justification = visible(f"{w.reason} (owner: {w.owner}, expires: {w.expires})")
        result["suppressions"] = [{"kind": "external", "status": "accepted", "justification": justification}]
    if f.baseline in ("new", "unchanged"):
        result["baselineState"] = f.baseline
    return result
