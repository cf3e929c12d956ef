"""Ingest: find files, detect their source, load each file in one transaction.

Per file: hash it (chain of custody; same bytes twice is a no-op), let its source stage the records
with DuckDB SQL, then merge the staged rows into ``events`` skipping events already stored (same
source and dedupe key), write rejected records and the ``evidence_files`` row, and commit. Any
failure rolls the whole file back. records read = loaded + rejected + duplicates, always.
"""

from __future__ import annotations

import gzip
import hashlib
import inspect
import os
import queue
import re
import stat
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import duckdb

from nhiaudit import store
from nhiaudit.errors import NhiauditError, did_you_mean
from nhiaudit.sources import SOURCES, _sql
from nhiaudit.sources._read import (
    BATCH_FILE_NO,
    BATCH_INDEX,
    RAW_EXCERPT,
    EvidenceFile,
    batchable,
    close_document_prefix,
    first_line_exceeds_head,
    gzip_problem,
    gzip_readable_prefix,
    head,
    is_gzip,
    is_line_delimited,
    opens_array_document,
    record_limit,
    stage_record_batch,
)

CHECKPOINT_THRESHOLD = "256MB"  # see ingest()
MAX_WORKERS = 4  # files staged at once (see _load_files); at most DuckDB's threads
# Small files of one layout are staged, merged and committed together (see _batches): a file of 100
# CloudTrail records costs more in its dozens of statements and its commit than in its records.
BATCH_FILES = 256  # files in one batch, at most
BATCH_BYTES = 4 << 20  # their bytes on disk (gzip: about 8x as much JSON), at most

# Files that sit next to logs but are never evidence (policies, notes, scripts, stores).
IGNORED_SUFFIXES = {".md", ".toml", ".py", ".sh", ".duckdb", ".wal", ".yml", ".yaml", ".cfg", ".ini", ".sarif"}


@dataclass
class FileResult:
    path: Path
    source: str | None
    sha256: str = ""
    size: int = 0
    read: int = 0
    loaded: int = 0
    rejected: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    already_ingested: bool = False
    note: str = ""
    unreadable: bool = False  # could not be read at all (``note`` says why); nothing stored
    retry: bool = False  # load again if already stored with rejected records (--retry-rejected)
    retry_of: Any = None  # when retried: the stored file's first ingested_at


@dataclass
class IngestResult:
    files: list[FileResult] = field(default_factory=list)
    unrecognized: list[Path] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)
    #: Paths that could not be read at all, each with why (unreadable, a FIFO, a broken link…).
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    #: Files of no bytes: listed, not errors (DESIGN §9). An empty file a source claims is in ``files``.
    empty: list[Path] = field(default_factory=list)

    def by_source(self) -> dict[str, dict[str, float]]:
        """Summary per source: files, read, loaded, rejected, duplicates, seconds."""
        out: dict[str, dict[str, float]] = {}
        for f in self.files:
            row = out.setdefault(
                f.source or "?", dict(files=0, read=0, loaded=0, rejected=0, duplicates=0, skipped=0, seconds=0.0)
            )
            row["files"] += 1
            row["skipped"] += int(f.already_ingested)
            for key in ("read", "loaded", "rejected", "duplicates"):
                row[key] += getattr(f, key)
            row["seconds"] += f.seconds
        return dict(sorted(out.items()))


# DuckDB errors that mean nhiaudit's own SQL is wrong, whatever the file holds.
_INTERNAL_ERRORS = (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException)
# DuckDB errors about the machine or DuckDB itself, not the evidence: ingest stops (see load_file).
_MACHINE_ERRORS = (
    duckdb.OutOfMemoryException,
    duckdb.InterruptException,
    duckdb.TransactionException,
    duckdb.FatalException,
    duckdb.InternalException,
    duckdb.ConnectionException,
    duckdb.PermissionException,
)

ProgressFn = Callable[[str, FileResult], None]
#: Per source name, keyword arguments for its ``load`` (the policy's ``[sources.<name>]``).
Options = Mapping[str, Mapping[str, Any]]


def discover(
    paths: Iterable[Path], unreadable: list[tuple[Path, str]] | None = None
) -> tuple[list[Path], list[Path]]:
    """Files under ``paths`` (recursive, sorted), and those skipped as obviously not logs. Those that
    cannot be read as files at all are appended to ``unreadable`` with why (never opened: a FIFO
    would block the run)."""
    found: list[Path] = []
    ignored: list[Path] = []
    unreadable = [] if unreadable is None else unreadable
    for path in paths:
        if not path.exists() and not path.is_symlink():
            raise NhiauditError(f"{path}: no such file or directory. Check the path.")
        if not path.is_dir():
            if (problem := _not_a_file(path)) is not None:
                unreadable.append((path, problem))
            else:
                found.append(path)  # a file named on the command line is always read
            continue
        entries: list[Path] = []

        def walk_error(exc: OSError, top: Path = path) -> None:
            where = Path(exc.filename) if exc.filename else top
            unreadable.append((where, f"directory cannot be read ({exc.strerror or exc}); its files were not ingested"))

        for root, dirs, names in os.walk(path, onerror=walk_error, followlinks=False):
            dirs.sort()
            entries.extend(Path(root) / name for name in names)
            # A symbolic link to a directory is listed in dirs and not followed: read it as before
            # (rglob did not follow them either), but a broken one is named.
            entries.extend(Path(root) / d for d in dirs if (Path(root) / d).is_symlink())
        for p in sorted(entries):
            hidden = any(part.startswith(".") for part in p.relative_to(path).parts)
            if hidden or _format_suffix(p) in IGNORED_SUFFIXES:
                ignored.append(p)
            elif p.is_dir():
                continue  # a link to a directory: not followed
            elif (problem := _not_a_file(p)) is not None:
                unreadable.append((p, problem))
            else:
                found.append(p)
    return found, ignored


def _not_a_file(path: Path) -> str | None:
    """Why ``path`` cannot be read as a regular file, or None when it can (checked without opening it)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "broken symbolic link (its target does not exist)"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if not stat.S_ISREG(mode):
        return "not a regular file (a FIFO, socket or device): not read"
    if not os.access(path, os.R_OK):
        return "cannot be read (permission denied). Check its permissions"
    return None


def _format_suffix(path: Path) -> str:
    """The suffix that names the format: the last one, or the one before ``.gz``."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def detect(path: Path) -> str | None:
    """The name of the first source that recognizes the file, or None.

    Sources look at the head of a file. When its first line is longer than the head (a huge
    record, or damage that ran lines together), the head says nothing; the lines after it then
    decide, read from a copy of the next few KB.
    """
    for name, module in SOURCES.items():
        if module.detect(path):
            return name
    if not first_line_exceeds_head(head(path)):
        return None
    with tempfile.TemporaryDirectory(prefix="nhiaudit-") as tmp:
        rest = Path(tmp) / "rest"
        if not _copy_after_first_line(path, rest):
            return None
        return next((name for name, module in SOURCES.items() if module.detect(rest)), None)


def _copy_after_first_line(path: Path, out: Path, scan: int = 64 << 20) -> bool:
    """Copy the 64 KB after the first line break (within ``scan`` bytes) to ``out``; False if none."""
    opener = gzip.open if is_gzip(path) else open
    seen, tail = 0, b""
    try:
        with opener(path, "rb") as fh:
            while seen < scan and (chunk := fh.read(1 << 20)):
                seen += len(chunk)
                cut = chunk.find(b"\n")
                if cut >= 0:
                    tail = chunk[cut + 1 :] + fh.read(1 << 16)
                    break
    except (OSError, EOFError, zlib.error):
        pass
    if not tail.strip():
        return False
    out.write_bytes(tail[: 1 << 16])
    return True


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def ingest(
    con: duckdb.DuckDBPyConnection,
    paths: Iterable[Path],
    source: str | None = None,
    progress: ProgressFn | None = None,
    options: Options | None = None,
    retry_rejected: bool = False,
) -> IngestResult:
    """Ingest files and directories into the store. ``source`` forces one source for every file;
    ``options`` maps a source name to keyword arguments for its ``load`` (e.g.
    ``{"envoy": {"fields": {...}}}``). ``retry_rejected`` loads again a file already stored with
    rejected records (after an upgrade that reads them): its events and rejects are replaced, its
    custody row keeps the time it was first ingested."""
    if source is not None and source not in SOURCES:
        raise NhiauditError(
            f"--source: unknown source '{source}'.{did_you_mean(source, SOURCES)} "
            f"Known sources: {', '.join(SOURCES)}."
        )
    options = options or {}
    _check_options(options)
    unreadable: list[tuple[Path, str]] = []
    files, ignored = discover(paths, unreadable)
    result = IngestResult(ignored=ignored, unreadable=unreadable)
    for path in files:
        try:
            name = source or detect(path)
            size = path.stat().st_size
        except _UNREADABLE as exc:
            result.unreadable.append((path, _unreadable_reason(exc)))
            continue
        if name is None and size == 0:
            result.empty.append(path)
        elif name is None and is_gzip(path) and (problem := gzip_problem(path)):
            result.unreadable.append((path, problem))  # damage, not an unknown format, hid its source
        elif name is None:
            result.unrecognized.append(path)
        else:
            result.files.append(FileResult(path=path, source=name, size=size, retry=retry_rejected))
    # A checkpoint rewrites the events table's last, partly filled row group (up to 122,880
    # rows). At DuckDB's default 16 MB of WAL, a store fed one 10 MB CloudTrail file per
    # transaction checkpointed after nearly every file: a third of ingest time. Every commit is
    # still durable in the WAL; DuckDB checkpoints at this threshold and when the store closes.
    threshold = con.execute("SELECT current_setting('checkpoint_threshold')").fetchone()[0]
    con.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
    # Dictionary compression is analyzed with a hash set of every distinct string of a row group,
    # outside DuckDB's memory limit: for the raw records (1-2 KB each, all distinct) that is 200+
    # MB per row group and thread. A 300,000-record file's merge peaked at 1.77 GB at a 1 GB limit,
    # 1.34 GB without it (benchmarks/memory_limit.py); such columns get FSST or dict_fsst instead
    # (the store measured 5 % larger).
    disabled = con.execute("SELECT current_setting('disabled_compression_methods')").fetchone()[0]
    con.execute(f"SET disabled_compression_methods = '{_without_dictionary(disabled)}'")
    try:
        _load_files(con, result.files, progress, options)
    except KeyboardInterrupt:
        _rollback(con)
        done = [f for f in result.files if f.seconds and not f.already_ingested]
        raise IngestInterrupted(
            f"ingest: interrupted. {len(done)} of {len(result.files)} file(s) were committed before it "
            "(each file is stored whole or not at all). Run the same ingest again to resume: files "
            "already stored are skipped.",
            result,
        ) from None
    finally:
        con.execute(f"SET checkpoint_threshold = '{threshold}'")  # DuckDB's own value, e.g. 16.0 MiB
        con.execute("SET disabled_compression_methods = ?", [disabled])
    result.unreadable += [(f.path, f.note) for f in result.files if f.unreadable]
    result.files = [f for f in result.files if not f.unreadable]
    return result


def _without_dictionary(disabled: str) -> str:
    """``disabled_compression_methods`` with ``dictionary`` added (names: letters and underscores)."""
    methods = [m.strip().lower() for m in str(disabled or "").split(",") if re.fullmatch(r"\s*\w+\s*", m)]
    return ",".join(dict.fromkeys([*methods, "dictionary"]))


def _check_options(options: Options) -> None:
    """Refuse options for an unknown source, or that its ``load`` does not take, before any file
    is loaded (the values themselves are the source's to check)."""
    for name, kwargs in options.items():
        if name not in SOURCES:
            raise NhiauditError(
                f"ingest options: unknown source '{name}'.{did_you_mean(name, SOURCES)} "
                f"Known sources: {', '.join(SOURCES)}."
            )
        try:
            inspect.signature(SOURCES[name].load).bind(None, [], **kwargs)
        except TypeError as exc:
            raise NhiauditError(
                f"ingest options: {name}.load does not take {', '.join(kwargs)} ({exc}). Drop them."
            ) from None


class IngestInterrupted(NhiauditError):
    """Ctrl-C during ingest; ``result`` holds the files committed before it."""

    def __init__(self, message: str, result: IngestResult) -> None:
        super().__init__(message)
        self.result = result


# What reading a file's head may raise, whatever it holds: the file is listed with why, never raised.
_UNREADABLE = (OSError, UnicodeError, zlib.error, RecursionError, EOFError)


def _unreadable_reason(exc: BaseException) -> str:
    if isinstance(exc, PermissionError):
        return "cannot be read (permission denied). Check its permissions"
    if isinstance(exc, OSError):
        return f"cannot be read ({exc.strerror or type(exc).__name__})"
    if isinstance(exc, RecursionError):
        return "its first record is nested too deeply to detect its source"
    if isinstance(exc, zlib.error):
        return "gzip data is corrupt at its start, so its source cannot be detected"
    return f"its source cannot be detected ({type(exc).__name__})"


class _Stopped(Exception):
    """Another file of the run failed: this one must not be committed."""


def _load_files(
    con: duckdb.DuckDBPyConnection, files: list[FileResult], progress: ProgressFn | None, options: Options
) -> None:
    """Load the files in order; stage several at once, commit one at a time, in file order.

    DuckDB runs the statements of one file on about one core (a file is smaller than a row
    group), so each worker stages a file through its own cursor (its own temp tables). Commits
    take turns in file order and each begins after the previous file's commit: duplicates across
    files, the evidence history and every error are exactly those of a sequential run.
    """
    items = _batches(files, options)
    threads = int(con.execute("SELECT current_setting('threads')").fetchone()[0])
    workers = max(1, min(len(items), threads, MAX_WORKERS))
    if workers == 1:
        for item in items:
            if progress:
                for file in item:
                    progress("start", FileResult(path=file.path, source=file.source, size=file.size))
            _load_item(con, item, options)
            if progress:
                for file in item:
                    progress("done", file)
        return
    turns = [threading.Event() for _ in items]
    stop = threading.Event()
    cursors: queue.SimpleQueue[duckdb.DuckDBPyConnection] = queue.SimpleQueue()
    gate = _Gate()
    opened = [con.cursor() for _ in range(workers)]
    for cursor in opened:
        cursor.execute("SET TimeZone = 'UTC'")
        cursors.put(cursor)

    def run(index: int, item: list[FileResult]) -> None:
        def wait_turn() -> None:
            if index:
                turns[index - 1].wait()
            if stop.is_set():
                raise _Stopped

        cursor = cursors.get()
        try:
            _load_item(cursor, item, options, wait_turn=wait_turn, gate=gate)
        finally:
            cursors.put(cursor)
            if index:  # a file that needed no commit (already stored) passes the turn on in order too
                turns[index - 1].wait()
            turns[index].set()

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nhiaudit-ingest")
    try:
        futures = [pool.submit(run, index, item) for index, item in enumerate(items)]
        for item, future in zip(items, futures, strict=True):
            if progress:
                for file in item:
                    progress("start", FileResult(path=file.path, source=file.source, size=file.size))
            future.result()
            if progress:
                for file in item:
                    progress("done", file)
    except BaseException:
        stop.set()  # files not yet committed stay out of the store
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for cursor in opened:
            cursor.close()


def _batches(files: list[FileResult], options: Options) -> list[list[FileResult]]:
    """The files in order, as items to load: runs of small files that a source can normalize
    together (its ``load_records``, after ``stage_record_batch``) are one item, every other file
    an item of its own. A batch is one transaction; a kill still never leaves part of a file."""
    items: list[list[FileResult]] = []
    run: list[FileResult] = []
    size = 0

    def close_run() -> None:
        nonlocal run, size
        if len(run) > 1:
            items.append(run)
        else:
            items.extend([f] for f in run)
        run, size = [], 0

    for file in files:
        if _batchable(file, options):
            if run and (run[0].source != file.source or len(run) >= BATCH_FILES or size + file.size > BATCH_BYTES):
                close_run()
            run.append(file)
            size += file.size
        else:
            close_run()
            items.append([file])
    close_run()
    return items


def _batchable(file: FileResult, options: Options) -> bool:
    module = SOURCES[file.source]
    if not hasattr(module, "load_records") or options.get(module.NAME) or file.retry or file.size > BATCH_BYTES // 4:
        return False
    try:
        str(file.path).encode("utf-8")
        return batchable(file.path)
    except _UNREADABLE:
        return False  # loaded alone, which says why


def _load_item(
    con: duckdb.DuckDBPyConnection,
    item: list[FileResult],
    options: Options,
    wait_turn: Callable[[], None] | None = None,
    gate: _Gate | None = None,
) -> None:
    """Load one file, or a batch of small files in one transaction. A batch that cannot be read
    as one (a file of another layout, a damaged gzip, bad evidence, memory) is rolled back and its
    files loaded one by one, each with every per-file salvage and accounting."""
    module = SOURCES[item[0].source]
    if len(item) > 1:
        started = time.perf_counter()
        pending = [f for f in item if _custody(con, f) and not f.already_ingested]
        if _load_batch(con, module, pending, wait_turn, gate or _Gate()):
            for f in pending:
                f.seconds = (time.perf_counter() - started) / len(pending)
            return
        item = pending
    for file in item:
        load_file(con, file.path, module, file, wait_turn=wait_turn, options=options, gate=gate)


def _load_batch(
    con: duckdb.DuckDBPyConnection,
    module: ModuleType,
    files: list[FileResult],
    wait_turn: Callable[[], None] | None,
    gate: _Gate,
) -> bool:
    """Stage and merge ``files`` together, commit once; False (nothing stored) when they cannot be.
    A file with the same bytes as an earlier one of the batch is not staged: it is already ingested
    once the batch commits, as it would be file by file."""
    first: dict[str, FileResult] = {}
    for f in files:
        first.setdefault(f.sha256, f)
    twins = [f for f in files if first[f.sha256] is not f]
    files = list(first.values())
    if len(files) < 2:
        return False
    try:
        if any(is_gzip(f.path) and gzip_problem(f.path) for f in files):
            return False  # salvaged alone
    except _UNREADABLE:
        return False
    evidence = [EvidenceFile(path=f.path, sha256=f.sha256, size=f.size, read_path=f.path) for f in files]
    if 2 * max(record_limit(f.path) for f in files) > _memory_bytes(con) // 4:
        return False

    def turn() -> None:
        gate.release()
        if wait_turn is not None:
            wait_turn()

    try:
        with gate.staging(False):
            _create_staging(con)
            if not stage_record_batch(con, evidence):
                return False
            module.load_records(con)
            _sql.null_empty_strings(con)
            _check_credential_types(con, module.NAME)
            if con.execute("SELECT count(*) FROM staged_rejected WHERE record_index IS NULL").fetchone()[0]:
                return False  # a rejection that names no record: the per-file path places it
            turn()
            con.execute("BEGIN TRANSACTION")
            shas = [f.sha256 for f in files]
            marks = ", ".join("?" for _ in shas)
            if con.execute(f"SELECT count(*) FROM evidence_files WHERE sha256 IN ({marks})", shas).fetchone()[0]:
                con.execute("ROLLBACK")  # committed earlier in this run under another name
                return False
            _merge_files(con, module.NAME, list(zip(evidence, files, strict=True)), batched=True)
            con.execute("COMMIT")
    except duckdb.Error as exc:
        if isinstance(exc, _INTERNAL_ERRORS):
            raise  # nhiaudit's own SQL is wrong: never hidden by the per-file path
        _rollback(con)
        for f in files:
            f.read = f.loaded = f.rejected = f.duplicates = 0
            f.note = ""
        return False
    except BaseException:
        _rollback(con)  # a bug or an interrupt: nothing of the batch stays, the error goes on
        raise
    for twin in twins:
        twin.already_ingested, twin.note = True, "already ingested (same SHA-256)"
    return True


def _custody(con: duckdb.DuckDBPyConnection, result: FileResult) -> bool:
    """Hash the file and look it up in custody: sets ``already_ingested``, or ``retry_of`` for
    --retry-rejected. False when the file cannot be read (``unreadable`` says why)."""
    try:
        result.sha256 = sha256_of(result.path)
    except OSError as exc:
        result.unreadable, result.note = True, _unreadable_reason(exc)
        return False
    stored = con.execute(
        "SELECT records_rejected, ingested_at FROM evidence_files WHERE sha256 = ?", [result.sha256]
    ).fetchone()
    if stored and result.retry and stored[0]:
        result.retry_of = stored[1]  # loaded again in place of what it gave before; custody kept
    elif stored:
        result.already_ingested = True
        result.note = "already ingested (same SHA-256)"
    return True


def _create_staging(con: duckdb.DuckDBPyConnection) -> None:
    columns = ", ".join(
        f"{name} {kind.replace(' NOT NULL', '')}" for name, kind in store.EVENT_COLUMNS.items()
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE staged ({columns})")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE staged_rejected (record_index BIGINT, line BIGINT, reason VARCHAR, raw VARCHAR)"
    )
    # Records a source read on purpose without making an event (the response half of a Vault
    # pair, a digest file): the completeness check below does not flag them.
    con.execute("CREATE OR REPLACE TEMP TABLE consumed (record_index BIGINT)")
    con.execute("DROP TABLE IF EXISTS records")
    _sql.install(con)  # what every source's SQL may use: wrong-JSON-type macros, credential types


def _check_credential_types(con: duckdb.DuckDBPyConnection, source: str) -> None:
    """What a source staged about credentials keeps to one contract, whatever the source: a credential
    type says what the credential is, so there is none without a credential id; and every type is
    declared in queries/correlate/15_credential_types.sql, where correlation reads whether it is
    temporary or long-term (an undeclared one would be neither, silently)."""
    con.execute("UPDATE staged SET credential_type = NULL WHERE credential_id IS NULL AND credential_type IS NOT NULL")
    undeclared = con.execute(
        """SELECT DISTINCT kind FROM (
            SELECT credential_type AS kind FROM staged
            UNION ALL
            SELECT json_extract_string(details, '$.parent_credential_type') FROM staged
            WHERE category = 'credential_issue')
        WHERE kind IS NOT NULL AND kind NOT IN (SELECT credential_type FROM credential_types)
        ORDER BY kind"""
    ).fetchall()
    if undeclared:
        kinds = ", ".join(f"'{kind}'" for (kind,) in undeclared)
        raise NhiauditError(
            f"nhiaudit/sources/{source}.py: writes credential type {kinds}, which "
            f"nhiaudit/queries/correlate/{_sql.CREDENTIAL_TYPES} does not declare (a bug in nhiaudit). "
            "Declare it there, saying whether it is temporary and long-term."
        )


def load_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    module: ModuleType,
    result: FileResult,
    wait_turn: Callable[[], None] | None = None,
    options: Options | None = None,
    gate: _Gate | None = None,
) -> None:
    """Load one file in one transaction; fills ``result``. A file already ingested is a no-op.

    The source stages the file in temp tables first, called as ``module.load(con, [evidence],
    **options[module.NAME])``; ``wait_turn`` (parallel ingest) blocks until the previous file is
    committed, then the transaction that writes the store begins.

    Bad evidence never raises: a file DuckDB cannot read is one rejected record, a damaged gzip
    loads what it still holds. What raises, after the file is rolled back: an error in nhiaudit's
    own SQL (a bug), and a failure of the machine rather than of the file (out of memory, disk
    full, interrupted) as ``NhiauditError``. Recording that file as rejected would make the next
    run skip it as already ingested.
    """
    started = time.perf_counter()
    if not _custody(con, result):
        return
    if result.already_ingested:
        result.seconds = time.perf_counter() - started
        return
    with tempfile.TemporaryDirectory(prefix="nhiaudit-") as tmp:
        _load_file(con, path, module, result, started, wait_turn, options, gate, _readable_name(path, Path(tmp)))


def _readable_name(path: Path, tmp: Path) -> Path:
    """``path``, or a link to it under a UTF-8 name: DuckDB takes a path in SQL text, which a file
    name that is not UTF-8 (bytes from a tarball made elsewhere) cannot be written in."""
    try:
        str(path).encode("utf-8")
        return path
    except UnicodeEncodeError:
        link = tmp / ("evidence" + "".join(s for s in path.suffixes if s.isascii())[-16:])
        link.symlink_to(path.absolute())
        return link


def path_text(path: Path) -> str:
    """A path as text that can be stored and shown: bytes that are not UTF-8 backslash-escaped."""
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")


def _load_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    module: ModuleType,
    result: FileResult,
    started: float,
    wait_turn: Callable[[], None] | None,
    options: Options | None,
    gate: _Gate | None,
    read_path: Path,
) -> None:
    evidence = EvidenceFile(path=path, sha256=result.sha256, size=result.size, read_path=read_path)
    path = read_path
    # DuckDB reads gzip without checking its CRC or that the stream ends: a truncated or
    # corrupted file reads as shorter or garbled text, without an error. zlib checks both first
    # (and measures what the stream holds, which sizes DuckDB's buffers: never the trailer).
    gzip_check = gzip_problem(path) if is_gzip(path) else None
    gate = gate or _Gate()
    kwargs = dict((options or {}).get(module.NAME, {}))

    def attempt(alone: bool) -> None:
        if not alone:
            with gate.staging(False):
                _load(con, module, kwargs, evidence, result, gzip_check, turn)
            return
        # A file that needs the memory budget to itself waits for the files before it to commit,
        # then stages and commits while no other file stages.
        if wait_turn is not None:
            wait_turn()
        with gate.staging(True):
            _load(con, module, kwargs, evidence, result, gzip_check, lambda: None)

    def turn() -> None:
        gate.release()  # waiting for the previous file's commit holds no share of the budget
        if wait_turn is not None:
            wait_turn()

    alone = 2 * record_limit(path) > _memory_bytes(con) // 4
    try:
        try:
            attempt(alone)
        except duckdb.OutOfMemoryException:
            if alone:
                raise
            _rollback(con)
            attempt(True)  # other files' buffers shared the budget: once more with it to itself
    except duckdb.OutOfMemoryException as exc:
        _rollback(con)
        limit = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        _load_unreadable(
            con, module, evidence, result, lambda: None,
            f"the file does not fit in the memory limit ({limit}: {_short(duckdb_reason(exc), 120)}). "
            "Re-run with a larger --memory-limit and --retry-rejected",
        )
    except BaseException as exc:
        _fail(con, evidence.path, exc)
    if not result.read and not result.already_ingested and not result.note:
        result.note = "empty: the file holds no records"
    result.seconds = time.perf_counter() - started


def _fail(con: duckdb.DuckDBPyConnection, path: Path, exc: BaseException) -> None:
    _rollback(con)
    if isinstance(exc, duckdb.Error) and not isinstance(exc, _INTERNAL_ERRORS):
        raise NhiauditError(
            f"{path}: could not load this file ({_short(duckdb_reason(exc))}). Nothing from it was stored; "
            "files loaded before it are kept. Fix the cause (disk space, another process) and run the "
            "same ingest again: files already stored are skipped."
        ) from exc
    raise exc  # a bug in nhiaudit's SQL, or an interrupt: never disguised as a rejected file


def _memory_bytes(con: duckdb.DuckDBPyConnection) -> int:
    (limit,) = con.execute(
        "SELECT value FROM duckdb_settings() WHERE name = 'memory_limit'"
    ).fetchone()
    match = re.match(r"([\d.]+)\s*([KMGT]?i?B)", str(limit))
    if not match:
        return 1 << 30
    scale = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
             "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
    return int(float(match.group(1)) * scale.get(match.group(2), 1))


class _Gate:
    """Staging shares DuckDB's one memory budget: a file whose buffers need a large share of it (or
    that ran out of memory beside others) stages alone, so whether it fits never depends on which
    other files happened to be staging (deterministic). Held while staging, released for the
    commit turn (files waiting for their turn hold nothing)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._held = threading.local()

    @contextmanager
    def staging(self, exclusive: bool):
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive and (not exclusive or self._shared == 0))
            if exclusive:
                self._exclusive = True
            else:
                self._shared += 1
        self._held.mode = "x" if exclusive else "s"
        try:
            yield
        finally:
            self.release()

    def release(self) -> None:
        """Stop counting this thread as staging (idempotent): called before waiting for the turn."""
        mode = getattr(self._held, "mode", None)
        if mode is None:
            return
        self._held.mode = None
        with self._cond:
            if mode == "x":
                self._exclusive = False
            else:
                self._shared -= 1
            self._cond.notify_all()


class _DamagedGzip(Exception):
    """The gzip check found the stream truncated or corrupt (raised before COMMIT)."""


def _load(
    con: duckdb.DuckDBPyConnection,
    module: ModuleType,
    kwargs: dict[str, Any],
    evidence: EvidenceFile,
    result: FileResult,
    gzip_check: str | None,
    wait_turn: Callable[[], None],
) -> None:
    def gzip_intact() -> None:
        if problem := gzip_check:
            raise _DamagedGzip(problem)

    try:
        _load_in_transaction(con, module, kwargs, evidence, result, wait_turn, before_commit=gzip_intact)
        return
    except _DamagedGzip as damaged:
        _rollback(con)
        _load_damaged_gzip(con, module, kwargs, evidence, result, wait_turn, str(damaged))
        return
    except duckdb.Error as exc:
        if not _bad_evidence(exc, evidence):
            raise
        _rollback(con)
        error = exc
    if problem := gzip_check:
        _load_damaged_gzip(con, module, kwargs, evidence, result, wait_turn, problem)  # why DuckDB could not read it
        return
    if evidence.line_mode is None and first_line_exceeds_head(head(evidence.read_path)):
        # Read as one document because its first line is long, the file may be NDJSON with a
        # bad line: read it by lines, so that only the bad lines are rejected.
        try:
            _load_in_transaction(con, module, kwargs, replace(evidence, line_mode=True), result, wait_turn)
            return
        except duckdb.Error as exc:
            if not _bad_evidence(exc, evidence):
                raise
            _rollback(con)
    if _NOT_UTF8.search(str(error)) and _load_utf8_salvage(con, module, kwargs, evidence, result, wait_turn):
        return
    _load_unreadable(
        con, module, evidence, result, wait_turn, f"{module.NAME} could not read the file: {duckdb_reason(error)}"
    )


# How DuckDB says a file is not UTF-8 (the CSV reader, the JSON reader).
_NOT_UTF8 = re.compile(r"invalid unicode|not utf-8 encoded|invalid utf-8", re.IGNORECASE)
# A first line that opens a JSON document spread over several lines ("{", "[", "[{", '["'), as
# opposed to a text log line that starts with a bracket ("[2026-11-02T09:00:00Z] ...").
_DOCUMENT_START = re.compile(r"^\s*(\{|\[\s*($|[\[{\"\]]))")


def _load_utf8_salvage(
    con: duckdb.DuckDBPyConnection,
    module: ModuleType,
    kwargs: dict[str, Any],
    evidence: EvidenceFile,
    result: FileResult,
    wait_turn: Callable[[], None],
) -> bool:
    """Load a line-oriented file (NDJSON, a text log) whose lines are not all UTF-8: each such line
    is one rejected record, the other lines load. One stray byte (a raw header value an attacker
    sent through a proxy) must not make a whole access log unreadable.

    The bad lines are blanked in a copy, so line numbers stay exact and the line's record is gone
    rather than altered; its bytes are kept in ``rejected.raw`` (backslash-escaped). A JSON
    document spread over lines is not salvaged (blanking a line could leave a valid document with
    a field missing): it stays one rejected record. Like the gzip salvage, this per-line Python pass
    runs only after DuckDB refused the file. Returns False when the file is not line-oriented or
    still cannot be read.
    """
    text = head(evidence.read_path)
    first = next((line for line in text.split("\n") if line.strip()), "")
    ndjson = is_line_delimited(text, evidence.size)
    if not ndjson and (_DOCUMENT_START.match(first) or first_line_exceeds_head(text)):
        return False
    with tempfile.TemporaryDirectory(prefix="nhiaudit-") as tmp:
        salvaged = Path(tmp) / (evidence.read_path.name.removesuffix(".gz") or "salvaged")
        bad = _blank_non_utf8_lines(evidence.read_path, salvaged)
        if not bad:
            return False
        rejects = [
            (None, number, f"line {number}: not UTF-8 text (invalid byte at column {column}); the line was "
             "not read", raw)
            for number, column, raw in bad
        ]
        copy = replace(evidence, read_path=salvaged, line_mode=True if ndjson else evidence.line_mode)
        try:
            _load_in_transaction(con, module, kwargs, copy, result, wait_turn, extra_rejects=rejects)
        except duckdb.Error as again:
            if not _bad_evidence(again, copy):
                raise
            _rollback(con)
            return False
    if not result.already_ingested:
        result.note = f"{len(bad)} line(s) not UTF-8 text were rejected; the other lines loaded"
    return True


def _blank_non_utf8_lines(path: Path, out: Path) -> list[tuple[int, int, str]]:
    """Copy ``path`` (decompressed) to ``out`` with each line that is not UTF-8 left empty;
    return (line number, 1-based column of the first bad byte, the line backslash-escaped)."""
    bad: list[tuple[int, int, str]] = []
    opener = gzip.open if is_gzip(path) else open
    with opener(path, "rb") as source, open(out, "wb") as sink:
        for number, line in enumerate(source, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raw = line.rstrip(b"\r\n").decode("utf-8", errors="backslashreplace")[:RAW_EXCERPT]
                bad.append((number, exc.start + 1, raw))
                line = b"\n"
            sink.write(line)
    return bad


def _bad_evidence(exc: duckdb.Error, evidence: EvidenceFile) -> bool:
    """True when DuckDB failed because of what the file holds, not because of nhiaudit or the machine."""
    if isinstance(exc, _INTERNAL_ERRORS + _MACHINE_ERRORS):
        return False
    if isinstance(exc, duckdb.IOException):  # reading the evidence, or writing the store?
        return str(evidence.read_path) in str(exc)
    return True


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass  # no transaction was open


def _load_in_transaction(
    con: duckdb.DuckDBPyConnection,
    module: ModuleType,
    kwargs: dict[str, Any],
    evidence: EvidenceFile,
    result: FileResult,
    wait_turn: Callable[[], None],
    extra_rejects: list[tuple[int | None, int | None, str, str | None]] = (),
    before_commit: Callable[[], None] | None = None,
) -> None:
    """Stage the file (temp tables only), then merge it into the store in one transaction."""
    _create_staging(con)
    module.load(con, [evidence], **kwargs)
    _sql.null_empty_strings(con)  # every source: an empty string is an absent value (DESIGN §9)
    _check_credential_types(con, module.NAME)
    for record_index, line, reason, raw in extra_rejects:
        con.execute("INSERT INTO staged_rejected VALUES (?, ?, ?, ?)", [record_index, line, reason, raw])
    wait_turn()
    con.execute("BEGIN TRANSACTION")
    if result.retry_of is None and con.execute(
        "SELECT 1 FROM evidence_files WHERE sha256 = ?", [evidence.sha256]
    ).fetchone():
        con.execute("ROLLBACK")  # the same bytes under another name, committed earlier in this run
        result.already_ingested, result.note = True, "already ingested (same SHA-256)"
        return
    _merge(con, module.NAME, evidence, result)
    if before_commit is not None:
        before_commit()
    con.execute("COMMIT")


def _merge(con: duckdb.DuckDBPyConnection, source: str, evidence: EvidenceFile, result: FileResult) -> None:
    """Move one file's staged rows into events (deduplicated) and rejected; record the evidence file."""
    _merge_files(con, source, [(evidence, result)])


def _merge_files(
    con: duckdb.DuckDBPyConnection,
    source: str,
    files: list[tuple[EvidenceFile, FileResult]],
    batched: bool = False,
) -> None:
    """Move the staged rows of ``files`` into events (deduplicated) and rejected; record each file.

    ``batched``: the rows are several files' (``stage_record_batch`` numbering), merged exactly as
    if each file were merged after the one before it: duplicates, conflicts and counts per file.
    """
    fno, index = (BATCH_FILE_NO, BATCH_INDEX) if batched else ("0", "record_index")

    def of(alias: str) -> tuple[str, str]:  # the file number and the record's index in its file, of a row
        column = f"{alias}.record_index"
        return fno.replace("record_index", column), index.replace("record_index", column)

    staged_no, staged_index = of("staged")
    s_index = of("s")[1]
    r_no, r_index = of("r")
    con.execute("CREATE OR REPLACE TEMP TABLE merge_files (file_no BIGINT, sha VARCHAR, path VARCHAR, size BIGINT)")
    con.executemany(
        "INSERT INTO merge_files VALUES (?, ?, ?, ?)",
        [(n, ev.sha256, path_text(ev.path), ev.size) for n, (ev, _) in enumerate(files)],
    )
    for evidence, result in files:
        if result.retry_of is not None:  # --retry-rejected: this file's earlier result is replaced whole
            for table in ("events", "rejected"):
                con.execute(f"DELETE FROM {table} WHERE file_sha256 = ?", [evidence.sha256])
            con.execute("DELETE FROM evidence_files WHERE sha256 = ?", [evidence.sha256])
    _check_complete(con)
    # An event without its own id gets one from its position: stable for the same bytes.
    con.execute(
        f"""UPDATE staged SET event_id = coalesce(event_id, 'rec-' || left(m.sha, 12) || '-' || {staged_index}),
                              dedupe_key = coalesce(dedupe_key, md5(raw::VARCHAR))
        FROM merge_files m WHERE m.file_no = {staged_no}"""
    )
    # Only identical records are duplicates (DESIGN §9): the same dedupe key with other content is
    # a conflict, and both copies are kept, each with its own pointer (file, record, line); the
    # first stored is the evidence (queries/correlate/05_event_evidence.sql). The first copy of
    # each (key, content) is chosen on (key, content, position, rowid) alone: a window over the
    # staged rows would carry every column, raw records included, through its sort.
    # Content is what the source read from the record: every events column but its ids, the raw
    # record and where it was (a source may derive event_id from the position, and `details` holds
    # positions and file metadata: invariant's trace_line, file_metadata). The same record
    # pretty-printed, or delivered native in one file and wrapped in another (an EventBridge
    # envelope), is the same event. A batch's record_index orders its files, then their records.
    content = f"md5(row({', '.join(_CONTENT_COLUMNS)})::VARCHAR)"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE staged_content AS
        SELECT rowid AS staged_row, {fno} AS file_no, dedupe_key, record_index, {content} AS content_md5 FROM staged"""
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE stored_copies AS
        SELECT dedupe_key, {content} AS content_md5 FROM events
        WHERE source = ? AND dedupe_key IN (SELECT dedupe_key FROM staged_content){_stored_window(con, source)}""",
        [source],
    )
    # Per file, the ids seen with other content in the store or in a file merged before it.
    conflicts = dict(
        con.execute(
            """SELECT c.file_no, count(DISTINCT c.dedupe_key) FROM staged_content c
            JOIN (SELECT dedupe_key, content_md5, -1 AS file_no FROM stored_copies
                  UNION ALL SELECT dedupe_key, content_md5, file_no FROM staged_content) o
              ON o.dedupe_key = c.dedupe_key AND o.content_md5 <> c.content_md5 AND o.file_no <= c.file_no
            GROUP BY c.file_no"""
        ).fetchall()
    )
    # A later version of a stored (or earlier) record gets its own id, ``<id>~<content hash>``:
    # correlation joins on (source, event_id), and two rows under one id multiply its chains.
    con.execute(
        """CREATE OR REPLACE TEMP TABLE kept AS
        SELECT staged_row, file_no, content_md5,
               EXISTS (SELECT 1 FROM stored_copies e WHERE e.dedupe_key = k.dedupe_key)
               OR row_number() OVER (PARTITION BY dedupe_key ORDER BY record_index, staged_row) > 1 AS variant
        FROM (SELECT dedupe_key, content_md5, arg_min(staged_row, (record_index, staged_row)) AS staged_row,
                     arg_min(file_no, (record_index, staged_row)) AS file_no, min(record_index) AS record_index
              FROM staged_content c
              WHERE NOT EXISTS (SELECT 1 FROM stored_copies e
                                WHERE e.dedupe_key = c.dedupe_key AND e.content_md5 = c.content_md5)
              GROUP BY dedupe_key, content_md5) k"""
    )
    con.execute(
        f"""INSERT INTO events BY NAME
        SELECT s.* REPLACE (? AS source, m.sha AS file_sha256, {s_index} AS record_index,
                            CASE WHEN k.variant THEN s.event_id || '~' || left(k.content_md5, 8)
                                 ELSE s.event_id END AS event_id)
        FROM staged s JOIN kept k ON s.rowid = k.staged_row JOIN merge_files m ON m.file_no = k.file_no""",
        [source],
    )
    con.execute(
        f"""INSERT INTO rejected
        SELECT m.sha, m.path, ?, {r_index}, r.line, {_SCRUBBED_REASON}, left(r.raw, ?)
        FROM staged_rejected r JOIN merge_files m ON m.file_no = {r_no}
        ORDER BY m.file_no, r.line NULLS LAST, r.record_index NULLS LAST""",
        [source, RAW_EXCERPT],
    )
    counts = {
        n: (staged, loaded, rejected)
        for n, staged, loaded, rejected in con.execute(
            f"""SELECT m.file_no,
                   (SELECT count(*) FROM staged_content c WHERE c.file_no = m.file_no),
                   (SELECT count(*) FROM kept k WHERE k.file_no = m.file_no),
                   (SELECT count(*) FROM staged_rejected r WHERE {r_no} = m.file_no)
            FROM merge_files m"""
        ).fetchall()
    }
    for n, (_, result) in enumerate(files):
        staged, loaded, rejected = counts[n]
        result.read, result.loaded, result.rejected = staged + rejected, loaded, rejected
        result.duplicates = staged - loaded
        if conflicts.get(n):
            result.note = (
                f"{conflicts[n]} id(s) of this file were seen with different content: every version is kept, a "
                "later one as <id>~<content hash>; nhiaudit sql \"SELECT source, event_id, line FROM events WHERE "
                "event_id LIKE '%~%'\" lists them"
            )
    con.execute(
        """INSERT INTO evidence_files
        SELECT m.sha, m.path, m.size, ?, now(), t.read, t.loaded, t.rejected, t.duplicates
        FROM merge_files m JOIN (SELECT unnest(?) AS file_no, unnest(?) AS read, unnest(?) AS loaded,
                                        unnest(?) AS rejected, unnest(?) AS duplicates) t USING (file_no)
        ORDER BY m.file_no""",
        [
            source,
            list(range(len(files))),
            *([getattr(result, key) for _, result in files] for key in ("read", "loaded", "rejected", "duplicates")),
        ],
    )
    for evidence, result in files:
        if result.retry_of is not None:  # custody: when the evidence was first received
            con.execute(
                "UPDATE evidence_files SET ingested_at = ? WHERE sha256 = ?", [result.retry_of, evidence.sha256]
            )
    store.bump_generation(con)


def _stored_window(con: duckdb.DuckDBPyConnection, source: str) -> str:
    """A filter on the stored events that may hold a copy of a staged one, so that the dedupe reads
    the part of the store the new records can match rather than all of it (every file's merge
    scanning every stored key made ingest quadratic: 4.7x DuckDB alone at 2M records, issue 14).

    A source whose dedupe key fixes the event's time (``DEDUPE_KEY_FIXES_TIME``: CloudTrail's key
    holds eventTime, from which occurred_at is read) can only match stored events of the staged
    time span, or without a time when a staged one has none: DuckDB skips every row group whose
    time range lies outside (zone maps), and logs arrive roughly in time order. The bounds are
    constants (SQL literals of timestamps DuckDB printed), so the filter reaches the scan."""
    if not getattr(SOURCES.get(source), "DEDUPE_KEY_FIXES_TIME", False):
        return ""
    low, high, untimed = con.execute(
        "SELECT min(occurred_at)::VARCHAR, max(occurred_at)::VARCHAR, bool_or(occurred_at IS NULL) FROM staged"
    ).fetchone()
    if any(v is not None and not _PRINTED_TIMESTAMP.fullmatch(v) for v in (low, high)):
        return ""  # 'infinity', a year BC: read the whole store rather than write such a literal
    spans = [f"occurred_at BETWEEN TIMESTAMPTZ '{low}' AND TIMESTAMPTZ '{high}'"] if low is not None else []
    if untimed:
        spans.append("occurred_at IS NULL")
    return " AND (" + " OR ".join(spans or ["false"]) + ")"


_PRINTED_TIMESTAMP = re.compile(r"\d{4,}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?[+-]\d\d(:\d\d)?")


# A reason is shown on the terminal and in reports: it names the field and the problem. Sources
# quote a short value to help ('yesterday' is not a time), but evidence is hostile and a token
# planted in a time field would be quoted too. So every quoted value goes when any one of them
# looks like a secret (a run of 16 token characters: keys, tokens, JWTs), and control characters
# (line feeds, escapes) become spaces, whatever the source wrote.
_SCRUBBED_REASON = r"""regexp_replace(
    CASE WHEN len(list_filter(regexp_extract_all(reason, '''([^'']*)''', 1),
                              v -> regexp_matches(v, '[A-Za-z0-9+/=_-]{16}'))) > 0
         THEN regexp_replace(reason, '''(?s:.*)''', '''…''')
         ELSE reason END,
    '[\x00-\x1f\x7f]', ' ', 'g')"""


_CONTENT_COLUMNS = [
    c
    for c in store.EVENT_COLUMNS
    if c not in ("event_id", "details", "raw", "record_index", "line", "file_sha256", "source", "dedupe_key")
]


def _check_complete(con: duckdb.DuckDBPyConnection) -> None:
    """Every staged input record must be an event, a rejection or consumed: nothing silently lost."""
    has_records = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'records' AND temporary"
    ).fetchone()[0]
    if not has_records:
        return
    con.execute(
        """INSERT INTO staged_rejected
        SELECT record_index, line, 'record ' || record_index || ' was read but the source produced no event '
               || 'from it (an nhiaudit bug: please report it with this record)', left(doc::VARCHAR, ?)
        FROM records
        WHERE record_index NOT IN (SELECT record_index FROM staged WHERE record_index IS NOT NULL)
          AND record_index NOT IN (SELECT record_index FROM staged_rejected WHERE record_index IS NOT NULL)
          AND record_index NOT IN (SELECT record_index FROM consumed)""",
        [RAW_EXCERPT],
    )


def _load_unreadable(
    con: duckdb.DuckDBPyConnection,
    module: ModuleType,
    evidence: EvidenceFile,
    result: FileResult,
    wait_turn: Callable[[], None],
    reason: str,
) -> None:
    """The file as a whole could not be read: it counts as one rejected record."""
    _create_staging(con)
    con.execute("INSERT INTO staged_rejected VALUES (NULL, NULL, ?, NULL)", [_short(reason)])
    wait_turn()
    con.execute("BEGIN TRANSACTION")
    _merge(con, module.NAME, evidence, result)
    con.execute("COMMIT")
    result.note = _short(reason)


def _load_damaged_gzip(
    con: duckdb.DuckDBPyConnection,
    module: ModuleType,
    kwargs: dict[str, Any],
    evidence: EvidenceFile,
    result: FileResult,
    wait_turn: Callable[[], None],
    problem: str,
) -> None:
    """Load what a damaged gzip still holds; the damage itself becomes a rejected record.

    A truncated stream is a faithful prefix of the file and its complete records load. Corrupt
    data (a bad CRC, an invalid block) may have decompressed to altered text before zlib noticed,
    so none of it is trusted: the file is one rejected record.
    """
    if problem.startswith("gzip data is corrupt"):
        reason = f"{problem}: the file fails its integrity check, so none of its records are loaded"
        _load_unreadable(con, module, evidence, result, wait_turn, reason)
        return
    with tempfile.TemporaryDirectory(prefix="nhiaudit-") as tmp:
        salvaged = Path(tmp) / (evidence.read_path.name.removesuffix(".gz") or "salvaged")
        written, found = _salvage_gzip(con, evidence, salvaged)
        problem = found or problem
        reason = (
            f"{problem}: records after byte {written} of the decompressed stream are lost; "
            "the partial record at the break was dropped"
        )
        try:
            _load_in_transaction(
                con,
                module,
                kwargs,
                replace(evidence, read_path=salvaged),
                result,
                wait_turn,
                extra_rejects=[(None, None, reason, None)],
            )
            result.note = reason
        except duckdb.Error as again:
            if not _bad_evidence(again, replace(evidence, read_path=salvaged)):
                raise
            _rollback(con)
            _load_unreadable(
                con,
                module,
                evidence,
                result,
                wait_turn,
                f"{problem}; nothing readable before it ({duckdb_reason(again)})",
            )


def _salvage_gzip(con: duckdb.DuckDBPyConnection, evidence: EvidenceFile, salvaged: Path) -> tuple[int, str]:
    """Write what a truncated gzip still holds to ``salvaged``: its whole lines or, when it is one
    document cut short (an S3 delivery file's single line ``{"Records": [...``, a JSON array), that
    document closed after its last complete record. Returns (decompressed bytes kept, the damage)."""
    text = head(evidence.read_path)
    if not is_line_delimited(text, evidence.size) and opens_array_document(text):
        whole = salvaged.with_name(salvaged.name + ".prefix")
        _, found = gzip_readable_prefix(evidence.read_path, whole, whole_lines=False)
        kept = close_document_prefix(con, whole, salvaged)
        whole.unlink()
        if kept:
            return kept, found
    return gzip_readable_prefix(evidence.read_path, salvaged)


# DuckDB error messages quote the evidence: the CSV reader prints the whole offending line
# ("Original Line: ..."), a failed cast the value ("Could not convert string '...'"). A reason is
# shown in the ingest summary and stored in ``rejected.reason``, so it must not carry log text (which
# may hold a session token or a password); the record itself is kept in ``rejected.raw``.
_ORIGINAL_LINE = re.compile(r"^\s*Original Line:.*$", re.MULTILINE)
_QUOTED_VALUE = re.compile(r"'[^'\n]*'")


def duckdb_reason(exc: BaseException | str) -> str:
    """A DuckDB error as a reason fit to show: no quoted evidence, no option dump."""
    text = str(exc).split("Possible Solution", 1)[0]
    text = _ORIGINAL_LINE.sub("", text)
    return _QUOTED_VALUE.sub("'…'", text)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
