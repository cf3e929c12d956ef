"""Plain values passed between the stages: rules, findings, chain views and the report.

Report writers (``nhiaudit/reports/<fmt>.py``) receive a :class:`Report` and return text; they never
touch the store. Every string that came from a log is untrusted: writers escape it for their medium.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

SEVERITIES = ("info", "low", "medium", "high", "critical")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
FAIL_ON = (*SEVERITIES, "none")  # what --fail-on takes
TIERS = ("low", "medium", "high", "critical")
TIER_RANK = {name: rank for rank, name in enumerate(TIERS)}
DEFAULT_MEMORY_LIMIT = "1GB"  # DuckDB's cap while ingesting and correlating (--memory-limit)

# --compliance FRAMEWORK: which rule tags are that framework's controls (DESIGN §6).
FRAMEWORKS: dict[str, tuple[str, re.Pattern[str]]] = {
    "owasp-nhi": ("OWASP Non-Human Identities Top 10 (2025)", re.compile(r"^NHI\d+:2025$")),
    "owasp-agentic": ("OWASP Top 10 for Agentic Applications", re.compile(r"^ASI\d+$")),
    "owasp-agentic-threats": ("OWASP Agentic AI threats", re.compile(r"^T\d+$")),
    "nist-ai-rmf": ("NIST AI RMF 1.0", re.compile(r"^AI-RMF:")),
    "nist-800-53": ("NIST SP 800-53 rev. 5", re.compile(r"^800-53:")),
    "maestro": ("CSA MAESTRO", re.compile(r"^MAESTRO:")),
}


@dataclass(frozen=True)
class RuleInfo:
    """The metadata header of one rule file (``queries/rules/<id>.sql``)."""

    id: str
    title: str
    severity: str
    frameworks: tuple[str, ...]
    description: str
    remediation: str
    path: str = ""


@dataclass(frozen=True)
class Evidence:
    """Where a record lives: the evidence file and the record's position in it."""

    source: str
    event_id: str
    file: str  # path as it was ingested
    sha256: str
    record_index: int  # 0-based position of the record in the file (line - 1 for line formats)
    line: int  # 1-based line where the record starts (1 for a one-line document)


@dataclass(frozen=True)
class Waiver:
    rule: str
    match: dict[str, str]
    reason: str
    owner: str
    expires: str  # ISO date, e.g. "2027-01-31"
    expired: bool = False


@dataclass(frozen=True)
class Finding:
    """One rule firing on one audited action."""

    rule: str
    severity: str
    title: str
    message: str
    source: str
    event_id: str
    occurred_at: str  # ISO-8601 UTC, "2026-11-02T09:12:00Z"
    actor_id: str | None
    credential_id: str | None
    task_id: str | None
    agent_id: str | None
    action: str | None
    resource: str | None
    evidence: Evidence
    frameworks: tuple[str, ...]
    fingerprint: str  # stable across runs: hash of rule, source, event_id
    waived: bool = False
    waiver: Waiver | None = None
    baseline: str | None = None  # "new" | "unchanged" when a baseline was given


@dataclass(frozen=True)
class Link:
    """One link of an authorization chain, as ``trace`` and the HTML report show it."""

    kind: str  # action | credential | issuance | parent | task | approval | authority
    id: str | None
    status: str  # found | missing | conflict
    label: str  # one-line human summary, built from log fields (untrusted)
    evidence: Evidence | None
    details: dict[str, Any] = field(default_factory=dict)
    depth: int = 0  # nesting for parents (1 = first parent, ...)


@dataclass(frozen=True)
class AuditedAction:
    """One audited action with its chain and verdict (approved | unapproved | unknown)."""

    source: str
    event_id: str
    occurred_at: str
    actor_id: str | None
    action: str | None
    resource: str | None
    tier: str
    verdict: str
    links: tuple[Link, ...]
    findings: tuple[Finding, ...] = ()


class ListedActions(tuple):
    """Audited actions held in memory (a tuple), with the questions writers ask of every action set.

    A report over a store does not hold its actions: :class:`nhiaudit.report.StoredActions` streams
    them from DuckDB in batches and answers the same questions in SQL. Writers only iterate the set
    (once per pass), take its ``len``, and use :meth:`heads` when the links are not needed."""

    def heads(self) -> Iterator[AuditedAction]:
        """Each action without needing its links (``source``, ``event_id``, ``occurred_at``,
        ``actor_id``, ``action``, ``resource``, ``verdict``), in report order."""
        return iter(self)

    def verdicts(self) -> dict[str, int]:
        """How many actions have each verdict (approved, unapproved, unknown)."""
        return {v: sum(1 for a in self if a.verdict == v) for v in VERDICTS}

    def first(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], AuditedAction]:
        """The first action (in report order) of each (source, event_id) of ``keys`` that has one,
        links and findings included."""
        wanted = set(keys)
        found: dict[tuple[str, str], AuditedAction] = {}
        for a in self:
            if (a.source, a.event_id) in wanted:
                found.setdefault((a.source, a.event_id), a)
        return found


VERDICTS = ("approved", "unapproved", "unknown")


@dataclass(frozen=True)
class Trace:
    """What ``nhiaudit trace`` shows of one event: its chain when it is an audited action, else why
    it is not one; and the findings of the rules on it."""

    event: dict[str, Any]  # source, event_id, occurred_at, category, actor_id, action, resource, …
    action: AuditedAction | None  # None: not an audited action
    not_audited_because: str | None = None
    findings: tuple[Finding, ...] = ()


@dataclass(frozen=True)
class Report:
    """Everything one ``nhiaudit report`` run produces; the input of every writer."""

    generated_at: str  # the only wall-clock value in any output
    tool_version: str
    policy_path: str | None
    fail_on: str
    rules: tuple[RuleInfo, ...]
    findings: tuple[Finding, ...]  # sorted: severity desc, occurred_at, source, event_id, rule
    actions: Any  # ListedActions or report.StoredActions, sorted by occurred_at, source, event_id
    expired_waivers: tuple[Waiver, ...] = ()
    fixed: tuple[dict[str, Any], ...] = ()  # baseline findings no longer present (JSON objects)
    evidence_files: tuple[dict[str, Any], ...] = ()  # path, sha256, source, records
    baseline_path: str | None = None

    def __post_init__(self) -> None:
        if not hasattr(self.actions, "heads"):  # a tuple or list of AuditedAction
            object.__setattr__(self, "actions", ListedActions(self.actions))

    @cached_property
    def summary(self) -> dict[str, Any]:
        """Counts for every writer: by severity, by rule, waived, new, failing (computed once: at a
        million actions the verdict counts are a query, not a pass in Python)."""
        by_severity = {s: 0 for s in reversed(SEVERITIES)}
        by_rule: dict[str, int] = {}
        waived = new = failing = 0
        # --fail-on none: report everything, fail on nothing.
        threshold = SEVERITY_RANK.get(self.fail_on, len(SEVERITIES))
        for f in self.findings:
            if f.waived:
                waived += 1
                continue
            by_severity[f.severity] += 1
            by_rule[f.rule] = by_rule.get(f.rule, 0) + 1
            if f.baseline == "new":
                new += 1
            counts = self.baseline_path is None or f.baseline == "new"
            if counts and SEVERITY_RANK[f.severity] >= threshold:
                failing += 1
        return {
            "actions_audited": len(self.actions),
            "findings": len(self.findings) - waived,
            "waived": waived,
            "expired_waivers": len(self.expired_waivers),
            "by_severity": by_severity,
            "by_rule": dict(sorted(by_rule.items())),
            "new": new if self.baseline_path else None,
            "fixed": len(self.fixed) if self.baseline_path else None,
            "fail_on": self.fail_on,
            "failing": failing,
            "verdicts": self.actions.verdicts(),
        }
