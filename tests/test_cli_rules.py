"""`nhiaudit rules`, `rules --lint`, custom rule folders, waivers and exit codes through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import invoke

from nhiaudit.rules import builtin_rule_files

ROOT = Path(__file__).resolve().parents[1]

CUSTOM_RULE = """-- id: s3-write-by-agent
-- title: Agent wrote to S3
-- severity: low
-- frameworks: 800-53:AU-12
-- description: Every S3 write by an audited identity, for a custom review queue.
-- remediation: Review the write.
SELECT source, event_id, 'S3 write ' || coalesce(resource, '?') AS message
FROM chains WHERE action = 's3:PutObject'
"""


@pytest.fixture(scope="module")
def world_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("rules") / "store.duckdb"
    result = invoke(["ingest", "--db", str(db), str(ROOT / "sample_logs")])
    assert result.exit_code == 0, result.output
    return db


def test_rules_lists_every_rule_with_frameworks() -> None:
    result = invoke(["rules"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    assert f"{len(builtin_rule_files())} rules" in result.output
    for rule_id in ("credential-without-task", "approval-denied", "broken-delegation-chain"):
        assert rule_id in result.output
    assert "NHI7:2025" in result.output and "800-53:AU-10" in result.output


def test_lint_reports_every_problem_at_once(tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "bad-one.sql").write_text(
        "-- id: bad-uno\n-- title: x\n-- severity: hgih\n-- framework: a\n-- description: d\n-- remediation: r\n"
        "SELECT 1\n",
        encoding="utf-8",
    )
    (folder / "ok.sql").write_text(CUSTOM_RULE.replace("s3-write-by-agent", "ok"), encoding="utf-8")
    result = invoke(["rules", "--lint", str(folder)], env={"COLUMNS": "250"})
    assert result.exit_code == 2
    output = result.output
    assert "bad-one.sql" in output
    assert "Did you mean 'high'?" in output  # bad severity
    assert "Did you mean 'frameworks'?" in output  # unknown key
    assert "bad-uno" in output  # id differs from the file name
    assert "problem(s) in rule files" in output


def test_lint_clean_folder(tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "s3-write-by-agent.sql").write_text(CUSTOM_RULE, encoding="utf-8")
    result = invoke(["rules", "--lint", str(folder), "--db", str(tmp_path / "none.duckdb")])
    assert result.exit_code == 0, result.output
    assert "no problems" in result.output


def test_custom_rule_folder_adds_findings(world_db: Path, tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "s3-write-by-agent.sql").write_text(CUSTOM_RULE, encoding="utf-8")
    out = tmp_path / "report.json"
    base = ["report", "--db", str(world_db), "--policy", str(ROOT / "sample_logs" / "nhiaudit.toml")]
    result = invoke([*base, "--rules", str(folder), "--json", str(out)])
    assert result.exit_code == 1
    text = out.read_text(encoding="utf-8")
    assert '"rule": "s3-write-by-agent"' in text


def _policy(tmp_path: Path, extra: str) -> Path:
    text = (ROOT / "sample_logs" / "nhiaudit.toml").read_text(encoding="utf-8")
    path = tmp_path / "nhiaudit.toml"
    path.write_text(text + "\n" + extra, encoding="utf-8")
    return path


def test_waivers_never_count_toward_fail_on(world_db: Path, tmp_path: Path) -> None:
    # Waive every finding of the world's only critical rule: --fail-on critical then passes.
    policy = _policy(
        tmp_path,
        '[[waivers]]\nrule = "approval-denied"\nmatch = { task_id = "*" }\nreason = "drill"\n'
        'owner = "sec@example.com"\nexpires = "2099-01-01"\n',
    )
    base = ["report", "--db", str(world_db), "--policy", str(policy)]
    assert invoke([*base, "--fail-on", "critical"]).exit_code == 0
    assert invoke([*base, "--fail-on", "high"]).exit_code == 1


def test_expired_waiver_stops_suppressing_and_is_listed(world_db: Path, tmp_path: Path) -> None:
    policy = _policy(
        tmp_path,
        '[[waivers]]\nrule = "approval-denied"\nmatch = { task_id = "*" }\nreason = "drill"\n'
        'owner = "sec@example.com"\nexpires = "2020-01-01"\n',
    )
    result = invoke(
        ["report", "--db", str(world_db), "--policy", str(policy), "--fail-on", "critical"],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 1
    assert "EXPIRED WAIVER: approval-denied" in result.output


def test_waiver_for_unknown_rule_is_an_error(world_db: Path, tmp_path: Path) -> None:
    policy = _policy(
        tmp_path,
        '[[waivers]]\nrule = "no-such-rule"\nmatch = { task_id = "*" }\nreason = "x"\n'
        'owner = "o@example.com"\nexpires = "2099-01-01"\n',
    )
    result = invoke(["report", "--db", str(world_db), "--policy", str(policy)])
    assert result.exit_code == 2
    assert "waiver for unknown rule(s) no-such-rule" in result.output


def test_report_on_a_missing_store_exits_2(tmp_path: Path) -> None:
    result = invoke(["report", "--db", str(tmp_path / "nothing.duckdb")])
    assert result.exit_code == 2
    assert "Run `nhiaudit ingest PATH...` first" in result.output


def test_report_memory_limit_is_checked(world_db: Path) -> None:
    result = invoke(["report", "--db", str(world_db), "--memory-limit", "huge"])
    assert result.exit_code == 2
    assert "--memory-limit: 'huge' is not a size" in result.output


def test_report_lists_waived_findings_with_reason_and_owner(world_db: Path) -> None:
    policy = str(ROOT / "sample_logs" / "nhiaudit.toml")
    result = invoke(["report", "--db", str(world_db), "--policy", policy], env={"COLUMNS": "250"})
    assert result.exit_code == 1
    assert "Waived (1): not counted toward --fail-on" in result.output
    assert "legacy-etl moves to JIT credentials in CHG0040001" in result.output
    assert "platform-team@example.com" in result.output
