"""An audit session: one store opened for auditing with one policy — the library's entry point.

``trace``, ``report`` and ``sql`` (and a notebook, a test, a future Spark runner) all need the same
thing: the store, the policy, derived tables built from the current evidence with that policy, and
the policy tables installed on the connection they query. :func:`open_audit` does that once:

1. resolve the store (``--db``, ``$NHIAUDIT_DB``, ``./nhiaudit.duckdb``) and the policy: the one
   given, else the one the store was last audited with (``audit_runs``), else the defaults;
2. open the store read-only — several traces and reports can run at once — and, when the derived
   tables are stale (new evidence, another policy, another nhiaudit), rebuild them on a short-lived
   writer connection under the memory cap, then reopen read-only;
3. install the policy tables on the read-only connection, once, when first needed
   (:attr:`AuditSession.con`; a trace reads only stored chains and findings and never does).

For an in-memory store (tests, notebooks) :meth:`AuditSession.attach` does steps 2–3 on the
connection it is given::

    with open_audit("audit.duckdb", "nhiaudit.toml") as audit:
        audit.trace("cloudtrail:e1000000-…").action.verdict
        audit.polars("SELECT verdict, count(*) AS n FROM chains GROUP BY 1")
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from nhiaudit import correlate, evaluate, lake, query, report, rules, store
from nhiaudit import trace as tracing
from nhiaudit.errors import NhiauditError, NotFoundError, StoreError
from nhiaudit.model import SEVERITIES, Finding, Report, Trace
from nhiaudit.policy import DEFAULT_FILE, ENV_VAR, Policy, install, load_policy, loads, resolve_policy_path

if TYPE_CHECKING:
    import polars
    import pyarrow


@dataclass
class AuditSession:
    """A connection whose derived tables are current for ``policy``, with its policy tables
    installed. Read-only when opened from a file by :func:`open_audit`."""

    raw_con: duckdb.DuckDBPyConnection  # the connection as opened; :attr:`con` adds the policy tables
    policy: Policy
    path: str = ":memory:"
    correlated: bool = False  # whether opening it rebuilt the derived tables
    policy_origin: str = "given"  # given | $NHIAUDIT_POLICY | ./nhiaudit.toml | remembered | defaults
    policy_installed: bool = False
    _locked: bool = field(default=False, repr=False)
    # A lake session (open_lake): the Parquet files a locked ``sql`` may still read, and its scratch store.
    readable: tuple[str, ...] = ()
    _scratch: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The connection with the policy tables installed (on first use: reading the stored chains
        and findings, as ``trace`` does, needs no policy table and skips the cost)."""
        if not self.policy_installed:
            install(self.policy, self.raw_con)
            self.policy_installed = True
        return self.raw_con

    @property
    def policy_note(self) -> str:
        """Which policy this session audits with and why, for every command to say (DESIGN §3)."""
        if self.policy.path is None:
            return "policy: the built-in defaults" + (
                " (remembered: the store was last audited with them)" if self.policy_origin == "remembered" else ""
            )
        return f"policy: {self.policy.path}" + {
            "given": "",
            "remembered": " (remembered: the policy this store was last audited with)",
        }.get(self.policy_origin, f" (from {self.policy_origin})")

    @classmethod
    def attach(cls, con: duckdb.DuckDBPyConnection, policy: Policy) -> AuditSession:
        """A session on a writable connection (an in-memory store): correlates when stale."""
        return cls(con, policy, correlated=correlate.ensure(con, policy), policy_installed=True)

    # --- what the commands need ------------------------------------------------------------

    def rules(self, extra_dirs: list[Path] | None = None) -> list:
        """The built-in rules, the policy's ``[rules] dirs`` and ``extra_dirs``."""
        return rules.load_rules([*self.policy.rules.dirs, *(extra_dirs or [])])

    def findings(self, only: tuple[str, str] | None = None, extra_rule_dirs: list[Path] | None = None) -> list[Finding]:
        """The findings of every action, or of the one action ``only`` = (source, event_id): those
        correlation stored (built-in rules and the policy's ``[rules] dirs``) and, evaluated now,
        those of ``extra_rule_dirs``."""
        found = evaluate.stored(self.raw_con, self.policy, only)
        if extra_rule_dirs:
            extra = rules.load_rules(list(extra_rule_dirs), include_builtin=False)
            found = evaluate.sort_findings([*found, *evaluate.evaluate(self.con, self.policy, extra, only)])
        return found

    def trace(self, ident: str) -> Trace:
        """One event's chain (``source:event_id`` or a bare id) and the findings on it."""
        traced = tracing.trace(self.raw_con, ident)
        if traced.action is None:
            return traced
        only = (traced.action.source, traced.action.event_id)
        return Trace(traced.event, traced.action, findings=tuple(self.findings(only)))

    def actions_of(
        self, *, task: str | None = None, credential: str | None = None, agent: str | None = None
    ) -> list[dict]:
        """The audited actions of one task, credential (used directly or as an ancestor on the
        action's chain) or agent, in time order, each with its verdict and findings (count, worst)."""
        given = {"task": task, "credential": credential, "agent": agent}
        chosen = [(kind, value) for kind, value in given.items() if value is not None]
        if len(chosen) != 1:
            raise NhiauditError("trace: give one of an action id, --task, --credential or --agent.")
        kind, value = chosen[0]
        where = {
            "task": "c.task_id = $v",
            "credential": "(c.credential_id = $v OR list_contains(c.chain_credential_ids, $v))",
            "agent": "c.agent_id = $v",
        }[kind]
        rows = self.raw_con.execute(
            f"""SELECT c.source || ':' || c.event_id AS action_id, c.occurred_at, c.action, c.resource, c.verdict,
                       count(f.rule) FILTER (WHERE NOT f.waived) AS findings,
                       arg_max(f.severity, list_position({list(SEVERITIES)!r}, f.severity))
                           FILTER (WHERE NOT f.waived) AS worst
                FROM chains c LEFT JOIN findings f ON f.source = c.source AND f.event_id = c.event_id
                WHERE {where}
                GROUP BY ALL ORDER BY c.occurred_at NULLS LAST, action_id""",
            {"v": value},
        )
        columns = [d[0] for d in rows.description]
        found = [dict(zip(columns, r, strict=True)) for r in rows.fetchall()]
        if not found:
            raise NotFoundError(f"trace: no audited action of {kind} '{value}' in the store. Check the id.")
        return found

    def report(
        self,
        fail_on: str = "high",
        baseline_path: Path | None = None,
        extra_rule_dirs: list[Path] | None = None,
        generated_at: datetime | None = None,
        severities: Sequence[str] = (),
        only_rules: Sequence[str] = (),
        exclude_rules: Sequence[str] = (),
    ) -> Report:
        """Every rule over every audited action, as the value all report writers render; the
        filters keep findings of some severities or rules (``report.select``)."""
        loaded = self.rules(extra_rule_dirs)
        found = report.select(
            self.findings(extra_rule_dirs=extra_rule_dirs), loaded, severities, only_rules, exclude_rules
        )
        return report.audit(
            self.con,
            self.policy,
            loaded,
            found,
            fail_on=fail_on,
            baseline_path=baseline_path,
            generated_at=generated_at,
        )

    def sql(self, statement: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and rows of one statement, truly read-only: besides the read-only store, the
        connection is cut off from the filesystem and network first (no ``COPY … TO``, no
        ``read_csv('/etc/…')``, no ``ATTACH``, no extension installs) and its settings are locked.
        Irreversible for this session, which suits ``nhiaudit sql``."""
        if self.readable:
            _only_queries(self.con, statement)
        if not self._locked:
            if self.readable:  # the lake's files, which the views read; a literal: SET takes no parameters
                self.con.execute(
                    "SET allowed_paths = [" + ", ".join("'" + p.replace("'", "''") + "'" for p in self.readable) + "]"
                )
            self.con.execute("SET enable_external_access = false")
            self.con.execute("SET lock_configuration = true")
            self._locked = True
        return query.run(self.con, statement)

    def arrow(self, statement: str, params: list[Any] | dict[str, Any] | None = None) -> pyarrow.Table:
        """The rows of a query as an Arrow table (parameters bound by DuckDB, never formatted in)."""
        return query.cursor(self.con, statement, params).to_arrow_table()

    def polars(self, statement: str, params: list[Any] | dict[str, Any] | None = None) -> polars.DataFrame:
        """The rows of a query as a polars DataFrame, for notebook forensics."""
        return query.cursor(self.con, statement, params).pl()

    def has_chains(self) -> bool:
        return query.has_table(self.raw_con, "chains")

    # --- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        self.raw_con.close()
        if self._scratch is not None:
            self._scratch.cleanup()

    def __enter__(self) -> AuditSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load(policy: Policy | Path | str | None) -> Policy:
    """A policy given as a value, a path, or None (``$NHIAUDIT_POLICY``, ``./nhiaudit.toml``, defaults)."""
    if isinstance(policy, Policy):
        return policy
    return load_policy(resolve_policy_path(Path(policy) if policy is not None else None))


def choose_policy(con: duckdb.DuckDBPyConnection, policy: Policy | Path | str | None) -> tuple[Policy, str]:
    """The policy to audit with and where it came from: the one given (a value, ``--policy``,
    ``$NHIAUDIT_POLICY``, ``./nhiaudit.toml``), else the one the store was last audited with, else
    the defaults. A report with ``--policy`` and a later trace without it therefore agree."""
    if isinstance(policy, Policy):
        return policy, "given"
    if policy is not None:
        return load_policy(resolve_policy_path(Path(policy))), "given"
    found = resolve_policy_path(None)
    if found is not None:
        origin = "$NHIAUDIT_POLICY" if os.environ.get(ENV_VAR) else f"./{DEFAULT_FILE}"
        return load_policy(found), origin
    remembered = store.remembered_policy(con)
    if remembered is None:
        return Policy(), "defaults"
    path, text = remembered
    if path is None or text is None:
        return Policy(), "remembered"
    return loads(text, path), "remembered"


def open_audit(
    db: Path | str | None = None,
    policy: Policy | Path | str | None = None,
    memory_limit: str = store.DEFAULT_INGEST_MEMORY,
    *,
    require_evidence: bool = True,
    refresh: bool = True,
    on_wait: Callable[[str], None] | None = None,
) -> AuditSession:
    """Open the store for auditing with ``policy`` (see :func:`choose_policy` for None); see the
    module docstring.

    ``require_evidence``: a store without events is an error (a run without evidence must never look
    clean, DESIGN §7). ``refresh=False`` never writes: the derived tables are used as they are, or are
    absent (``rules --lint`` binds rule queries against whatever the store holds). ``on_wait`` is told,
    once, when the store is held by another process and the call waits for it (bounded).
    """
    limit = store.memory_limit(memory_limit)
    path = store.resolve_db_path(Path(db) if db is not None else None)
    con = _connect(path, True, on_wait)
    correlated = False
    try:
        pol, origin = choose_policy(con, policy)
        if require_evidence:
            check_evidence(con)
        if refresh and correlate.is_stale(con, pol):
            con.close()
            # Two commands right after an ingest both find the tables stale: the second waits for
            # the first's writer, then finds them current and uses them (item 6 of issue 13).
            with closing(_connect(path, False, on_wait)) as writer:
                if correlate.is_stale(writer, pol):
                    store.set_memory_limit(writer, limit)  # 1M events: 4.5 GB uncapped, 1.4 GB at 1 GB
                    _correlate(writer, pol, path)
                    correlated = True
            con = _connect(path, True, on_wait)
    except BaseException:
        con.close()
        raise
    return AuditSession(con, pol, str(path), correlated, origin)


def open_lake(
    folder: Path | str,
    policy: Policy | Path | str | None = None,
    memory_limit: str = store.DEFAULT_INGEST_MEMORY,
    *,
    require_evidence: bool = True,
) -> AuditSession:
    """Audit an exported Parquet lake (``nhiaudit export``) with DuckDB directly: its manifest is
    checked (:func:`nhiaudit.lake.open_lake`), a scratch store in the temp folder gets views over its
    files (:func:`nhiaudit.lake.attach`), and :func:`open_audit` does the rest as for a store —
    policy choice (the lake remembers the store's), correlation, read-only reopening. The scratch
    store is deleted when the session closes."""
    opened = lake.open_lake(Path(folder))
    scratch = tempfile.TemporaryDirectory(prefix="nhiaudit-lake-")
    try:
        path = Path(scratch.name) / "lake.duckdb"
        with closing(store.connect(path)) as con:
            lake.attach(con, opened)
        audit = open_audit(path, policy, memory_limit, require_evidence=require_evidence)
    except BaseException:
        scratch.cleanup()
        raise
    audit.path, audit.readable, audit._scratch = str(opened.folder), tuple(map(str, opened.all_files)), scratch
    return audit


_QUERIES = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


def _only_queries(con: duckdb.DuckDBPyConnection, statement: str) -> None:
    """A lake's ``sql`` may read its files, so it must not be able to write them: only queries
    (DuckDB's own parse says which statement is which, not a keyword check)."""
    try:
        kinds = {s.type for s in con.extract_statements(statement)}
    except duckdb.Error:
        return  # query.run reports the syntax error with its usual message
    if not kinds <= _QUERIES:
        raise NhiauditError("sql: only queries (SELECT, EXPLAIN …) run against a lake.")


LOCK_WAIT_SECONDS = 10.0  # how long a command waits for another process's hold on the store, by default
LOCK_WAIT_ENV = "NHIAUDIT_LOCK_WAIT"  # seconds, to wait longer (a long ingest) or not at all (0)


def lock_wait_seconds(env: dict[str, str] | None = None) -> float:
    """The bound on waiting for another process's hold on the store: ``$NHIAUDIT_LOCK_WAIT`` seconds
    (a number >= 0), else LOCK_WAIT_SECONDS."""
    text = (os.environ if env is None else env).get(LOCK_WAIT_ENV, "").strip()
    if not text:
        return LOCK_WAIT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise NhiauditError(f"${LOCK_WAIT_ENV}: {text[:40]!r} is not a number of seconds (0 or more).")
    return seconds


def _connect(path: Path, read_only: bool, on_wait: Callable[[str], None] | None) -> duckdb.DuckDBPyConnection:
    """``store.connect``, waiting (bounded, :func:`lock_wait_seconds`) while another nhiaudit holds the
    store: a writer, such as a correlation another command started a moment before, excludes every
    other connection."""
    wait = lock_wait_seconds()
    deadline = time.monotonic() + wait
    told = False
    while True:
        try:
            return store.connect(path, read_only=read_only)
        except store.StoreLocked:
            if time.monotonic() >= deadline:
                raise StoreError(
                    f"{path}: the store is open in another nhiaudit or DuckDB process. Waited "
                    f"{wait:g} s for it (an ingest, or a report rebuilding the derived tables); "
                    f"run this again when it finishes (or wait longer: ${LOCK_WAIT_ENV}), or use another --db."
                ) from None
            if on_wait is not None and not told:
                on_wait(f"{path}: another nhiaudit process holds the store; waiting for it (up to {wait:g} s)")
                told = True
            time.sleep(0.1)


def _correlate(writer: duckdb.DuckDBPyConnection, pol: Policy, path: Path) -> None:
    """Rebuild the derived tables; a machine failure (disk full, out of memory) is a message."""
    try:
        correlate.correlate(writer, pol)
    except (duckdb.IOException, duckdb.OutOfMemoryException) as exc:
        raise StoreError(
            f"{path}: could not rebuild the derived tables ({str(exc).splitlines()[0][:200]}). Free disk "
            "space next to the store and in the temp directory, or raise --memory-limit, and run again: "
            "the evidence is unchanged and the previous derived tables are kept."
        ) from exc


def check_evidence(con: duckdb.DuckDBPyConnection) -> None:
    """A run that has no evidence must not look clean (DESIGN §7: never exit 0 without evidence)."""
    if not con.execute("SELECT count(*) FROM events").fetchone()[0]:
        raise NhiauditError("store: no events in the store. Run `nhiaudit ingest PATH...` first.")
