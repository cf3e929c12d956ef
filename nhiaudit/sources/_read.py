"""Readers shared by the sources: sniff a file's head, stage its JSON records for SQL.

Every record is parsed by DuckDB. Python only reads the first few KB of a file to decide which SQL
to run (NDJSON lines or one document), and, for a damaged gzip, copies the readable prefix so DuckDB
can read it (see ``nhiaudit.ingest``).
"""

from __future__ import annotations

import gzip
import json
import re
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import duckdb

HEAD_BYTES = 8192
MAX_RECORD_BYTES = 1 << 30  # a single record may be large (the brief tests 50 MB); DuckDB's default is 16 MB
MIN_RECORD_BYTES = 16 << 20
ELEMENT_BYTES = 16 << 20  # first bound tried for one element of a streamed array (a larger one retries)
STREAM_DOCUMENT_BYTES = 32 << 20  # a wrapper document larger than this is streamed (_stage_documents)
RAW_EXCERPT = 4096  # how much of a rejected record is kept
# What kind of JSON value ``doc`` is, from its first byte when that settles it (a multi-MB
# document is not parsed again for it), else from json_type (leading whitespace, scalars).
_IS_ARRAY = (
    "CASE WHEN starts_with(doc::VARCHAR, '[') THEN true WHEN starts_with(doc::VARCHAR, '{') THEN false "
    "ELSE coalesce(json_type(doc) = 'ARRAY', false) END"
)
_NOT_OBJECT = (
    "CASE WHEN starts_with(doc::VARCHAR, '{') THEN false ELSE coalesce(json_type(doc) <> 'OBJECT', true) END"
)


@dataclass(frozen=True)
class EvidenceFile:
    """A file being ingested. ``read_path`` differs from ``path`` when a damaged gzip was salvaged.

    ``line_mode`` forces how ``stage_json_records`` reads the file (None: decided from its head).
    """

    path: Path
    sha256: str
    size: int
    read_path: Path
    line_mode: bool | None = None

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
        # A partial gzip stream: decompress what we have, ignore the missing tail. Corrupt data
        # ends the head where zlib stops (the gzip check rejects the file later, with its reason).
        decomp, out = zlib.decompressobj(16 + zlib.MAX_WBITS), b""
        try:
            for start in range(0, len(data), 1024):
                out += decomp.decompress(data[start : start + 1024], HEAD_BYTES - len(out))
                if len(out) >= HEAD_BYTES or decomp.eof:
                    break
        except zlib.error:
            pass
        data = out
    return data[:HEAD_BYTES].decode("utf-8", errors="replace").lstrip("\ufeff")


def head(path: Path) -> str:
    """The first few KB of a file as text (decompressed when gzip). Cheap: used by every detect()."""
    stat = path.stat()
    return _head_cached(str(path), stat.st_mtime_ns, stat.st_size)


def first_json_line(text: str) -> object | None:
    """The first record of ``text`` read as NDJSON: its first non-blank line parsed as JSON, or,
    when that line is damaged (a shipper's partial chunk, a flipped byte), the first later complete
    line of the head that is a JSON object, if most of them are. None otherwise."""
    # Split on "\n" only: splitlines() also splits at U+2028 and other characters that JSON
    # strings may hold unescaped.
    lines = text.split("\n")
    complete = [line for line in (lines if len(text.encode()) < HEAD_BYTES else lines[:-1]) if line.strip()]
    if not complete:
        return None
    first = _json(complete[0])
    if first is not None:
        return first
    # The first line is damaged: NDJSON when most later complete lines are objects on their own (a
    # pretty-printed document may hold one compact record on a line, but not most of its lines).
    later = [value for value in map(_json, complete[1:]) if isinstance(value, dict)]
    return later[0] if later and 2 * len(later) > len(complete) - 1 else None


def _json(line: str) -> object | None:
    try:
        return json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python parses
        return None


def is_line_delimited(text: str, file_size: int) -> bool:
    """True when the head reads as NDJSON: its first line is a complete JSON value on its own, or
    (a damaged first line) most later complete lines of the head are JSON objects on their own."""
    stripped = text.lstrip()
    if not stripped or stripped[0] == "[":
        return False
    if first_line_exceeds_head(text):
        return False  # one big document (or NDJSON with a big first record: see stage_json_records)
    return first_json_line(stripped) is not None


def first_line_exceeds_head(text: str) -> bool:
    """True when the head holds no complete first line: nothing in it tells NDJSON from a document."""
    return "\n" not in text.lstrip() and len(text.encode()) >= HEAD_BYTES


def read_lines_sql(path: Path) -> str:
    """A DuckDB relation of (line, text) over a text file, gzip or not, one row per line.

    ``read_csv`` with a delimiter that JSON cannot contain unescaped and no quoting returns each
    line whole; blank lines come back as NULL rows, which keeps the line numbers exact.
    """
    limit = record_limit(path)
    return (
        "SELECT row_number() OVER () AS line, text FROM read_csv("
        f"{sql_str(path)}, columns = {{'text': 'VARCHAR'}}, delim = '\x01', quote = '', escape = '', "
        "header = false, auto_detect = false, strict_mode = false, "
        f"max_line_size = {limit}, buffer_size = {limit + 1}, "
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
    kind = ""  # how the documents were staged, once they are (see _stage_documents)
    if line_mode is None:
        line_mode = file.line_mode
    if line_mode is None:
        text = head(file.read_path)
        line_mode = is_line_delimited(text, file.size)
        if not line_mode and first_line_exceeds_head(text):
            # A first line longer than the head: usually one document on one line (CloudTrail's
            # S3 files), read fastest as a document. If it holds several values it is NDJSON
            # with a big first record: read it by lines, so that line numbers stay right and a
            # bad line costs only that line. (A bad line makes the document read fail; the
            # framework then retries the file with ``line_mode=True``.)
            kind = _stage_documents(con, file, unwrap)
            line_mode = kind == "documents" and con.execute("SELECT count(*) FROM docs").fetchone()[0] > 1
    if line_mode:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE docs AS
            SELECT line, 0::BIGINT AS doc_no, CASE WHEN json_valid(text) THEN text::JSON END AS doc, text
            FROM ({read_lines_sql(file.read_path)}) WHERE trim(coalesce(text, '')) <> ''"""
        )
        con.execute(
            """INSERT INTO staged_rejected
            SELECT NULL, line, 'line ' || line || ': not valid JSON (truncated or malformed record)',
                   left(text, ?) FROM docs WHERE doc IS NULL""",
            [RAW_EXCERPT],
        )
    elif not kind:
        kind = _stage_documents(con, file, unwrap)
    if kind == "records":
        con.execute(
            """CREATE OR REPLACE TEMP TABLE records AS
            SELECT doc_no - 1 AS record_index, line, doc FROM docs WHERE doc IS NOT NULL"""
        )
        _number_document_lines(con, file)
        _reject_non_objects(con)
        return
    # Where each document's records are: itself, its elements (a top-level array) or the
    # elements of a wrapper key. Each json_type(doc, path) is one parse of the document.
    is_array = f"({_IS_ARRAY})"
    wrapped = [f"coalesce(json_type(doc, {sql_str('$.' + key)}) = 'ARRAY', false)" for key in unwrap]
    paths = ["$[*]", *(f"$.{key}[*]" for key in unwrap)]
    conditions = [is_array, *(f"NOT {is_array} AND {w}" for w in wrapped)]
    # One document (an S3 delivery file, a JSON array): find its layout first, so that the
    # document is parsed only for that layout, and its positions are the record order.
    # Several documents (NDJSON): every layout at once, records numbered in file order.
    # The elements of a top-level array are documents of their own here: an array of S3 delivery
    # documents ([{"Records": [...]}, ...]) yields the records inside each.
    single = con.execute("SELECT count(*) FROM docs WHERE doc IS NOT NULL").fetchone()[0] <= 1
    if single:
        cases = " ".join(f"WHEN {c} THEN {sql_str(p)}" for c, p in zip(conditions, paths, strict=True))
        (layout,) = con.execute(f"SELECT (SELECT CASE {cases} END FROM docs WHERE doc IS NOT NULL)").fetchone()
        layouts = [(p, "doc IS NOT NULL") for p in paths if p == layout] or [(None, "doc IS NOT NULL")]
    else:
        layouts = [(None, f"NOT ({' OR '.join([is_array, *wrapped])})"), *zip(paths, conditions, strict=True)]
    # Unnest in the select list, not as a lateral join: a lateral join copies the whole document
    # into every row it produces (a 10 MB S3 delivery file of 5,000 records would need 50 GB).
    parts = [
        f"SELECT line, doc_no, 1 AS pos, doc FROM docs WHERE {where}"
        if path is None
        else f"SELECT line, doc_no, generate_subscripts(elems, 1) AS pos, unnest(elems) AS doc FROM ("
        f"SELECT line, doc_no, json_extract(doc, {sql_str(path)}) AS elems FROM docs WHERE {where})"
        for path, where in layouts
    ]
    index = "pos - 1" if single else "row_number() OVER (ORDER BY line, doc_no, pos) - 1"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE records AS
        SELECT {index} AS record_index, line, doc
        FROM (SELECT * FROM ({" UNION ALL ".join(parts)}) WHERE doc IS NOT NULL)"""
    )
    if not line_mode and single or kind == "elements":
        _number_document_lines(con, file)
    _reject_non_objects(con)


LINE_SCAN_BYTES = 16 << 20  # longest line read when numbering a pretty-printed document's records


def _number_document_lines(con: duckdb.DuckDBPyConnection, file: EvidenceFile) -> None:
    """Give each record of one pretty-printed document (a JSON array, ``{"Records": [...]}``) the
    line where it starts, so that a reviewer or code scanning lands on it (else it stays line 1).

    A record starts on a line that opens an object (``{``) at the document's shallowest indentation
    below its first line: nested objects of a pretty-printed record are indented deeper. The lines
    are used only when there are exactly as many as records, in the same order; a compact document
    (all on line 1) or irregular indentation keeps line 1.
    """
    text = head(file.read_path).lstrip()
    if "\n" not in text.rstrip():
        return  # one line: line 1 is right
    count = con.execute("SELECT count(*) FROM records").fetchone()[0]
    if count == 0:
        return
    lines = (
        "SELECT row_number() OVER () AS line, text FROM read_csv("
        f"{sql_str(file.read_path)}, columns = {{'text': 'VARCHAR'}}, delim = '\x01', quote = '', escape = '', "
        "header = false, auto_detect = false, strict_mode = false, parallel = false, "
        f"max_line_size = {LINE_SCAN_BYTES}, buffer_size = {LINE_SCAN_BYTES + 1}, compression = 'auto')"
    )
    try:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE record_lines AS
            WITH opens AS (
                SELECT line, length(text) - length(ltrim(text)) AS indent FROM ({lines})
                WHERE line > 1 AND starts_with(ltrim(text), '{{'))
            SELECT row_number() OVER (ORDER BY line) - 1 AS n, line FROM opens
            WHERE indent = (SELECT min(indent) FROM opens)"""
        )
    except duckdb.Error:
        return  # a line longer than the scan bound: the records keep line 1
    if con.execute("SELECT count(*) FROM record_lines").fetchone()[0] != count:
        return
    con.execute(
        """UPDATE records SET line = l.line FROM (
            SELECT r.record_index, rl.line FROM
                (SELECT record_index, row_number() OVER (ORDER BY record_index) - 1 AS n FROM records) r
                JOIN record_lines rl USING (n)) l
        WHERE records.record_index = l.record_index"""
    )


def _reject_non_objects(con: duckdb.DuckDBPyConnection, index: str = "record_index") -> None:
    """Reject the records that are not JSON objects; ``index`` is the record's number in its file."""
    not_object = f"({_NOT_OBJECT})"
    con.execute(
        f"""INSERT INTO staged_rejected
        SELECT record_index, line, 'record ' || {index} || ' is a JSON ' || lower(json_type(doc))
               || ', not an object', left(doc::VARCHAR, ?) FROM records WHERE {not_object}""",
        [RAW_EXCERPT],
    )
    con.execute(f"DELETE FROM records WHERE {not_object}")


# A batch of small files (stage_record_batch) numbers its records file_no << BATCH_SHIFT | index:
# one table, one pass of the source's SQL, and each record still knows its file and position.
BATCH_SHIFT = 32
BATCH_INDEX = f"(record_index & {(1 << BATCH_SHIFT) - 1})"
BATCH_FILE_NO = f"(record_index >> {BATCH_SHIFT})"


def batchable(path: Path, unwrap: str = "Records") -> bool:
    """True when the head shows one compact wrapper document (``{"Records": [...]}`` on one line,
    as CloudTrail delivers to S3): the layout ``stage_record_batch`` reads many of at once."""
    text = head(path).lstrip()
    return _wrapper_key(text, (unwrap,)) == unwrap and "\n" not in text.rstrip()


def stage_record_batch(con: duckdb.DuckDBPyConnection, files: list[EvidenceFile], unwrap: str = "Records") -> bool:
    """The temp table ``records`` for several small files, each one compact wrapper document
    (``batchable``), read in one ``read_json_objects`` call: record_index is ``file_no <<
    BATCH_SHIFT | position``. Non-object records are rejected (as in ``stage_json_records``).
    False, with nothing staged, when any file is not exactly one such one-line document: the
    caller then loads each file on its own, where every other layout and every damage is handled.
    """
    limit = max(record_limit(f.read_path) for f in files)
    paths = "[" + ", ".join(sql_str(f.read_path) for f in files) + "]"
    con.execute("CREATE OR REPLACE TEMP TABLE batch_paths (file_no BIGINT, filename VARCHAR)")
    con.executemany("INSERT INTO batch_paths VALUES (?, ?)", [(n, str(f.read_path)) for n, f in enumerate(files)])
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE batch_docs AS
        SELECT p.file_no, d.json AS doc FROM read_json_objects({paths}, format = 'unstructured', filename = true,
                                                               maximum_object_size = {limit}) d
        JOIN batch_paths p USING (filename)"""
    )
    key = sql_str("$." + unwrap)
    (good,) = con.execute(
        f"""SELECT count(*) = ? AND count(DISTINCT file_no) = ? AND bool_and(
                   starts_with(doc::VARCHAR, '{{') AND NOT contains(doc::VARCHAR, chr(10))
                   AND coalesce(json_type(doc, {key}) = 'ARRAY', false))
            FROM batch_docs""",
        [len(files), len(files)],
    ).fetchone()
    if not good:
        con.execute("DROP TABLE batch_docs")
        return False
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE records AS
        SELECT (file_no << {BATCH_SHIFT}) + pos - 1 AS record_index, 1::BIGINT AS line, doc
        FROM (SELECT file_no, generate_subscripts(elems, 1) AS pos, unnest(elems) AS doc
              FROM (SELECT file_no, json_extract(doc, {sql_str("$." + unwrap + "[*]")}) AS elems FROM batch_docs))
        WHERE doc IS NOT NULL"""
    )
    con.execute("DROP TABLE batch_docs")
    _reject_non_objects(con, BATCH_INDEX)
    return True


def record_limit(path: Path) -> int:
    """The largest record this file can hold, for DuckDB's reader buffers: its content size.

    DuckDB sizes (and reserves against its memory limit) its read buffers from this bound, so a
    1 GiB bound on every 9 MB CloudTrail file costs gigabytes across parallel loads. For a gzip the
    bound is what its stream actually decompresses to (``gzip_scan``), never the ISIZE trailer: the
    last four bytes of a truncated file are deflate data, read as a size of up to 4 GiB.
    """
    return max(MIN_RECORD_BYTES, min(MAX_RECORD_BYTES, content_size(path) + (1 << 20)))


def content_size(path: Path) -> int:
    """The bytes a reader gets from the file: its size, or for a gzip its readable decompressed size."""
    if not is_gzip(path):
        return path.stat().st_size
    return gzip_scan(path)[0]


def _stage_documents(con: duckdb.DuckDBPyConnection, file: EvidenceFile, unwrap: tuple[str, ...] = ()) -> str:
    """The temp table ``docs``: each JSON document of the file, in file order (``doc_no``).

    A top-level array is streamed one element a document (``format = 'array'``: DuckDB's buffer
    then holds one element, not the whole array, so a 316 MB array loads at a 1 GB limit); so is a
    large wrapper document (``{"Records": [...]}``), through a copy without the wrapper. Returns True
    ``"records"`` when ``docs`` holds the records themselves (the elements of a wrapper: not to
    be unwrapped again), ``"elements"`` for the elements of an array, else ``"documents"``.
    """
    text = head(file.read_path).lstrip()
    limit = record_limit(file.read_path)
    if text.startswith("["):
        if _stage_array(con, file.read_path, limit):
            return "elements"
    elif content_size(file.read_path) > STREAM_DOCUMENT_BYTES and (key := _wrapper_key(text, unwrap)):
        with tempfile.TemporaryDirectory(prefix="nhiaudit-") as tmp:
            unwrapped = Path(tmp) / "records.json"
            if _copy_wrapped_array(file.read_path, key, unwrapped) and _stage_array(con, unwrapped, limit):
                return "records"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE docs AS
        SELECT 1::BIGINT AS line, row_number() OVER () AS doc_no, json AS doc, NULL::VARCHAR AS text
        FROM read_json_objects({sql_str(file.read_path)}, format = 'unstructured',
                               maximum_object_size = {limit})"""
    )
    return "documents"


def _stage_array(con: duckdb.DuckDBPyConnection, path: Path, limit: int) -> bool:
    """``docs`` from the elements of one top-level array; False when the file is not one array
    (several arrays, a damaged one: the caller reads it as documents, which says what is wrong)."""
    for bound in dict.fromkeys((min(limit, ELEMENT_BYTES), limit)):
        try:
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE docs AS
                SELECT 1::BIGINT AS line, row_number() OVER () AS doc_no, json AS doc, NULL::VARCHAR AS text
                FROM read_json_objects({sql_str(path)}, format = 'array', maximum_object_size = {bound})"""
            )
            return True
        except duckdb.InvalidInputException as exc:
            if "maximum_object_size" not in str(exc):
                return False
    return False


_WRAPPER_START = re.compile(r'^\{\s*"([A-Za-z_]+)"\s*:\s*\[')
_WRAPPER_START_BYTES = re.compile(rb'^\{\s*"([A-Za-z_]+)"\s*:\s*\[')


def opens_array_document(text: str) -> bool:
    """True when ``text`` (a head) opens a top-level array or a wrapper whose first key is an array."""
    text = text.lstrip()
    return text.startswith("[") or _WRAPPER_START.match(text) is not None


def _wrapper_key(text: str, unwrap: tuple[str, ...]) -> str | None:
    match = _WRAPPER_START.match(text)
    return match.group(1) if match and match.group(1) in unwrap else None


def _copy_wrapped_array(path: Path, key: str, out: Path) -> bool:
    """Copy the array of a one-key wrapper document (``{"Records": [...]}``) to ``out``.

    A byte copy in bounded chunks, not a parse: the wrapper's opening is dropped and its closing
    brace cut. False (nothing to stream) when the document has anything but that one key, or is
    damaged; DuckDB then reads it whole and says what is wrong.
    """
    opener = gzip.open if is_gzip(path) else open
    try:
        with opener(path, "rb") as source, open(out, "wb") as sink:
            first = source.read(HEAD_BYTES).removeprefix(b"\xef\xbb\xbf").lstrip()
            match = _WRAPPER_START_BYTES.match(first)
            if not match or match.group(1).decode() != key:
                return False
            sink.write(first[match.end() - 1 :])  # from the array's "["
            tail = first[-64:]
            while chunk := source.read(1 << 20):
                sink.write(chunk)
                tail = (tail + chunk)[-64:]
            end = tail.rstrip()
            if not end.endswith(b"}") or not end[:-1].rstrip().endswith(b"]"):
                return False
            sink.truncate(sink.tell() - (len(tail) - len(end)) - 1)
    except (OSError, EOFError, zlib.error):
        return False
    return True


GZIP_TRUNCATED = "gzip stream ends early (truncated file)"


class GzipDamage(Exception):
    """A gzip stream that is truncated, corrupt, or followed by bytes that are not gzip."""


def _inflate(path: Path) -> Iterator[bytes]:
    """The decompressed bytes of a gzip file, every member, in bounded chunks.

    Raises ``GzipDamage`` where the stream stops making sense. zlib checks each member's CRC and
    length, which DuckDB's reader does not.
    """
    decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
    fed = False  # the current member has input
    with open(path, "rb") as fh:
        data = b""
        while True:
            if not data:
                data = fh.read(1 << 20)
                if not data:
                    break
            fed = True
            try:
                out = decomp.decompress(data, 1 << 22)  # bounded: a 1 MB chunk may inflate 1000-fold
            except zlib.error as exc:
                raise GzipDamage(f"gzip data is corrupt ({exc})") from exc
            if out:
                yield out
            data = decomp.unconsumed_tail
            if decomp.eof:  # one member ended; another may follow (concatenated gzip files)
                data = decomp.unused_data
                if data and data[:2] != b"\x1f\x8b":
                    raise GzipDamage("gzip member ended; trailing bytes are not gzip data")
                decomp, fed = zlib.decompressobj(16 + zlib.MAX_WBITS), False
    if fed:
        raise GzipDamage(GZIP_TRUNCATED)


def gzip_problem(path: Path) -> str:
    """What is wrong with a gzip file's stream, or "" when it is whole (every CRC checks)."""
    return gzip_scan(path)[1]


def gzip_scan(path: Path) -> tuple[int, str]:
    """(decompressed bytes readable, what is wrong or "") of a gzip file, decompressing it once
    per (path, mtime, size): the size bounds DuckDB's buffers (``record_limit``), the problem
    decides whether the file is salvaged."""
    stat = path.stat()
    return _gzip_scan_cached(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=64)
def _gzip_scan_cached(path: str, mtime_ns: int, size: int) -> tuple[int, str]:
    total = 0
    try:
        for chunk in _inflate(Path(path)):
            total += len(chunk)
    except GzipDamage as damage:
        return total, str(damage)
    return total, ""


def gzip_readable_prefix(path: Path, out: Path, whole_lines: bool = True) -> tuple[int, str]:
    """Copy the decompressible prefix of a damaged gzip to ``out`` (plain text).

    Returns (bytes written, what was wrong). Drops the last, partial line unless ``whole_lines`` is
    False (a document cut short: ``close_document_prefix`` finds where its last whole record ends);
    the caller reports the loss as rejected. This is the one per-byte Python path in ingest, taken
    only after the gzip check found the file damaged.
    """
    written = 0
    tail = b""
    with open(out, "wb") as sink:
        try:
            for chunk in _inflate(path):
                data = tail + chunk
                cut = data.rfind(b"\n") if whole_lines else len(data) - 1
                if cut >= 0:
                    sink.write(data[: cut + 1])
                    written += cut + 1
                    tail = data[cut + 1 :]
                else:
                    tail = data
        except GzipDamage as damage:
            return written, str(damage)
        sink.write(tail)  # the stream is whole after all: keep its last line too
        return written + len(tail), ""


_ELEMENT_END = re.compile(rb"\}(?=\s*(?:,|\]|\Z))")


def close_document_prefix(con: duckdb.DuckDBPyConnection, text: Path, out: Path, tries: int = 32) -> int:
    """``text`` holds the start of one JSON document cut short (a damaged gzip's readable prefix): a
    top-level array, or a wrapper whose first key is an array (``{"Records": [...``). Write to ``out``
    the document closed after its last complete element; return how many bytes of ``text`` it keeps
    (0: not such a document, or no element is complete, and ``out`` is not written).

    Python only proposes where an element may end (a ``}`` before a comma, from the end); DuckDB
    decides, by reading the array closed there (streamed, one element at a time): it parses only
    when the cut is between two top-level elements. At most ``tries`` ends are tried.
    """
    with open(text, "rb") as fh:
        first = fh.read(HEAD_BYTES)
    body = first.removeprefix(b"\xef\xbb\xbf").lstrip()
    match = _WRAPPER_START_BYTES.match(body)
    if body.startswith(b"["):
        opened, closing = len(first) - len(body) + 1, b"]"
    elif match:
        opened, closing = len(first) - len(body) + match.end(), b"]}"
    else:
        return 0
    size = text.stat().st_size
    ends = _element_ends(text, opened, size, tries)
    if not ends:
        return 0
    array = out.with_name(out.name + ".array")
    try:
        with open(text, "rb") as source, open(array, "wb") as sink:
            sink.write(b"[")
            source.seek(opened)
            while chunk := source.read(1 << 20):
                sink.write(chunk)
        limit = max(MIN_RECORD_BYTES, min(MAX_RECORD_BYTES, size + (1 << 20)))
        for end in ends:  # from the last: each truncation only drops bytes after the next candidate
            with open(array, "r+b") as fh:
                fh.truncate(end - opened + 2)  # "[" + the elements up to and with this "}"
                fh.seek(0, 2)
                fh.write(b"]")
            try:
                con.execute(
                    f"SELECT count(*) FROM read_json_objects({sql_str(array)}, format = 'array', "
                    f"maximum_object_size = {limit})"
                ).fetchone()
            except duckdb.Error:
                continue
            with open(text, "rb") as source, open(out, "wb") as sink:
                remaining = end + 1
                while remaining and (chunk := source.read(min(remaining, 1 << 20))):
                    sink.write(chunk)
                    remaining -= len(chunk)
                sink.write(closing)
            return end + 1
    finally:
        array.unlink(missing_ok=True)
    return 0


def _element_ends(path: Path, start: int, size: int, tries: int, window: int = 1 << 20) -> list[int]:
    """Up to ``tries`` offsets (after ``start``, last first) of a ``}`` before a comma, a ``]`` or the end."""
    ends: list[int] = []
    with open(path, "rb") as fh:
        stop = size
        while stop > start and len(ends) < tries:
            begin = max(start, stop - window)
            fh.seek(begin)
            data = fh.read(stop - begin + 64)  # a little past the window: what follows its last "}"
            found = [begin + m.start() for m in _ELEMENT_END.finditer(data) if begin + m.start() < stop]
            ends.extend(reversed(found))
            stop = begin
    return ends[:tries]


def gzip_ok(path: Path) -> bool:
    """True when the whole gzip stream decompresses and every member's CRC checks."""
    return not gzip_problem(path)
