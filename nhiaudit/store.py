"""The evidence store: one DuckDB file holding evidence_files, events, rejected and derived tables.

The schema version lives in ``meta``; opening an older store migrates it in place, opening a newer
one says which nhiaudit to use. Derived tables are rebuilt by ``correlate``; ``meta`` records the
ingest generation and policy fingerprint they were built from, so the store knows when they are stale.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import duckdb

from nhiaudit.errors import StoreError
from nhiaudit.model import DEFAULT_MEMORY_LIMIT

SCHEMA_VERSION = 2
DEFAULT_DB = "nhiaudit.duckdb"

# The events columns, in order. Sources fill what their format has (docs/internals.md).
EVENT_COLUMNS: dict[str, str] = {
    "event_id": "VARCHAR NOT NULL",
    "source": "VARCHAR NOT NULL",
    "file_sha256": "VARCHAR NOT NULL",
    "record_index": "BIGINT NOT NULL",
    "line": "BIGINT",
    "occurred_at": "TIMESTAMPTZ",
    "category": "VARCHAR NOT NULL",
    "actor_id": "VARCHAR",
    "actor_type": "VARCHAR",
    "credential_id": "VARCHAR",
    "credential_type": "VARCHAR",
    "parent_credential_id": "VARCHAR",
    "action": "VARCHAR",
    "resource": "VARCHAR",
    "read_only": "BOOLEAN",
    "outcome": "VARCHAR",
    "error_code": "VARCHAR",
    "account": "VARCHAR",
    "region": "VARCHAR",
    "src_ip": "VARCHAR",
    "user_agent": "VARCHAR",
    "task_id": "VARCHAR",
    "trace_id": "VARCHAR",
    "span_id": "VARCHAR",
    "parent_span_id": "VARCHAR",
    "expires_at": "TIMESTAMPTZ",
    "ended_at": "TIMESTAMPTZ",
    "details": "JSON",
    "raw": "JSON",
    "dedupe_key": "VARCHAR NOT NULL",
}

_SCHEMA_V1 = [
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    """CREATE TABLE IF NOT EXISTS evidence_files (
        sha256 VARCHAR PRIMARY KEY, path VARCHAR NOT NULL, size BIGINT NOT NULL, source VARCHAR NOT NULL,
        ingested_at TIMESTAMPTZ NOT NULL, records_read BIGINT NOT NULL, records_loaded BIGINT NOT NULL,
        records_rejected BIGINT NOT NULL, records_duplicate BIGINT NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS events (" + ", ".join(f"{name} {kind}" for name, kind in EVENT_COLUMNS.items()) + ")",
    """CREATE TABLE IF NOT EXISTS rejected (
        file_sha256 VARCHAR NOT NULL, path VARCHAR NOT NULL, source VARCHAR, record_index BIGINT,
        line BIGINT, reason VARCHAR NOT NULL, raw VARCHAR)""",
]

# One row each time the derived tables are rebuilt: the policy they were built with (its text, so a
# later command without --policy audits with the same one, DESIGN §3) and the evidence generation.
_AUDIT_RUNS = """CREATE TABLE IF NOT EXISTS audit_runs (
    run BIGINT PRIMARY KEY, recorded_at TIMESTAMPTZ NOT NULL, nhiaudit_version VARCHAR NOT NULL,
    evidence_generation BIGINT NOT NULL, policy_path VARCHAR, policy_text VARCHAR,
    policy_fingerprint VARCHAR NOT NULL)"""

# Migrations from version N to N+1, in order. Version 0 is an empty file.
_MIGRATIONS: dict[int, list[str]] = {0: _SCHEMA_V1, 1: [_AUDIT_RUNS]}


def resolve_db_path(option: Path | None, env: dict[str, str] | None = None) -> Path:
    """``--db``, else ``NHIAUDIT_DB``, else ``./nhiaudit.duckdb``."""
    env = os.environ if env is None else env
    if option is not None:
        return option
    if env.get("NHIAUDIT_DB"):
        return Path(env["NHIAUDIT_DB"])
    return Path(DEFAULT_DB)


def connect(path: Path | str, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open (and create or migrate) the store. ``:memory:`` gives an in-memory store for tests."""
    path = str(path)
    if read_only and path != ":memory:" and not Path(path).exists():
        raise StoreError(f"{path}: no store here. Run `nhiaudit ingest PATH...` first, or pass --db / NHIAUDIT_DB.")
    try:
        con = duckdb.connect(path, read_only=read_only)
    except duckdb.IOException as exc:
        text = str(exc)
        if _LOCKED.search(text):
            raise StoreLocked(
                f"{path}: the store is open in another nhiaudit or DuckDB process. "
                "Wait for it to finish, or use another --db."
            ) from exc
        if _DAMAGED.search(text):
            raise StoreError(_damaged(path, text)) from exc
        raise StoreError(f"{path}: cannot open the store ({exc}).") from exc
    except duckdb.Error as exc:
        raise StoreError(f"{path}: not a DuckDB store nhiaudit can open ({exc}).") from exc
    try:
        _check_intact(con, path)
    except BaseException:
        con.close()
        raise
    con.execute("SET TimeZone = 'UTC'")
    if not read_only:
        migrate(con, path)
    else:
        version = schema_version(con)
        if version > SCHEMA_VERSION:
            con.close()
            raise StoreError(
                f"{path}: store schema version {version} is newer than this nhiaudit ({SCHEMA_VERSION}). "
                "Upgrade nhiaudit (pip install -U nhiaudit)."
            )
        if version < SCHEMA_VERSION:  # an older store: migrate it in place once, then read
            con.close()
            connect(path).close()
            return connect(path, read_only=True)
    return con


# DuckDB's words for a lock held by another process ("Could not set lock on file", "Conflicting
# lock is held"), as opposed to a damaged file (whose checksum message says "block").
_LOCKED = re.compile(r"could not set lock|conflicting lock", re.IGNORECASE)
_DAMAGED = re.compile(
    r"corrupt database file|could not read enough bytes|checksum", re.IGNORECASE
)
_HEADER_BYTES = 3 * 4096  # DuckDB's file header and two database headers, before the first block


class StoreLocked(StoreError):
    """Another process holds the store (a writer excludes every other connection)."""


def _damaged(path: str, detail: str) -> str:
    return (
        f"{path}: the store file is damaged ({detail.splitlines()[0][:200]}). Restore it from a backup, or "
        "ingest the evidence again into a new --db (the evidence files themselves are not changed)."
    )


def _check_intact(con: duckdb.DuckDBPyConnection, path: str) -> None:
    """Refuse a store that is cut short, or whose nhiaudit tables were altered outside nhiaudit: every
    command would otherwise fail later with a DuckDB error, or a traceback, mid-way."""
    if path != ":memory:":
        try:
            _, _, block_size, total, _, free, *_ = con.execute("SELECT * FROM pragma_database_size()").fetchone()
        except duckdb.Error as exc:
            raise StoreError(_damaged(path, str(exc))) from exc
        if block_size and os.path.getsize(path) < _HEADER_BYTES + (total - free) * block_size:
            raise StoreError(_damaged(path, f"the file is shorter than the {total - free} blocks it uses: truncated"))
    version = schema_version(con)  # raises StoreError on a garbage version
    if not version:
        return  # a new store: migrate creates the tables
    expected = {"meta": None, "evidence_files": None, "events": list(EVENT_COLUMNS), "rejected": None}
    if version >= 2:
        expected["audit_runs"] = None
    found: dict[str, set[str]] = {}
    for table, column in con.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'main'"
    ).fetchall():
        found.setdefault(table, set()).add(column)
    for table, columns in expected.items():
        if table not in found:
            raise StoreError(_tampered(path, f"table {table} is missing"))
        missing = [c for c in columns or [] if c not in found[table]]
        if missing:
            raise StoreError(_tampered(path, f"table {table} lacks column(s) {', '.join(missing)}"))


def _tampered(path: str, what: str) -> str:
    return (
        f"{path}: the store was altered outside nhiaudit ({what}). Restore it from a backup, or ingest "
        "the evidence again into a new --db."
    )


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta' AND table_schema = 'main'"
    ).fetchone()[0]
    if not exists:
        return 0
    row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row and not str(row[0]).isdigit():
        raise StoreError(
            f"store: the schema version in meta is not a number ({str(row[0])[:40]!r}): the store was altered "
            "outside nhiaudit. Restore it from a backup, or ingest the evidence again into a new --db."
        )
    return int(row[0]) if row else 0


def migrate(con: duckdb.DuckDBPyConnection, where: str = "store") -> None:
    version = schema_version(con)
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{where}: store schema version {version} is newer than this nhiaudit ({SCHEMA_VERSION}). "
            "Upgrade nhiaudit (pip install -U nhiaudit)."
        )
    while version < SCHEMA_VERSION:
        con.execute("BEGIN TRANSACTION")
        for statement in _MIGRATIONS[version]:
            con.execute(statement)
        version += 1
        con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(version)])
        con.execute("COMMIT")


DEFAULT_INGEST_MEMORY = DEFAULT_MEMORY_LIMIT  # ingest and correlation
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$", re.IGNORECASE)


def memory_limit(value: str) -> str:
    """A DuckDB memory size from ``--memory-limit`` / ``NHIAUDIT_MEMORY_LIMIT`` (``1GB``, ``1500MB``)."""
    match = _MEMORY.match(value)
    if not match:
        raise StoreError(f"--memory-limit: '{value}' is not a size. Use a number and a unit, e.g. 1GB, 1500MB, 4GiB.")
    return f"{match.group(1)}{match.group(2)}"


def set_memory_limit(con: duckdb.DuckDBPyConnection, value: str) -> None:
    """Cap DuckDB's buffer memory; DuckDB spills to disk beyond it.

    Without a cap DuckDB may cache up to 80 % of RAM while it writes the store; ingest is no
    faster with more (measured: 1M CloudTrail records load in the same time at 1 GB as at
    DuckDB's default, with half the peak memory).
    """
    con.execute(f"SET memory_limit = '{memory_limit(value)}'")  # validated: digits and a unit


def get_meta(con: duckdb.DuckDBPyConnection, key: str) -> str | None:
    row = con.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
    return row[0] if row else None


def set_meta(con: duckdb.DuckDBPyConnection, key: str, value: str) -> None:
    con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])


def bump_generation(con: duckdb.DuckDBPyConnection) -> None:
    """Mark the evidence as changed: derived tables built before are stale."""
    current = int(get_meta(con, "evidence_generation") or 0)
    set_meta(con, "evidence_generation", str(current + 1))


def record_audit_run(
    con: duckdb.DuckDBPyConnection, version: str, policy_path: Path | None, policy_text: str | None, fingerprint: str
) -> None:
    """Remember the policy the derived tables were just built with (inside correlation's transaction)."""
    con.execute(
        """INSERT INTO audit_runs SELECT coalesce(max(run), 0) + 1, now(), ?, ?, ?, ?, ? FROM audit_runs""",
        [
            version,
            int(get_meta(con, "evidence_generation") or 0),
            str(policy_path) if policy_path else None,
            policy_text,
            fingerprint,
        ],
    )


def remembered_policy(con: duckdb.DuckDBPyConnection) -> tuple[Path | None, str | None] | None:
    """(path, text) of the policy of the last audit run; None when the store was never audited.
    A path with no text is the built-in defaults... only when the path is None too."""
    row = con.execute("SELECT policy_path, policy_text FROM audit_runs ORDER BY run DESC LIMIT 1").fetchone()
    if row is None:
        return None
    return (Path(row[0]) if row[0] else None), row[1]
