"""The sample world end to end: ingest, correlate, evaluate, and every report format.

The oracle is the table in ``sample_logs/README.md`` (audited action -> rules -> verdict), written
from DESIGN §6 before the engine ran on it. Report outputs are golden files under
``tests/golden/``, rewritten only with ``pytest --update-golden``.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
from helpers import invoke

from nhiaudit import store
from nhiaudit import trace as tracing
from nhiaudit.policy import load_policy
from nhiaudit.reports import WRITERS
from nhiaudit.session import AuditSession

ROOT = Path(__file__).resolve().parents[1]
WORLD = ROOT / "sample_logs"
GOLDEN = Path(__file__).parent / "golden"
PINNED = datetime(2026, 11, 3, 0, 0, tzinfo=timezone.utc)


def oracle() -> dict[str, tuple[set[str], set[str], str]]:
    """action id -> (rules that fire, rules waived, verdict), from the README table."""
    expected = {}
    for line in (WORLD / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 9 or not cells[2].startswith("`") or ":" not in cells[2]:
            continue
        rules = set(re.findall(r"`([a-z-]+)`", cells[6]))
        waived = set(re.findall(r"`([a-z-]+)`", cells[7]))
        expected[cells[2].strip("`")] = (rules, waived, cells[8])
    return expected


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, sample_world, copy_store):
    """The sample world ingested from a relative path (as the README's command does): conftest's
    session-wide store, copied (each test opens its own connection: the CLI opens it read-only)."""
    result, original = sample_world
    return result, copy_store(original, tmp_path_factory.mktemp("world") / "world.duckdb")


@pytest.fixture
def world_con(world):
    con = store.connect(world[1])
    yield con
    con.close()


def test_every_sample_file_loads_cleanly(world) -> None:
    result, _ = world
    assert result.unrecognized == []
    assert {f.source for f in result.files} == {
        "cloudtrail",
        "vault",
        "otel",
        "provenance",
        "kong",
        "github_actions",
        "teleport",
        "mcp_gateway",
        "entra_audit",
        "azure",
    }
    for f in result.files:
        assert f.rejected == 0, f.path
        assert f.read == f.loaded + f.rejected + f.duplicates


def test_findings_and_verdicts_match_the_readme_oracle(world_con) -> None:
    con = world_con
    expected = oracle()
    assert len(expected) == 26
    result = AuditSession.attach(con, load_policy(WORLD / "nhiaudit.toml")).report(generated_at=PINNED)
    verdicts = {f"{a.source}:{a.event_id}": a.verdict for a in result.actions}
    fired: dict[str, set[str]] = {}
    waived: dict[str, set[str]] = {}
    for f in result.findings:
        fired.setdefault(f"{f.source}:{f.event_id}", set()).add(f.rule)
        if f.waived:
            waived.setdefault(f"{f.source}:{f.event_id}", set()).add(f.rule)
    assert set(verdicts) == set(expected)
    for action_id, (rules, waived_rules, verdict) in expected.items():
        assert fired.get(action_id, set()) == rules, action_id
        assert waived.get(action_id, set()) == waived_rules, action_id
        assert verdicts[action_id] == verdict, action_id
    assert [w.rule for w in result.expired_waivers] == ["credential-without-task"]


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_report_golden(world_con, fmt: str, update_golden: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    con = world_con
    monkeypatch.chdir(ROOT)  # paths in reports are as the user gave them: relative here, on any machine
    policy = load_policy(Path("sample_logs/nhiaudit.toml"))
    first = WRITERS[fmt](AuditSession.attach(con, policy).report(generated_at=PINNED))
    again = WRITERS[fmt](AuditSession.attach(con, policy).report(generated_at=PINNED))
    assert first == again, "same evidence and policy must give the same bytes"
    golden = GOLDEN / f"sample_world.{fmt}"
    if update_golden or not golden.exists():
        if not update_golden:
            pytest.fail(f"{golden} is missing: run pytest --update-golden and review the diff")
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(first, encoding="utf-8")
    assert first == golden.read_text(encoding="utf-8")


def test_cli_report_exit_codes(world, tmp_path: Path) -> None:
    _, db = world
    policy = str(WORLD / "nhiaudit.toml")
    base = ["report", "--db", str(db), "--policy", policy]
    assert invoke([*base, "--fail-on", "high"]).exit_code == 1
    # The world's worst finding is critical (approval-denied): critical still fails.
    assert invoke([*base, "--fail-on", "critical"]).exit_code == 1
    out = tmp_path / "before.json"
    assert invoke([*base, "--json", str(out)]).exit_code == 1
    # Against itself as baseline, nothing is new: --fail-on counts new findings only.
    result = invoke([*base, "--baseline", str(out), "--fail-on", "info"])
    assert result.exit_code == 0, result.output
    assert "0 new, 0 fixed" in result.output
    bad = invoke([*base, "--fail-on", "severe"])
    assert bad.exit_code == 2 and "unknown severity 'severe'" in bad.output


def test_cli_trace_on_the_world(world) -> None:
    _, db = world
    result = invoke(
        [
            "trace",
            "--db",
            str(db),
            "--policy",
            str(WORLD / "nhiaudit.toml"),
            "cloudtrail:e1000000-0000-4000-8000-000000020003",
        ],
    )
    assert result.exit_code == 0, result.output
    for text in (
        "verdict: unapproved",
        "parent",
        "broker",
        "task found",
        "t-8b21",
        "approver-lacks-authority",
    ):
        assert text in result.output


def test_cli_trace_shows_the_denial_that_decides_with_its_record(world, tmp_path: Path) -> None:
    """t-d4e0: APR-1044 denied the task; trace shows that record, in the terminal and in --json."""
    _, db = world
    args = [
        "trace",
        "--db",
        str(db),
        "--policy",
        str(WORLD / "nhiaudit.toml"),
        "cloudtrail:e1000000-0000-4000-8000-000000040002",
    ]
    result = invoke(args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "denial found  APR-1044" in result.output
    assert "denied by alice@example.com at 2026-11-02T09:28:00Z (before the action)" in result.output
    assert "provenance.ndjson:15 record 14 id APR-1044" in result.output
    out = invoke([*args, "--json"])
    (denial,) = [link for link in json.loads(out.stdout)["links"] if link["kind"] == "denial"]
    assert (denial["evidence"]["event_id"], denial["evidence"]["line"]) == ("APR-1044", 15)
    assert denial["details"]["denied_by"] == "alice@example.com"


def test_sample_world_sarif_and_junit_validate(world_con, schemas: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real report (not a fixture) against the official SARIF schema and the JUnit XSD."""
    import json

    import jsonschema
    from lxml import etree

    monkeypatch.chdir(ROOT)
    result = AuditSession.attach(world_con, load_policy(Path("sample_logs/nhiaudit.toml"))).report(generated_at=PINNED)
    schema = json.loads((schemas / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
    sarif = json.loads(WRITERS["sarif"](result))
    jsonschema.validators.validator_for(schema)(schema).validate(sarif)
    results = sarif["runs"][0]["results"]
    assert len(results) == len(result.findings)
    assert all(r["locations"][0]["physicalLocation"]["region"]["startLine"] >= 1 for r in results)
    assert sum("suppressions" in r for r in results) == 1  # the one waived finding
    xsd = etree.XMLSchema(etree.parse(str(schemas / "junit-10.xsd")))
    junit = etree.fromstring(WRITERS["junit"](result).encode())
    xsd.assertValid(junit)
    # 26 audited actions, and the 8 credential-not-revoked findings, which are on issuances
    assert len(junit.findall(".//testcase")) == 34


def test_chain_links_view_agrees_with_trace(world_con) -> None:
    """`chain_links` (for SQL users) lists the same links, statuses and evidence as `trace`."""
    from nhiaudit import correlate, trace

    correlate.ensure(world_con, load_policy(WORLD / "nhiaudit.toml"))
    for action_id in ("e1000000-0000-4000-8000-000000020003", "c0ffee00000000000000000000140002"):
        action = trace.trace(world_con, action_id).action
        rows = world_con.execute(
            "SELECT kind, link_id, status, path, line FROM chain_links WHERE event_id = ? ORDER BY position",
            [action_id],
        ).fetchall()
        expected = [
            (
                link.kind,
                link.id,
                link.status,
                link.evidence.file if link.evidence else None,
                link.evidence.line if link.evidence else None,
            )
            for link in action.links
        ]
        assert [(k, i, s) for k, i, s, _, _ in rows] == [(k, i, s) for k, i, s, _, _ in expected]
        assert [(p, ln) for *_, p, ln in rows if p] == [(p, ln) for *_, p, ln in expected if p]


def test_every_link_kind_of_the_view_has_one_presenter(world_con) -> None:
    """The chain_links view defines the links (the sample world has every kind, spans included);
    trace presents each kind with exactly one function."""
    AuditSession.attach(world_con, load_policy(WORLD / "nhiaudit.toml"))
    (kinds,) = world_con.execute("SELECT list(DISTINCT kind ORDER BY kind) FROM chain_links").fetchone()
    assert sorted(present.__name__ for present in tracing.LINKS) == kinds
