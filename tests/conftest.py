"""Shared pytest options. Golden files are rewritten with ``pytest --update-golden``, never by hand."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest

from nhiaudit import ingest
from nhiaudit import store as nhiaudit_store

# The test modules share tests/helpers.py (``from helpers import ...``). pytest's default import
# mode puts only a test module's own folder on sys.path; put this one there too, for tests/sources/.
sys.path.insert(0, str(Path(__file__).parent))

from helpers import SAMPLES, SCHEMAS, on_ci, sample, sample_world_ingest


def pytest_configure(config: pytest.Config) -> None:
    """On CI, stop before collecting when the shared folder is absent: the tests that need it would be
    skipped one by one (a parametrization over no sample files is not even a test), and the run would
    pass green with a fraction of the suite."""
    missing = [str(path) for path in (SAMPLES, SCHEMAS) if not path.is_dir()]
    if on_ci() and missing:
        raise pytest.UsageError(
            f"{', '.join(missing)}: not found, and CI is set. Check out the shared folder next to this "
            "repository (or unset CI to skip the tests that need it)."
        )


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite golden files with the current output instead of comparing against them",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """True when the run should write golden files rather than compare with them."""
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture
def store() -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory store with the current schema applied."""
    con = nhiaudit_store.connect(":memory:")
    yield con
    con.close()


# Stores that many tests read: each is built once per run, and a test that writes to one (a
# correlation, a second ingest) works on a copy (``copy_store``), never on the original.


@pytest.fixture(scope="session")
def sample_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[ingest.IngestResult, Path]:
    """The sample world (``sample_logs/``) ingested from a relative path, never correlated: what
    ingest returned and the store file. Copy it before writing to it."""
    db = tmp_path_factory.mktemp("sample-world") / "world.duckdb"
    return sample_world_ingest(db), db


@pytest.fixture(scope="session")
def ingested_samples(tmp_path_factory: pytest.TempPathFactory) -> tuple[ingest.IngestResult, Path]:
    """The whole shared samples tree ingested into a new store, never correlated: what ingest
    returned and the store file. Copy it before writing to it."""
    root = sample(SAMPLES)
    db = tmp_path_factory.mktemp("samples") / "samples.duckdb"
    con = nhiaudit_store.connect(db)
    try:
        result = ingest.ingest(con, [root])
    finally:
        con.close()
    return result, db


@pytest.fixture(scope="session")
def copy_store() -> Callable[[Path, Path], Path]:
    """``copy_store(original, target)``: a copy of a store file (with its WAL, if any) at ``target``."""

    def copy(original: Path, target: Path) -> Path:
        shutil.copy(original, target)
        wal = original.with_name(original.name + ".wal")
        if wal.exists():
            shutil.copy(wal, target.with_name(target.name + ".wal"))
        return target

    return copy


@pytest.fixture
def samples_dir() -> Path:
    """The shared real-format samples (``../shared/samples``); a test that needs them skips without,
    or fails on CI."""
    return sample(SAMPLES)


@pytest.fixture
def schemas() -> Path:
    """The official report schemas (``../shared/schemas``: SARIF 2.1.0, the JUnit XSD); a test that
    needs them skips without, or fails on CI."""
    return sample(SCHEMAS)
