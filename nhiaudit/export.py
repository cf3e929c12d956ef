"""``nhiaudit export DIR``: the store as a Hive-partitioned Parquet lake (layout: ``nhiaudit/lake.py``).

DuckDB writes every file (``COPY … (FORMAT parquet, PARTITION_BY (source, day))`` for events, one
``COPY`` per other table), rows in a total order so that the same store gives the same bytes.

Re-export is incremental by partition. Each ``(source, day)`` partition of ``events`` has a digest
of its rows' content (their count and the XOR of a hash of every row); the manifest keeps it. A
partition whose digest is unchanged, and whose files are still there with the SHA-256 the manifest
records, is not rewritten; a changed one gets new files (named by their content, so no
file an older manifest names is overwritten); the small tables are rewritten only when their bytes
change. The new manifest replaces the old one atomically, last; then files no manifest names any
more (stale partitions, tables no longer exported) are removed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from nhiaudit import __version__, lake, store

try:
    import fcntl
except ImportError:  # not POSIX: exports are not locked against each other
    fcntl = None  # type: ignore[assignment]
from nhiaudit.errors import NhiauditError

# Rows per events COPY: the progress bar moves once per batch, each batch one scan of the store.
BATCH_ROWS = 250_000
_STAGING = ".export-staging"
_LOCK = ".export.lock"
_OURS = (_STAGING, _LOCK, f".{lake.MANIFEST}.tmp")  # what export keeps beside the lake's tables
_EVENT_ORDER = "file_sha256, record_index, event_id"  # unique per source (ingest keeps ids unique)
_PARQUET = "FORMAT parquet, COMPRESSION zstd"


@dataclass
class TableResult:
    rows: int = 0
    files: int = 0
    written: int = 0  # files written by this export (the others were unchanged)
    bytes: int = 0


@dataclass
class ExportResult:
    folder: Path
    tables: dict[str, TableResult] = field(default_factory=dict)
    partitions: int = 0
    partitions_written: int = 0
    files_removed: int = 0
    bytes_written: int = 0
    seconds: float = 0.0

    @property
    def files(self) -> int:
        return sum(t.files for t in self.tables.values())

    @property
    def files_written(self) -> int:
        return sum(t.written for t in self.tables.values())

    @property
    def bytes(self) -> int:
        return sum(t.bytes for t in self.tables.values())


Progress = Callable[[str, int, int], None]  # (what, rows done, rows in all)


def export(
    con: duckdb.DuckDBPyConnection, folder: Path, *, derived: bool = False, progress: Progress | None = None
) -> ExportResult:
    """Write (or bring up to date) the lake in ``folder`` from the store on ``con`` (read-only is
    enough; with ``derived`` its derived tables must be current: open it with
    :func:`nhiaudit.session.open_audit`). Returns what was written, with figures."""
    started = time.perf_counter()
    folder = Path(folder)
    _previous(folder)  # a folder that is not a lake is refused before anything is written into it
    folder.mkdir(parents=True, exist_ok=True)
    with _exclusive(folder):
        try:
            result = _export(con, folder.resolve(), _previous(folder), derived, progress)
        except (OSError, duckdb.IOException) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0][:200]
            raise NhiauditError(
                f"{folder}: could not write the lake ({why}). It is as the previous export left it (its "
                "manifest names only complete files); free disk space or fix the folder's permissions and run again."
            ) from exc
    result.seconds = time.perf_counter() - started
    return result


@contextmanager
def _exclusive(folder: Path) -> Iterator[None]:
    """One export at a time per lake: another's clean-up would delete this one's new files."""
    if fcntl is None:
        yield
        return
    with open(folder / _LOCK, "a+b") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise NhiauditError(
                f"{folder}: another nhiaudit export is writing this lake. Run this again when it finishes."
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _export(
    con: duckdb.DuckDBPyConnection,
    folder: Path,
    old: dict[str, Any] | None,
    derived: bool,
    progress: Progress | None,
) -> ExportResult:
    result = ExportResult(folder)
    staging = folder / _STAGING
    shutil.rmtree(staging, ignore_errors=True)  # what an interrupted export left
    staging.mkdir(parents=True)
    bar = con.execute("SELECT current_setting('enable_progress_bar')").fetchone()[0]
    con.execute("SET enable_progress_bar = false")  # the caller shows progress (DuckDB's would print)
    try:
        tables = [*(t for t in lake.TABLES if t != lake.EVENTS), *(lake.DERIVED if derived else ())]
        parts = _partition_digests(con)
        total = sum(rows for rows, _ in parts.values())
        report = progress or (lambda what, done, all_: None)
        report("events: digests", 0, total)
        files: dict[str, dict[str, Any]] = {}
        partitions: dict[str, dict[str, Any]] = {}
        changed = []
        for key, (rows, digest) in parts.items():
            kept = _unchanged(folder, old, key, digest)
            if kept is None:
                changed.append(key)
                continue
            partitions[key] = {"rows": rows, "digest": digest, "files": sorted(kept)}
            files.update(kept)
        done = total - sum(parts[key][0] for key in changed)
        events = result.tables.setdefault(lake.EVENTS, TableResult())
        for batch in _batches(changed, parts):
            written = _write_events(con, folder, staging, batch)
            for key in batch:
                rows, digest = parts[key]
                partitions[key] = {"rows": rows, "digest": digest, "files": sorted(written[key])}
                files.update(written[key])
                events.written += len(written[key])
                result.bytes_written += sum(f["bytes"] for f in written[key].values())
                done += rows
            report(f"events: {batch[-1].split('/')[0]}", done, total)
        result.partitions, result.partitions_written = len(parts), len(changed)
        events.rows = total
        for table in tables:
            report(table, done, total)
            name, info, wrote = _write_table(con, folder, staging, table)
            files[name] = info
            result.tables[table] = TableResult(info["rows"], 1, int(wrote), info["bytes"])
            result.bytes_written += info["bytes"] if wrote else 0
        events.files = sum(len(p["files"]) for p in partitions.values())
        events.bytes = sum(files[name]["bytes"] for p in partitions.values() for name in p["files"])
        manifest = _manifest(con, derived, partitions, files, {t: r.rows for t, r in result.tables.items()})
        _replace(folder / lake.MANIFEST, lake.render_manifest(manifest).encode())
        result.files_removed = _remove_stale(folder, files)
    finally:
        con.execute(f"SET enable_progress_bar = {bool(bar)}")
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _previous(folder: Path) -> dict[str, Any] | None:
    """The manifest of the lake already in ``folder`` (None for a new or empty folder, or a lake of
    another layout version, which is rewritten whole). A folder that holds anything else is refused:
    export never writes into, or cleans up, a folder it did not make."""
    if not folder.exists():
        return None
    if not folder.is_dir():
        raise NhiauditError(f"{folder}: exists and is not a folder. Choose a folder for the lake.")
    try:
        manifest = lake.read_manifest(folder)
    except lake.LakeError:
        if _format(folder / lake.MANIFEST) != lake.LAKE_FORMAT:
            raise NhiauditError(
                f"{folder}: its {lake.MANIFEST} is not an nhiaudit lake's. Export into a new or empty folder."
            ) from None
        return None  # our lake, of another layout or store version: written anew
    leftovers = sorted(p.name for p in folder.iterdir() if p.name not in _OURS)
    if manifest is None and leftovers:
        raise NhiauditError(
            f"{folder}: the folder is not empty and is not an nhiaudit lake (no {lake.MANIFEST}; it holds "
            f"{', '.join(leftovers[:3])}{' …' if len(leftovers) > 3 else ''}). Export into a new or empty folder."
        )
    return manifest


def _format(path: Path) -> str | None:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return None


def _partition_digests(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[int, str]]:
    """partition key -> (rows, digest of their content), in (source, day) order. The digest is the
    row count and the XOR of DuckDB's 64-bit hash of every row (all columns): order-free, so no sort,
    and five times cheaper than an MD5 of each row's text (rows are unique, so none cancels out).
    Another DuckDB may hash differently; that only rewrites the partitions once."""
    found = con.execute(
        f"""SELECT source, CAST(occurred_at AS DATE) AS day, count(*), bit_xor(hash({", ".join(store.EVENT_COLUMNS)}))
            FROM events GROUP BY ALL ORDER BY source, day NULLS LAST"""
    ).fetchall()
    parts = {}
    for source, day, rows, digest in found:
        if not lake.SOURCE_NAME.match(source):  # the registry's names; a partition folder must stay one folder
            raise NhiauditError(f"export: source name {source[:60]!r} cannot name a partition folder.")
        parts[lake.partition_key(source, day)] = (rows, f"{rows}:{digest:016x}")
    return parts


def _unchanged(folder: Path, old: dict[str, Any] | None, key: str, digest: str) -> dict[str, dict] | None:
    """The old manifest's files of partition ``key`` when its digest is ``digest`` and every file is
    still there with its recorded SHA-256; None when the partition must be written."""
    before = (old or {}).get("tables", {}).get(lake.EVENTS, {}).get("partitions", {}).get(key)
    if not before or before.get("digest") != digest:
        return None
    kept = {}
    for name in before.get("files", []):
        info = old["files"].get(name)
        if info is None or not (folder / name).is_file() or lake.sha256_file(folder / name) != info["sha256"]:
            return None
        kept[name] = info
    return kept or None


def _batches(keys: list[str], parts: dict[str, tuple[int, str]]) -> list[list[str]]:
    """The changed partitions in (source, day) order, cut into COPYs of about BATCH_ROWS rows."""
    batches: list[list[str]] = []
    rows = BATCH_ROWS
    for key in keys:
        if rows >= BATCH_ROWS:
            batches.append([])
            rows = 0
        batches[-1].append(key)
        rows += parts[key][0]
    return batches


def _columns(con: duckdb.DuckDBPyConnection, table: str, leave_out: tuple[str, ...] = ()) -> str:
    """The SELECT list that writes ``table``: its columns in order, JSON ones as plain strings."""
    found = con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? AND schema_name = 'main' "
        "AND database_name = current_database() ORDER BY column_index",
        [table],
    ).fetchall()
    return ", ".join(
        f'CAST("{name}" AS VARCHAR) AS "{name}"' if kind == "JSON" else f'"{name}"'
        for name, kind in found
        if name not in leave_out
    )


def _write_events(
    con: duckdb.DuckDBPyConnection, folder: Path, staging: Path, batch: list[str]
) -> dict[str, dict[str, dict[str, Any]]]:
    """One partitioned COPY of the batch's partitions into staging, then each file into place."""
    con.execute("CREATE OR REPLACE TEMP TABLE export_partitions (source VARCHAR, day DATE)")
    con.executemany(
        "INSERT INTO export_partitions VALUES (?, ?)",
        [
            [source.split("=", 1)[1], None if day.endswith(lake.NULL_PARTITION) else day.split("=", 1)[1]]
            for source, day in (key.split("/") for key in batch)
        ],
    )
    out = staging / lake.EVENTS
    shutil.rmtree(out, ignore_errors=True)
    con.execute(
        f"""COPY (SELECT {_columns(con, "events", ("source",))}, source, CAST(occurred_at AS DATE) AS day
                  FROM events e
                  WHERE EXISTS (SELECT 1 FROM export_partitions p
                                WHERE p.source = e.source AND p.day IS NOT DISTINCT FROM CAST(e.occurred_at AS DATE))
                  ORDER BY source, day NULLS LAST, {_EVENT_ORDER})
            TO {lake._literal(str(out))} ({_PARQUET}, PARTITION_BY (source, day))"""
    )
    written: dict[str, dict[str, dict[str, Any]]] = {key: {} for key in batch}
    for path in sorted(out.rglob("*.parquet")):
        key = path.parent.relative_to(out).as_posix()
        if key not in written:
            raise NhiauditError(f"export: DuckDB wrote an unexpected partition {key[:100]!r}; nothing was replaced.")
        name, info, _ = _place(con, folder, path, f"{lake.EVENTS}/{key}")
        written[key][name] = info
    missing = [key for key, got in written.items() if not got]
    if missing:
        raise NhiauditError(f"export: no file was written for partition(s) {', '.join(missing[:3])}.")
    return written


def _write_table(
    con: duckdb.DuckDBPyConnection, folder: Path, staging: Path, table: str
) -> tuple[str, dict[str, Any], bool]:
    """COPY one table (all its columns in a total order) to a file; (name, info, whether written)."""
    path = staging / f"{table}.parquet"
    con.execute(
        f"COPY (SELECT {_columns(con, table)} FROM {table} ORDER BY ALL) TO {lake._literal(str(path))} ({_PARQUET})"
    )
    return _place(con, folder, path, table)


def _place(
    con: duckdb.DuckDBPyConnection, folder: Path, path: Path, under: str
) -> tuple[str, dict[str, Any], bool]:
    """Move a written file to ``folder/under/part-<sha>.parquet``; its manifest name and entry, and
    whether it was written (False: an identical file was already there, and is kept)."""
    sha = lake.sha256_file(path)
    rows = con.execute("SELECT sum(num_rows) FROM parquet_file_metadata(?)", [str(path)]).fetchone()[0] or 0
    name = f"{under}/{lake.file_name(sha)}"
    info = {"sha256": sha, "bytes": path.stat().st_size, "rows": int(rows)}
    target = folder / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_file() and lake.sha256_file(target) == sha:
        path.unlink()
        return name, info, False
    os.replace(path, target)
    return name, info, True


def _manifest(
    con: duckdb.DuckDBPyConnection,
    derived: bool,
    partitions: dict[str, dict[str, Any]],
    files: dict[str, dict[str, Any]],
    rows: dict[str, int],
) -> dict[str, Any]:
    tables: dict[str, Any] = {
        table: {"rows": count, "derived": table in lake.DERIVED} for table, count in sorted(rows.items())
    }
    tables[lake.EVENTS].update(
        partition_by=list(lake.PARTITION_BY),
        columns=list(store.EVENT_COLUMNS),
        json_columns=list(lake.JSON_COLUMNS),
        partitions=partitions,
    )
    meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
    manifest: dict[str, Any] = {
        "format": lake.LAKE_FORMAT,
        "lake_version": lake.LAKE_VERSION,
        "store_schema_version": store.SCHEMA_VERSION,
        "nhiaudit_version": __version__,
        "evidence_generation": int(meta.get("evidence_generation") or 0),
        "derived": derived,
        "tables": tables,
        "files": dict(sorted(files.items())),
    }
    if derived:
        manifest["correlated_generation"] = int(meta.get("correlated_generation") or 0)
        manifest["correlated_policy"] = meta.get("correlated_policy")
    return manifest


def _replace(path: Path, data: bytes) -> None:
    """Write ``path`` atomically: a reader sees the old bytes or the new, never part of them."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _remove_stale(folder: Path, files: dict[str, Any]) -> int:
    """Delete the lake's Parquet files the new manifest does not name, and folders left empty."""
    removed = 0
    for table in (*lake.TABLES, *lake.DERIVED):
        root = folder / table
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("part-*.parquet")):
            if path.relative_to(folder).as_posix() not in files:
                path.unlink()
                removed += 1
        for sub in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            if not any(sub.iterdir()):
                sub.rmdir()
        if not any(root.iterdir()):
            root.rmdir()
    return removed
