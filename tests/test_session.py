"""The audit session: the library's one entry point for trace, report and sql, and the CLI's
error mapping that sits on it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import polars
import pyarrow
import pytest
from helpers import invoke

from nhiaudit import ingest, store
from nhiaudit.errors import NhiauditError, StoreError
from nhiaudit.evaluate import fingerprint
from nhiaudit.policy import Policy, load_policy
from nhiaudit.session import AuditSession, open_audit

ROOT = Path(__file__).resolve().parents[1]
WORLD = ROOT / "sample_logs"
POLICY = WORLD / "nhiaudit.toml"
APPROVED = "cloudtrail:e1000000-0000-4000-8000-000000010002"  # the clean one of sample_logs/README.md


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample world ingested, never correlated: the first session has to."""
    db = tmp_path_factory.mktemp("session") / "world.duckdb"
    con = store.connect(db)
    ingest.ingest(con, [WORLD])
    con.close()
    return db


@pytest.fixture(scope="module")
def world(ingested: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """What the library reports on the sample world (it grows as sources are added): the CLI and the
    SQL views must agree with it."""
    copy = tmp_path_factory.mktemp("expected") / "world.duckdb"
    shutil.copy(ingested, copy)
    with open_audit(copy, POLICY) as audit:
        report = audit.report()
    return {
        "actions": len(report.actions),
        "verdicts": {v: n for v, n in report.summary["verdicts"].items() if n},
        "findings": len(report.findings),
        "waived": sum(f.waived for f in report.findings),
    }


@pytest.fixture
def db(ingested: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "world.duckdb"
    shutil.copy(ingested, copy)
    return copy


def _meta(db: Path) -> dict[str, str]:
    con = store.connect(db, read_only=True)
    try:
        return dict(con.execute("SELECT key, value FROM meta").fetchall())
    finally:
        con.close()


def test_open_audit_correlates_once_then_reuses_the_derived_tables(db: Path) -> None:
    with open_audit(db, POLICY) as audit:
        assert audit.correlated
        assert audit.trace(APPROVED).action.verdict == "approved"
    with open_audit(db, POLICY) as audit:
        assert not audit.correlated  # same evidence, same policy
        assert audit.trace(APPROVED).action.verdict == "approved"
    with open_audit(db, Policy()) as audit:  # another policy (the defaults): stale again
        assert audit.correlated


def test_without_a_policy_the_remembered_one_is_used_and_named(db: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./nhiaudit.toml here
    monkeypatch.delenv("NHIAUDIT_POLICY", raising=False)
    with open_audit(db) as audit:  # never audited: the defaults
        assert audit.policy.path is None and audit.policy_note == "policy: the built-in defaults"
    with open_audit(db, POLICY) as audit:
        assert audit.policy_note == f"policy: {POLICY}"
    with open_audit(db) as audit:
        assert not audit.correlated and audit.policy.fingerprint == load_policy(POLICY).fingerprint
        assert audit.policy_note == f"policy: {POLICY} (remembered: the policy this store was last audited with)"
    with open_audit(db, Policy()) as audit:
        assert audit.correlated
    with open_audit(db) as audit:  # the defaults are remembered too
        assert not audit.correlated and audit.policy.path is None
        assert audit.policy_note.endswith("(remembered: the store was last audited with them)")


def test_report_with_a_policy_elsewhere_then_trace_from_another_folder_agree(
    db: Path, tmp_path: Path, monkeypatch
) -> None:
    """DESIGN §3: after `report --policy p.toml`, a `trace` without --policy uses the same policy."""
    monkeypatch.delenv("NHIAUDIT_POLICY", raising=False)
    elsewhere = tmp_path / "policies"
    elsewhere.mkdir()
    policy = elsewhere / "p.toml"
    policy.write_text(POLICY.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.chdir(elsewhere)
    report = invoke(["report", "--db", str(db), "--policy", "p.toml", "--json", "-"])
    assert report.exit_code == 1 and "policy: p.toml" in report.stderr
    verdicts = {f"{a['source']}:{a['event_id']}": a["verdict"] for a in json.loads(report.stdout)["actions"]}
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    policy.unlink()  # the store keeps the text: the file need not exist any more
    for action_id, verdict in verdicts.items():
        traced = invoke(["trace", "--db", str(db), action_id, "--json"])
        assert traced.exit_code == 0, traced.output
        assert json.loads(traced.stdout)["verdict"] == verdict, action_id
    assert "remembered" in traced.stderr and str(policy.resolve()) in traced.stderr.replace("\n", "")


def test_the_session_connection_is_read_only(db: Path) -> None:
    with open_audit(db, POLICY) as audit, pytest.raises(NhiauditError, match="read-only"):
        audit.sql("DELETE FROM events")


def test_trace_findings_agree_with_the_report(db: Path) -> None:
    with open_audit(db, POLICY) as audit:
        report = audit.report()
        by_action: dict[str, set[str]] = {}
        for f in report.findings:
            by_action.setdefault(f"{f.source}:{f.event_id}", set()).add(f.rule)
        for action in report.actions:
            key = f"{action.source}:{action.event_id}"
            traced = audit.trace(key)
            assert traced.action == action.__class__(**{**action.__dict__, "findings": ()})
            assert {f.rule for f in traced.findings} == by_action.get(key, set()), key


def test_query_results_as_arrow_and_polars(db: Path, world: dict) -> None:
    with open_audit(db, POLICY) as audit:
        table = audit.arrow("SELECT verdict, count(*) AS n FROM chains GROUP BY 1 ORDER BY 1")
        frame = audit.polars(
            "SELECT kind, status FROM chain_links WHERE source = ? AND event_id = ?", APPROVED.split(":", 1)
        )
    assert isinstance(table, pyarrow.Table) and table.column_names == ["verdict", "n"]
    assert dict(zip(*table.to_pydict().values(), strict=True)) == world["verdicts"]
    assert isinstance(frame, polars.DataFrame)
    assert frame["kind"].to_list() == ["action", "credential", "issuance", "parent", "task", "approval", "authority"]


def test_a_store_without_events_is_an_error_unless_asked(tmp_path: Path) -> None:
    db = tmp_path / "empty.duckdb"
    store.connect(db).close()
    with pytest.raises(NhiauditError, match="no events in the store"):
        open_audit(db, POLICY)
    with open_audit(db, POLICY, require_evidence=False) as audit:
        assert audit.sql("SELECT count(*) FROM chains") == (["count_star()"], [(0,)])


def test_refresh_false_never_writes(db: Path) -> None:
    before = _meta(db)
    with open_audit(db, POLICY, refresh=False) as audit:
        assert not audit.has_chains() and not audit.correlated
    assert _meta(db) == before


def test_no_store_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no store here"):
        open_audit(tmp_path / "absent.duckdb", POLICY)


def test_attach_on_an_in_memory_store(world: dict) -> None:
    con = store.connect(":memory:")
    ingest.ingest(con, [WORLD])
    session = AuditSession.attach(con, load_policy(POLICY))
    assert session.correlated and not AuditSession.attach(con, load_policy(POLICY)).correlated
    assert len(session.report().actions) == world["actions"]


# --- the command line on top of it ---------------------------------------------------------------


def test_sql_sees_current_chains_right_after_ingest(db: Path, world: dict) -> None:
    result = invoke(["sql", "--db", str(db), "--policy", str(POLICY), "--csv", "SELECT count(*) AS n FROM chains"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"n\n{world['actions']}\n"


def test_rules_lint_on_a_file_that_is_not_a_store_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(b"not a duckdb file at all" * 100)
    result = invoke(["rules", "--lint", str(ROOT / "nhiaudit" / "queries" / "rules"), "--db", str(bad)])
    assert result.exit_code == 2
    assert bad.name in result.stderr and "Traceback" not in result.output


def test_rules_lint_with_a_bad_policy_exits_2(db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NHIAUDIT_POLICY", raising=False)
    Path("nhiaudit.toml").write_text("[audit]\nmin_tier = 'extreme'\n", encoding="utf-8")
    mine = tmp_path / "rules"
    mine.mkdir()
    builtin = ROOT / "nhiaudit" / "queries" / "rules" / "missing-approval.sql"
    (mine / "my-missing-approval.sql").write_text(
        builtin.read_text(encoding="utf-8").replace("id: missing-approval", "id: my-missing-approval"), encoding="utf-8"
    )
    result = invoke(["rules", "--lint", str(mine), "--db", str(db)])  # ./nhiaudit.toml
    assert result.exit_code == 2
    assert "nhiaudit.toml" in result.stderr and "min_tier" in result.stderr
    result = invoke(["rules", "--lint", str(mine), "--db", str(db), "--policy", str(POLICY)])
    assert result.exit_code == 0, result.output
    assert "rules: no problems" in result.stdout


def test_a_message_of_several_lines_prints_one_line_each(tmp_path: Path) -> None:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "a.sql").write_text("SELECT 1", encoding="utf-8")
    (rules_dir / "b.sql").write_text("SELECT 2", encoding="utf-8")
    result = invoke(["rules", "--lint", str(rules_dir), "--db", str(tmp_path / "none.duckdb")])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert sum("a.sql" in line for line in lines) >= 1 and sum("b.sql" in line for line in lines) >= 1
    assert "\\n" not in result.stderr
    assert lines[-1].startswith("error: ") and "problem(s) in rule files" in lines[-1]


def test_the_readme_python_example_runs(db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, world: dict) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    monkeypatch.chdir(tmp_path)
    shutil.copy(db, "nhiaudit.duckdb")
    Path("sample_logs").symlink_to(WORLD)
    names: dict = {}
    exec(compile(block, "README.md", "exec"), names)
    assert names["verdicts"]["n"].sum() == world["actions"]
    assert names["links"]["kind"].to_pylist() == [link.kind for link in names["chain"].action.links]
    assert names["chain"].action.verdict == "approved"
    assert len(names["report"].actions) == world["actions"]


def test_findings_is_a_table_that_agrees_with_the_report(db: Path, world: dict) -> None:
    with open_audit(db, POLICY) as audit:
        report = audit.report()
        _, rows = audit.sql("SELECT rule, source, event_id, fingerprint, waived FROM findings")
    assert sorted(rows) == sorted((f.rule, f.source, f.event_id, f.fingerprint, f.waived) for f in report.findings)
    assert all(fp == fingerprint(rule, source, event_id) for rule, source, event_id, fp, _ in rows)
    result = invoke(["sql", "--db", str(db), "--csv", "SELECT count(*) AS n FROM findings WHERE waived"])
    assert result.stdout == f"n\n{world['waived']}\n" and world["waived"] >= 1


def test_extra_rule_folders_are_evaluated_live_beside_the_stored_findings(
    db: Path, tmp_path: Path, world: dict
) -> None:
    mine = tmp_path / "rules"
    mine.mkdir()
    (mine / "every-audited-action.sql").write_text(
        "-- id: every-audited-action\n-- title: Every audited action\n-- severity: info\n-- frameworks: T10\n"
        "-- description: test rule.\n-- remediation: none.\nSELECT source, event_id, 'seen' AS message FROM chains\n",
        encoding="utf-8",
    )
    with open_audit(db, POLICY) as audit:
        base = audit.findings()
        more = audit.findings(extra_rule_dirs=[mine])
        _, stored = audit.sql("SELECT count(*) FROM findings WHERE rule = 'every-audited-action'")
    assert len(more) == len(base) + world["actions"] and stored == [(0,)]


def test_fail_on_none_and_any_case(db: Path) -> None:
    assert invoke(["report", "--db", str(db), "--policy", str(POLICY), "--fail-on", "none"]).exit_code == 0
    assert invoke(["report", "--db", str(db), "--policy", str(POLICY), "--fail-on", "CRITICAL"]).exit_code == 1
    wrong = invoke(["report", "--db", str(db), "--policy", str(POLICY), "--fail-on", "hgh"])
    assert wrong.exit_code == 2 and "Did you mean 'high'?" in wrong.stderr


def test_report_sarif_options_reach_the_file(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, world: dict
) -> None:
    monkeypatch.chdir(ROOT)  # the evidence was ingested from here: its relative paths resolve
    out = tmp_path / "r.sarif"
    args = ["report", "--db", str(db), "--policy", str(POLICY), "--sarif", str(out), "--sarif-category", "audit/prod"]
    result = invoke([*args, "--source-root", str(WORLD)])
    assert result.exit_code == 1
    run = json.loads(out.read_text(encoding="utf-8"))["runs"][0]
    assert run["automationDetails"] == {"id": "audit/prod/"}
    assert len(run["results"]) == world["findings"] and "aggregation" not in run["properties"]
    assert invoke([*args, "--sarif-max-results", "99"]).exit_code == 2  # below GitHub-sane minimum
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in run["results"]}
    assert all(not uri.startswith(("sample_logs", "/", "file:", "..")) for uri in uris), uris


@pytest.mark.parametrize(
    "statement",
    [
        "COPY (SELECT * FROM events) TO '{out}/leak.csv'",
        "SELECT * FROM read_csv('{out}/../secret.txt')",
        "SELECT * FROM read_text('/etc/hostname')",
        "ATTACH '{out}/other.duckdb'",
        "SET enable_external_access = true",
        "INSTALL httpfs",
        "DELETE FROM events",
    ],
)
def test_sql_is_truly_read_only(db: Path, tmp_path: Path, statement: str, world: dict) -> None:
    (tmp_path / "secret.txt").write_text("s3cr3t\n", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    result = invoke(["sql", "--db", str(db), "--policy", str(POLICY), statement.format(out=out)])
    assert result.exit_code == 2, result.output
    assert "s3cr3t" not in result.output and list(out.iterdir()) == []
    assert (
        invoke(["sql", "--db", str(db), "--csv", "SELECT count(*) AS n FROM chains"]).stdout
        == f"n\n{world['actions']}\n"
    )


def test_trace_lists_the_actions_of_a_task_a_credential_or_an_agent(db: Path) -> None:
    base = ["trace", "--db", str(db), "--policy", str(POLICY), "--json"]
    by_task = json.loads(invoke([*base, "--task", "t-9a0b"]).stdout)  # sample_logs/README.md rows 8a, 8b
    assert [row["action_id"] for row in by_task] == [
        "cloudtrail:e1000000-0000-4000-8000-000000080002",
        "cloudtrail:e1000000-0000-4000-8000-000000080003",
    ]
    assert {(row["verdict"], row["worst"]) for row in by_task} == {("unapproved", "high")}
    with open_audit(db, POLICY) as audit:
        _, ((credential, parent, agent),) = audit.sql(
            "SELECT credential_id, chain_credential_ids[1], agent_id FROM chains "
            "WHERE event_id = 'e1000000-0000-4000-8000-000000020003'"
        )
    for option, value in (("--credential", credential), ("--credential", parent), ("--agent", agent)):
        listed = json.loads(invoke([*base, option, value]).stdout)
        assert "cloudtrail:e1000000-0000-4000-8000-000000020003" in [row["action_id"] for row in listed], option
    missing = invoke([*base, "--agent", "no-such-agent"])
    assert missing.exit_code == 2 and "no audited action of agent 'no-such-agent'" in missing.stderr
    both = invoke([*base, "--task", "t-9a0b", "--agent", "x"])
    assert both.exit_code == 2 and "give one of" in both.stderr


def test_report_filters_by_severity_and_rule(db: Path) -> None:
    base = ["report", "--db", str(db), "--policy", str(POLICY), "--json", "-"]

    def rules_of(*args: str) -> list[str]:
        result = invoke([*base, *args])
        assert result.exit_code in (0, 1), result.output
        return sorted({f["rule"] for f in json.loads(result.stdout)["findings"]})

    everything = rules_of()
    assert rules_of("--rule", "self-approval") == ["self-approval"]
    assert "self-approval" not in rules_of("--exclude-rule", "self-approval")
    assert set(rules_of("--exclude-rule", "self-approval")) == set(everything) - {"self-approval"}
    with open_audit(db, POLICY) as audit:
        severities = {f.rule: f.severity for f in audit.findings()}
    assert rules_of("--severity", "MEDIUM") == sorted(r for r, s in severities.items() if s == "medium")
    low = invoke([*base, "--severity", "low", "--fail-on", "medium"])
    assert low.exit_code == 0  # nothing at or above medium is kept
    wrong = invoke([*base, "--rule", "self-aproval", "--severity", "hihg"])
    assert wrong.exit_code == 2
    assert "Did you mean 'self-approval'?" in wrong.stderr and "Did you mean 'high'?" in wrong.stderr


def test_output_dir_writes_every_format_with_stable_names(db: Path, tmp_path: Path, world: dict) -> None:
    from nhiaudit.reports import FILE_NAMES, WRITERS

    out = tmp_path / "reports" / "run-1"
    result = invoke(["report", "--db", str(db), "--policy", str(POLICY), "--output-dir", str(out), "--csv", "-"])
    assert result.exit_code == 1
    assert sorted(p.name for p in out.iterdir()) == sorted(FILE_NAMES[f] for f in WRITERS if f != "csv")
    assert set(FILE_NAMES) == set(WRITERS)
    import csv
    import io

    rows = list(csv.reader(io.StringIO(result.stdout)))  # --csv - wins over the folder for that one format
    assert rows[0][:3] == ["severity", "rule", "action_id"] and len(rows) == 1 + world["findings"], rows


def test_help_reads_as_people_write_it() -> None:
    short = invoke(["report", "-h"])
    assert short.exit_code == 0 and short.stdout == invoke(["report", "--help"]).stdout
    text = " ".join(short.stdout.split())
    for shown in ("--db FILE", "--sarif FILE", "--output-dir DIR", "--fail-on SEVERITY", "--rule RULE"):
        assert shown in text, shown
    assert "<str>" not in text and "<path>" not in text
    assert "--install-completion" in invoke(["--help"]).stdout


def test_a_policy_with_several_problems_prints_one_per_line(db: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[audit]\nmin_tier = 'extreme'\n[approval]\nmax_age = 'soon'\n", encoding="utf-8")
    result = invoke(["report", "--db", str(db), "--policy", str(bad)])
    assert result.exit_code == 2
    assert "\\n" not in result.stderr, result.stderr
    squashed = "".join(result.stderr.split())  # Rich wraps long lines at the terminal's width
    assert f"error:{bad}:2:unknowntier'extreme'foraudit.min_tier" in squashed
    assert f"{bad}:4:badduration'soon'forapproval.max_age" in squashed
    assert re.search(rf"\n  {re.escape(str(bad))}:4:", result.stderr)  # the second problem on its own line


def test_compliance_pass_fail_per_control(db: Path) -> None:
    base = ["report", "--db", str(db), "--policy", str(POLICY), "--json", "-", "--compliance"]
    result = invoke([*base, "OWASP-Agentic"])
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    controls = {c["control"]: c for c in document["compliance"]}
    assert controls and all(c.startswith("ASI") for c in controls)
    failing_rules = {
        f["rule"] for f in document["findings"] if not f["waived"] and f["severity"] in ("high", "critical")
    }
    for c in controls.values():
        assert (c["status"] == "fail") == bool(set(c["rules"]) & failing_rules), c
    assert "ASI" in result.stderr and "controls fail" in result.stderr  # the terminal table (stdout is the JSON)
    nothing_fails = json.loads(invoke([*base, "owasp-agentic", "--fail-on", "none"]).stdout)["compliance"]
    assert {c["status"] for c in nothing_fails} == {"pass"}
    wrong = invoke([*base, "owasp-agentik"])
    assert wrong.exit_code == 2 and "Didyoumean'owasp-agentic'?" in "".join(wrong.stderr.split())


def test_html_caps_reach_the_writer(db: Path, tmp_path: Path) -> None:
    base = ["report", "--db", str(db), "--policy", str(POLICY), "--fail-on", "none"]
    assert invoke([*base, "--html", str(tmp_path / "full.html")]).exit_code == 0
    assert invoke([*base, "--html", str(tmp_path / "none.html"), "--html-max-chains", "0"]).exit_code == 0
    full, none = (
        (tmp_path / "full.html").read_text(encoding="utf-8"),
        (tmp_path / "none.html").read_text(encoding="utf-8"),
    )
    assert len(none) < len(full) and none.count("<svg") < full.count("<svg")
