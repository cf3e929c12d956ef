"""The portable subset (docs/scale-out.md): the lint, and the rewrite pass's text (no Spark needed).

``tests/portable/bad/`` holds one file per banned construct; its first line says what the lint
must report. The project's own rules must lint clean. Whether the rewritten SQL gives DuckDB's rows
on Spark is tests/test_spark.py's job (``pytest -m spark``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
from helpers import invoke

from nhiaudit import portable
from nhiaudit.rules import builtin_rule_files

BAD = Path(__file__).parent / "portable" / "bad"
BAD_FILES = sorted(BAD.glob("*.sql"))


def test_the_project_rules_are_portable() -> None:
    assert portable.lint_paths(builtin_rule_files()) == []


def test_the_correlation_sql_and_the_rules_are_portable() -> None:
    """The next non-portable edit of queries/correlate or queries/rules fails the default suite, not
    only the Spark step (the merge of issues 9 and 10 broke the Spark engine that way)."""
    folder = resources.files("nhiaudit") / "queries" / "correlate"
    correlation = sorted((p for p in folder.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    assert len(correlation) >= 10
    assert portable.lint_paths(correlation, one_query=False) + portable.lint_paths(builtin_rule_files()) == []


def test_a_non_portable_correlation_statement_is_reported() -> None:
    sql = "CREATE TEMP TABLE t AS SELECT e.* REPLACE (1 AS x), arg_min(a, b) AS m FROM events e GROUP BY ALL"
    problems = [p.what for p in portable.lint_sql(sql, one_query=False)]
    assert any("arg_min without explicit NULL handling" in p for p in problems), problems
    assert "* REPLACE (…)" in problems


def test_there_is_a_bad_example_per_banned_construct() -> None:
    assert len(BAD_FILES) >= 16


@pytest.mark.parametrize("path", BAD_FILES, ids=lambda p: p.stem)
def test_each_banned_construct_is_caught_with_its_line_and_a_fix(path: Path) -> None:
    expected = path.read_text(encoding="utf-8").splitlines()[0].removeprefix("-- expect: ")
    problems = portable.lint_file(path)
    hits = [p for p in problems if expected in p]
    assert hits, problems
    where, line, rest = hits[0].split(":", 2)
    assert where == str(path) and line.isdigit() and 1 <= int(line) <= 2
    assert ". " in rest, "every problem carries a fix hint"


def test_cli_lint_portable_rejects_a_bad_rule_folder(tmp_path: Path) -> None:
    rule = tmp_path / "ordered-first.sql"
    rule.write_text(
        "-- id: ordered-first\n-- title: t\n-- severity: low\n-- frameworks: NHI1:2025\n"
        "-- description: d\n-- remediation: r\n"
        "SELECT source, event_id, array_to_string(list(action), ',') AS message FROM chains GROUP BY ALL\n",
        encoding="utf-8",
    )
    plain = invoke(["rules", "--lint", str(tmp_path), "--db", str(tmp_path / "none.duckdb")])
    assert plain.exit_code == 0, plain.output
    result = invoke(["rules", "--lint", str(tmp_path), "--portable", "--db", str(tmp_path / "none.duckdb")])
    assert result.exit_code == 2
    flat = "".join(result.output.split())  # Rich wraps long lines
    assert "ordered-first.sql:7:list()withoutORDERBY" in flat


def _spark(sql: str, macros: dict[str, portable.Macro] | None = None) -> str:
    (query,) = portable.parse(sql)
    return portable.to_spark(query, portable.Context(macros=macros or {}))


def test_strftime_becomes_a_quoted_java_pattern() -> None:
    assert portable.java_time_format("%Y-%m-%dT%H:%M:%SZ") == "yyyy'-'MM'-'dd'T'HH':'mm':'ss'Z'"
    with pytest.raises(portable.PortableError):
        portable.java_time_format("%A")


def test_arg_min_skips_nulls_and_sorts_null_key_fields_last() -> None:
    text = _spark("SELECT arg_min(v, (a, b)) FILTER (WHERE c) FROM t")
    assert "MIN_BY(v, STRUCT((a) IS NULL, a, (b) IS NULL, b))" in text
    assert "FILTER(WHERE c AND NOT v IS NULL)" in text


def test_ordered_list_keeps_its_order_and_is_null_over_no_rows() -> None:
    text = _spark("SELECT list(x ORDER BY k) FROM t GROUP BY g")
    assert "TRANSFORM(ARRAY_SORT(COLLECT_LIST(STRUCT(STRUCT((k) IS NULL, k), x AS v))), s -> s.v)" in text
    assert text.startswith("SELECT CASE WHEN COUNT(1) > 0 THEN")


def test_list_index_stays_one_based_and_regexes_are_anchored() -> None:
    assert "ELEMENT_AT(ARRAY('a', 'b'), CAST(i + 1 AS INT))" in _spark("SELECT ['a', 'b'][i + 1] FROM t")
    assert "x RLIKE '^(?:a$)\\\\z'" in _spark("SELECT regexp_full_match(x, 'a$') FROM t")
    assert "'^([a-z]+)\\\\z'" in _spark("SELECT regexp_extract(x, '^([a-z]+)$', 1) FROM t")


def test_macros_are_inlined_and_unknown_json_paths_refused() -> None:
    (create,) = portable.parse("CREATE TEMP MACRO twice(x) AS x * 2")
    macro = portable.macro_of(create)
    assert macro is not None and macro.name == "twice"
    assert _spark("SELECT twice(a) FROM t", {"twice": macro}) == "SELECT (a * 2) FROM t"
    with pytest.raises(portable.PortableError):
        _spark("SELECT json_extract_string(d, '$.' || k) FROM t")
    assert "FROM_JSON(GET_JSON_OBJECT(d, '$.attrs'), 'map<string,string>')[k]" in _spark(
        "SELECT json_extract_string(d, '$.attrs.\"' || k || '\"') FROM t"
    )
