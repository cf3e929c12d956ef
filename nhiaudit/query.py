"""Read-only ad-hoc SQL against the store (``nhiaudit sql``)."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import duckdb

from nhiaudit.errors import NhiauditError


def run(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one statement on a read-only connection; return column names and rows.

    The connection is opened read-only by the caller, so a write fails in DuckDB itself rather
    than in a keyword check that could be fooled.
    """
    try:
        cursor = con.execute(sql)
    except duckdb.Error as exc:
        raise NhiauditError(
            f"sql: {str(exc).splitlines()[0]}. Check the query; tables: {', '.join(tables(con))}."
        ) from exc
    if cursor.description is None:
        return [], []
    return [d[0] for d in cursor.description], cursor.fetchall()


def tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE NOT temporary ORDER BY table_name"
        ).fetchall()
    ]


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


def to_json(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    return (
        json.dumps(
            [{c: _plain(v) for c, v in zip(columns, row, strict=False)} for row in rows],
            indent=2,
            default=str,
            ensure_ascii=False,
        )
        + "\n"
    )


def to_csv(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    """CSV with spreadsheet formula injection neutralized (a leading = + - @ is quoted with ')."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(_plain(v)) for v in row])
    return out.getvalue()


def _csv_cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
