"""Readers shared by the sources: sniff a file's head, stage its JSON records for SQL.

Every record is parsed by DuckDB. Python only reads the first few KB of a file to decide which SQL
to run (NDJSON lines or one document), and, for a damaged gzip, copies the readable prefix so DuckDB
can read it (see ``nhiaudit.ingest``).
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import duckdb

HEAD_BYTES = 8192
MAX_RECORD_BYTES = 1 << 30  # a single record may be large (the brief tests 50 MB); DuckDB's default is 16 MB
RAW_EXCERPT = 4096  # how much of a rejected record is kept


@dataclass(frozen=True)
class EvidenceFile:
    """A file being ingested. ``read_path`` differs from ``path`` when a damaged gzip was salvaged."""

    path: Path
    sha256: str
    size: int
    read_path: Path

    @property
    def compressed(self) -> bool:
        return is_gzip(self.read_path)


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


@lru_cache(maxsize=256)
def _head_cached(path: str, mtime_ns: int, size: int) -> str:
    with open(path, "rb") as fh:
        data = fh.read(HEAD_BYTES if not is_gzip(Path(path)) else 65536)
    if data[:2] == b"\x1f\x8b":
        # A partial gzip stream: decompress what we have, ignore the missing tail.
        data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, HEAD_BYTES)
    return data[:HEAD_BYTES].decode("utf-8", errors="replace").lstrip("\ufeff")


def head(path: Path) -> str:
    """The first few KB of a file as text (decompressed when gzip). Cheap: used by every detect()."""
    stat = path.stat()
    return _head_cached(str(path), stat.st_mtime_ns, stat.st_size)


def first_json_line(text: str) -> object | None:
    """The first non-blank line of ``text`` parsed as JSON, or None if it is not complete JSON."""
    for line in text.splitlines():
        if line.strip():
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def is_line_delimited(text: str, file_size: int) -> bool:
    """True when the head's first line is a complete JSON value on its own (NDJSON)."""
    stripped = text.lstrip()
    if not stripped or stripped[0] == "[":
        return False
    first = stripped.split("\n", 1)
    if len(first) == 1 and len(text.encode()) >= HEAD_BYTES:
        return False  # the first line does not fit in the head: one big document
    return first_json_line(stripped) is not None


def read_lines_sql(path: Path) -> str:
    """A DuckDB relation of (line, text) over a text file, gzip or not, one row per line.

    ``read_csv`` with a delimiter that JSON cannot contain unescaped and no quoting returns each
    line whole; blank lines come back as NULL rows, which keeps the line numbers exact.
    """
    return (
        "SELECT row_number() OVER () AS line, text FROM read_csv("
        f"{sql_str(path)}, columns = {{'text': 'VARCHAR'}}, delim = '\x01', quote = '', escape = '', "
        "header = false, auto_detect = false, strict_mode = false, "
        f"max_line_size = {MAX_RECORD_BYTES}, buffer_size = {MAX_RECORD_BYTES + 1}, "
        "compression = 'auto')"
    )


def sql_str(value: object) -> str:
    """Quote a value as a SQL string literal. Only for paths in table functions, which DuckDB
    does not accept as prepared parameters; everything else is passed as a parameter."""
    return "'" + str(value).replace("'", "''") + "'"


def stage_json_records(
    con: duckdb.DuckDBPyConnection,
    file: EvidenceFile,
    unwrap: tuple[str, ...] = (),
    line_mode: bool | None = None,
) -> None:
    """Create the temp table ``records(record_index, line, doc JSON)`` for one file.

    Accepts NDJSON (one value a line), one or more JSON documents, a top-level array, and wrapper
    objects whose key is in ``unwrap`` (``{"Records": [...]}``) in either layout. Invalid lines and
    non-object records go to ``staged_rejected`` with a reason.
    """
    if line_mode is None:
        line_mode = is_line_delimited(head(file.read_path), file.size)
    if line_mode:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE docs AS
            SELECT line, CASE WHEN json_valid(text) THEN text::JSON END AS doc, text
            FROM ({read_lines_sql(file.read_path)}) WHERE trim(coalesce(text, '')) <> ''"""
        )
        con.execute(
            """INSERT INTO staged_rejected
            SELECT NULL, line, 'line ' || line || ': not valid JSON (truncated or malformed record)',
                   left(text, ?) FROM docs WHERE doc IS NULL""",
            [RAW_EXCERPT],
        )
    else:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE docs AS
            SELECT 1::BIGINT AS line, json AS doc, NULL::VARCHAR AS text
            FROM read_json_objects({sql_str(file.read_path)}, format = 'unstructured',
                                   maximum_object_size = {MAX_RECORD_BYTES})"""
        )
    wrappers = " OR ".join(f"coalesce(json_type(doc, {sql_str('$.' + key)}) = 'ARRAY', false)" for key in unwrap) or "false"
    # Unnest in the select list, not as a lateral join: a lateral join copies the whole document
    # into every row it produces (a 10 MB S3 delivery file of 5,000 records would need 50 GB).
    parts = [
        f"SELECT line, 0 AS pos, doc FROM docs WHERE doc IS NOT NULL AND json_type(doc) <> 'ARRAY' "
        f"AND NOT ({wrappers})",
        "SELECT line, generate_subscripts(elems, 1) AS pos, unnest(elems) AS doc FROM ("
        "SELECT line, json_extract(doc, '$[*]') AS elems FROM docs WHERE doc IS NOT NULL AND json_type(doc) = 'ARRAY')",
    ]
    for key in unwrap:
        path = sql_str(f"$.{key}[*]")
        parts.append(
            f"SELECT line, generate_subscripts(elems, 1) AS pos, unnest(elems) AS doc FROM ("
            f"SELECT line, json_extract(doc, {path}) AS elems FROM docs "
            f"WHERE json_type(doc, {sql_str('$.' + key)}) = 'ARRAY')"
        )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE records AS SELECT (row_number() OVER (ORDER BY line, pos) - 1) "
        "AS record_index, line, doc FROM (" + " UNION ALL ".join(parts) + ")"
    )
    con.execute(
        """INSERT INTO staged_rejected
        SELECT record_index, line, 'record ' || record_index || ' is a JSON ' || lower(json_type(doc))
               || ', not an object', left(doc::VARCHAR, ?) FROM records WHERE json_type(doc) <> 'OBJECT'""",
        [RAW_EXCERPT],
    )
    con.execute("DELETE FROM records WHERE json_type(doc) <> 'OBJECT'")


def gzip_readable_prefix(path: Path, out: Path) -> tuple[int, str]:
    """Copy the decompressible prefix of a damaged gzip to ``out`` (plain text).

    Returns (bytes written, what was wrong). Drops the last, partial line: it is reported as
    rejected by the caller. This is the one per-byte Python path in ingest, taken only after
    DuckDB refused the file.
    """
    written = 0
    problem = "gzip stream ends early (truncated file)"
    with open(path, "rb") as raw, open(out, "wb") as sink:
        decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
        tail = b""
        try:
            while chunk := raw.read(1 << 20):
                data = tail + decomp.decompress(chunk)
                cut = data.rfind(b"\n")
                if cut >= 0:
                    sink.write(data[: cut + 1])
                    written += cut + 1
                    tail = data[cut + 1 :]
                else:
                    tail = data
                if decomp.eof:
                    problem = "gzip member ended; trailing bytes are not gzip data"
                    break
        except zlib.error as exc:
            problem = f"gzip data is corrupt ({exc})"
        if decomp.eof and not decomp.unused_data and not tail:
            problem = ""
        elif decomp.eof and tail and not decomp.unused_data:
            sink.write(tail)
            written += len(tail)
            problem = ""
    return written, problem


def gzip_ok(path: Path) -> bool:
    """True when the whole gzip stream decompresses (used only after DuckDB failed on it)."""
    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(1 << 20):
                pass
        return True
    except (OSError, EOFError, zlib.error):
        return False
