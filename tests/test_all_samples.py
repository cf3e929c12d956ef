"""The whole shared samples tree: every file is claimed by exactly one source and loads cleanly.

Each source's tests cover its own folder; this one catches what falls between them — a file no
source claims, a file two detectors both claim, a folder that contributes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from helpers import SAMPLE_FOLDERS, SAMPLES
from typer.testing import CliRunner

from nhiaudit import cli, ingest
from nhiaudit import store as nhiaudit_store
from nhiaudit.sources import SOURCES

# Files that hold no events by design: an SNS->SQS notification announcing CloudTrail log files
# (the cloudtrail source consumes it on purpose).
NO_EVENTS = {"aws_cloudtrail/aws-cloudtrail-processing-library__SQSMessageBody.json"}
SAMPLE_FILES = ingest.discover([SAMPLES])[0] if SAMPLES.is_dir() else []

# Sample files no source claims yet, with the issue whose source will claim them. Each is a strict
# expected failure of the detection test (an XPASS fails the run), and the whole-tree tests expect
# exactly these to come back unrecognized: when a source starts to claim a file, remove it here.
PENDING: dict[str, str] = {
}
# Folders that contribute events today: every folder with at least one claimed file.
LOADING_FOLDERS = {p.relative_to(SAMPLES).parts[0] for p in SAMPLE_FILES if str(p.relative_to(SAMPLES)) not in PENDING}


def _sample_param(path: Path):
    name = str(path.relative_to(SAMPLES))
    marks = [pytest.mark.xfail(strict=True, reason=PENDING[name])] if name in PENDING else []
    return pytest.param(path, id=name, marks=marks)


def test_the_sample_folders_are_the_expected_ones(samples_dir: Path) -> None:
    assert sorted(p.name for p in samples_dir.iterdir() if p.is_dir()) == list(SAMPLE_FOLDERS)


@pytest.fixture
def samples_store(ingested_samples) -> Iterator[tuple[ingest.IngestResult, duckdb.DuckDBPyConnection]]:
    """conftest's store of the whole tree (ingested into a new store), read-only."""
    result, db = ingested_samples
    con = nhiaudit_store.connect(db, read_only=True)
    yield result, con
    con.close()


def test_every_sample_loads_with_zero_rejected(samples_store, samples_dir: Path) -> None:
    result, store = samples_store
    assert sorted(str(p.relative_to(samples_dir)) for p in result.unrecognized) == sorted(PENDING)
    assert [p.name for p in result.ignored] == ["SOURCES.md"]
    assert len(result.files) == len(SAMPLE_FILES) - len(PENDING) > 0
    for f in result.files:
        name = f.path.relative_to(samples_dir)
        assert not f.already_ingested, f"{name}: two sample files have the same bytes"
        assert f.rejected == 0, f"{name}: {f.rejected} rejected: " + "; ".join(
            r for (r,) in store.execute("SELECT reason FROM rejected WHERE path = ?", [str(f.path)]).fetchall()
        )
        # Read, not loaded: a sample may repeat events already stored from another sample.
        assert (f.read > 0) != (str(name) in NO_EVENTS), f"{name}: {f.read} records read"
        assert f.read == f.loaded + f.rejected + f.duplicates, name
    paths = store.execute("SELECT DISTINCT ef.path FROM events e JOIN evidence_files ef ON ef.sha256 = e.file_sha256")
    assert {Path(path).relative_to(samples_dir).parts[0] for (path,) in paths.fetchall()} == LOADING_FOLDERS
    (stored,) = store.execute("SELECT count(*) FROM events").fetchone()
    assert stored == sum(f.loaded for f in result.files)


@pytest.mark.parametrize("path", [_sample_param(p) for p in SAMPLE_FILES])
def test_exactly_one_source_detects_each_sample(path: Path) -> None:
    claimed = [name for name, module in SOURCES.items() if module.detect(path)]
    assert len(claimed) == 1, f"{path.name}: claimed by {claimed or 'no source'}"


def test_cli_ingests_the_whole_tree(samples_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NHIAUDIT_DB", raising=False)
    result = CliRunner().invoke(
        cli.app, ["ingest", "--db", str(tmp_path / "samples.duckdb"), str(samples_dir)], catch_exceptions=False
    )
    # Files no source claims make ingest exit 2 after loading the rest, naming each of them.
    assert result.exit_code == (2 if PENDING else 0), result.output
    for name in PENDING:
        assert Path(name).name in result.output.replace("\n", "")
