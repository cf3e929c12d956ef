"""A report over a store streams its actions from DuckDB: the bytes are those of the same report held
in memory, for every format and with every cap biting."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from pathlib import Path

import pytest

from nhiaudit import ingest, store
from nhiaudit.model import ListedActions
from nhiaudit.policy import load_policy
from nhiaudit.report import StoredActions
from nhiaudit.reports import WRITERS
from nhiaudit.reports.json_ import dumps, dumps_typed
from nhiaudit.session import AuditSession

ROOT = Path(__file__).resolve().parents[2]
PINNED = datetime(2026, 11, 3, 0, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def world_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("world") / "world.duckdb"
    con = store.connect(db)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ROOT)
        ingest.ingest(con, [Path("sample_logs")])
    con.close()
    return db


@pytest.fixture
def world_con(world_db: Path):
    con = store.connect(world_db)
    yield con
    con.close()


CAPS = {"junit": {"max_cases": 5}, "html": {"max_chains": 3, "max_findings": 4}, "sarif": {"max_results": 30}}


@pytest.mark.parametrize("fmt", sorted(WRITERS))
@pytest.mark.parametrize("capped", [False, True], ids=["whole", "capped"])
def test_stored_actions_give_the_bytes_of_listed_ones(world_con, fmt: str, capped: bool, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    report = AuditSession.attach(world_con, load_policy(Path("sample_logs/nhiaudit.toml"))).report(generated_at=PINNED)
    assert isinstance(report.actions, StoredActions)
    listed = dataclasses.replace(report, actions=ListedActions(report.actions))
    assert len(listed.actions) == len(report.actions) > 20
    assert list(listed.actions.heads()) == list(listed.actions)  # in memory, heads are the actions
    assert [(h.source, h.event_id, h.verdict) for h in report.actions.heads()] == [
        (a.source, a.event_id, a.verdict) for a in listed.actions
    ]
    options = CAPS.get(fmt, {}) if capped else {}
    assert WRITERS[fmt](report, **options) == WRITERS[fmt](listed, **options)


def test_stored_actions_carry_their_findings(world_con) -> None:
    report = AuditSession.attach(world_con, load_policy(ROOT / "sample_logs/nhiaudit.toml")).report()
    keys = {(a.source, a.event_id) for a in report.actions.heads()}
    attached = sorted((f.rule, f.source, f.event_id) for a in report.actions for f in a.findings)
    assert attached == sorted((f.rule, f.source, f.event_id) for f in report.findings if (f.source, f.event_id) in keys)
    assert attached and len(attached) < len(report.findings)  # the world has findings without an action too
    assert report.summary["verdicts"] == ListedActions(report.actions).verdicts()


HOSTILE = [
    "\x00\x1b[31m\x7f\x80\x9b\u202e\u2028\ufffe\uffff",
    "é😀<script>&amp;</script>",
    "\ud800 lone",  # orjson refuses it: the fallback
    {"b": [], "a": {}, "é": None, "z": [1, True, False, -3, 2**63, 2**70]},
    {"s": {"b", "a"}, "t": frozenset({"x"})},
    {1: "non-str key"},
    [[], {}, [[[]]]],
]


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_dumps_typed_is_dumps_indent_2(value) -> None:
    assert dumps_typed(value) == dumps(value, indent=2)
