"""Evaluate rules over the derived tables: every rule's rows become findings.

A rule returns ``source, event_id, message``; the rest of a finding (severity, actor, credential,
task, agent, evidence pointer, waiver) is added here in one SQL statement for all rules, so rule
files stay short. A live waiver of the policy (the first, in policy order, whose every ``match``
glob matches that field of the finding, a missing field being "") marks the finding waived; an
expired waiver does not.

Correlation stores the findings of the built-in rules and the policy's ``[rules] dirs`` in the
``findings`` table (:func:`materialize`), queryable like any table; ``report`` and ``trace`` read
them back (:func:`stored`). Extra rule folders given on the command line are evaluated live
(:func:`evaluate`), by the same SQL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import duckdb

from nhiaudit.errors import RuleError
from nhiaudit.model import SEVERITY_RANK, Evidence, Finding, RuleInfo
from nhiaudit.policy import Policy
from nhiaudit.trace import iso

# The findings of `hits` (one row per rule hit) with their context. The waiver fields are matched by
# the policy's glob_regex; `found` is materialized so that its row numbers are the same in `cover`.
_FINDINGS_SQL = """
WITH hits AS ({hits}),
ev AS (
    SELECT * FROM event_evidence e
    WHERE (e.source, e.event_id) IN (SELECT (source, event_id) FROM hits){only_events}
),
found AS MATERIALIZED (
    SELECT row_number() OVER () AS n, h.rule_id AS rule, ri.severity, ri.title,
           coalesce(nullif(h.message, ''), ri.title) AS message, h.source, h.event_id,
           coalesce(c.occurred_at, ev.occurred_at) AS occurred_at, coalesce(c.actor_id, ev.actor_id) AS actor_id,
           coalesce(h.credential_id, c.credential_id, ev.credential_id) AS credential_id,
           coalesce(h.task_id, c.task_id, ev.task_id) AS task_id, c.agent_id,
           coalesce(c.action, ev.action) AS action, coalesce(c.resource, ev.resource) AS resource,
           ev.path, ev.file_sha256, ev.record_index, ev.line, ri.frameworks,
           substr(sha256(h.rule_id || chr(31) || h.source || chr(31) || h.event_id), 1, 32) AS fingerprint
    FROM hits h
    JOIN rule_info ri ON ri.rule_id = h.rule_id
    LEFT JOIN (SELECT * FROM chains{only_chains}) c ON c.source = h.source AND c.event_id = h.event_id
    LEFT JOIN ev ON ev.source = h.source AND ev.event_id = h.event_id
),
cover AS (
    SELECT f.n, min(w.position) AS position
    FROM found f JOIN policy_waivers w ON w.rule = f.rule AND NOT w.expired
    WHERE NOT EXISTS (
        SELECT 1 FROM policy_waiver_match m
        WHERE m.position = w.position AND NOT regexp_full_match(coalesce(CASE m.field
            WHEN 'actor_id' THEN f.actor_id WHEN 'credential_id' THEN f.credential_id
            WHEN 'task_id' THEN f.task_id WHEN 'agent_id' THEN f.agent_id WHEN 'action' THEN f.action
            WHEN 'resource' THEN f.resource WHEN 'source' THEN f.source WHEN 'event_id' THEN f.event_id
            END, ''), m.regex))
    GROUP BY f.n
)
SELECT f.* EXCLUDE (n), w.position IS NOT NULL AS waived, w.position AS waiver,
       w.reason AS waiver_reason, w.owner AS waiver_owner, w.expires AS waiver_expires
FROM found f
LEFT JOIN cover USING (n)
LEFT JOIN policy_waivers w ON w.position = cover.position
"""

# The hits of no rule (every rule disabled), typed as _hits_sql's.
_NO_HITS = (
    "SELECT NULL::VARCHAR AS rule_id, NULL::VARCHAR AS source, NULL::VARCHAR AS event_id, NULL::VARCHAR AS message, "
    "NULL::VARCHAR AS credential_id, NULL::VARCHAR AS task_id WHERE false"
)
_RULE_INFO = (
    "CREATE OR REPLACE TEMP TABLE rule_info (rule_id VARCHAR, severity VARCHAR, title VARCHAR, frameworks VARCHAR[])"
)


def fingerprint(rule: str, source: str, event_id: str) -> str:
    """Stable across runs and machines: the same rule on the same event is the same finding (the
    ``findings`` table computes the same value in SQL)."""
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


def _findings_sql(
    con: duckdb.DuckDBPyConnection,
    policy: Policy,
    rules: Sequence[tuple[RuleInfo, str]],
    only: tuple[str, str] | None,
) -> tuple[str, dict[str, Any]]:
    """The statement giving the findings of the enabled ``rules``, with its parameters; the rules'
    metadata is written to the ``rule_info`` TEMP table first."""
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
    con.execute(_RULE_INFO)
    if active:
        con.executemany(
            "INSERT INTO rule_info VALUES (?, ?, ?, ?)",
            [(info.id, info.severity, info.title, list(info.frameworks)) for info, _ in active],
        )
    params = {"only_source": only[0], "only_event_id": only[1]} if only else {}
    # With one action, every scan (rules, chains, events) is filtered to it up front.
    one = " AND {t}source = $only_source AND {t}event_id = $only_event_id" if only else ""
    sql = _FINDINGS_SQL.format(
        hits=" UNION ALL ".join(parts) or _NO_HITS,
        only_events=one.format(t="e."),
        only_chains=one.format(t="").replace(" AND ", " WHERE ", 1),
    )
    return sql, params


def materialize(con: duckdb.DuckDBPyConnection, policy: Policy, rules: Sequence[tuple[RuleInfo, str]]) -> None:
    """(Re)build the ``findings`` table from ``rules`` (correlation calls it, in its transaction)."""
    sql, params = _findings_sql(con, policy, rules, None)
    con.execute(f"CREATE OR REPLACE TABLE findings AS {sql}", params)


def evaluate(
    con: duckdb.DuckDBPyConnection,
    policy: Policy,
    rules: Sequence[tuple[RuleInfo, str]],
    only: tuple[str, str] | None = None,
) -> list[Finding]:
    """Run the enabled ``rules`` now; findings sorted most severe first, then by time and id.

    ``only`` = (source, event_id) evaluates the rules for one action: the filter is pushed into
    each rule's scan of ``chains`` instead of evaluating the whole store.
    """
    return _findings(con.execute(*_findings_sql(con, policy, rules, only)), policy)


def stored(con: duckdb.DuckDBPyConnection, policy: Policy, only: tuple[str, str] | None = None) -> list[Finding]:
    """The findings correlation stored (of all actions, or of ``only``), sorted as :func:`evaluate`'s."""
    if only is None:
        return _findings(con.execute("SELECT * FROM findings"), policy)
    # By event id alone, the source picked after: DuckDB answers a one-column equality from the index.
    found = _findings(con.execute("SELECT * FROM findings WHERE event_id = ?", [only[1]]), policy)
    return [f for f in found if f.source == only[0]]


def _findings(cursor: duckdb.DuckDBPyConnection, policy: Policy) -> list[Finding]:
    """Findings from a cursor, fetched in batches: no list of row dicts beside the findings."""
    columns = [d[0] for d in cursor.description]
    found: list[Finding] = []
    while batch := cursor.fetchmany(5_000):
        found.extend(_finding(dict(zip(columns, r, strict=True)), policy) for r in batch)
    return sort_findings(found)


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


def _finding(r: dict[str, Any], policy: Policy) -> Finding:
    occurred_at = r["occurred_at"]
    return Finding(
        rule=r["rule"],
        severity=r["severity"],
        title=r["title"],
        message=r["message"],
        source=r["source"],
        event_id=r["event_id"],
        occurred_at=iso(occurred_at) if isinstance(occurred_at, datetime) else (occurred_at or ""),
        actor_id=r["actor_id"],
        credential_id=r["credential_id"],
        task_id=r["task_id"],
        agent_id=r["agent_id"],
        action=r["action"],
        resource=r["resource"],
        evidence=Evidence(
            r["source"],
            r["event_id"],
            r["path"] or "",
            r["file_sha256"] or "",
            int(r["record_index"] or 0),
            int(r["line"] or 1),
        ),
        frameworks=tuple(r["frameworks"]),
        fingerprint=r["fingerprint"],
        waived=bool(r["waived"]),
        waiver=policy.waivers[r["waiver"]] if r["waiver"] is not None else None,
    )
