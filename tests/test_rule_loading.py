"""Rule files: header parsing, every lint problem with its exact message, and all-at-once reporting.

The real rules are exercised by ``tests/test_rules.py``; here every rule file is written to
``tmp_path`` so each problem is provoked on purpose.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from nhiaudit.errors import RuleError
from nhiaudit.model import RuleInfo
from nhiaudit.rules import REQUIRED_COLUMNS, builtin_rule_files, lint, load_rules, parse_rule

QUERY = "SELECT source, event_id, 'no task' AS message\nFROM chains\nWHERE task_id IS NULL;\n"

HEADER = {
    "id": "credential-without-task",
    "title": "Action with no task",
    "severity": "high",
    "frameworks": "NHI1:2025, ASI03, AU-10",
    "description": "The action's credential chain carries no task id.",
    "remediation": "Stamp a task id on every credential.",
}


def rule_text(header: dict[str, str] | None = None, query: str = QUERY, **changes: str | None) -> str:
    """A rule file: ``HEADER`` with ``changes`` applied (None drops a key), a blank line, ``query``."""
    values = dict(HEADER if header is None else header)
    for key, value in changes.items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    lines = [f"-- {key}: {value}" for key, value in values.items()]
    return "\n".join(lines) + "\n\n" + query


def write_rule(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.sql"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(folder: Path, con: duckdb.DuckDBPyConnection | None = None) -> list[str]:
    return lint([folder], con=con, include_builtin=False)


@pytest.fixture
def store() -> duckdb.DuckDBPyConnection:
    """Just enough of the derived tables for queries to bind."""
    con = duckdb.connect()
    con.execute("CREATE TABLE chains (source VARCHAR, event_id VARCHAR, task_id VARCHAR, actor_id VARCHAR)")
    return con


# --------------------------------------------------------------------------------------------------
# A good rule
# --------------------------------------------------------------------------------------------------


def test_parse_rule_reads_header_and_query(tmp_path: Path) -> None:
    path = write_rule(tmp_path, "credential-without-task", rule_text())
    info, sql = parse_rule(path)
    assert info == RuleInfo(
        id="credential-without-task",
        title="Action with no task",
        severity="high",
        frameworks=("NHI1:2025", "ASI03", "AU-10"),
        description="The action's credential chain carries no task id.",
        remediation="Stamp a task id on every credential.",
        path=str(path),
    )
    assert sql == "SELECT source, event_id, 'no task' AS message\nFROM chains\nWHERE task_id IS NULL"


def test_values_continue_on_indented_comment_lines(tmp_path: Path) -> None:
    text = (
        "-- id: r\n-- title: T\n-- severity: low\n-- frameworks: AC-6,\n--   T3\n"
        "-- description: First line.\n--   Note: second line, with a colon.\n"
        "--\n-- remediation: Fix it.\n--     Then verify.\n\n-- a comment inside the query is fine: yes\n"
        + QUERY
    )
    info, sql = parse_rule(write_rule(tmp_path, "r", text))
    assert info.frameworks == ("AC-6", "T3")
    assert info.description == "First line. Note: second line, with a colon."
    assert info.remediation == "Fix it. Then verify."
    assert sql.startswith("-- a comment inside the query is fine: yes\nSELECT")


def test_good_rule_binds_cleanly(tmp_path: Path, store) -> None:
    write_rule(tmp_path, "credential-without-task", rule_text())
    assert problems_of(tmp_path, store) == []


def test_load_rules_reads_extra_dirs_in_file_name_order(tmp_path: Path) -> None:
    write_rule(tmp_path / "b", "zeta", rule_text(id="zeta"))
    write_rule(tmp_path / "a", "beta", rule_text(id="beta"))
    write_rule(tmp_path / "a", "alpha", rule_text(id="alpha"))
    (tmp_path / "a" / "notes.txt").write_text("not a rule", encoding="utf-8")
    rules = load_rules([tmp_path / "a", tmp_path / "b"], include_builtin=False)
    assert [info.id for info, _ in rules] == ["alpha", "beta", "zeta"]


def test_builtin_rules_come_first_and_are_read_from_the_package(tmp_path: Path) -> None:
    builtin = builtin_rule_files()
    package_dir = Path(__file__).resolve().parent.parent / "nhiaudit" / "queries" / "rules"
    assert [f.name for f in builtin] == sorted(p.name for p in package_dir.glob("*.sql"))
    write_rule(tmp_path, "tmp-extra-rule", rule_text(id="tmp-extra-rule"))
    ids = [info.id for info, _ in load_rules([tmp_path])]
    assert ids == [f.name[: -len(".sql")] for f in builtin] + ["tmp-extra-rule"]


def test_builtin_rules_have_no_header_problems() -> None:
    assert lint() == []


# --------------------------------------------------------------------------------------------------
# One problem at a time, exact text
# --------------------------------------------------------------------------------------------------


def test_missing_key(tmp_path: Path) -> None:
    path = write_rule(tmp_path, "credential-without-task", rule_text(remediation=None))
    assert problems_of(tmp_path) == [
        f"{path}:1: missing key 'remediation'. Add a line '-- remediation: ...' to the header."
    ]


def test_unknown_key_suggests_the_closest(tmp_path: Path) -> None:
    header = {("titel" if k == "title" else k): v for k, v in HEADER.items()}
    path = write_rule(tmp_path, "credential-without-task", rule_text(header))
    assert problems_of(tmp_path) == [
        f"{path}:2: unknown key 'titel'. Did you mean 'title'?",
        f"{path}:1: missing key 'title'. Add a line '-- title: ...' to the header.",
    ]


def test_unknown_key_without_a_close_match_lists_the_keys(tmp_path: Path) -> None:
    path = write_rule(tmp_path, "credential-without-task", rule_text(owner="sec-team"))
    assert problems_of(tmp_path) == [
        f"{path}:7: unknown key 'owner'. "
        "Known keys: id, title, severity, frameworks, description, remediation."
    ]


@pytest.mark.parametrize(
    ("severity", "fix"),
    [("hihg", " Did you mean 'high'?"), ("High", " Did you mean 'high'?"), ("severe", "")],
)
def test_bad_severity(tmp_path: Path, severity: str, fix: str) -> None:
    path = write_rule(tmp_path, "credential-without-task", rule_text(severity=severity))
    fix = fix or " Use one of info, low, medium, high, critical."
    assert problems_of(tmp_path) == [f"{path}:3: bad severity '{severity}'.{fix}"]


def test_id_differs_from_file_name(tmp_path: Path) -> None:
    path = write_rule(tmp_path, "no-task", rule_text())
    assert problems_of(tmp_path) == [
        f"{path}:1: id 'credential-without-task' differs from the file name 'no-task.sql'. "
        "Rename the file to credential-without-task.sql or set '-- id: no-task'."
    ]


@pytest.mark.parametrize("query", ["", "\n\n", "-- just a comment\n", ";\n"])
def test_empty_query(tmp_path: Path, query: str) -> None:
    path = write_rule(tmp_path, "credential-without-task", rule_text(query=query))
    assert problems_of(tmp_path) == [
        f"{path}:7: no query after the header. "
        "Write one SELECT that returns source, event_id, message, after a blank line."
    ]


def test_empty_value(tmp_path: Path) -> None:
    path = write_rule(tmp_path, "credential-without-task", rule_text(title=""))
    assert problems_of(tmp_path) == [f"{path}:2: empty value for 'title'. Write '-- title: <text>'."]


def test_frameworks_without_tags(tmp_path: Path) -> None:
    path = write_rule(tmp_path, "credential-without-task", rule_text(frameworks=", ,"))
    assert problems_of(tmp_path) == [
        f"{path}:4: no framework tags. List them separated by commas: NHI1:2025, AU-10."
    ]


def test_key_set_twice(tmp_path: Path) -> None:
    text = rule_text().replace("-- title: Action with no task\n", "-- title: A\n-- title: B\n")
    path = write_rule(tmp_path, "credential-without-task", text)
    assert problems_of(tmp_path) == [f"{path}:3: key 'title' is set twice (first on line 2). Keep one."]


def test_prose_in_the_header(tmp_path: Path) -> None:
    text = "-- This rule finds actions without tasks\n" + rule_text()
    path = write_rule(tmp_path, "credential-without-task", text)
    assert problems_of(tmp_path) == [
        f"{path}:1: header line is not '-- key: value'. Continue a value on a line starting '--   ', "
        "or put prose comments after a blank line."
    ]


def test_query_that_does_not_parse_points_at_its_line(tmp_path: Path) -> None:
    path = write_rule(
        tmp_path, "credential-without-task", rule_text(query="SELECT source,\nFROM FROM chains\n")
    )
    (problem,) = problems_of(tmp_path)
    assert problem.startswith(f"{path}:9: query does not parse: Parser Error: syntax error at or near")
    assert problem.endswith(". Fix the SQL.")


def test_more_than_one_statement(tmp_path: Path) -> None:
    path = write_rule(tmp_path, "credential-without-task", rule_text(query=QUERY + "SELECT 1;\n"))
    assert problems_of(tmp_path) == [
        f"{path}:8: 2 statements. A rule is exactly one SELECT; split or remove the rest."
    ]


def test_a_rule_may_not_write(tmp_path: Path) -> None:
    path = write_rule(tmp_path, "credential-without-task", rule_text(query="DELETE FROM events\n"))
    assert problems_of(tmp_path) == [
        f"{path}:8: the query is a DELETE statement. A rule is one SELECT: it may only read the store."
    ]


def test_duplicate_ids_across_dirs_name_both_files(tmp_path: Path) -> None:
    first = write_rule(tmp_path / "a", "credential-without-task", rule_text())
    second = write_rule(tmp_path / "b", "credential-without-task", rule_text())
    problems = lint([tmp_path / "a", tmp_path / "b"], include_builtin=False)
    assert problems == [
        f"{second}:1: duplicate rule id 'credential-without-task', also defined at {first}:1. "
        "Rename one of them or remove the copy."
    ]


def test_duplicate_of_a_builtin_rule(tmp_path: Path) -> None:
    builtin = builtin_rule_files()
    if not builtin:
        pytest.skip("no built-in rules yet")
    name = builtin[0].name[: -len(".sql")]
    copy = write_rule(tmp_path, name, rule_text(id=name))
    assert lint([tmp_path]) == [
        f"{copy}:1: duplicate rule id '{name}', also defined at {builtin[0]}:1. "
        "Rename one of them or remove the copy."
    ]


def test_missing_rule_folder(tmp_path: Path) -> None:
    assert problems_of(tmp_path / "nope") == [
        f"{tmp_path / 'nope'}: rule folder not found. Fix the path (policy [rules] dirs, or --rules)."
    ]


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "r.sql"
    path.write_bytes(b"-- id: r\n-- title: \xff\n")
    assert problems_of(tmp_path) == [f"{path}: not UTF-8 text (invalid start byte). Save the file as UTF-8."]


# --------------------------------------------------------------------------------------------------
# Binding against the store (lint with a connection)
# --------------------------------------------------------------------------------------------------


def test_query_that_does_not_bind_points_at_its_line(tmp_path: Path, store) -> None:
    query = "SELECT source, event_id, 'x' AS message\nFROM chains\nWHERE taks_id IS NULL\n"
    path = write_rule(tmp_path, "credential-without-task", rule_text(query=query))
    assert problems_of(tmp_path) == []  # parses fine; only binding can tell
    (problem,) = problems_of(tmp_path, store)
    assert problem.startswith(
        f'{path}:10: query does not run: Binder Error: Referenced column "taks_id" not found'
    )
    assert problem.endswith(". Fix the query; try it with `nhiaudit sql`.")


def test_query_against_a_missing_table(tmp_path: Path, store) -> None:
    query = "SELECT source, event_id, 'x' AS message FROM chainz\n"
    path = write_rule(tmp_path, "credential-without-task", rule_text(query=query))
    (problem,) = problems_of(tmp_path, store)
    assert problem.startswith(
        f"{path}:8: query does not run: Catalog Error: Table with name chainz does not exist"
    )


@pytest.mark.parametrize(
    ("select", "missing"),
    [
        ("source, event_id", "message. Select it"),
        ("actor_id AS msg", "source, event_id, message. Select them"),
    ],
)
def test_query_lacking_finding_columns(tmp_path: Path, store, select: str, missing: str) -> None:
    path = write_rule(tmp_path, "credential-without-task", rule_text(query=f"SELECT {select} FROM chains\n"))
    assert problems_of(tmp_path, store) == [
        f"{path}:8: query does not return {missing}: every rule returns source, event_id, message."
    ]
    assert REQUIRED_COLUMNS == ("source", "event_id", "message")


def test_binding_does_not_execute_the_query(tmp_path: Path, store) -> None:
    query = "SELECT source, event_id, error('boom') AS message FROM (SELECT 's' AS source, 'e' AS event_id)\n"
    write_rule(tmp_path, "credential-without-task", rule_text(query=query))
    assert problems_of(tmp_path, store) == []


# --------------------------------------------------------------------------------------------------
# All at once
# --------------------------------------------------------------------------------------------------


def test_every_problem_is_reported_together(tmp_path: Path, store) -> None:
    folder = tmp_path / "rules"
    bad_header = write_rule(folder, "a-rule", rule_text(id="b-rule", severity="hgih", remediation=None))
    no_query = write_rule(folder, "c-rule", rule_text(id="c-rule", titel="x", query=""))
    unbound = write_rule(folder, "d-rule", rule_text(id="d-rule", query="SELECT source FROM chains\n"))
    write_rule(folder, "e-rule", rule_text(id="e-rule"))  # fine
    expected = [
        f"{bad_header}:1: missing key 'remediation'. Add a line '-- remediation: ...' to the header.",
        f"{bad_header}:3: bad severity 'hgih'. Did you mean 'high'?",
        f"{bad_header}:1: id 'b-rule' differs from the file name 'a-rule.sql'. "
        "Rename the file to b-rule.sql or set '-- id: a-rule'.",
        f"{no_query}:7: unknown key 'titel'. Did you mean 'title'?",
        f"{no_query}:8: no query after the header. "
        "Write one SELECT that returns source, event_id, message, after a blank line.",
    ]
    assert lint([folder], include_builtin=False) == expected
    with pytest.raises(RuleError) as info:
        load_rules([folder], include_builtin=False)
    assert info.value.problems == expected
    assert str(info.value) == "\n".join(expected)
    assert lint([folder], con=store, include_builtin=False) == expected + [
        f"{unbound}:8: query does not return event_id, message. Select them: "
        "every rule returns source, event_id, message."
    ]


def test_parse_rule_raises_every_problem_of_one_file(tmp_path: Path) -> None:
    path = write_rule(tmp_path, "x", rule_text(severity="urgent", title=None))
    with pytest.raises(RuleError) as info:
        parse_rule(path)
    assert info.value.problems == [
        f"{path}:1: missing key 'title'. Add a line '-- title: ...' to the header.",
        f"{path}:2: bad severity 'urgent'. Use one of info, low, medium, high, critical.",
        f"{path}:1: id 'credential-without-task' differs from the file name 'x.sql'. "
        "Rename the file to credential-without-task.sql or set '-- id: x'.",
    ]


def test_docs_rules_md_is_rendered_from_the_rule_headers(update_golden: bool) -> None:
    """SARIF's helpUri points at docs/rules.md#<id>: the page must list every rule as it is now."""
    from nhiaudit.rules import reference

    page = Path(__file__).resolve().parents[1] / "docs" / "rules.md"
    if update_golden:
        page.write_text(reference(), encoding="utf-8")
    text = page.read_text(encoding="utf-8")
    assert text == reference(), "docs/rules.md is stale: run pytest --update-golden"
    for info, _ in load_rules():
        assert f"\n## {info.id}\n" in text
