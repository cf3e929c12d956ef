"""Lake mode: ``report``, ``trace`` and ``sql --lake DIR`` audit an exported lake with DuckDB
directly, through the same session and correlation as a store, with the same results; the manifest
is checked first."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import invoke, said
from test_rules import CASES, EVIDENCE_SUFFIXES
from test_sample_world import oracle

from nhiaudit import export, ingest, lake, session, store

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "sample_logs" / "nhiaudit.toml"
PINNED = {"SOURCE_DATE_EPOCH": "1793664000"}  # 2026-11-03: byte-identical reports


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, sample_world, copy_store) -> tuple[Path, Path]:
    """The sample world's store, audited once with its policy, and its lake."""
    folder = tmp_path_factory.mktemp("world")
    db = copy_store(sample_world[1], folder / "world.duckdb")
    result = invoke(["report", "--db", str(db), "--policy", str(POLICY)])
    assert result.exit_code == 1, result.output  # the sample world has high findings
    result = invoke(["export", "--db", str(db), str(folder / "lake")])
    assert result.exit_code == 0, result.output
    return db, folder / "lake"


def where(world: tuple[Path, Path], mode: str) -> list[str]:
    db, folder = world
    return ["--db", str(db)] if mode == "store" else ["--lake", str(folder)]


def report_json(world: tuple[Path, Path], mode: str, *more: str) -> dict:
    result = invoke(["report", *where(world, mode), "--json", "-", *more], env=PINNED)
    assert result.exit_code == 1, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("policy", [["--policy", str(POLICY)], []], ids=["given policy", "remembered policy"])
def test_report_from_the_lake_is_the_report_from_the_store(world, policy: list[str]) -> None:
    from_store, from_lake = report_json(world, "store", *policy), report_json(world, "lake", *policy)
    findings = {(f["rule"], f["source"], f["event_id"], f["message"]) for f in from_store["findings"]}
    assert len(findings) > 10
    assert {(f["rule"], f["source"], f["event_id"], f["message"]) for f in from_lake["findings"]} == findings
    assert from_lake == from_store  # no field of the report names the store


def test_trace_and_sql_from_the_lake(world) -> None:
    actions = invoke(["sql", *where(world, "store"), "--json", "SELECT source || ':' || event_id AS id FROM chains"])
    ids = sorted(row["id"] for row in json.loads(actions.stdout))
    assert ids == sorted(oracle())  # every audited action of the sample world (sample_logs/README.md)
    for action_id in ids[:: max(1, len(ids) // 5)]:
        traced = [invoke(["trace", *where(world, mode), action_id, "--json"]) for mode in ("store", "lake")]
        assert traced[0].exit_code == traced[1].exit_code == 0
        assert json.loads(traced[1].stdout) == json.loads(traced[0].stdout)
    query = "SELECT verdict, count(*) AS n FROM chains GROUP BY 1 ORDER BY 1"
    rows = [invoke(["sql", *where(world, mode), "--json", query]).stdout for mode in ("store", "lake")]
    assert rows[0] == rows[1] and json.loads(rows[1])


def test_sql_on_a_lake_reads_only_the_lake(world, tmp_path: Path) -> None:
    _, folder = world
    some_file = next((folder / "events").rglob("*.parquet"))
    target = tmp_path / "out.csv"
    for statement, why in [
        (f"COPY (SELECT * FROM events) TO '{target}'", "only queries"),
        (f"COPY (SELECT 1) TO '{some_file}' (FORMAT parquet)", "only queries"),
        ("SELECT * FROM read_csv('/etc/hostname')", "disabled by configuration"),
        ("CREATE TABLE x AS SELECT 1", "only queries"),
    ]:
        result = invoke(["sql", "--lake", str(folder), statement])
        assert result.exit_code == 2 and why in said(result), (statement, result.output)
    assert not target.exists()
    assert lake.open_lake(folder)  # the lake's files are unchanged


def test_the_scratch_store_is_removed_when_the_session_closes(world) -> None:
    with session.open_lake(world[1], POLICY) as audit:
        scratch = Path(audit._scratch.name)
        assert scratch.is_dir() and audit.path == str(world[1].resolve())
        assert audit.correlated and audit.has_chains()
    assert not scratch.exists()


def _copy(world, tmp_path: Path) -> Path:
    folder = tmp_path / "lake"
    shutil.copytree(world[1], folder)
    return folder


def test_a_changed_file_is_refused(world, tmp_path: Path) -> None:
    folder = _copy(world, tmp_path)
    name = next(iter(sorted(p for p in (folder / "events").rglob("*.parquet"))))
    name.write_bytes(name.read_bytes()[:-10] + b"0123456789")
    result = invoke(["report", "--lake", str(folder)])
    assert result.exit_code == 2
    assert "SHA-256 differs from the manifest's" in said(result) and name.name in said(result)


def test_a_missing_file_and_a_foreign_manifest_are_refused(world, tmp_path: Path) -> None:
    folder = _copy(world, tmp_path)
    manifest = json.loads((folder / lake.MANIFEST).read_text(encoding="utf-8"))
    victim = next(n for n in manifest["files"] if n.startswith("evidence_files/"))
    (folder / victim).unlink()
    result = invoke(["trace", "--lake", str(folder), "anything"])
    assert result.exit_code == 2 and f"{victim}: missing" in said(result)
    for change, message in [
        ({"lake_version": 99}, "lake layout version 99"),
        ({"store_schema_version": 1}, "store of schema version 1"),
        ({"files": {"../../etc/passwd": {"sha256": "0" * 64}}}, "a file nhiaudit does not write"),
    ]:
        (folder / lake.MANIFEST).write_text(json.dumps({**manifest, **change}), encoding="utf-8")
        result = invoke(["sql", "--lake", str(folder), "SELECT 1"])
        assert result.exit_code == 2 and message in said(result), result.output
    result = invoke(["report", "--lake", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "no lake here" in said(result)


def test_lake_and_db_together_are_refused(world) -> None:
    result = invoke(["report", "--db", str(world[0]), "--lake", str(world[1])])
    assert result.exit_code == 2 and "give one of them" in said(result)


# The world where each rule fires (its quiet twin too would double this file's time: 32 worlds took
# 350 s on a loaded 2-core machine; the quiet ones all passed when run).
@pytest.mark.parametrize("world", sorted(CASES.glob("*/fires/")), ids=lambda p: p.parent.name)
def test_every_rule_fires_the_same_from_the_lake(world: Path, tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    with store.connect(db) as con:
        ingest.ingest(con, sorted(p for p in world.iterdir() if p.name.endswith(EVIDENCE_SUFFIXES)))
    policy = next((p for p in (world / "nhiaudit.toml", world.parent / "nhiaudit.toml") if p.is_file()), None)
    with session.open_audit(db, policy) as audit:
        export.export(audit.con, tmp_path / "lake")
        expected = [(f.rule, f.source, f.event_id, f.message, f.waived) for f in audit.findings()]
        chains = audit.sql("SELECT * FROM chains ORDER BY ALL")
    with session.open_lake(tmp_path / "lake", policy) as audit:
        assert [(f.rule, f.source, f.event_id, f.message, f.waived) for f in audit.findings()] == expected
        assert audit.sql("SELECT * FROM chains ORDER BY ALL") == chains
