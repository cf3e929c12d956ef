"""The command line for ingest, sources and sql: exit codes, exact messages, inert log text."""

from __future__ import annotations

import csv
import importlib.metadata
import io
import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from helpers import invoke
from rich.console import Console

import nhiaudit
from nhiaudit import cli
from nhiaudit.sources import SOURCES, cloudtrail

ESC = "\x1b"


def record(i: int, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "eventVersion": "1.08",
        "eventID": f"evt-{i:06d}",
        "eventTime": f"2024-05-01T10:00:{i % 60:02d}Z",
        "eventSource": "s3.amazonaws.com",
        "eventName": "GetObject",
        "recipientAccountId": "111122223333",
        "userIdentity": {
            "type": "AssumedRole",
            "accessKeyId": "ASIAAGENTKEY00000001",
            "arn": "arn:aws:sts::111122223333:assumed-role/agent/t-1",
        },
        "requestParameters": {"bucketName": "reports", "key": f"k/{i}"},
    }
    base.update(fields)
    return base


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch):
    """Invoke the CLI with wide consoles (no wrapping) and without the user's NHIAUDIT_DB."""
    monkeypatch.setattr(cli, "console", Console(width=200))
    monkeypatch.setattr(cli, "err_console", Console(width=200, stderr=True))
    monkeypatch.delenv("NHIAUDIT_DB", raising=False)
    monkeypatch.delenv("NHIAUDIT_POLICY", raising=False)
    return lambda *args: invoke(args)


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "a.ndjson").write_text("".join(json.dumps(record(i)) + "\n" for i in range(3)))
    (folder / "b.json").write_text(json.dumps({"Records": [record(3), record(0)]}))
    return folder


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store.duckdb"


def _table_row(output: str, first_cell: str) -> list[str]:
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{output}")


# --- version -----------------------------------------------------------------------------------------


def test_version_is_the_installed_distributions(run) -> None:
    """pyproject.toml reads the version from nhiaudit.__version__: the two cannot disagree."""
    result = run("--version")
    assert (result.exit_code, result.stdout) == (0, f"nhiaudit {importlib.metadata.version('nhiaudit')}\n")
    assert importlib.metadata.version("nhiaudit") == nhiaudit.__version__


# --- ingest ------------------------------------------------------------------------------------------


def test_ingest_prints_a_summary_per_source(run, logs: Path, db: Path) -> None:
    result = run("ingest", str(logs), "--db", str(db))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == f"Ingested into {db}"  # whole, never folded
    row = _table_row(result.stdout, "cloudtrail")
    assert row[:6] == ["cloudtrail", "2", "5", "4", "0", "1"]  # files, records, loaded, rejected, duplicates
    assert db.exists()

    again = run("ingest", str(logs), "--db", str(db))
    assert again.exit_code == 0
    assert _table_row(again.stdout, "cloudtrail")[:6] == ["cloudtrail", "2 (2 already in store)", "0", "0", "0", "0"]


def test_ingest_memory_limit(run, logs: Path, db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = run("ingest", str(logs), "--db", str(db), "--memory-limit", "lots")
    assert bad.exit_code == 2
    assert "--memory-limit: 'lots' is not a size. Use a number and a unit" in bad.output
    assert not db.exists()
    monkeypatch.setenv("NHIAUDIT_MEMORY_LIMIT", "256MB")
    seen: list[str] = []
    real = cli.store.set_memory_limit
    monkeypatch.setattr(cli.store, "set_memory_limit", lambda con, value: (seen.append(value), real(con, value)))
    assert run("ingest", str(logs), "--db", str(db)).exit_code == 0
    assert seen == ["256MB"]


def test_50_mb_record_loads_under_the_default_memory_limit(run, tmp_path: Path, db: Path) -> None:
    big = tmp_path / "big.ndjson"
    huge = record(7, requestParameters={"policyDocument": "x" * (50 << 20)})
    big.write_text(json.dumps(record(1)) + "\n" + json.dumps(huge) + "\n")
    result = run("ingest", str(big), "--db", str(db))
    assert result.exit_code == 0, result.output
    assert _table_row(result.stdout, "cloudtrail")[:5] == ["cloudtrail", "1", "2", "2", "0"]


def test_ingest_uses_nhiaudit_db(run, logs: Path, db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NHIAUDIT_DB", str(db))
    result = run("ingest", str(logs))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == f"Ingested into {db}"


def test_ingest_reports_rejected_records(run, tmp_path: Path, db: Path) -> None:
    path = tmp_path / "mixed.ndjson"
    path.write_text(json.dumps(record(1)) + "\n{broken\n")
    result = run("ingest", str(path), "--db", str(db))
    assert result.exit_code == 0  # the good record loaded; the bad one is in `rejected`
    assert _table_row(result.stdout, "cloudtrail")[:6] == ["cloudtrail", "1", "2", "1", "1", "0"]
    assert 'nhiaudit sql "SELECT path, line, reason FROM rejected"' in result.stdout


def test_ingest_of_an_unreadable_file_fails(run, tmp_path: Path, db: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"Records": [{"eventVersion": "1.08", "eventSource": "s3.amazonaws.com", oops}]}')
    result = run("ingest", str(path), "--db", str(db))
    assert result.exit_code == 2  # a run that could not read its evidence never exits 0
    assert "cloudtrail could not read the file: Invalid Input Error: Malformed JSON" in result.stdout


def test_unrecognized_file_exits_2_and_names_it(run, logs: Path, db: Path) -> None:
    stray = logs / "notes.txt"
    stray.write_text("meeting notes, not a log\n")
    result = run("ingest", str(logs), "--db", str(db))
    assert result.exit_code == 2
    assert (
        "1 file(s) not recognized by any source (use --source NAME to force one; `nhiaudit sources` lists "
        "them):" in result.stderr
    )
    assert f"  {stray}" in result.stderr.splitlines()
    assert _table_row(result.stdout, "cloudtrail")[:4] == ["cloudtrail", "2", "5", "4"]  # the rest loaded


def test_nonexistent_path_exits_2(run, tmp_path: Path, db: Path) -> None:
    missing = tmp_path / "nope"
    result = run("ingest", str(missing), "--db", str(db))
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {missing}: no such file or directory. Check the path."


def test_unknown_source_exits_2(run, logs: Path, db: Path) -> None:
    result = run("ingest", str(logs), "--db", str(db), "--source", "cloudtrial")
    assert result.exit_code == 2
    assert result.stderr.lstrip().startswith(
        "error: --source: unknown source 'cloudtrial'. Did you mean 'cloudtrail'? Known sources: cloudtrail"
    )


def test_store_busy_exits_2(run, logs: Path, db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nhiaudit.errors import StoreError

    def busy(path, read_only=False):
        raise StoreError(
            f"{path}: the store is open in another nhiaudit or DuckDB process. "
            "Wait for it to finish, or use another --db."
        )

    monkeypatch.setattr(cli.store, "connect", busy)
    result = run("ingest", str(logs), "--db", str(db))
    assert result.exit_code == 2
    assert "the store is open in another nhiaudit or DuckDB process" in result.stderr


ENVOY_FIELDS = """\
[sources.envoy]
fields = { start_time = "ts", response_code = "status", method = "verb", path = "uri", request_id = "req_id", \
traceparent = "trace_parent" }
"""


@pytest.fixture
def custom_envoy_log(tmp_path: Path) -> Path:
    """A json_format Envoy log whose config renamed its keys (no source detects it)."""
    line = {
        "ts": "2026-11-02T09:05:00Z",
        "verb": "GET",
        "uri": "/v1/reports",
        "status": 200,
        "req_id": "req-custom-1",
        "trace_parent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    }
    path = tmp_path / "access.log"
    path.write_text(json.dumps(line) + "\n")
    return path


@pytest.mark.parametrize("via", ["--policy", "NHIAUDIT_POLICY"])
def test_ingest_reads_envoy_fields_from_the_policy(
    run, tmp_path: Path, db: Path, custom_envoy_log: Path, via: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(ENVOY_FIELDS)
    args = ["ingest", "--db", str(db), "--source", "envoy", str(custom_envoy_log)]
    if via == "--policy":
        args[1:1] = ["--policy", str(policy)]
    else:
        monkeypatch.setenv("NHIAUDIT_POLICY", str(policy))
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert _table_row(result.stdout, "envoy")[:5] == ["envoy", "1", "1", "1", "0"]
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT event_id, action, resource, trace_id, parent_span_id FROM events").fetchall() == [
            ("req-custom-1", "http:GET", "/v1/reports", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
        ]


def test_ingest_without_the_policy_rejects_the_renamed_keys(
    run, db: Path, custom_envoy_log: Path
) -> None:
    result = run("ingest", "--db", str(db), "--source", "envoy", str(custom_envoy_log))
    assert result.exit_code == 2  # nothing of the file could be read
    assert _table_row(result.stdout, "envoy")[:5] == ["envoy", "1", "1", "0", "1"]


def test_ingest_policy_error_exits_2(run, tmp_path: Path, db: Path, custom_envoy_log: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[sources.envoy]\nfields = { reqest_id = "req_id" }\n')
    result = run("ingest", "--db", str(db), "--policy", str(policy), "--source", "envoy", str(custom_envoy_log))
    assert result.exit_code == 2
    assert " ".join(result.stderr.split()) == (
        f"error: {policy}:2: unknown Envoy field 'reqest_id' in sources.envoy.fields. Did you mean 'request_id'?"
    )
    assert not db.exists()  # refused before the store is opened


# --- sources ---------------------------------------------------------------------------------------


def test_sources_lists_every_source_with_its_detection(run) -> None:
    result = run("sources")
    assert result.exit_code == 0
    names = [line.split("│")[1].strip() for line in result.stdout.splitlines() if line.startswith("│")]
    assert [n for n in names if n] == list(SOURCES)  # in detection order, one row each
    # Cells wrap: compare the words of the cloudtrail row with its DETECTION and READS.
    row = _cells_of(result.stdout, "cloudtrail")
    assert row[1].split() == cloudtrail.READS.split()
    assert row[2].split() == cloudtrail.DETECTION.split()


def _cells_of(output: str, name: str) -> list[str]:
    """The cells of a table row whose text wraps over several lines, joined per column."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("│") and line.split("│")[1].strip() == name)
    cells: list[list[str]] = []
    for line in lines[start:]:
        if not line.startswith("│"):
            break
        parts = [p.strip() for p in line.split("│")[1:-1]]
        cells = cells or [[] for _ in parts]
        for column, part in zip(cells, parts, strict=True):
            column.append(part)
    return [" ".join(c) for c in cells]


# --- sql -------------------------------------------------------------------------------------------


@pytest.fixture
def hostile_store(run, tmp_path: Path, db: Path) -> Path:
    """A store whose events carry terminal escapes, Rich markup and a CSV formula."""
    path = tmp_path / "hostile.ndjson"
    path.write_text(
        json.dumps(
            record(
                1,
                userAgent="\x1b[31mred\x1b[0m [bold]x[/] \x1b]8;;http://e.x\x07ln",
                awsRegion='=HYPERLINK("http://evil")',
            )
        )
        + "\n"
    )
    result = run("ingest", str(path), "--db", str(db))
    assert result.exit_code == 0, result.output
    return db


def test_sql_prints_a_table(run, hostile_store: Path) -> None:
    result = run("sql", "SELECT event_id, action, resource FROM events", "--db", str(hostile_store))
    assert result.exit_code == 0, result.output
    assert _table_row(result.stdout, "evt-000001") == ["evt-000001", "s3:GetObject", "arn:aws:s3:::reports/k/1"]
    assert "1 row(s)" in result.stdout


def test_sql_json(run, hostile_store: Path) -> None:
    result = run("sql", "SELECT event_id, occurred_at, read_only FROM events", "--db", str(hostile_store), "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == [
        {"event_id": "evt-000001", "occurred_at": "2024-05-01T10:00:01Z", "read_only": True}
    ]


def test_sql_csv_neutralizes_formulas(run, hostile_store: Path) -> None:
    result = run(
        "sql", "SELECT event_id, region, -1 AS n, '+x' AS p, '@y' AS a FROM events", "--db", str(hostile_store), "--csv"
    )
    assert result.exit_code == 0
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows == [
        ["event_id", "region", "n", "p", "a"],
        ["evt-000001", '\'=HYPERLINK("http://evil")', "-1", "'+x", "'@y"],
    ]


def test_sql_log_text_is_inert(run, hostile_store: Path) -> None:
    result = run("sql", "SELECT user_agent FROM events", "--db", str(hostile_store))
    assert result.exit_code == 0
    assert ESC not in result.stdout and "\x07" not in result.stdout
    assert "\\x1b[31mred\\x1b[0m [bold]x[/]" in result.stdout  # shown, escaped, markup not applied


def test_sql_errors_are_inert_too(run, hostile_store: Path) -> None:
    result = run("sql", "SELECT '\x1b[31m' || no_such_column FROM events", "--db", str(hostile_store))
    assert result.exit_code == 2
    assert ESC not in result.stderr
    assert result.stderr.startswith("policy: the built-in defaults\nerror: sql: Binder Error:")


def test_sql_cannot_write(run, hostile_store: Path) -> None:
    result = run("sql", "DELETE FROM events", "--db", str(hostile_store))
    assert result.exit_code == 2
    assert result.stderr.startswith("policy: the built-in defaults\nerror: sql: ")
    assert "read-only" in result.stderr
    count = run("sql", "SELECT count(*) AS n FROM events", "--db", str(hostile_store), "--json")
    assert json.loads(count.stdout) == [{"n": 1}]


def test_sql_on_a_missing_store(run, tmp_path: Path) -> None:
    missing = tmp_path / "none.duckdb"
    result = run("sql", "SELECT 1", "--db", str(missing))
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {missing}: no store here. Run `nhiaudit ingest PATH...` first, or pass --db / NHIAUDIT_DB."
    )
    assert not missing.exists()


# --- report: Markdown comment cap, compliance in every format, schema (issue 11) -----------------


@pytest.fixture
def findings_store(run, tmp_path: Path, db: Path) -> Path:
    """Three deletes by a long-lived IAM user key: six findings (credential-without-task, ...)."""
    folder = tmp_path / "deletes"
    folder.mkdir()
    identity = {"type": "IAMUser", "accessKeyId": "AKIAEXAMPLE0000001", "arn": "arn:aws:iam::111122223333:user/bot"}
    lines = (json.dumps(record(i, eventName="DeleteObject", userIdentity=identity)) + "\n" for i in range(3))
    (folder / "a.ndjson").write_text("".join(lines))
    assert run("ingest", str(folder), "--db", str(db)).exit_code == 0
    return db


def test_markdown_max_caps_the_comment_and_points_to_the_full_report(run, findings_store: Path, tmp_path: Path) -> None:
    html = tmp_path / "full.html"
    result = run("report", "--db", str(findings_store), "--markdown", "-", "--markdown-max", "1", "--html", str(html))
    assert result.exit_code == 1
    rows = [line for line in result.stdout.splitlines() if line.startswith("| **")]
    assert len(rows) == 1
    assert f"… and 5 more findings not listed here: the full report is `{html}`." in result.stdout
    assert "- `nhiaudit trace cloudtrail:evt-000000` — 2 findings, worst high, `s3:DeleteObject`" in result.stdout
    alone = run("report", "--db", str(findings_store), "--markdown", "-", "--markdown-max", "1").stdout
    assert '`nhiaudit sql "SELECT * FROM findings"`' in alone


def test_compliance_in_every_format(run, findings_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run("report", "--db", str(findings_store), "--compliance", "OWASP-Agentic", "--output-dir", str(out))
    assert result.exit_code == 1
    assert "OWASP Top 10 for Agentic Applications:" in result.stdout  # the terminal table
    document = json.loads((out / "nhiaudit.json").read_text())
    failing = [c["control"] for c in document["compliance"] if c["status"] == "fail"]
    assert failing and document["compliance_framework"]["id"] == "owasp-agentic"
    control = failing[0]
    sarif = json.loads((out / "nhiaudit.sarif").read_text())
    assert sarif["runs"][0]["properties"]["compliance"]["controls"] == document["compliance"]
    junit = (out / "nhiaudit.junit.xml").read_text()
    assert 'testsuite name="nhiaudit.compliance.owasp-agentic"' in junit and f'name="{control} (' in junit
    assert f"`{control}` | ❌ fail" in (out / "nhiaudit.md").read_text()
    assert 'id="compliance"' in (out / "nhiaudit.html").read_text()
    ocsf = [json.loads(line) for line in (out / "nhiaudit.ocsf.jsonl").read_text().splitlines()]
    controls = [e["compliance"] for e in ocsf if e["class_uid"] == 2003]
    assert {"standards": ["OWASP Top 10 for Agentic Applications"], "control": control} == {
        k: v for k, v in next(c for c in controls if c["control"] == control).items() if k in ("standards", "control")
    }
    rows = list(csv.DictReader(io.StringIO((out / "nhiaudit.csv").read_text())))
    assert any(control in row["controls"].split() for row in rows)


def _unfolded(output: str) -> str:
    """Terminal output with line breaks, padding and table borders removed: a folded id reads whole."""
    return "".join(ch for ch in output if not ch.isspace() and ch not in "│┃┏┓┗┛┡┩└┘├┤┬┴┼━─╇╈╋┳┻└──")


def test_trace_folds_ids_and_shows_paths_relative_to_the_current_folder(
    findings_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "console", Console(width=40))
    monkeypatch.setattr(cli, "err_console", Console(width=40, stderr=True))
    monkeypatch.chdir(tmp_path)  # the evidence was ingested as an absolute path under it
    result = invoke(["trace", "cloudtrail:evt-000000", "--db", str(findings_store)])
    assert result.exit_code == 0
    flat = _unfolded(result.stdout)
    assert "[cloudtraildeletes/a.ndjson:1record0idevt-000000]" in flat  # relative, whole
    assert str(tmp_path) not in flat
    assert "…" not in result.stdout
    assert "arn:aws:iam::111122223333:user/bot" in flat


def test_report_terminal_never_cuts_ids(findings_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "console", Console(width=40))
    monkeypatch.setattr(cli, "err_console", Console(width=40, stderr=True))
    result = invoke(["report", "--db", str(findings_store)])
    assert result.exit_code == 1
    assert "…" not in result.stdout

    def column(index: int) -> str:  # one column of every table, its folded lines joined
        rows = [line.split("│") for line in result.stdout.splitlines() if line.startswith("│")]
        return "".join(cells[index].strip() for cells in rows if len(cells) > index)

    assert "credential-without-task" in column(2)  # Findings by rule: severity | rule | …
    assert "cloudtrail:evt-000002" in column(1)  # Worst actions: action id | …
