"""SQL fragments shared by the sources: W3C trace context, HTTP outcomes, JSON fields, and the
wrong-JSON-type checks every source rejects records with (DuckDB macros, ``MACROS``).

Each function returns a piece of DuckDB SQL over a column expression; Python only assembles the
query, DuckDB evaluates it for every record. Also stages a text log (one record a line) as the
temp table ``lines`` for the formats that are not JSON throughout (Envoy, Keycloak).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import duckdb

from nhiaudit.sources._read import RAW_EXCERPT, EvidenceFile, read_lines_sql, sql_str

# W3C Trace Context (https://www.w3.org/TR/trace-context/#traceparent-header):
# version "00" is exactly 55 characters; a higher version may append fields after the flags;
# version "ff" and all-zero trace or parent ids are invalid.
_TRACEPARENT = r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?"

# Methods that do not change state (RFC 9110 §9.2.1 "safe" methods).
_SAFE_METHODS = "('GET', 'HEAD', 'OPTIONS', 'TRACE')"


def _valid_traceparent(tp: str) -> str:
    return (
        f"(regexp_full_match({tp}, '{_TRACEPARENT}') AND left({tp}, 2) <> 'ff' "
        f"AND (left({tp}, 2) <> '00' OR length({tp}) = 55) "
        f"AND substr({tp}, 4, 32) <> repeat('0', 32) AND substr({tp}, 37, 16) <> repeat('0', 16))"
    )


def trace_id(traceparent: str) -> str:
    """The trace id (lower-case hex) of a ``traceparent`` value, NULL when it is not valid."""
    tp = f"lower(trim({traceparent}))"
    return f"CASE WHEN {_valid_traceparent(tp)} THEN substr({tp}, 4, 32) END"


def parent_span_id(traceparent: str) -> str:
    """The span id carried by ``traceparent``: the caller's span (the agent's tool-call span)."""
    tp = f"lower(trim({traceparent}))"
    return f"CASE WHEN {_valid_traceparent(tp)} THEN substr({tp}, 37, 16) END"


def http_outcome(status: str) -> str:
    """HTTP status (an integer expression) -> success (1xx-3xx), denied (401, 403), failure."""
    return (
        f"CASE WHEN {status} IS NULL THEN NULL WHEN {status} BETWEEN 100 AND 399 THEN 'success' "
        f"WHEN {status} IN (401, 403) THEN 'denied' ELSE 'failure' END"
    )


def http_error_code(status: str) -> str:
    """The status as text when the call failed (>= 400 or no response), else NULL."""
    return f"CASE WHEN {status} >= 400 OR {status} < 100 THEN CAST({status} AS VARCHAR) END"


def read_only(method: str) -> str:
    return f"CASE WHEN {method} IS NOT NULL THEN upper({method}) IN {_SAFE_METHODS} END"


def without_query(path: str) -> str:
    """A request path without its query string or fragment (query strings can carry secrets)."""
    return f"regexp_replace({path}, '[?#].*$', '')"


def without_port(address: str) -> str:
    """An IP address as logged with or without a port: 1.2.3.4:5696 -> 1.2.3.4, [2001:db8::1]:5696 ->
    2001:db8::1; an address without port (a bare IPv6 address included) is kept as is."""
    return (
        f"CASE WHEN regexp_matches({address}, '^\\[[^\\]]+\\](:[0-9]*)?$') "
        f"THEN regexp_extract({address}, '^\\[([^\\]]+)\\]', 1) "
        f"WHEN regexp_matches({address}, '^[^:]+:[0-9]+$') THEN regexp_extract({address}, '^([^:]+):', 1) "
        f"ELSE {address} END"
    )


def header(headers: str, name: str) -> str:
    """A request header from a JSON object of headers; a repeated header (a JSON array) gives its
    first value. ``name`` must be lower case (Kong and Envoy log header names in lower case)."""
    path = "$." + '"' + name.replace('"', '\\"') + '"'
    return (
        f"CASE json_type({headers}, '{path}') WHEN 'ARRAY' THEN json_extract_string({headers}, '{path}[0]') "
        f"WHEN 'OBJECT' THEN NULL ELSE json_extract_string({headers}, '{path}') END"
    )


def json_string(doc: str, path: str) -> str:
    """``json_extract_string`` that gives NULL for a JSON object or array (never its text)."""
    return (
        f"CASE WHEN json_type({doc}, '{path}') NOT IN ('OBJECT', 'ARRAY', 'NULL') "
        f"THEN json_extract_string({doc}, '{path}') END"
    )


def json_text(path: str, doc: str = "doc") -> str:
    """:func:`json_string`, with an empty string as NULL too (absent, DESIGN §9), for values used
    inside expressions before the framework's :func:`null_empty_strings` pass."""
    return f"nullif({json_string(doc, path)}, '')"


# Why a record is rejected for a field of the wrong JSON type, in one wording for every source:
# "<label> is a JSON <kind>, expected <what>". DuckDB macros (TEMP: per connection), created on
# every ingest connection by the framework (``install``, called by nhiaudit.ingest). ``t`` is a
# json_type() result: SQL NULL when there is no value, 'NULL' for a JSON null.
MACROS = """
-- A json_type() result named the way a reader of the log would: 'number', not 'UBIGINT'.
CREATE OR REPLACE TEMP MACRO json_kind(t) AS CASE t
    WHEN 'VARCHAR' THEN 'string' WHEN 'BIGINT' THEN 'number' WHEN 'UBIGINT' THEN 'number'
    WHEN 'DOUBLE' THEN 'number' ELSE lower(t) END;
-- A value that must have one of the types in the list allowed (so a JSON null is wrong): the reason, or NULL.
CREATE OR REPLACE TEMP MACRO json_type_problem(t, label, allowed, expected) AS
    CASE WHEN NOT list_contains(allowed, t) THEN label || ' is a JSON ' || json_kind(t) || ', expected ' || expected END;
-- An optional field: absent or a JSON null is fine, another type not in allowed is the reason.
CREATE OR REPLACE TEMP MACRO json_field_problem(t, label, allowed, expected) AS
    json_type_problem(nullif(t, 'NULL'), label, allowed, expected);
-- An optional time field (the JSON value j): an RFC 3339 string when present.
CREATE OR REPLACE TEMP MACRO json_time_problem(j, label) AS coalesce(
    json_field_problem(json_type(j), label, ['VARCHAR'], 'an RFC 3339 string'),
    CASE WHEN json_type(j) = 'VARCHAR' AND try_cast(json_extract_string(j, '$') AS TIMESTAMPTZ) IS NULL
         THEN label || ' ''' || left(json_extract_string(j, '$'), 60) || ''' is not an RFC 3339 time' END);
"""


# Every credential type a source writes, declared in one file of queries/correlate.
CREDENTIAL_TYPES = "15_credential_types.sql"


@cache
def install_data_table(con: duckdb.DuckDBPyConnection, table: str, file_name: str, columns: str) -> None:
    """TEMP table ``table`` from the CSV data file ``queries/sources/<file_name>`` (header row, ``#``
    comments, double-quoted fields; ``columns`` a DuckDB struct of name: type), plus ``rank``: the
    row's order in the file. Sources keep their per-service knowledge in such files, not in code."""
    with resources.as_file(resources.files("nhiaudit") / "queries" / "sources" / file_name) as path:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {table} AS
            SELECT row_number() OVER () AS rank, * FROM read_csv(?, auto_detect = false, header = true,
                comment = '#', delim = ',', quote = '"', escape = '"', columns = {columns})""",
            [str(path)],
        )


def credential_types_sql() -> str:
    """The declared credential types (TEMP table ``credential_types``) and ``aws_key_type()``: the
    file correlation runs too, so ingest and correlation read one declaration."""
    return (resources.files("nhiaudit") / "queries" / "correlate" / CREDENTIAL_TYPES).read_text(encoding="utf-8")


def install(con: duckdb.DuckDBPyConnection) -> None:
    """Create the macros above and the credential types on ``con`` (the framework does, before a
    source loads a file)."""
    con.execute(MACROS)
    con.execute(credential_types_sql())


def null_empty_strings(con: duckdb.DuckDBPyConnection, table: str = "staged") -> None:
    """Empty strings are absent values (DESIGN §9): every VARCHAR column of ``table`` that a source
    staged as ``''`` (or only whitespace) becomes NULL, in one UPDATE, whatever the source. The
    framework calls it on ``staged`` after a source's ``load`` and before the credential checks (so
    a credential type whose credential id was ``''`` is dropped with it). ``raw`` is JSON, untouched.
    """
    columns = [
        name
        for name, kind in con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? AND database_name = 'temp'",
            [table],
        ).fetchall()
        if kind == "VARCHAR"
    ]
    if columns:  # identifiers from the catalog, quoted
        sets = ", ".join(f'"{c}" = CASE WHEN trim("{c}") = \'\' THEN NULL ELSE "{c}" END' for c in columns)
        where = " OR ".join(f'trim("{c}") = \'\'' for c in columns)
        con.execute(f"UPDATE {table} SET {sets} WHERE {where}")


# JSON types (json_type() names) for ``wrong_type``.
NUMBER = ("UBIGINT", "BIGINT", "DOUBLE")
INTEGER = ("BIGINT", "UBIGINT")
STRING = ("VARCHAR",)
OBJECT = ("OBJECT",)
ARRAY = ("ARRAY",)


def wrong_type(json_type: str, label: str, allowed: tuple[str, ...], expected: str) -> str:
    """SQL: why an optional field has the wrong JSON type (macro ``json_field_problem``), else NULL.
    ``json_type`` is its json_type() (``json_type(doc, '$.a')``, or an element of a multi-path one)."""
    kinds = "[" + ", ".join(sql_str(kind) for kind in allowed) + "]"
    return f"json_field_problem({json_type}, {sql_str(label)}, {kinds}, {sql_str(expected)})"


def wrong_time(value: str, label: str) -> str:
    """SQL: why the optional JSON ``value`` is not an RFC 3339 string (macro ``json_time_problem``), else NULL."""
    return f"json_time_problem({value}, {sql_str(label)})"


def first_problem(*reasons: str) -> str:
    """SQL: the first of ``reasons`` that is not NULL (each a reason expression or a ``CASE``), in order."""
    return "coalesce(" + ", ".join(reasons) + ")"


def act_chain(act: str, depth: int = 8) -> str:
    """RFC 8693 §4.1 ``act``: the current actor, whose own ``act`` is the prior actor, and so on.
    Gives ``[act.sub, act.act.sub, …]`` (outermost first) or NULL when ``act`` is NULL."""
    subs = ", ".join(f"json_extract_string({act}, '$.{'act.' * level}sub')" for level in range(depth))
    return f"CASE WHEN {act} IS NOT NULL THEN list_filter([{subs}], x -> x IS NOT NULL) END"


def json_object_at(doc: str, path: str) -> str:
    """The JSON object at ``path``, also when it is logged as a JSON string holding an object
    (IdP event details are string maps, so a decoded ``act`` claim arrives as text)."""
    text = f"json_extract_string({doc}, '{path}')"
    return (
        f"CASE WHEN json_type({doc}, '{path}') = 'OBJECT' THEN json_extract({doc}, '{path}') "
        f"WHEN json_type({doc}, '{path}') = 'VARCHAR' AND json_valid({text}) "
        f"AND json_type(TRY_CAST({text} AS JSON)) = 'OBJECT' THEN TRY_CAST({text} AS JSON) END"
    )


def stage_lines(con: duckdb.DuckDBPyConnection, file: EvidenceFile) -> None:
    """Temp tables ``lines(record_index, line, text, doc)`` and ``records(record_index, line, doc)``
    for a line-oriented log: one record per non-blank line, ``doc`` the line parsed as JSON when
    the line is a JSON object (a container wrapper or a JSON-format log line), else NULL.

    ``records`` (with ``doc`` = the line as a JSON string for text lines) lets the framework check
    that every line became an event, a rejection or a deliberate skip.
    """
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE lines AS
        SELECT (row_number() OVER (ORDER BY line) - 1) AS record_index, line, text,
               CASE WHEN starts_with(ltrim(text), '{{') AND json_valid(text) THEN text::JSON END AS doc
        FROM (SELECT line, regexp_replace(text, '\\s+$', '') AS text FROM ({read_lines_sql(file.read_path)}))
        WHERE trim(coalesce(text, '')) <> ''"""
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE records AS "
        "SELECT record_index, line, coalesce(doc, to_json(text)) AS doc FROM lines"
    )


def reject_records(con: duckdb.DuckDBPyConnection, table: str, reason: str) -> None:
    """Reject the rows of ``table`` (record_index, line, doc, …) for which the SQL ``reason`` (a
    ``first_problem`` over its columns) is not NULL: into staged_rejected, with an excerpt of doc.
    Later statements skip them with ``not_rejected()``."""
    con.execute(
        f"""INSERT INTO staged_rejected SELECT record_index, line, reason, left(doc::VARCHAR, ?)
        FROM (SELECT *, {reason} AS reason FROM {table}) WHERE reason IS NOT NULL""",
        [RAW_EXCERPT],
    )


def not_rejected() -> str:
    """SQL condition: the row's record was not rejected (``record_index`` of the staged file)."""
    return "record_index NOT IN (SELECT record_index FROM staged_rejected WHERE record_index IS NOT NULL)"


def reject_lines(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Move rows of ``table`` (record_index, line, text, reason) with a reason to staged_rejected."""
    con.execute(
        f"""INSERT INTO staged_rejected SELECT record_index, line, reason, left(text, ?)
        FROM {table} WHERE reason IS NOT NULL""",
        [RAW_EXCERPT],
    )
