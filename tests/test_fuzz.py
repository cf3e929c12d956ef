"""Fuzzing ingest with damaged real samples (issue 13): whatever the damage, for every file

- the CLI raises nothing and exits 0, 1 or 2;
- records read = loaded + rejected + duplicates, in the summary table and in ``evidence_files``;
- the store holds exactly as many events and rejected rows as the counters say;
- every line of a line-delimited sample that the damage left intact is loaded.

Hypothesis picks a sample of ``../shared/samples`` and a mutation; seeded (``derandomize``) and
bounded (``max_examples``), so a run is the same every time and takes well under a minute.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path

import duckdb
import pytest
from helpers import SAMPLES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

from nhiaudit import cli
from nhiaudit.ingest import IGNORED_SUFFIXES

SAMPLE_FILES = (
    sorted(p for p in SAMPLES.rglob("*") if p.is_file() and p.suffix not in IGNORED_SUFFIXES and p.name != "SOURCES.md")
    if SAMPLES.is_dir()
    else []
)
KEY_FIELDS = (
    "eventTime",
    "eventID",
    "userIdentity",
    "timestamp",
    "time",
    "id",
    "type",
    "requestParameters",
    "protoPayload",
    "auditID",
    "user",
    "request",
    "attributes",
    "traceId",
    "spanId",
)
MAX_EXAMPLES = 100  # the soak (pytest -m slow, CI's soak step): every run of CI checks these
QUICK_EXAMPLES = 25  # the default suite: a deterministic subset, so that a local run stays short

pytestmark = pytest.mark.skipif(not SAMPLE_FILES, reason="needs ../shared/samples")


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def truncate(data: bytes, rnd: random.Random) -> bytes:
    return data[: rnd.randrange(len(data))] if data else data


def flip_bytes(data: bytes, rnd: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        if out:
            out[rnd.randrange(len(out))] ^= 1 << rnd.randrange(8)
    return bytes(out)


def delete_line(data: bytes, rnd: random.Random) -> bytes:
    lines = _lines(data)
    del lines[rnd.randrange(len(lines))]
    return b"\n".join(lines)


def duplicate_line(data: bytes, rnd: random.Random) -> bytes:
    lines = _lines(data)
    i = rnd.randrange(len(lines))
    lines.insert(i, lines[i])
    return b"\n".join(lines)


def change_key_type(data: bytes, rnd: random.Random) -> bytes:
    """A key field of one record (a line, or the document) gets another JSON type."""
    lines = _lines(data)
    candidates = [i for i, line in enumerate(lines) if line.strip().startswith(b"{")]
    replacement = rnd.choice(["12345", "[1, 2]", "null", '{"nested": true}', '""', "true", '"x"'])
    whole = data.decode("utf-8", errors="replace")
    if not candidates:
        keys = [k for k in KEY_FIELDS if f'"{k}"' in whole]
        if not keys:
            return data
        key = rnd.choice(keys)
        return re.sub(
            rf'("{key}"\s*:\s*)("[^"]*"|-?\d+(\.\d+)?|true|false|null)', rf"\g<1>{replacement}", whole, count=1
        ).encode()
    i = rnd.choice(candidates)
    try:
        record = json.loads(lines[i])
    except ValueError:
        return data
    if not isinstance(record, dict) or not record:
        return data
    keys = [k for k in KEY_FIELDS if k in record] or list(record)
    record[rnd.choice(keys)] = json.loads(replacement)
    lines[i] = json.dumps(record).encode()
    return b"\n".join(lines)


def deep_nesting(data: bytes, rnd: random.Random) -> bytes:
    depth = rnd.choice([200, 1100, 5000])
    deep = (b'{"a":' * depth) + b"1" + (b"}" * depth) if rnd.random() < 0.5 else b"[" * depth + b"]" * depth
    lines = _lines(data)
    lines.insert(rnd.randrange(len(lines) + 1), deep)
    return b"\n".join(lines)


def huge_string(data: bytes, rnd: random.Random) -> bytes:
    pad = "A" * rnd.choice([70_000, 600_000])
    lines = _lines(data)
    for i in rnd.sample(range(len(lines)), len(lines)):
        if lines[i].rstrip().endswith(b"}"):
            line = lines[i].rstrip()
            lines[i] = (
                line[:-1]
                + (b', "fuzz_pad": "' if line[:-1].strip() not in (b"{", b"") else b'"fuzz_pad": "')
                + pad.encode()
                + b'"}'
            )
            return b"\n".join(lines)
    return data + pad.encode()


def bom(data: bytes, rnd: random.Random) -> bytes:
    return b"\xef\xbb\xbf" + data


def crlf(data: bytes, rnd: random.Random) -> bytes:
    return data.replace(b"\n", b"\r\n")


def utf16(data: bytes, rnd: random.Random) -> bytes:
    return data.decode("utf-8", errors="replace").encode(rnd.choice(["utf-16", "utf-16-le"]))


def nul(data: bytes, rnd: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rnd.randint(1, 3)):
        out.insert(rnd.randrange(len(out) + 1), 0)
    return bytes(out)


def gzip_damage(data: bytes, rnd: random.Random) -> bytes:
    packed = gzip.compress(data)
    kind = rnd.choice(["truncate", "flip", "trailing", "whole"])
    if kind == "truncate":
        return packed[: rnd.randrange(10, max(11, len(packed)))]
    if kind == "flip":
        out = bytearray(packed)
        out[rnd.randrange(10, len(out))] ^= 0xFF
        return bytes(out)
    if kind == "trailing":
        return packed + b"\x00garbage"
    return packed


MUTATIONS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    f.__name__: f
    for f in (
        truncate,
        flip_bytes,
        delete_line,
        duplicate_line,
        change_key_type,
        deep_nesting,
        huge_string,
        bom,
        crlf,
        utf16,
        nul,
        gzip_damage,
    )
}


def ingest_cli(path: Path, db: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli.app, ["ingest", str(path), "--db", str(db)])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 1, 2), result.output
    return result.exit_code, result.stdout


@cache
def loaded_lines(sample: Path, tmp: Path) -> frozenset[bytes]:
    """The lines of a sample that load as an event whose raw record is the line itself (NDJSON)."""
    if sample.suffix == ".gz":
        return frozenset()
    db = tmp / f"baseline-{abs(hash(sample))}.duckdb"
    ingest_cli(sample, db)
    con = duckdb.connect(str(db), read_only=True)
    try:
        raws = {json.dumps(json.loads(r[0]), sort_keys=True) for r in con.execute("SELECT raw FROM events").fetchall()}
    finally:
        con.close()
    good = set()
    for line in _lines(sample.read_bytes()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and json.dumps(value, sort_keys=True) in raws:
            good.add(line.rstrip(b"\r"))
    return frozenset(good) if len(good) > 1 else frozenset()


def check_store(db: Path, stdout: str) -> None:
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            """SELECT f.sha256, records_read, records_loaded, records_rejected, records_duplicate,
                      (SELECT count(*) FROM events e WHERE e.file_sha256 = f.sha256),
                      (SELECT count(*) FROM rejected r WHERE r.file_sha256 = f.sha256)
            FROM evidence_files f"""
        ).fetchall()
        for _, read, loaded, rejected, duplicates, events, rejects in rows:
            assert read == loaded + rejected + duplicates
            assert (events, rejects) == (loaded, rejected)
        table = [line for line in stdout.splitlines() if line.startswith("│")]
        for line in table:  # the summary: source │ files │ records │ loaded │ rejected │ duplicates │ s
            cells = [c.strip().replace(",", "") for c in line.strip("│").split("│")]
            read, loaded, rejected, duplicates = (int(c) for c in cells[2:6])
            assert read == loaded + rejected + duplicates
            source_rows = con.execute(
                """SELECT coalesce(sum(records_read), 0), coalesce(sum(records_loaded), 0),
                          coalesce(sum(records_rejected), 0), coalesce(sum(records_duplicate), 0)
                FROM evidence_files WHERE source = ?""",
                [cells[0]],
            ).fetchone()
            assert source_rows == (read, loaded, rejected, duplicates)
    finally:
        con.close()


@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-baseline")


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "console", Console(width=250))
    monkeypatch.setattr(cli, "err_console", Console(width=250, stderr=True))
    monkeypatch.delenv("NHIAUDIT_DB", raising=False)
    monkeypatch.delenv("NHIAUDIT_POLICY", raising=False)


def damaged(max_examples: int) -> Callable:
    """The fuzz cases: a sample, a mutation and its seed, derandomized (the same cases every run)."""

    def wrap(test: Callable) -> Callable:
        return settings(
            max_examples=max_examples,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.function_scoped_fixture,
                HealthCheck.data_too_large,
            ],
        )(
            given(
                sample=st.sampled_from(SAMPLE_FILES or [Path("none")]),
                mutation=st.sampled_from(sorted(MUTATIONS)),
                seed=st.integers(0, 2**32 - 1),
            )(test)
        )

    return wrap


@damaged(QUICK_EXAMPLES)
def test_damaged_samples(sample: Path, mutation: str, seed: int, tmp_path_factory, baseline_dir: Path) -> None:
    check_damaged(sample, mutation, seed, tmp_path_factory, baseline_dir)


@pytest.mark.slow
@damaged(MAX_EXAMPLES)
def test_damaged_samples_soak(sample: Path, mutation: str, seed: int, tmp_path_factory, baseline_dir: Path) -> None:
    check_damaged(sample, mutation, seed, tmp_path_factory, baseline_dir)


def check_damaged(sample: Path, mutation: str, seed: int, tmp_path_factory, baseline_dir: Path) -> None:
    """Ingest ``sample`` damaged by ``mutation``: the store is consistent with the summary, and every
    intact line of an NDJSON sample is still loaded."""
    original = sample.read_bytes()
    if sample.suffix == ".gz":
        original = gzip.decompress(original)
    damaged = MUTATIONS[mutation](original, random.Random(seed))
    work = tmp_path_factory.mktemp("fuzz")
    name = sample.name.removesuffix(".gz") + (".gz" if mutation == "gzip_damage" else "")
    path = work / name
    path.write_bytes(damaged)
    db = work / "s.duckdb"
    code, stdout = ingest_cli(path, db)
    if not db.exists():
        return  # nothing recognized: nothing stored (exit 2 says so)
    check_store(db, stdout)
    good = loaded_lines(sample, baseline_dir)
    if not good or mutation in ("utf16", "gzip_damage"):
        return
    intact = {line.rstrip(b"\r") for line in _lines(damaged)} & good
    if mutation == "bom":
        intact -= {_lines(original)[0].rstrip(b"\r")}
    con = duckdb.connect(str(db), read_only=True)
    try:
        raws = {json.dumps(json.loads(r[0]), sort_keys=True) for r in con.execute("SELECT raw FROM events").fetchall()}
    finally:
        con.close()
    lost = [line[:120] for line in intact if json.dumps(json.loads(line), sort_keys=True) not in raws]
    assert not lost, f"{mutation} of {sample.name}: {len(lost)} intact line(s) not loaded, e.g. {lost[0]!r}"
