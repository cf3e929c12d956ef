"""Rules: one SQL file per rule, ``queries/rules/<id>.sql``, with a metadata header.

A rule file starts with ``-- key: value`` lines (``id``, ``title``, ``severity``, ``frameworks``,
``description``, ``remediation``; a value continues on following lines indented as ``--   more``),
then holds one SELECT over the derived tables that returns at least :data:`REQUIRED_COLUMNS`, one
row per finding. Loading collects every problem of every file and raises them together, so
``nhiaudit rules --lint`` shows a rule author the whole list in one run (pySigma's collect-errors
mode).

How to add a rule: write ``queries/rules/<id>.sql`` with the header above, add its case folder
under ``tests/``, and run ``nhiaudit rules --lint`` against a store with derived tables.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import duckdb

from nhiaudit.errors import RuleError, did_you_mean
from nhiaudit.model import SEVERITIES, RuleInfo

try:
    from importlib.resources.abc import Traversable
except ModuleNotFoundError:  # Python 3.10
    from importlib.abc import Traversable

#: Columns every rule query must return (it may return more).
REQUIRED_COLUMNS = ("source", "event_id", "message")
#: Header keys, all required, in the order a rule file writes them.
HEADER_KEYS = ("id", "title", "severity", "frameworks", "description", "remediation")

# `-- key: value` has at most one space after the dashes; a continuation has two or more, so a
# continued sentence that happens to contain a colon is never read as a new key.
_KEY_LINE = re.compile(r"^-- ?([A-Za-z_][\w-]*)\s*:\s*(.*?)\s*$")
_CONTINUATION = re.compile(r"^--\s{2,}(\S.*?)\s*$")
_DUCKDB_LINE = re.compile(r"LINE (\d+):")


@dataclass
class _Parsed:
    """One rule file as read, with the line numbers that problems point at."""

    display: str  # the file as messages name it
    stem: str  # file name without .sql: the id it must carry
    rule_id: str | None = None  # the header's id, even when other problems keep `info` empty
    info: RuleInfo | None = None
    sql: str = ""
    sql_line: int = 1  # file line of the query's first line
    key_lines: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def at(self, line: int, message: str) -> None:
        self.problems.append(f"{self.display}:{line}: {message}")


def parse_rule(path: Path | Traversable) -> tuple[RuleInfo, str]:
    """Read one rule file into its metadata and its query (no trailing semicolon).

    Raises :class:`RuleError` with every problem of the file. The query is checked to parse as
    exactly one SELECT, but not bound: binding needs the derived tables (see :func:`lint`).
    """
    with duckdb.connect() as parser:
        parsed = _parse(path, parser)
    if parsed.problems or parsed.info is None:
        raise RuleError(parsed.problems)
    return parsed.info, parsed.sql


def load_rules(dirs: list[Path] | None = None, include_builtin: bool = True) -> list[tuple[RuleInfo, str]]:
    """The built-in rules (shipped in the package) followed by those in ``dirs``, in file-name
    order per folder. Raises one :class:`RuleError` listing every problem in every file."""
    parsed, problems = _collect(dirs or [], include_builtin)
    if problems:
        raise RuleError(problems)
    return [(p.info, p.sql) for p in parsed if p.info is not None]


def lint(
    dirs: list[Path] | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
    include_builtin: bool = True,
) -> list[str]:
    """Every problem in the rule files, as ``<file>:<line>: <what>. <fix>`` lines.

    With ``con`` (a store whose derived tables exist), each query is also bound against the real
    schema: a typo in a column name or a missing finding column is caught before a report run
    instead of in the middle of one. Binding uses ``DESCRIBE``, which plans but never executes.
    """
    parsed, problems = _collect(dirs or [], include_builtin)
    if con is not None:
        for rule in parsed:
            if rule.info is not None and not rule.problems:
                problems += _bind_problems(rule, con)
    return problems


def builtin_rule_files() -> list[Traversable]:
    """The rule files shipped inside the package, read through ``importlib.resources`` so an
    installed wheel behaves like a checkout."""
    folder = files("nhiaudit") / "queries" / "rules"
    if not folder.is_dir():
        return []
    return sorted((f for f in folder.iterdir() if f.name.endswith(".sql") and f.is_file()), key=lambda f: f.name)


# --------------------------------------------------------------------------------------------------


def _collect(dirs: Iterable[Path], include_builtin: bool) -> tuple[list[_Parsed], list[str]]:
    """Parse every rule file; return them and all problems, duplicates across folders included."""
    problems: list[str] = []
    sources: list[Path | Traversable] = list(builtin_rule_files()) if include_builtin else []
    for folder in dirs:
        if not folder.is_dir():
            problems.append(f"{folder}: rule folder not found. Fix the path (policy [rules] dirs, or --rules).")
            continue
        sources += sorted(p for p in folder.iterdir() if p.suffix == ".sql" and p.is_file())
    parsed: list[_Parsed] = []
    first: dict[str, _Parsed] = {}
    with duckdb.connect() as parser:
        for source in sources:
            rule = _parse(source, parser)
            if rule.rule_id:
                earlier = first.setdefault(rule.rule_id, rule)
                if earlier is not rule:
                    rule.at(
                        rule.key_lines["id"],
                        f"duplicate rule id '{rule.rule_id}', also defined at "
                        f"{earlier.display}:{earlier.key_lines['id']}. "
                        "Rename one of them or remove the copy.",
                    )
                    rule.info = None
            problems += rule.problems
            parsed.append(rule)
    return parsed, problems


def _parse(path: Path | Traversable, parser: duckdb.DuckDBPyConnection) -> _Parsed:
    name = path.name
    rule = _Parsed(display=str(path), stem=name[: -len(".sql")] if name.endswith(".sql") else name)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        rule.problems.append(f"{rule.display}: not UTF-8 text ({exc.reason}). Save the file as UTF-8.")
        return rule
    except OSError as exc:
        rule.problems.append(f"{rule.display}: cannot read the rule file ({exc.strerror}). Check the path.")
        return rule
    lines = text.splitlines()
    values, body_start = _read_header(rule, lines)
    rule.rule_id = values.get("id") or None
    _check_header(rule, values)
    _read_sql(rule, lines, body_start, parser)
    if rule.problems:
        return rule
    rule.info = RuleInfo(
        id=values["id"],
        title=values["title"],
        severity=values["severity"],
        frameworks=tuple(f.strip() for f in values["frameworks"].split(",") if f.strip()),
        description=values["description"],
        remediation=values["remediation"],
        path=rule.display,
    )
    return rule


def _read_header(rule: _Parsed, lines: list[str]) -> tuple[dict[str, str], int]:
    """The ``-- key: value`` block at the top; returns the values and the first line after it."""
    values: dict[str, str] = {}
    current: str | None = None
    index = 0
    while index < len(lines) and not lines[index].strip():
        index += 1
    while index < len(lines) and lines[index].startswith("--"):
        number, line = index + 1, lines[index]
        index += 1
        key_line = _KEY_LINE.match(line)
        continuation = _CONTINUATION.match(line)
        if key_line:
            key, value = key_line.group(1), key_line.group(2)
            if key in rule.key_lines:
                rule.at(number, f"key '{key}' is set twice (first on line {rule.key_lines[key]}). Keep one.")
                current = None
                continue
            rule.key_lines[key] = number
            values[key] = value
            current = key
        elif continuation and current is not None:
            values[current] = f"{values[current]} {continuation.group(1)}".strip()
        elif line[2:].strip():
            rule.at(
                number,
                "header line is not '-- key: value'. Continue a value on a line starting '--   ', "
                "or put prose comments after a blank line.",
            )
        else:
            current = None  # a bare `--` ends the value above it
    return values, index


def _check_header(rule: _Parsed, values: dict[str, str]) -> None:
    for key, line in rule.key_lines.items():
        if key not in HEADER_KEYS:
            hint = did_you_mean(key, HEADER_KEYS) or f" Known keys: {', '.join(HEADER_KEYS)}."
            rule.at(line, f"unknown key '{key}'.{hint}")
    for key in HEADER_KEYS:
        if key not in values:
            rule.at(1, f"missing key '{key}'. Add a line '-- {key}: ...' to the header.")
        elif not values[key]:
            rule.at(rule.key_lines[key], f"empty value for '{key}'. Write '-- {key}: <text>'.")
    severity = values.get("severity")
    if severity and severity not in SEVERITIES:
        hint = did_you_mean(severity, SEVERITIES) or f" Use one of {', '.join(SEVERITIES)}."
        rule.at(rule.key_lines["severity"], f"bad severity '{severity}'.{hint}")
    frameworks = values.get("frameworks")
    if frameworks and not any(f.strip() for f in frameworks.split(",")):
        rule.at(
            rule.key_lines["frameworks"],
            "no framework tags. List them separated by commas: NHI1:2025, AU-10.",
        )
    rule_id = values.get("id")
    if rule_id and rule_id != rule.stem:
        rule.at(
            rule.key_lines["id"],
            f"id '{rule_id}' differs from the file name '{rule.stem}.sql'. "
            f"Rename the file to {rule_id}.sql or set '-- id: {rule.stem}'.",
        )


def _read_sql(rule: _Parsed, lines: list[str], start: int, parser: duckdb.DuckDBPyConnection) -> None:
    """The query after the header: exactly one SELECT that parses.

    Anything else is refused even from a trusted folder: rules run against the evidence store, and
    a rule file that could write (``DELETE FROM events``) would break the chain of custody.
    """
    header_end = start
    while start < len(lines) and not lines[start].strip():
        start += 1
    rule.sql_line = start + 1
    sql = "\n".join(lines[start:]).rstrip()
    if sql.endswith(";"):
        sql = sql[:-1].rstrip()
    rule.sql = sql
    no_query = (
        f"no query after the header. Write one SELECT that returns {', '.join(REQUIRED_COLUMNS)}, after a blank line."
    )
    if not sql:
        rule.at(header_end + 1, no_query)
        return
    try:
        statements = parser.extract_statements(sql)
    except duckdb.Error as exc:
        line, what = _duckdb_problem(rule, exc)
        rule.at(line, f"query does not parse: {what}. Fix the SQL.")
        return
    if not statements:
        rule.at(header_end + 1, no_query)
    elif len(statements) > 1:
        rule.at(
            rule.sql_line,
            f"{len(statements)} statements. A rule is exactly one SELECT; split or remove the rest.",
        )
    elif statements[0].type != duckdb.StatementType.SELECT:
        kind = statements[0].type.name
        rule.at(
            rule.sql_line,
            f"the query is a {kind} statement. A rule is one SELECT: it may only read the store.",
        )


def _bind_problems(rule: _Parsed, con: duckdb.DuckDBPyConnection) -> list[str]:
    before = len(rule.problems)
    try:
        columns = [row[0] for row in con.execute(f"DESCRIBE {rule.sql}").fetchall()]
    except duckdb.Error as exc:
        line, what = _duckdb_problem(rule, exc)
        rule.at(line, f"query does not run: {what}. Fix the query; try it with `nhiaudit sql`.")
        return rule.problems[before:]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        rule.at(
            rule.sql_line,
            f"query does not return {', '.join(missing)}. Select {'it' if len(missing) == 1 else 'them'}: "
            f"every rule returns {', '.join(REQUIRED_COLUMNS)}.",
        )
    return rule.problems[before:]


def _duckdb_problem(rule: _Parsed, exc: duckdb.Error) -> tuple[int, str]:
    """DuckDB's first message line, and the file line it points at (its ``LINE n:`` counts lines
    of the query, which starts at ``rule.sql_line``)."""
    text = str(exc)
    found = _DUCKDB_LINE.search(text)
    line = rule.sql_line + int(found.group(1)) - 1 if found else rule.sql_line
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return line, first.rstrip(" .!")


def reference() -> str:
    """docs/rules.md: every built-in rule with its severity, frameworks, description and remediation
    (SARIF's ``helpUri`` points at each rule's heading). Rendered from the rule files' headers."""
    out = [
        "# Rules\n",
        "Generated from the headers of `nhiaudit/queries/rules/*.sql` (`pytest --update-golden` rewrites",
        "this page; a test fails when it is stale). Each rule returns `source, event_id, message` for",
        "the audited actions it fires on; `nhiaudit rules` lists them, `nhiaudit trace ID` shows why.\n",
    ]
    by_severity = sorted(load_rules(), key=lambda r: (-SEVERITIES.index(r[0].severity), r[0].id))
    for info, _ in by_severity:
        out += [
            f"## {info.id}\n",
            f"**{info.title}** — severity **{info.severity}**; frameworks: {', '.join(info.frameworks)}\n",
            f"{info.description}\n",
            f"Remediation: {info.remediation}\n",
        ]
    return "\n".join(out)
