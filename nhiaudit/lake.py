"""The Parquet lake: its layout, its manifest, and auditing it with DuckDB directly (DESIGN §10).

``nhiaudit export DIR`` (``nhiaudit/export.py``) writes the store as Hive-partitioned Parquet::

    DIR/manifest.json                                   what the lake holds (the commit point)
    DIR/events/source=<source>/day=<YYYY-MM-DD>/part-<sha256[:16]>.parquet
    DIR/events/source=<source>/day=__HIVE_DEFAULT_PARTITION__/…       events without a time
    DIR/evidence_files/part-….parquet, DIR/rejected/…, DIR/meta/…, DIR/audit_runs/…
    DIR/<derived table>/part-….parquet                  with ``--derived`` (chains, findings, …)

JSON columns are plain strings and timestamps UTC-adjusted microseconds, so polars, pyarrow and Spark
read it as is. A file is named by its content, so a new export never overwrites a file an older
manifest names: the manifest, replaced atomically last, decides what the lake is.

Lake mode (``report``/``trace``/``sql --lake DIR``) checks the manifest (layout version, every file's
SHA-256), then builds a scratch store whose ``events``, ``evidence_files`` and ``rejected`` are views
over exactly the files the manifest names; :func:`nhiaudit.session.open_lake` audits it with the same
:func:`~nhiaudit.session.open_audit` and the same correlation as a store.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from nhiaudit import correlate, store
from nhiaudit.errors import StoreError

LAKE_FORMAT = "nhiaudit-lake"
LAKE_VERSION = 1  # the layout: bump when a table, a partition key or a column's encoding changes
MANIFEST = "manifest.json"
EVENTS = "events"
PARTITION_BY = ("source", "day")
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"  # Hive's (and DuckDB's) name for a NULL value
# The store's own tables, always exported; the derived tables only with --derived.
TABLES = (EVENTS, "evidence_files", "rejected", "meta", "audit_runs")
DERIVED = tuple(correlate.DERIVED_TABLES)
# The events columns stored as JSON, written as VARCHAR (Parquet's JSON type reads as binary in polars).
JSON_COLUMNS = tuple(name for name, kind in store.EVENT_COLUMNS.items() if kind.startswith("JSON"))
# What a path in the manifest may look like: nothing outside the lake, nothing but our own names.
_FILE = re.compile(
    r"^(?P<table>[a-z_]+)/(?:source=(?P<source>[A-Za-z0-9_.-]+)/day=(?P<day>\d{4}-\d{2}-\d{2}|"
    + NULL_PARTITION
    + r")/)?part-[0-9a-f]{16}\.parquet$"
)
SOURCE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # a source's name, as it appears in a partition path


class LakeError(StoreError):
    """The lake is missing, from another nhiaudit, or its files are not the ones its manifest names."""


def partition_key(source: str, day: Any) -> str:
    """``source=<source>/day=<day>``: a partition's folder under ``events/`` and its manifest key."""
    return f"source={source}/day={day if day is not None else NULL_PARTITION}"


def file_name(sha256: str) -> str:
    return f"part-{sha256[:16]}.parquet"


def sha256_file(path: Path) -> str:
    """The file's SHA-256, as ingest hashes evidence (imported here: ingest loads every source, and
    the CLI's ``trace`` on a store must not pay for that)."""
    from nhiaudit.ingest import sha256_of

    return sha256_of(path)


def render_manifest(manifest: dict[str, Any]) -> str:
    """The manifest's bytes: sorted keys, so the same store always gives the same manifest."""
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The lake's manifest, validated; None when ``folder`` has none. A manifest of another layout
    version or shape is a :class:`LakeError`."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LakeError(f"{path}: not a readable nhiaudit lake manifest ({exc}). Export the store again.") from None
    problem = _shape_problem(manifest)
    if problem:
        raise LakeError(f"{path}: {problem}")
    return manifest


def _shape_problem(manifest: Any) -> str | None:
    if not isinstance(manifest, dict) or manifest.get("format") != LAKE_FORMAT:
        return "not an nhiaudit lake manifest (no \"format\": \"nhiaudit-lake\"). Export the store again."
    if manifest.get("lake_version") != LAKE_VERSION:
        return (
            f"lake layout version {manifest.get('lake_version')!r}; this nhiaudit reads version {LAKE_VERSION}. "
            "Export the store again with this nhiaudit (nhiaudit export DIR)."
        )
    if manifest.get("store_schema_version") != store.SCHEMA_VERSION:
        return (
            f"exported from a store of schema version {manifest.get('store_schema_version')!r}; this nhiaudit's "
            f"is {store.SCHEMA_VERSION}. Export the store again with this nhiaudit."
        )
    files, tables = manifest.get("files"), manifest.get("tables")
    if not isinstance(files, dict) or not isinstance(tables, dict):
        return "the manifest lacks its files or tables. Export the store again."
    for name, info in files.items():
        match = _FILE.match(name) if isinstance(name, str) else None
        if match is None or not isinstance(info, dict) or not re.fullmatch(r"[0-9a-f]{64}", str(info.get("sha256"))):
            return f"the manifest names a file nhiaudit does not write ({str(name)[:100]!r}). Export the store again."
        if match["table"] not in (*TABLES, *DERIVED) or (match["table"] == EVENTS) != (match["source"] is not None):
            return f"the manifest names a file of an unknown table ({name[:100]!r}). Export the store again."
    for table in TABLES:
        if not isinstance(tables.get(table), dict) or not _table_files(manifest, table):
            return f"the manifest has no files for table {table}. Export the store again."
    return None


def _table_files(manifest: dict[str, Any], table: str) -> list[str]:
    """The manifest's files of ``table``, in the manifest's (sorted) order."""
    return sorted(name for name in manifest["files"] if name.split("/", 1)[0] == table)


@dataclass(frozen=True)
class Lake:
    """A verified lake: its folder and manifest."""

    folder: Path
    manifest: dict[str, Any]

    def files(self, table: str) -> list[Path]:
        return [self.folder / name for name in _table_files(self.manifest, table)]

    @property
    def all_files(self) -> list[Path]:
        return [self.folder / name for name in sorted(self.manifest["files"])]


def open_lake(folder: Path) -> Lake:
    """Read and check a lake: its manifest's layout, and that every file it names is there with the
    SHA-256 it records (a changed, missing or truncated file is a :class:`LakeError`, exit 2)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LakeError(f"{folder}: no lake here. Write one with `nhiaudit export {folder}`.")
    manifest = read_manifest(folder)
    if manifest is None:
        raise LakeError(f"{folder}: no {MANIFEST}: not an nhiaudit lake. Write one with `nhiaudit export DIR`.")
    folder = folder.resolve()
    bad = []
    for name, info in sorted(manifest["files"].items()):
        path = folder / name
        if not path.is_file():
            bad.append(f"{name}: missing")
        elif sha256_file(path) != info["sha256"]:
            bad.append(f"{name}: SHA-256 differs from the manifest's")
    if bad:
        raise LakeError(
            f"{folder}: {len(bad)} file(s) of the lake are not the ones its manifest names (changed after the "
            "export, or an export was interrupted):\n" + "\n".join(bad[:20]) + ("\n…" if len(bad) > 20 else "")
            + "\nExport the store again (nhiaudit export DIR), or restore the lake from a backup."
        )
    return Lake(folder, manifest)


def _literal(text: str) -> str:
    """A SQL string literal (a view's definition cannot take parameters)."""
    return "'" + text.replace("'", "''") + "'"


def _reader(paths: list[Path], hive: bool) -> str:
    files = "[" + ", ".join(_literal(str(p)) for p in paths) + "]"
    options = ", hive_partitioning = true, hive_types = {'source': VARCHAR, 'day': DATE}" if hive else ""
    return f"read_parquet({files}{options})"


def attach(con: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    """Turn a new, empty store (``con``, writable) into the lake's: ``events``, ``evidence_files`` and
    ``rejected`` become views over the manifest's files, ``meta`` and ``audit_runs`` (the remembered
    policy) are copied. ``details`` and ``raw`` stay the JSON text the files hold: DuckDB's JSON
    functions read it as they read the store's JSON columns, and a cast back to JSON in the view would
    parse every record again on every scan (twice the cost of a JSON-reading scan, measured). The
    derived tables are left to correlation: ``correlated_*`` keys are not copied, so the first
    :func:`~nhiaudit.session.open_audit` builds them from the lake's evidence with the chosen policy."""
    events = ", ".join(store.EVENT_COLUMNS)
    con.execute("BEGIN TRANSACTION")
    con.execute("DROP TABLE events")
    con.execute(f"CREATE VIEW events AS SELECT {events} FROM {_reader(lake.files(EVENTS), hive=True)}")
    for table in ("evidence_files", "rejected"):
        con.execute(f"DROP TABLE {table}")
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM {_reader(lake.files(table), hive=False)}")
    con.execute(
        f"""INSERT OR REPLACE INTO meta SELECT key, value FROM {_reader(lake.files("meta"), hive=False)}
            WHERE key NOT IN ('schema_version', 'correlated_generation', 'correlated_policy')"""
    )
    con.execute(f"INSERT INTO audit_runs SELECT * FROM {_reader(lake.files('audit_runs'), hive=False)}")
    con.execute("COMMIT")
