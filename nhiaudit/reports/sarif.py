"""SARIF 2.1.0 for GitHub code scanning and other SARIF viewers.

Each finding is a result located at its evidence record (file and line) with logical locations for
the agent, the task and the action. GitHub reads ``properties["security-severity"]`` on the rule
(a number as a string, 0.0-10.0) to show critical/high/medium/low, ``partialFingerprints`` to track
an alert across runs, and ``suppressions`` to show a waived finding as dismissed.

GitHub code scanning's documented limits shape the run: at most 25,000 results per run (only the top
5,000 are shown), 1,000 locations per result (100 shown), 20 tags per rule (10 shown), 10 MB of
gzip per upload. Beyond ``max_results`` (default 5,000, what GitHub shows) findings are aggregated —
one result per rule and credential (else task, else actor) with the count and up to 100 related
locations — and the run's ``properties.aggregation`` says so. Evidence files are located relative to
a root (``%SRCROOT%``: ``source_root``, else the working folder when every file is under it, else
their common folder), never as absolute ``file:`` URIs or with ``..``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any
from urllib.parse import quote

from nhiaudit.model import Finding, Report, RuleInfo
from nhiaudit.reports._common import visible
from nhiaudit.reports.json_ import TOOL_NAME, dumps_typed

SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
INFORMATION_URI = "https://github.com/nhiaudit/nhiaudit"
SRCROOT = "%SRCROOT%"
OUTSIDE = "NHIAUDIT_EVIDENCE"  # evidence outside the source root: relative to its own common folder

MAX_RESULTS = 5_000  # GitHub stores 25,000 results per run but shows only the top 5,000
HARD_MAX_RESULTS = 25_000
RELATED_LOCATIONS = 100  # GitHub shows 100 locations per result (accepts 1,000)
RULE_TAGS = 10  # GitHub keeps 10 tags per rule (accepts 20)

LEVELS = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
# GitHub maps >= 9.0 to critical, >= 7.0 high, >= 4.0 medium, > 0 low.
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0", "info": "0.0"}

_WINDOWS_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")


def render(
    report: Report,
    *,
    max_results: int = MAX_RESULTS,
    category: str = TOOL_NAME,
    source_root: str | None = None,
    cwd: str | None = None,
    compliance: dict[str, Any] | None = None,
) -> str:
    """The SARIF document of ``report``. ``cwd`` is the folder relative evidence paths are relative
    to (the CLI passes the working folder); ``category`` becomes ``automationDetails.id``;
    ``compliance`` (``report --compliance``) goes into the run's ``properties.compliance``: the
    framework and each control's status with its rules."""
    if not 1 <= max_results <= HARD_MAX_RESULTS:
        raise ValueError(f"max_results must be 1..{HARD_MAX_RESULTS}")
    rules = _rules(report)
    index = {rule.id: i for i, rule in enumerate(rules)}
    where = Locator([f.evidence.file for f in report.findings], source_root, cwd)
    results, aggregation = _results(report.findings, index, where, max_results)
    properties: dict[str, Any] = {"summary": report.summary}
    if aggregation:
        properties["aggregation"] = aggregation
    if compliance is not None:
        properties["compliance"] = compliance
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": TOOL_NAME,
                "version": report.tool_version,
                "informationUri": INFORMATION_URI,
                "rules": [_rule(rule) for rule in rules],
            }
        },
        "automationDetails": {"id": category.rstrip("/") + "/"},
        "invocations": [_invocation(report)],
        "results": results,
        "properties": properties,
    }
    if where.outside:
        run["originalUriBaseIds"] = {
            OUTSIDE: {
                "description": {"text": "Evidence files outside the source root, relative to their common folder."}
            }
        }
    document = {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}
    return dumps_typed(document) + "\n"


def aggregation_note(report: Report, max_results: int = MAX_RESULTS) -> str | None:
    """What the terminal says when the SARIF run aggregates (None when it does not)."""
    if len(report.findings) <= max_results:
        return None
    _, aggregation = _results(report.findings, {}, Locator([], None, None), max_results, count_only=True)
    return (
        f"SARIF: {len(report.findings):,} findings aggregated into {aggregation['results']:,} results "
        f"(one per {aggregation['grouped_by']}; GitHub code scanning shows at most {MAX_RESULTS:,} per run)"
    )


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
    markdown = (
        f"**{_md(rule.title)}** ({rule.severity})\n\n{_md(rule.description or rule.title)}\n\n"
        f"**Remediation.** {_md(remediation)}\n\n"
        + (f"Frameworks: {', '.join(_md(f) for f in rule.frameworks)}\n\n" if rule.frameworks else "")
        + f"Trace an action with `nhiaudit trace SOURCE:EVENT_ID`. [Rule reference]({help_uri(rule.id)})"
    )
    return {
        "id": rule.id,
        "name": camel_case(rule.id),
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": rule.description or rule.title},
        "helpUri": help_uri(rule.id),
        "help": {"text": remediation, "markdown": markdown},
        "defaultConfiguration": {"level": LEVELS.get(rule.severity, "warning")},
        "properties": {
            "tags": ["security", *rule.frameworks][:RULE_TAGS],
            "security-severity": SECURITY_SEVERITY.get(rule.severity, "5.5"),
        },
    }


def help_uri(rule_id: str) -> str:
    return f"{INFORMATION_URI}/blob/main/docs/rules.md#{rule_id}"


def _md(text: str) -> str:
    """Rule metadata is the project's (or the user's own rule files') Markdown: kept as written, with
    control characters spelled out."""
    return visible(text)


def _invocation(report: Report) -> dict[str, Any]:
    invocation: dict[str, Any] = {"executionSuccessful": True}
    if report.generated_at:
        invocation["endTimeUtc"] = report.generated_at
    return invocation


@dataclass
class Locator:
    """Where each evidence path is, as a SARIF artifactLocation relative to the source root."""

    paths: Sequence[str]
    source_root: str | None
    cwd: str | None

    def __post_init__(self) -> None:
        resolved = {p: _parts(p, self.cwd) for p in self.paths}
        if self.source_root is not None:
            root = _parts(self.source_root, self.cwd)
        elif self.cwd is not None and all(_under(parts, _parts(self.cwd, None)) for parts in resolved.values()):
            root = _parts(self.cwd, None)
        elif any(parts[:1] == ("",) for parts in resolved.values()):
            root = ("",)  # relative to a folder we do not know: as they were ingested
        else:
            root = _common(list(resolved.values()))
        outside = [parts for parts in resolved.values() if not _under(parts, root)]
        self._root, self._outside_root = root, _common(outside)
        self.outside = bool(outside)
        self._seen: dict[str, dict[str, str]] = {}

    def __call__(self, path: str) -> dict[str, str]:
        if path not in self._seen:
            self._seen[path] = self._locate(path)
        return dict(self._seen[path])

    def _locate(self, path: str) -> dict[str, str]:
        parts = _parts(path, self.cwd)
        if _under(parts, self._root):
            return {"uri": _uri(parts[len(self._root) :]), "uriBaseId": SRCROOT}
        return {"uri": _uri(parts[len(self._outside_root) :] or parts[-1:]), "uriBaseId": OUTSIDE}


def _parts(path: str, cwd: str | None) -> tuple[str, ...]:
    """The path as normalized parts: an absolute one starts with its anchor ('/', 'C:\\'); a relative
    one is joined to ``cwd`` when known, else starts with '' (relative to an unknown folder)."""
    if _WINDOWS_ABSOLUTE.match(path):
        win = PureWindowsPath(path)
        return (win.anchor.replace("\\", "/"), *win.parts[1:])
    posix = PurePosixPath(path.replace("\\", "/"))
    if posix.is_absolute():
        return _normal(posix.parts)
    if cwd is not None:
        return _normal(_parts(cwd, None) + posix.parts)
    return _normal(("", *posix.parts))


def _normal(parts: Sequence[str]) -> tuple[str, ...]:
    out: list[str] = []
    for part in parts:
        if part in (".", ""):
            if not out:
                out.append(part)
            continue
        if part == ".." and len(out) > 1:
            out.pop()
        elif part != "..":
            out.append(part)
    return tuple(out)


def _under(parts: tuple[str, ...], root: tuple[str, ...]) -> bool:
    return len(parts) > len(root) and parts[: len(root)] == root


def _common(all_parts: Sequence[tuple[str, ...]]) -> tuple[str, ...]:
    """The longest common folder of paths (a file's own folder when there is one path)."""
    if not all_parts:
        return ()
    first = min(all_parts)
    last = max(all_parts)
    n = 0
    while n < min(len(first), len(last)) - 1 and first[n] == last[n]:
        n += 1
    return first[:n]


def _uri(parts: Sequence[str]) -> str:
    return quote("/".join(parts), safe="/", errors="replace")


def artifact_location(path: str) -> dict[str, str]:
    """The artifactLocation of one path on its own (relative paths under ``%SRCROOT%``)."""
    return Locator([path], None, None)(path)


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
    locations.append({"name": f.action or action_id, "fullyQualifiedName": f"action/{action_id}", "kind": "object"})
    return locations


def _physical(f: Finding, where: Locator) -> dict[str, Any]:
    return {"artifactLocation": where(f.evidence.file), "region": {"startLine": max(1, f.evidence.line)}}


# Coarser and coarser groupings, tried in turn until the results fit: (name, key of a finding).
_GROUPINGS: tuple[tuple[str, Any], ...] = (
    (
        "rule × credential (else task, else actor)",
        lambda f: (
            (f.rule, f.waived, "credential", f.credential_id)
            if f.credential_id
            else (f.rule, f.waived, "task", f.task_id)
            if f.task_id
            else (f.rule, f.waived, "actor", f.actor_id or "")
        ),
    ),
    ("rule × agent (else actor)", lambda f: (f.rule, f.waived, "agent", f.agent_id or f.actor_id or "")),
    # The coarsest: one result per rule and waived state, so any max_results of at least twice the
    # number of rules holds (the CLI's minimum is 100; nhiaudit ships 14 rules).
    ("rule", lambda f: (f.rule, f.waived, "rule", f.rule)),
)


def _results(
    findings: Sequence[Finding], index: dict[str, int], where: Locator, max_results: int, count_only: bool = False
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """One result per finding, or — past ``max_results`` — one per group of the first grouping that
    fits, in report order (most severe first)."""
    if len(findings) <= max_results:
        return ([] if count_only else [_result(f, index[f.rule], where) for f in findings]), None
    for grouping, key in _GROUPINGS:
        groups: dict[tuple, list[Finding]] = {}
        for f in findings:
            groups.setdefault(key(f), []).append(f)
        grouped_by = grouping
        if len(groups) <= max_results:
            break
    aggregation = {"findings": len(findings), "results": len(groups), "grouped_by": grouped_by, "limit": max_results}
    if count_only:
        return [], aggregation
    return [_aggregate(k, g, index[k[0]], where) for k, g in groups.items()], aggregation


def _aggregate(key: tuple, group: list[Finding], rule_index: int, where: Locator) -> dict[str, Any]:
    rule, waived, kind, value = key
    first = group[0]
    text = (
        f"{len(group)} finding(s) of {rule} for {kind} {value or '(none)'}: {first.message or first.title} "
        f"(first at {first.occurred_at}; trace it with nhiaudit trace {first.source}:{first.event_id})"
    )
    result: dict[str, Any] = {
        "ruleId": rule,
        "ruleIndex": rule_index,
        "level": LEVELS.get(first.severity, "warning"),
        "message": {"text": message_text(text)},
        "locations": [{"physicalLocation": _physical(first, where), "logicalLocations": _logical_locations(first)}],
        "relatedLocations": [
            {
                "id": i,
                "physicalLocation": _physical(f, where),
                "message": {"text": message_text(f"{f.source}:{f.event_id} at {f.occurred_at}")},
            }
            for i, f in enumerate(group[:RELATED_LOCATIONS])
        ],
        "partialFingerprints": {
            "primaryLocationLineHash": hashlib.sha256(f"{rule}\x1f{kind}\x1f{value}".encode()).hexdigest()[:32]
        },
        "properties": {
            "severity": first.severity,
            "count": len(group),
            "grouped_by": {kind: value},
            "actions": [f"{f.source}:{f.event_id}" for f in group[:RELATED_LOCATIONS]],
            "tags": list(first.frameworks),
        },
    }
    if waived:
        result["suppressions"] = [{"kind": "external", "status": "accepted", "justification": "waived"}]
    states = {f.baseline for f in group}
    if "new" in states:
        result["baselineState"] = "new"
    elif "unchanged" in states:
        result["baselineState"] = "unchanged"
    return result


def _result(f: Finding, rule_index: int, where: Locator) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ruleId": f.rule,
        "ruleIndex": rule_index,
        "level": LEVELS.get(f.severity, "warning"),
        "message": {"text": message_text(f.message or f.title)},
        "locations": [{"physicalLocation": _physical(f, where), "logicalLocations": _logical_locations(f)}],
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
