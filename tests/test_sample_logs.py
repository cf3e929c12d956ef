"""sample_logs/ is evidence a user ingests whole: it holds the files its README lists and nothing else
that ingest reads, and its CloudTrail files are exactly what tools/make_cloudtrail.py writes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import duckdb

from nhiaudit import ingest

ROOT = Path(__file__).resolve().parents[1]
WORLD = ROOT / "sample_logs"
GENERATOR = ROOT / "tools" / "make_cloudtrail.py"
# Skipped by their suffix (ingest.IGNORED_SUFFIXES); the README says so.
NOT_EVIDENCE = ["README.md", "nhiaudit.toml"]


def documented_files() -> list[str]:
    """The paths in the README's table of files (its first table, before the expected results)."""
    head = (WORLD / "README.md").read_text(encoding="utf-8").split("## Expected results")[0]
    return sorted(re.findall(r"^\| `([^`]+)` \|", head, flags=re.MULTILINE))


def test_ingest_reads_the_documented_evidence_and_skips_the_rest(store: duckdb.DuckDBPyConnection) -> None:
    result = ingest.ingest(store, [WORLD])
    assert result.unrecognized == []
    assert sorted(str(f.path.relative_to(WORLD)) for f in result.files) == sorted(
        set(documented_files()) - set(NOT_EVIDENCE)
    )
    assert sorted(str(p.relative_to(WORLD)) for p in result.ignored) == NOT_EVIDENCE


def test_the_cloudtrail_files_are_the_generators_output_byte_for_byte(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(GENERATOR), "--out", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(p.relative_to(WORLD) for p in (WORLD / "cloudtrail").rglob("*") if p.is_file())
    assert written == committed
    for name in written:
        assert (tmp_path / name).read_bytes() == (WORLD / name).read_bytes(), (
            f"sample_logs/{name} differs from what tools/make_cloudtrail.py writes: edit the records there and "
            "run it, rather than editing the file"
        )
