"""Every rule against its case folder: ``tests/rules/<rule-id>/{fires,quiet}/``.

Each sub-folder is a tiny evidence world (CloudTrail, provenance, Kong, OTLP files); an optional
``nhiaudit.toml`` next to ``fires/`` and ``quiet/`` is the policy of both (one inside a world
overrides it for that world). ``fires/expected.txt`` lists, one ``source:event_id`` a line, exactly
the actions the rule must fire on; in ``quiet/`` the rule must not fire at all.

How to add a rule's cases: write ``tests/rules/<id>/fires/`` (evidence + expected.txt) and
``tests/rules/<id>/quiet/`` (the near miss); the tests below pick the folder up by the rule's id.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nhiaudit import correlate, evaluate, ingest, store
from nhiaudit.model import Finding
from nhiaudit.policy import load_policy
from nhiaudit.rules import builtin_rule_files, load_rules

CASES = Path(__file__).parent / "rules"
EVIDENCE_SUFFIXES = (".ndjson", ".json", ".jsonl", ".log", ".gz")
RULE_IDS = [f.name.removesuffix(".sql") for f in builtin_rule_files()]


def run_world(world: Path) -> tuple[list[Finding], int]:
    """Ingest every evidence file of ``world`` into an in-memory store, correlate under the case
    policy, evaluate every rule. Returns the findings and the number of audited actions."""
    files = sorted(p for p in world.iterdir() if p.name.endswith(EVIDENCE_SUFFIXES))
    assert files, f"{world}: no evidence files"
    con = store.connect(":memory:")
    try:
        result = ingest.ingest(con, files)
        assert not result.unrecognized, (
            f"{world}: no source recognized {[p.name for p in result.unrecognized]}"
        )
        rejected = con.execute("SELECT path, line, reason FROM rejected").fetchall()
        assert not rejected, f"{world}: evidence rejected: {rejected}"
        policy_file = next(
            (p for p in (world / "nhiaudit.toml", world.parent / "nhiaudit.toml") if p.is_file()), None
        )
        policy = load_policy(policy_file)
        correlate.correlate(con, policy)
        audited = con.execute("SELECT count(*) FROM chains").fetchone()[0]
        return evaluate.evaluate(con, policy, load_rules()), audited
    finally:
        con.close()


def expected_actions(world: Path) -> set[str]:
    lines = (world / "expected.txt").read_text(encoding="utf-8").splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def fired_on(findings: list[Finding], rule_id: str) -> set[str]:
    return {f"{f.source}:{f.event_id}" for f in findings if f.rule == rule_id}


@pytest.mark.parametrize("rule_id", RULE_IDS)
def test_rule_fires(rule_id: str) -> None:
    world = CASES / rule_id / "fires"
    if not world.is_dir():
        pytest.fail(f"no case folder {world} (see test_every_rule_has_a_case_folder)")
    expected = expected_actions(world)
    assert expected, f"{world}/expected.txt lists no action"
    findings, _ = run_world(world)
    assert fired_on(findings, rule_id) == expected


@pytest.mark.parametrize("rule_id", RULE_IDS)
def test_rule_stays_quiet(rule_id: str) -> None:
    world = CASES / rule_id / "quiet"
    if not world.is_dir():
        pytest.fail(f"no case folder {world} (see test_every_rule_has_a_case_folder)")
    findings, audited = run_world(world)
    # A quiet world without audited actions would pass whatever the rule does.
    assert audited > 0, f"{world}: no audited action, so the rule is not exercised"
    assert fired_on(findings, rule_id) == set()


def test_every_rule_has_a_case_folder() -> None:
    assert RULE_IDS, "no built-in rule files found"
    problems = []
    for rule_id in RULE_IDS:
        case = CASES / rule_id
        for kind in ("fires", "quiet"):
            if not (case / kind).is_dir():
                problems.append(f"{case / kind}: missing")
        if (case / "fires").is_dir() and not (case / "fires" / "expected.txt").is_file():
            problems.append(f"{case / 'fires' / 'expected.txt'}: missing")
    assert not problems, "rules without cases:\n" + "\n".join(problems)


def test_every_case_folder_has_a_rule() -> None:
    orphans = sorted(p.name for p in CASES.iterdir() if p.is_dir() and p.name not in RULE_IDS)
    assert not orphans, f"case folders for rules that do not exist: {orphans}"
