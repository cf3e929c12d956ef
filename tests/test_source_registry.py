"""The source seam: what every registered source must bring, and what the framework enforces for all.

A new source is its module (named in ``DETECTION_ORDER``), ``tests/sources/test_<name>.py``, a real
sample it claims (``../shared/samples``, or a file in ``sample_logs/``) and a section in
docs/sources.md. These tests fail until each is there, so adding one needs no new test code here.
"""

from __future__ import annotations

import inspect
import re
from functools import cache
from pathlib import Path
from types import ModuleType

import duckdb
import pytest
from helpers import SAMPLES, rows

from nhiaudit import correlate, ingest, store
from nhiaudit.errors import NhiauditError
from nhiaudit.policy import load_policy
from nhiaudit.sources import DETECTION_ORDER, SOURCES, _sql

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nhiaudit" / "sources"
SAMPLE_ROOTS = [root for root in (SAMPLES, ROOT / "sample_logs") if root.is_dir()]


@cache
def claimed_samples() -> dict[str, list[Path]]:
    """Per source, the sample files (shared samples and sample_logs/) that detection gives it."""
    claimed: dict[str, list[Path]] = {name: [] for name in SOURCES}
    for path in ingest.discover(SAMPLE_ROOTS)[0]:
        if (name := ingest.detect(path)) is not None:
            claimed[name].append(path)
    return claimed


@cache
def declared_credential_types() -> dict[str, tuple[bool, bool]]:
    """credential_type -> (temporary, long_term), as declared in queries/correlate."""
    con = duckdb.connect()
    con.execute(_sql.credential_types_sql())
    return {kind: (temporary, long_term) for kind, temporary, long_term in con.execute(
        "SELECT credential_type, temporary, long_term FROM credential_types"
    ).fetchall()}


def test_every_source_module_is_registered_in_detection_order() -> None:
    modules = sorted(p.stem for p in PACKAGE.glob("*.py") if not p.name.startswith("_"))
    assert modules == sorted(DETECTION_ORDER), "a source module that DETECTION_ORDER does not name is never used"
    assert len(set(DETECTION_ORDER)) == len(DETECTION_ORDER)
    assert list(SOURCES) == list(DETECTION_ORDER)


@pytest.mark.parametrize("name", list(SOURCES))
def test_source_module_has_the_contract(name: str) -> None:
    module = SOURCES[name]
    assert module.NAME == name
    assert isinstance(module.DETECTION, str) and module.DETECTION.strip()
    assert isinstance(module.READS, str) and module.READS.strip()
    assert list(inspect.signature(module.detect).parameters) == ["path"]
    assert list(inspect.signature(module.load).parameters)[:2] == ["con", "files"]


@pytest.mark.parametrize("name", list(SOURCES))
def test_every_source_has_a_test_module(name: str) -> None:
    assert (ROOT / "tests" / "sources" / f"test_{name}.py").is_file()


def test_docs_have_one_section_per_source() -> None:
    sections = re.findall(r"^## (\S+)\s*$", (ROOT / "docs" / "sources.md").read_text(encoding="utf-8"), re.MULTILINE)
    assert sorted(sections) == sorted(SOURCES)


@pytest.mark.parametrize("name", list(SOURCES))
def test_every_source_claims_a_real_sample(name: str) -> None:
    if not SAMPLES.is_dir():
        pytest.skip(f"shared samples not found at {SAMPLES}")
    assert claimed_samples()[name], f"no file under {SAMPLES} or sample_logs/ is detected as {name}"


@pytest.fixture
def every_sample(request: pytest.FixtureRequest, tmp_path: Path, copy_store) -> duckdb.DuckDBPyConnection:
    """Every file of SAMPLE_ROOTS ingested: conftest's store of the shared samples, copied, plus the
    other roots (sample_logs/)."""
    if SAMPLES.is_dir():
        _, original = request.getfixturevalue("ingested_samples")
        con = store.connect(copy_store(original, tmp_path / "samples.duckdb"))
    else:
        con = store.connect(":memory:")
    ingest.ingest(con, [root for root in SAMPLE_ROOTS if root != SAMPLES])
    yield con
    con.close()


def test_every_credential_type_the_samples_give_is_declared(every_sample: duckdb.DuckDBPyConnection) -> None:
    # Ingest refuses an undeclared type (below); this shows the samples reach every source that writes one.
    store = every_sample
    written = {kind for (kind,) in store.execute(
        """SELECT credential_type FROM events WHERE credential_type IS NOT NULL
        UNION SELECT details ->> '$.parent_credential_type' FROM events
        WHERE details ->> '$.parent_credential_type' IS NOT NULL"""
    ).fetchall()}
    assert written and written <= set(declared_credential_types())
    assert not rows(store, "SELECT event_id FROM events WHERE credential_type IS NOT NULL AND credential_id IS NULL")


@pytest.mark.parametrize("kind", sorted(declared_credential_types()))
def test_every_declared_credential_type_is_written_by_a_source(kind: str) -> None:
    sql = _sql.credential_types_sql()
    writers = [p.read_text(encoding="utf-8") for p in sorted(PACKAGE.glob("*.py"))] + [sql[sql.index("aws_key_type"):]]
    assert any(f"'{kind}'" in text for text in writers), f"{kind} is declared but no source writes it: remove it"


def test_the_credential_kinds_are_those_correlation_relies_on() -> None:
    kinds = declared_credential_types()
    assert kinds["aws_long_term_key"] == (False, True)
    assert kinds["aws_temporary_key"] == (True, False)
    assert not any(temporary and long_term for temporary, long_term in kinds.values())


def _fake_source(credentials: list[tuple[str | None, str | None]]) -> ModuleType:
    """A source that stages one event per (credential_id, credential_type)."""
    module = ModuleType("fake")
    module.NAME = "fake"

    def load(con: duckdb.DuckDBPyConnection, files: list) -> None:
        for index, (credential_id, credential_type) in enumerate(credentials):
            con.execute(
                """INSERT INTO staged (event_id, record_index, line, occurred_at, category, credential_id,
                                       credential_type, raw, dedupe_key)
                VALUES (?, ?, 1, TIMESTAMPTZ '2026-11-02 09:00:00+00', 'action', ?, ?, '{}', ?)""",
                [f"e{index}", index, credential_id, credential_type, f"k{index}"],
            )

    module.load = load
    return module


def _load_fake(con: duckdb.DuckDBPyConnection, tmp_path: Path, module: ModuleType) -> None:
    path = tmp_path / "fake.log"
    path.write_text("x\n", encoding="utf-8")
    ingest.load_file(con, path, module, ingest.FileResult(path=path, source="fake", size=path.stat().st_size))


def test_an_undeclared_credential_type_stops_the_ingest(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    with pytest.raises(NhiauditError) as raised:
        _load_fake(store, tmp_path, _fake_source([("acme:1", "acme_session"), ("k", "kong_credential")]))
    assert str(raised.value) == (
        "nhiaudit/sources/fake.py: writes credential type 'acme_session', which "
        "nhiaudit/queries/correlate/15_credential_types.sql does not declare (a bug in nhiaudit). "
        "Declare it there, saying whether it is temporary and long-term."
    )
    assert store.execute("SELECT count(*) FROM events").fetchone()[0] == 0  # the file was rolled back


def test_a_credential_type_without_a_credential_is_dropped(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    _load_fake(store, tmp_path, _fake_source([(None, "kong_credential"), ("kong:k1", "kong_credential")]))
    got = rows(store, "SELECT credential_id, credential_type FROM events ORDER BY event_id")
    assert got == [
        {"credential_id": None, "credential_type": None},
        {"credential_id": "kong:k1", "credential_type": "kong_credential"},
    ]


def test_correlation_types_credentials_from_the_table(tmp_path: Path) -> None:
    """temporary/long_term come from the declared kind, and an AWS key id from its prefix."""
    con = store.connect(":memory:")
    _load_fake(con, tmp_path, _fake_source([
        ("AKIAFAKE000000000001", "aws_temporary_key"),  # the id wins over the type an event gave it
        ("ASIAFAKE000000000001", None),
        ("v1", "vault_token"),
        ("kong:k1", "kong_credential"),
    ]))
    correlate.correlate(con, load_policy(None))
    got = {r["credential_id"]: (r["temporary"], r["long_term"]) for r in rows(
        con, "SELECT credential_id, temporary, long_term FROM credentials"
    )}
    assert got == {
        "AKIAFAKE000000000001": (False, True),
        "ASIAFAKE000000000001": (True, False),
        "v1": (True, False),
        "kong:k1": (False, False),
    }
