"""Plain functions the test modules share: query the store, load one file as a given source, write
NDJSON input, find the shared real-format samples, run the CLI. Import them with ``from helpers import ...``
(tests/conftest.py puts this folder on ``sys.path``, so tests/sources/ can too)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pytest
from typer.testing import CliRunner, Result

from nhiaudit import cli, correlate, ingest, store
from nhiaudit.policy import Policy, load_policy

# The shared folder next to this repository: real-format samples and the official report schemas.
# Tests that need them skip without it, except on CI (see on_ci), where the whole run fails.
SHARED = Path(__file__).resolve().parents[2] / "shared"
SAMPLES = SHARED / "samples"
SCHEMAS = SHARED / "schemas"
# Every folder in it, one per log family (test_all_samples checks there are no others).
SAMPLE_FOLDERS = (
    "api_gateway",
    "aws_cloudtrail",
    "azure",
    "entra",
    "gcp_audit",
    "genai_otel",
    "github",
    "idp_oauth",
    "k8s_audit",
    "okta",
    "teleport",
    "vault_audit",
)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


def rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    """The query's rows as dicts keyed by column name."""
    cursor = con.execute(sql, params or [])
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def event(con: duckdb.DuckDBPyConnection, source: str, event_id: str) -> dict[str, Any]:
    """The one event ``event_id`` of ``source``, its JSON details parsed (None when it has none)."""
    found = rows(con, "SELECT * FROM events WHERE source = ? AND event_id = ?", [source, event_id])
    assert len(found) == 1, f"{event_id}: {len(found)} events"
    found[0]["details"] = json.loads(found[0]["details"]) if found[0]["details"] else None
    return found[0]


def load(con: duckdb.DuckDBPyConnection, source: str, path: Path) -> ingest.FileResult:
    """Ingest one file, which ``source`` must be the one to recognize; its FileResult."""
    result = ingest.ingest(con, [path])
    assert not result.unrecognized, f"{path.name} was not recognized"
    (file_result,) = result.files
    assert file_result.source == source
    return file_result


def write_lines(path: Path, lines: Iterable[Any], **dumps: Any) -> Path:
    """One line per item: a str as it is (a malformed line, a text log), anything else as JSON
    (``dumps`` goes to ``json.dumps``, e.g. compact ``separators``)."""
    text = "".join((line if isinstance(line, str) else json.dumps(line, **dumps)) + "\n" for line in lines)
    path.write_text(text, encoding="utf-8")
    return path


def build_world(
    folder: Path, files: dict[str, Any], policy_text: str, **dumps: Any
) -> tuple[duckdb.DuckDBPyConnection, Policy]:
    """Write each file (a list is one record a line, a dict one JSON document), ingest them all into
    an in-memory store (every record must load) and correlate under ``policy_text``."""
    paths = []
    for name, content in files.items():
        path = folder / name
        if isinstance(content, dict):
            path.write_text(json.dumps(content), encoding="utf-8")
        else:
            write_lines(path, content, **dumps)
        paths.append(path)
    con = store.connect(":memory:")
    result = ingest.ingest(con, paths)
    assert not result.unrecognized, f"no source recognized {result.unrecognized}"
    rejected = con.execute("SELECT path, reason FROM rejected").fetchall()
    assert not rejected, rejected
    policy_file = folder / "nhiaudit.toml"
    policy_file.write_text(policy_text, encoding="utf-8")
    policy = load_policy(policy_file)
    correlate.correlate(con, policy)
    return con, policy


def on_ci() -> bool:
    """True under CI (``CI=true``, as GitHub Actions and most CI services set): there a test that needs
    the shared folder fails without it rather than skip, so that a missing checkout cannot pass green."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def sample(path: Path) -> Path:
    """``path``, a shared sample or schema (file or folder); the test is skipped where it is absent, or
    fails on CI."""
    if not path.exists():
        message = f"{path}: not found. Check out the shared folder at {SHARED}"
        if on_ci():
            pytest.fail(f"{message}; CI must not skip the tests that need it.", pytrace=False)
        pytest.skip(message)
    return path


def sample_files(folder: Path, pattern: str = "*") -> list[Path]:
    """The files of a samples folder matching ``pattern``, in order; none where the folder is absent
    (a parametrization over none is skipped: on CI, conftest's pytest_configure stops the run first)."""
    return sorted(p for p in folder.glob(pattern) if p.is_file()) if folder.is_dir() else []


def other_samples(*mine: Path) -> list[Path]:
    """Every shared sample file but ``mine``: what a source's detect() must not claim."""
    return sorted(p for p in SAMPLES.rglob("*") if p.is_file() and p not in mine) if SAMPLES.is_dir() else []


def invoke(args: Sequence[str], **kwargs: Any) -> Result:
    """``nhiaudit ARGS`` in-process (``kwargs`` go to ``CliRunner.invoke``, e.g. ``env``). An exception
    a command raises propagates and fails the test, so that a crash cannot pass for exit code 1; a
    ``typer.Exit`` still ends as ``result.exit_code``."""
    return CliRunner().invoke(cli.app, list(args), catch_exceptions=False, **kwargs)


def ingest_sample_world(db: Path) -> Path:
    """The sample world (``sample_logs/``) ingested into a new store ``db``, from a relative path as
    the README's command does (so paths in reports are the same on any machine); returns ``db``.
    Tests that only read it copy conftest's session-wide ``sample_world`` store instead."""
    sample_world_ingest(db)
    return db


def sample_world_ingest(db: Path) -> ingest.IngestResult:
    """:func:`ingest_sample_world`, returning what ingest returned."""
    root = Path(__file__).resolve().parents[1]
    cwd = Path.cwd()
    con = store.connect(db)
    try:
        os.chdir(root)
        result = ingest.ingest(con, [Path("sample_logs")])
    finally:
        os.chdir(cwd)
        con.close()
    assert not result.unrecognized and not any(f.rejected for f in result.files)
    return result


def said(result: Result) -> str:
    """A command's output with Rich's line wrapping undone, for matching a message in it."""
    return " ".join(result.output.split())
