"""Read-only ad-hoc SQL against the store (``nhiaudit sql``)."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import duckdb

from nhiaudit.errors import NhiauditError


def run(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one statement; return column names and rows.

    ``nhiaudit sql`` runs it on a read-only connection, so a write fails in DuckDB itself rather
    than in a keyword check that could be fooled.
    """
    result = cursor(con, sql)
    if result.description is None:
        return [], []
    return [d[0] for d in result.description], result.fetchall()


def cursor(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | dict[str, Any] | None = None
) -> duckdb.DuckDBPyConnection:
    """``con.execute`` for a user's query: a DuckDB error becomes one line naming the tables."""
    try:
        return con.execute(sql, params)
    except duckdb.Error as exc:
        raise NhiauditError(
            f"sql: {str(exc).splitlines()[0]}. Check the query; tables: {', '.join(tables(con))}."
        ) from exc


def tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The store's tables and views (derived ones included once correlated)."""
    return [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE NOT temporary "
            "UNION SELECT view_name FROM duckdb_views() WHERE NOT temporary AND NOT internal ORDER BY 1"
        ).fetchall()
    ]


def has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return name in tables(con)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return value


# Characters that act on a terminal or reorder what it shows: C0 controls (CSV keeps TAB and LF,
# which it quotes), DEL, C1 controls (U+009B is a one-byte CSI), line/paragraph separators and the
# bidi marks, embeddings, overrides and isolates ("Trojan Source"). json.dumps escapes C0 itself.
# Lone surrogates too: they cannot be written as UTF-8 at all.
_CSV_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def to_json(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    """JSON rows; characters that could act on a terminal are ``\\u``-escaped (lossless: they occur
    only inside JSON strings), other non-ASCII text stays readable."""
    text = json.dumps(
        [{c: _plain(v) for c, v in zip(columns, row, strict=False)} for row in rows],
        indent=2,
        default=str,
        ensure_ascii=False,
    )
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n"


def to_csv(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    """CSV for a spreadsheet or a terminal: formula injection neutralized (a leading = + - @ TAB CR
    is quoted with '), control and bidi characters spelled out (``\\x1b``), in cells and headers."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([_csv_cell(c) for c in columns])
    for row in rows:
        writer.writerow([_csv_cell(_plain(v)) for v in row])
    return out.getvalue()


def _csv_cell(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    value = str(value)  # lists and structs as the csv module would write them
    if value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        value = "'" + value
    return _CSV_UNSAFE.sub(_spelled, value)


def _spelled(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
