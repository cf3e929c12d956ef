"""`nhiaudit schema`: every table and column of a correlated store is described, once (nhiaudit/tables.py),
and docs/internals.md's "Store tables" section is generated from the same descriptions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import invoke

from nhiaudit import store, tables
from nhiaudit.policy import load_policy
from nhiaudit.session import AuditSession

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "internals.md"
WORLD = ROOT / "sample_logs"


@pytest.fixture(scope="module")
def world_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample world, ingested and correlated (every derived table exists)."""
    from nhiaudit import ingest

    db = tmp_path_factory.mktemp("schema") / "world.duckdb"
    con = store.connect(db)
    try:
        ingest.ingest(con, [WORLD])
        AuditSession.attach(con, load_policy(WORLD / "nhiaudit.toml"))
    finally:
        con.close()
    return db


@pytest.fixture(scope="module")
def listed(world_store: Path) -> list[dict]:
    con = store.connect(world_store, read_only=True)
    try:
        return tables.catalog(con)
    finally:
        con.close()


def test_every_table_and_column_is_described(listed):
    names = {entry["table"] for entry in listed}
    assert {"events", "chains", "chain_links", "findings", "audit_runs", "evidence_files"} <= names
    assert [e["table"] for e in listed if not e["description"]] == []
    missing = [f"{e['table']}.{c['column']}" for e in listed for c in e["columns"] if not c["description"]]
    assert missing == [], "describe them in nhiaudit/tables.py"


def test_no_description_of_a_table_or_column_that_does_not_exist(listed):
    names = {entry["table"] for entry in listed}
    columns = {c["column"] for e in listed for c in e["columns"]}
    pairs = {(e["table"], c["column"]) for e in listed for c in e["columns"]}
    assert set(tables.TABLES) - names == set()
    assert set(tables.COLUMNS) - columns == set()
    assert set(tables.TABLE_COLUMNS) - pairs == set()


def test_docs_section_is_generated_from_the_descriptions(listed, update_golden: bool) -> None:
    start, end = "<!-- tables: generated -->\n", "<!-- tables: end -->\n"
    head, rest = DOCS.read_text(encoding="utf-8").split(start)
    committed, tail = rest.split(end)
    expected = tables.reference(listed)
    if update_golden:
        DOCS.write_text(head + start + expected + end + tail, encoding="utf-8")
    else:
        assert committed == expected, "docs/internals.md is stale: run pytest --update-golden and review the diff"


def test_schema_command(world_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NHIAUDIT_POLICY", raising=False)
    overview = invoke(["schema", "--db", str(world_store)])
    assert overview.exit_code == 0
    assert "chain_links" in overview.stdout and "nhiaudit schema TABLE" in overview.stdout
    one = json.loads(invoke(["schema", "findings", "--db", str(world_store), "--json"]).stdout)
    assert one["table"] == "findings"
    assert {"column": "rule", "type": "VARCHAR", "description": "rule id (nhiaudit rules)"} in one["columns"]
    every = json.loads(invoke(["schema", "--db", str(world_store), "--json"]).stdout)
    assert [e["table"] for e in every] == sorted(e["table"] for e in every)
    assert not any(e["table"].startswith("policy_") for e in every)  # the session's TEMP tables are not the store's
    wrong = invoke(["schema", "chain", "--db", str(world_store)])
    assert wrong.exit_code == 2
    assert "no table or view 'chain' in the store. Did you mean 'chains'?" in wrong.stderr
