"""Evaluate rules over the derived tables: every rule's rows become :class:`model.Finding` values.

A rule returns ``source, event_id, message``; the rest of a finding (actor, credential, task,
agent, evidence pointer) is read from ``chains`` and ``event_evidence`` here, once for all rules, so rule
files stay short. Waivers from the policy mark findings waived; an expired waiver does not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

import duckdb

from nhiaudit.errors import RuleError
from nhiaudit.model import SEVERITY_RANK, Evidence, Finding, RuleInfo, Waiver
from nhiaudit.policy import Policy, glob_matches
from nhiaudit.trace import iso

_CONTEXT_SQL = """
WITH hits AS ({hits}),
ev AS (
    SELECT * FROM event_evidence e
    WHERE (e.source, e.event_id) IN (SELECT (source, event_id) FROM hits){only_events}
)
SELECT h.rule_id, h.source, h.event_id, h.message,
       coalesce(c.occurred_at, ev.occurred_at), coalesce(c.actor_id, ev.actor_id),
       coalesce(h.credential_id, c.credential_id, ev.credential_id), coalesce(h.task_id, c.task_id, ev.task_id),
       c.agent_id, coalesce(c.action, ev.action), coalesce(c.resource, ev.resource),
       ev.path, ev.file_sha256, ev.record_index, ev.line
FROM hits h
LEFT JOIN (SELECT * FROM chains{only_chains}) c ON c.source = h.source AND c.event_id = h.event_id
LEFT JOIN ev ON ev.source = h.source AND ev.event_id = h.event_id
"""


def fingerprint(rule: str, source: str, event_id: str) -> str:
    """Stable across runs and machines: the same rule on the same event is the same finding."""
    return hashlib.sha256(f"{rule}\x1f{source}\x1f{event_id}".encode()).hexdigest()[:32]


def _hits_sql(rule_id: str, sql: str, columns: Sequence[str], only: bool = False) -> str:
    extra = ", ".join(
        f"{name}::VARCHAR AS {name}" if name in columns else f"NULL::VARCHAR AS {name}"
        for name in ("credential_id", "task_id")
    )
    quoted = rule_id.replace("'", "''")
    return (
        f"SELECT '{quoted}' AS rule_id, source::VARCHAR AS source, event_id::VARCHAR AS event_id, "
        f"message::VARCHAR AS message, {extra} FROM (\n{sql}\n) WHERE event_id IS NOT NULL"
        + (" AND source = $only_source AND event_id = $only_event_id" if only else "")
    )


def evaluate(
    con: duckdb.DuckDBPyConnection,
    policy: Policy,
    rules: Sequence[tuple[RuleInfo, str]],
    only: tuple[str, str] | None = None,
) -> list[Finding]:
    """Run every enabled rule; return findings sorted most severe first, then by time and id.

    ``only`` = (source, event_id) evaluates the rules for one action (``trace``): the filter is
    pushed into each rule's scan of ``chains`` instead of evaluating the whole store.
    """
    active = [(info, sql) for info, sql in rules if info.id not in policy.rules.disabled]
    parts = []
    problems = []
    for info, sql in active:
        try:
            columns = [d[0] for d in con.execute(f"SELECT * FROM (\n{sql}\n) LIMIT 0").description]
        except duckdb.Error as exc:
            problems.append(
                f"{info.path or info.id}: the rule's query fails: {str(exc).splitlines()[0]}. "
                "Run `nhiaudit rules --lint` for details."
            )
            continue
        parts.append(_hits_sql(info.id, sql, columns, only=only is not None))
    if problems:
        raise RuleError(problems)
    if not parts:
        return []
    params = {"only_source": only[0], "only_event_id": only[1]} if only else {}
    # With one action, every scan (rules, chains, events) is filtered to it up front.
    one = " AND {t}source = $only_source AND {t}event_id = $only_event_id" if only else ""
    sql = _CONTEXT_SQL.format(
        hits=" UNION ALL ".join(parts),
        only_events=one.format(t="e."),
        only_chains=one.format(t="").replace(" AND ", " WHERE ", 1),
    )
    rows = con.execute(sql, params).fetchall()
    by_id = {info.id: info for info, _ in active}
    findings = [_finding(by_id[r[0]], r) for r in rows]
    findings = _waive(con, findings, policy.waivers)
    return sort_findings(findings)


def sort_findings(findings: Sequence[Finding]) -> list[Finding]:
    """Most severe first, then time and id; the remaining fields break ties (a repeated event id
    gives one rule several rows), so the order never depends on DuckDB's row order."""
    return sorted(
        findings,
        key=lambda f: (
            -SEVERITY_RANK[f.severity],
            f.occurred_at,
            f.source,
            f.event_id,
            f.rule,
            f.message,
            *(v or "" for v in (f.actor_id, f.credential_id, f.task_id, f.agent_id, f.action, f.resource)),
            f.evidence.file,
            f.evidence.record_index,
        ),
    )


def _finding(info: RuleInfo, r: tuple) -> Finding:
    (
        rule_id,
        source,
        event_id,
        message,
        occurred_at,
        actor_id,
        credential_id,
        task_id,
        agent_id,
        action,
        resource,
        path,
        sha,
        record_index,
        line,
    ) = r
    return Finding(
        rule=rule_id,
        severity=info.severity,
        title=info.title,
        message=message or info.title,
        source=source,
        event_id=event_id,
        occurred_at=iso(occurred_at) if isinstance(occurred_at, datetime) else (occurred_at or ""),
        actor_id=actor_id,
        credential_id=credential_id,
        task_id=task_id,
        agent_id=agent_id,
        action=action,
        resource=resource,
        evidence=Evidence(source, event_id, path or "", sha or "", int(record_index or 0), int(line or 1)),
        frameworks=info.frameworks,
        fingerprint=fingerprint(rule_id, source, event_id),
    )


def _waive(con: duckdb.DuckDBPyConnection, findings: list[Finding], waivers: Sequence[Waiver]) -> list[Finding]:
    """Mark each finding that a live waiver of its rule covers: every glob of the waiver's match
    matches that field of the finding (a missing field is ""). The globs are matched in SQL, by the
    same ``glob_regex`` as policy and approval-scope globs, all pairs in one query."""
    from dataclasses import replace

    live = [w for w in waivers if not w.expired]

    def pairs(finding: Finding, waiver: Waiver) -> list[tuple[str, str]]:
        return [(glob, str(getattr(finding, key) or "")) for key, glob in waiver.match.items()]

    hits = glob_matches({p for f in findings for w in live if w.rule == f.rule for p in pairs(f, w)}, con)
    out = []
    for finding in findings:
        waiver = next((w for w in live if w.rule == finding.rule and hits.issuperset(pairs(finding, w))), None)
        out.append(finding if waiver is None else replace(finding, waived=True, waiver=waiver))
    return out
