"""One audit run as a value: evaluate the rules, apply the baseline, assemble the Report.

``audit`` is the pipeline of ``nhiaudit report`` once a session has current derived tables:
evaluate -> baseline -> Report. Writers then render the same Report to every requested format.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import duckdb

from nhiaudit import __version__, trace
from nhiaudit.baseline import apply_baseline
from nhiaudit.errors import NhiauditError, did_you_mean
from nhiaudit.model import (
    FAIL_ON,
    FRAMEWORKS,
    SEVERITIES,
    SEVERITY_RANK,
    VERDICTS,
    AuditedAction,
    Finding,
    Report,
    RuleInfo,
)
from nhiaudit.policy import Policy


def audit(
    con: duckdb.DuckDBPyConnection,
    policy: Policy,
    rules: Sequence[tuple[RuleInfo, str]],
    findings: Sequence[Finding],
    fail_on: str = "high",
    baseline_path: Path | None = None,
    generated_at: datetime | None = None,
) -> Report:
    """The report of the ``findings`` of ``rules`` over a connection whose derived tables are current
    for ``policy`` (an :class:`nhiaudit.session.AuditSession` guarantees it: call ``session.report()``)."""
    fail_on = fail_on.strip().lower()
    if fail_on not in FAIL_ON:
        raise NhiauditError(
            f"--fail-on: unknown severity '{fail_on}'.{did_you_mean(fail_on, FAIL_ON)} Use one of {', '.join(FAIL_ON)}."
        )
    unknown = sorted({w.rule for w in policy.waivers} - {info.id for info, _ in rules})
    if unknown:
        raise NhiauditError(
            f"{policy.path or 'policy'}: waiver for unknown rule(s) {', '.join(unknown)}. "
            "Use a rule id from `nhiaudit rules`."
        )
    findings = list(findings)
    fixed: tuple = ()
    if baseline_path is not None:
        try:
            text = baseline_path.read_text(encoding="utf-8")
        except OSError as exc:
            raise NhiauditError(f"{baseline_path}: cannot read the baseline ({exc.strerror}).") from exc
        marked, fixed = apply_baseline(findings, text, where=str(baseline_path))
        findings = list(marked)
    actions = StoredActions(con, findings)
    files = con.execute(
        "SELECT path, sha256, source, records_read, records_loaded, records_rejected FROM evidence_files "
        "ORDER BY path, sha256"
    ).fetchall()
    stamp = generated_at or datetime.now(timezone.utc)
    return Report(
        generated_at=stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        tool_version=__version__,
        policy_path=str(policy.path) if policy.path else None,
        fail_on=fail_on,
        rules=tuple(sorted((info for info, _ in rules), key=lambda i: i.id)),
        findings=tuple(findings),
        actions=actions,
        expired_waivers=tuple(w for w in policy.waivers if w.expired),
        fixed=fixed,
        evidence_files=tuple(
            dict(path=p, sha256=s, source=src, records_read=r, records_loaded=ld, records_rejected=rj)
            for p, s, src, r, ld, rj in files
        ),
        baseline_path=str(baseline_path) if baseline_path else None,
    )


class StoredActions:
    """The audited actions of a store, never all in memory: each pass over them streams the chains
    from DuckDB in batches (:func:`nhiaudit.trace.iter_actions`), each action carrying its findings;
    counts and the link-less :meth:`heads` are queries. The connection must stay open while writers
    run (to iterate, not to count). The same questions of actions held in memory:
    :class:`nhiaudit.model.ListedActions`."""

    def __init__(self, con: duckdb.DuckDBPyConnection, findings: Sequence[Finding]) -> None:
        self._con = con
        grouped: dict[tuple[str, str], list[Finding]] = {}
        for f in findings:
            grouped.setdefault((f.source, f.event_id), []).append(f)
        self._findings: dict[tuple[str, str], tuple[Finding, ...]] = {k: tuple(v) for k, v in grouped.items()}
        # Counted now, so len() and the summary still answer once the session is closed.
        self._verdicts: dict[str | None, int] = dict(
            con.execute("SELECT verdict, count(*) FROM chains GROUP BY verdict").fetchall()
        )

    def _with_findings(self, a: AuditedAction) -> AuditedAction:
        found = self._findings.get((a.source, a.event_id))
        return replace(a, findings=found) if found else a

    def __iter__(self) -> Iterator[AuditedAction]:
        return (self._with_findings(a) for a in trace.iter_actions(self._con))

    def __len__(self) -> int:
        return sum(self._verdicts.values())

    def heads(self) -> Iterator[ActionHead]:
        """Each action's identity and verdict, without its links, in report order, in batches."""
        cursor = self._con.cursor()
        try:
            relation = cursor.sql(f"SELECT {', '.join(ActionHead._fields)} FROM chains ORDER BY {trace.ACTION_ORDER}")
            for batch in relation.to_arrow_reader(5_000):  # streamed, as trace.iter_actions
                for r in batch.to_pylist():
                    yield ActionHead(**{**r, "occurred_at": trace.iso(r["occurred_at"]) or ""})
        finally:
            cursor.close()

    def verdicts(self) -> dict[str, int]:
        return {v: self._verdicts.get(v, 0) for v in VERDICTS}

    def first(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], AuditedAction]:
        found: dict[tuple[str, str], AuditedAction] = {}
        for a in trace.iter_actions(self._con, list(keys)):  # one query for all of them
            found.setdefault((a.source, a.event_id), self._with_findings(a))
        return found


class ActionHead(NamedTuple):
    """An audited action without its links (what :meth:`StoredActions.heads` yields)."""

    source: str
    event_id: str
    occurred_at: str
    actor_id: str | None
    action: str | None
    resource: str | None
    verdict: str


def select(
    findings: Sequence[Finding],
    rules: Sequence[tuple[RuleInfo, str]],
    severities: Sequence[str] = (),
    only_rules: Sequence[str] = (),
    exclude_rules: Sequence[str] = (),
) -> list[Finding]:
    """The findings a report keeps: of the given severities and rules (all when none is given),
    minus the excluded rules. Severity and rule ids are checked (any case for severities)."""
    known = {info.id for info, _ in rules}
    wanted = {s.strip().lower() for s in severities}
    problems = [
        f"--severity: unknown severity '{s}'.{did_you_mean(s, SEVERITIES)} Use one of {', '.join(SEVERITIES)}."
        for s in sorted(wanted - set(SEVERITIES))
    ]
    problems += [
        f"{flag}: unknown rule '{r}'.{did_you_mean(r, known)} `nhiaudit rules` lists them."
        for flag, ids in (("--rule", only_rules), ("--exclude-rule", exclude_rules))
        for r in ids
        if r not in known
    ]
    if problems:
        raise NhiauditError("\n".join(problems))
    return [
        f
        for f in findings
        if (not wanted or f.severity in wanted)
        and (not only_rules or f.rule in only_rules)
        and f.rule not in exclude_rules
    ]


def compliance(report: Report, framework: str) -> list[dict[str, Any]]:
    """Pass/fail per control of ``framework``: a control fails when a finding that counts toward
    ``--fail-on`` (unwaived, at or above it, new with a baseline) comes from a rule tagged with it.
    Controls are those the rules are tagged with, in tag order; each lists its rules and counts."""
    name = framework.strip().lower()
    if name not in FRAMEWORKS:
        raise NhiauditError(
            f"--compliance: unknown framework '{framework}'.{did_you_mean(name, FRAMEWORKS)} "
            f"Use one of {', '.join(FRAMEWORKS)}."
        )
    pattern = FRAMEWORKS[name][1]
    threshold = SEVERITY_RANK.get(report.fail_on, len(SEVERITIES))
    counted: dict[str, int] = {}
    found: dict[str, int] = {}
    for f in report.findings:
        if f.waived:
            continue
        found[f.rule] = found.get(f.rule, 0) + 1
        if SEVERITY_RANK[f.severity] >= threshold and (report.baseline_path is None or f.baseline == "new"):
            counted[f.rule] = counted.get(f.rule, 0) + 1
    controls: dict[str, list[str]] = {}
    for info in report.rules:
        for tag in info.frameworks:
            if pattern.search(tag):
                controls.setdefault(tag, []).append(info.id)
    return [
        {
            "control": control,
            "status": "fail" if any(counted.get(r) for r in rules) else "pass",
            "rules": sorted(rules),
            "findings": sum(found.get(r, 0) for r in rules),
            "failing": sum(counted.get(r, 0) for r in rules),
        }
        for control, rules in sorted(controls.items(), key=lambda kv: _natural(kv[0]))
    ]


def compliance_result(report: Report, framework: str) -> dict[str, Any]:
    """What every writer shows for ``--compliance``: the framework's key and title,
    :func:`compliance`'s controls and how many of them fail."""
    controls = compliance(report, framework)
    name = framework.strip().lower()
    failed = sum(c["status"] == "fail" for c in controls)
    return {"framework": name, "title": FRAMEWORKS[name][0], "controls": controls, "failed": failed}


def _natural(tag: str) -> list[Any]:
    """ASI2 before ASI10: digits compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", tag)]


def failing(report: Report) -> bool:
    """True when an unwaived finding (a new one, with a baseline) is at or above ``fail_on``."""
    return report.summary["failing"] > 0


def worst_actions(report: Report, limit: int = 10) -> list[tuple[str, str, str, int]]:
    """(source:event_id, action, worst severity, findings) of the actions with the worst findings."""
    scored: dict[str, list] = {}
    for f in report.findings:
        if f.waived:
            continue
        key = f"{f.source}:{f.event_id}"
        entry = scored.setdefault(key, [f.action or "", f.severity, 0])
        entry[2] += 1
        if SEVERITY_RANK[f.severity] > SEVERITY_RANK[entry[1]]:
            entry[1] = f.severity
    ranked = sorted(scored.items(), key=lambda kv: (-SEVERITY_RANK[kv[1][1]], -kv[1][2], kv[0]))
    return [(key, action, severity, count) for key, (action, severity, count) in ranked[:limit]]
