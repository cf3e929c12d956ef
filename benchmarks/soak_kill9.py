"""Kill -9 soak: random kills during a multi-file ingest, then the store must open, every table must
scan, and a re-run must equal a clean run (DESIGN §9: a kill leaves the store as before the file).

    python benchmarks/soak_kill9.py --trials 40            # prints trials, failures and each failure
    pytest -m slow tests/test_concurrency.py               # a short run of the same (slow-marked)

Evidence: ../shared/samples copied several times with distinct bytes (so every copy is a file of
its own), plus a few thousand generated CloudTrail records, so that the ingest takes long enough to
be killed in the middle of staging, of a commit or of a checkpoint.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT.parent / "shared" / "samples"


def make_evidence(folder: Path, copies: int = 3, records: int = 20000) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for copy in range(copies):
        for sample in sorted(SAMPLES.rglob("*")):
            if not sample.is_file() or sample.suffix in (".md", ".gz"):
                continue
            target = folder / f"c{copy}" / sample.relative_to(SAMPLES)
            target.parent.mkdir(parents=True, exist_ok=True)
            data = sample.read_bytes()
            # Distinct bytes per copy (a trailing blank line), the same records.
            target.write_bytes(data + b"\n" * copy)
    with open(folder / "generated.ndjson", "w") as fh:
        for i in range(records):
            fh.write(
                json.dumps(
                    {
                        "eventVersion": "1.08",
                        "eventID": f"soak-{i:08d}",
                        "eventTime": f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z",
                        "eventSource": "s3.amazonaws.com",
                        "eventName": "GetObject",
                        "awsRegion": "eu-west-1",
                        "userIdentity": {"type": "AssumedRole", "accessKeyId": f"ASIASOAK{i % 97:012d}"},
                    }
                )
                + "\n"
            )
    return folder


def nhiaudit(*args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NHIAUDIT_")}
    return subprocess.Popen(
        [sys.executable, "-m", "nhiaudit", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )


def digest(db: Path) -> tuple[str, str, str]:
    """Events, custody and rejects, sorted, without ingest times: equal for equal evidence."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        parts = [
            con.execute(
                "SELECT source, event_id, file_sha256, record_index, line, md5(raw::VARCHAR) FROM events ORDER BY ALL"
            ).fetchall(),
            con.execute(
                "SELECT sha256, records_read, records_loaded, records_rejected, records_duplicate FROM evidence_files "
                "ORDER BY ALL"
            ).fetchall(),
            con.execute("SELECT file_sha256, record_index, line, reason FROM rejected ORDER BY ALL").fetchall(),
        ]
    finally:
        con.close()
    return tuple(hashlib.sha256(repr(part).encode()).hexdigest()[:12] for part in parts)


def scan_every_table(db: Path) -> None:
    from nhiaudit import store

    con = store.connect(db, read_only=True)
    try:
        for (table,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE NOT temporary").fetchall():
            con.execute(f'SELECT * FROM "{table}"').fetchall()
    finally:
        con.close()


def ingest(evidence: Path, db: Path) -> int:
    proc = nhiaudit("ingest", str(evidence), "--db", str(db))
    _, err = proc.communicate(timeout=600)
    if b"Traceback" in err:
        raise AssertionError(err.decode(errors="replace")[-2000:])
    return proc.returncode


def soak(trials: int, seed: int = 13, work: Path | None = None) -> tuple[int, list[str]]:
    """Run ``trials`` kills; returns (trials, failure descriptions)."""
    rnd = random.Random(seed)
    work = work or Path(tempfile.mkdtemp(prefix="nhiaudit-soak-"))
    evidence = make_evidence(work / "evidence")
    clean = work / "clean.duckdb"
    started = time.monotonic()
    ingest(evidence, clean)
    full = time.monotonic() - started
    expected = digest(clean)
    failures: list[str] = []
    for trial in range(trials):
        db = work / f"t{trial}.duckdb"
        kills = rnd.randint(1, 3)  # killed once or several times before a run completes
        try:
            for _ in range(kills):
                proc = nhiaudit("ingest", str(evidence), "--db", str(db))
                time.sleep(rnd.uniform(0.05, max(0.1, full * 1.1)))
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                if db.exists():
                    scan_every_table(db)
            code = ingest(evidence, db)
            scan_every_table(db)
            got = digest(db)
            if got != expected:
                differ = [
                    name for name, a, b in zip(("events", "custody", "rejects"), got, expected, strict=True) if a != b
                ]
                failures.append(
                    f"trial {trial}: re-run after {kills} kill(s) differs from a clean run in {', '.join(differ)} "
                    f"(exit {code})"
                )
        except Exception as exc:  # a failed trial is reported, the soak goes on
            failures.append(f"trial {trial}: {type(exc).__name__}: {str(exc)[:300]}")
        finally:
            for leftover in work.glob(f"t{trial}.duckdb*"):
                leftover.unlink()
    shutil.rmtree(work, ignore_errors=True)
    return trials, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    trials, failures = soak(args.trials, args.seed)
    print(f"kill -9 soak: {trials} trials, {len(failures)} failure(s)")
    for failure in failures:
        print("  " + failure)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
