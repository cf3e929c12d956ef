"""Correlation: rebuild the derived tables from ``events`` and the policy.

The SQL lives in ``queries/correlate/NN_*.sql`` and runs in file-name order; each file reads the
tables the earlier ones built (DESIGN §3). Derived tables are stale when events were ingested, or
the policy changed, since they were built. Callers do not decide that themselves: they open an
:func:`nhiaudit.session.open_audit` session, which checks once and rebuilds only then.
"""

from __future__ import annotations

import hashlib
import time
from functools import cache
from importlib import resources

import duckdb

from nhiaudit import __version__, evaluate, incremental, rules, store
from nhiaudit.policy import Policy, install

DERIVED_TABLES = (
    "event_evidence",
    "principal_class",
    "credentials",
    "credential_ancestry",
    "credential_chain",
    "tasks",
    "approvals",
    "grants",
    "chains",
    "findings",
)


@cache
def sql_files() -> tuple[tuple[str, str], ...]:
    """(name, sql) of every correlation file, in order; read once from the installed package."""
    folder = resources.files("nhiaudit") / "queries" / "correlate"
    return tuple(
        sorted(
            (entry.name, entry.read_text(encoding="utf-8")) for entry in folder.iterdir() if entry.name.endswith(".sql")
        )
    )


# Point lookups by event id (trace, its findings, resolving an id): ART indexes, which DuckDB uses
# for a one-column equality or IN list, so a trace reads a few rows, not every stored event.
# DuckDB-specific, hence here and not in queries/ (SQL other engines run too).
LOOKUP_INDEXES = (("event_evidence", "event_id"), ("chains", "event_id"), ("findings", "event_id"))


@cache
def _sql_digest() -> bytes:
    digest = hashlib.sha256(repr(LOOKUP_INDEXES).encode() + incremental.KEYS_SQL.encode())
    for name, sql in sql_files():
        digest.update(name.encode() + b"\0" + sql.encode())
    return digest.digest()


def fingerprint(policy: Policy) -> str:
    """The policy, the correlation SQL and the rules whose findings are stored: an upgraded
    nhiaudit, another policy or an edited rule file rebuilds the derived tables."""
    digest = hashlib.sha256(policy.fingerprint.encode() + _sql_digest())
    for info, sql in rules.load_rules(list(policy.rules.dirs)):
        digest.update(f"{info}\0{sql}\0".encode())
    return digest.hexdigest()


def is_stale(con: duckdb.DuckDBPyConnection, policy: Policy) -> bool:
    return store.get_meta(con, "correlated_generation") != (
        store.get_meta(con, "evidence_generation") or "0"
    ) or store.get_meta(con, "correlated_policy") != fingerprint(policy)


def correlate(con: duckdb.DuckDBPyConnection, policy: Policy, *, full: bool = False) -> dict[str, float]:
    """Bring every derived table up to date in one transaction (the policy tables installed on
    ``con`` first), the ``findings`` of the built-in rules and the policy's ``[rules] dirs`` last, and
    remember the policy (``audit_runs``); return seconds per step.

    When only new evidence files arrived since the last correlation with this policy, only what they
    touch is re-correlated (:mod:`nhiaudit.incremental`, the same SQL over the events they reach);
    otherwise, or with ``full``, every derived table is rebuilt. ``timings["mode"]`` is 1.0 for an
    incremental run, 0.0 for a full one, and ``timings["incremental closure events"]`` how many events
    an incremental run re-correlated; meta ``correlated_mode`` says which, and why not incremental."""
    timings: dict[str, float] = {}
    install(policy, con)
    loaded = rules.load_rules(list(policy.rules.dirs))
    stamp = fingerprint(policy)
    con.execute("BEGIN TRANSACTION")
    try:
        reason = (
            "asked for a full correlation"
            if full
            else incremental.plan(
                con, stamp, store.get_meta(con, "correlated_policy"), bool(policy.rules.dirs), sql_files()
            ).reason
        )
        if reason is None:
            reason = incremental.run(con, sql_files(), lambda: evaluate.materialize(con, policy, loaded), timings)
            if reason is not None:  # nothing it wrote survives: roll back to the start and rebuild
                con.execute("ROLLBACK")
                con.execute("BEGIN TRANSACTION")
                install(policy, con)
                timings.clear()
        if reason is not None:
            _rebuild(con, policy, loaded, timings)
        timings["mode"] = 0.0 if reason is not None else 1.0
        store.set_meta(con, "correlated_mode", "incremental" if reason is None else f"full: {reason}")
        store.set_meta(con, "correlated_generation", store.get_meta(con, "evidence_generation") or "0")
        store.set_meta(con, "correlated_policy", stamp)
        store.record_audit_run(con, __version__, policy.path and policy.path.resolve(), policy.text, stamp)
        started = time.perf_counter()
        con.execute("COMMIT")
        timings["commit"] = time.perf_counter() - started
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return timings


def _rebuild(con: duckdb.DuckDBPyConnection, policy: Policy, loaded: list, timings: dict[str, float]) -> None:
    """Every derived table from all the events, inside the caller's transaction."""
    for name, sql in sql_files():
        started = time.perf_counter()
        con.execute(sql)
        timings[name] = time.perf_counter() - started
    started = time.perf_counter()
    evaluate.materialize(con, policy, loaded)
    timings["findings"] = time.perf_counter() - started
    started = time.perf_counter()
    for table, column in LOOKUP_INDEXES:  # CREATE OR REPLACE TABLE dropped any earlier one
        con.execute(f"CREATE INDEX IF NOT EXISTS {table}_{column} ON {table} ({column})")
    timings["lookup indexes"] = time.perf_counter() - started
    started = time.perf_counter()
    incremental.build(con)
    timings["incremental keys"] = time.perf_counter() - started


def ensure(con: duckdb.DuckDBPyConnection, policy: Policy) -> bool:
    """On one writable connection: correlate when stale, else install the policy tables. True when
    it correlated. Either way ``con`` ends with current derived tables and the policy installed."""
    if is_stale(con, policy):
        correlate(con, policy)
        return True
    install(policy, con)
    return False
