"""Peak memory near the limit (issue 13): a folder of hard CloudTrail files loads at the default
``--memory-limit`` with every good record, and the process's peak RSS stays near that limit.

    python benchmarks/memory_limit.py                   # the whole folder, one ingest
    python benchmarks/memory_limit.py --each            # and each file alone, in its own store
    python benchmarks/memory_limit.py --memory-limit 2GB

The folder (generated once under ``benchmarks/data/memory-limit/``, gitignored; the records come
from benchmarks/ingest.py's ``World``, fixed seed):

- ``a-truncated.json.gz``: a 200-record ``{"Records": [...]}`` S3 delivery file (one line) cut so
  that its last four bytes, read as gzip's ISIZE trailer, say more than 600 MiB;
- ``b-single-300k.json.gz``: one valid gzip of 300,000 records in one ``{"Records": [...]}``;
- ``c-array.json``: a JSON array of CloudTrail records, 316 MB, on one line;
- ``d-good-*.json.gz`` and ``d-good.ndjson``: ordinary files.

Each run is ``/usr/bin/time -v nhiaudit ingest --db <fresh store> <folder>`` in its own process; the
figures are its "Maximum resident set size", its wall time, and the events stored per file against
the records each file holds whole (for the truncated file: those complete before the cut).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from ingest import World  # noqa: E402  (benchmarks/ingest.py: the same realistic records)

DATA = HERE / "data" / "memory-limit"
ARRAY_BYTES = 316 * 10**6
SEED = 20261204


def _cut_where_trailer_reads_large(data: bytes, at_least: int = 600 << 20) -> int:
    """The length of a prefix of ``data`` whose last four bytes, read as ISIZE, are ``at_least`` or more."""
    for cut in range(len(data) - 9, len(data) // 2, -1):
        if int.from_bytes(data[cut - 4 : cut], "little") >= at_least:
            return cut
    raise SystemExit("no cut of the 200-record gzip has a large enough trailer")


def _complete_before(prefix: bytes, texts: list[bytes], start: int) -> int:
    """How many of ``texts`` (joined by "," after ``start`` bytes) end within ``prefix``."""
    end, whole = start, 0
    for text in texts:
        end += len(text)
        if end > len(prefix):
            break
        whole += 1
        end += 1  # the comma
    return whole


def generate(out: Path) -> dict[str, int]:
    """Write the folder unless it is there; return the records each file holds whole."""
    expected_file = out / ".expected.json"  # hidden: ingest skips it
    if expected_file.exists():
        return json.loads(expected_file.read_text())
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    records = World(SEED).records(10**9)
    expected: dict[str, int] = {}

    def take(n: int) -> list[bytes]:
        return [json.dumps(next(records), separators=(",", ":")).encode() for _ in range(n)]

    texts = take(200)
    head = b'{"Records":['
    document = gzip.compress(head + b",".join(texts) + b"]}", 6)
    cut = _cut_where_trailer_reads_large(document)
    (out / "a-truncated.json.gz").write_bytes(document[:cut])
    prefix = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(document[:cut])
    expected["a-truncated.json.gz"] = _complete_before(prefix, texts, len(head))

    with gzip.open(out / "b-single-300k.json.gz", "wb", compresslevel=6) as fh:
        fh.write(head)
        for i, text in enumerate(take(300_000)):
            fh.write(b"," + text if i else text)
        fh.write(b"]}")
    expected["b-single-300k.json.gz"] = 300_000

    with open(out / "c-array.json", "wb") as fh:  # Python's json.dumps of a list: ", " between elements
        fh.write(b"[")
        written, n = 1, 0
        while written < ARRAY_BYTES:
            text = json.dumps(next(records)).encode()
            fh.write(b", " + text if n else text)
            written += len(text) + 2
            n += 1
        fh.write(b"]")
    expected["c-array.json"] = n

    for index in range(2):
        batch = take(5000)
        (out / f"d-good-{index}.json.gz").write_bytes(gzip.compress(head + b",".join(batch) + b"]}", 6))
        expected[f"d-good-{index}.json.gz"] = 5000
    (out / "d-good.ndjson").write_bytes(b"".join(t + b"\n" for t in take(2000)))
    expected["d-good.ndjson"] = 2000

    expected_file.write_text(json.dumps(expected, indent=1))
    sizes = ", ".join(f"{p.name} {p.stat().st_size / 1e6:.1f} MB" for p in sorted(out.iterdir()) if p.name[0] != ".")
    print(f"generated in {time.perf_counter() - started:.0f} s: {sizes}", flush=True)
    return expected


def ingest(paths: list[Path], memory_limit: str, db: Path) -> tuple[float, int, int, str]:
    """``/usr/bin/time -v nhiaudit ingest``: (wall s, peak RSS bytes, exit code, stdout + stderr)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), COLUMNS="200")
    argv = ["/usr/bin/time", "-v", sys.executable, "-m", "nhiaudit", "ingest", "--db", str(db),
            "--memory-limit", memory_limit, *map(str, paths)]
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    rss = int(match.group(1)) * 1024 if match else 0
    return wall, rss, proc.returncode, proc.stdout + proc.stderr


def stored(db: Path) -> dict[str, tuple[int, int]]:
    """(events, rejected) per file name."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            """SELECT path, records_loaded + records_duplicate, records_rejected FROM evidence_files"""
        ).fetchall()
    finally:
        con.close()
    return {Path(path).name: (loaded, rejected) for path, loaded, rejected in rows}


def report(label: str, expected: dict[str, int], db: Path, wall: float, rss: int, code: int, limit_bytes: int) -> bool:
    got = stored(db) if db.exists() else {}
    ok = True
    for name, want in expected.items():
        if name not in got:
            continue
        loaded, rejected = got[name]
        flag = "" if loaded == want else f"   <-- {want - loaded:,} good record(s) lost"
        ok &= loaded == want
        print(f"  {name:<24}{loaded:>10,} of {want:>9,} loaded, {rejected} rejected{flag}")
    print(f"{label}: exit {code}, {wall:.0f} s, peak RSS {rss / 1e6:,.0f} MB = {rss / limit_bytes:.2f} x the limit")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memory-limit", default="1GB", help="nhiaudit ingest --memory-limit (%(default)s)")
    parser.add_argument("--each", action="store_true", help="also ingest each file alone (its own peak)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from nhiaudit import store

    expected = generate(DATA)
    match = re.match(r"([\d.]+)\s*([KMGT]?i?B)", args.memory_limit)
    scale = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
    limit_bytes = int(float(match.group(1)) * scale[match.group(2)]) if match else 10**9
    store.memory_limit(args.memory_limit)  # validated as nhiaudit would
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, --memory-limit {args.memory_limit}")
    ok = True
    with tempfile.TemporaryDirectory(prefix="nhiaudit-mem-") as tmp:
        if args.each:
            for name in expected:
                db = Path(tmp) / f"{name}.duckdb"
                wall, rss, code, _ = ingest([DATA / name], args.memory_limit, db)
                ok &= report(f"{name} alone", {name: expected[name]}, db, wall, rss, code, limit_bytes)
        db = Path(tmp) / "all.duckdb"
        wall, rss, code, output = ingest([DATA], args.memory_limit, db)
        if code not in (0, 1):
            print(output[-3000:])
        ok &= report("whole folder", expected, db, wall, rss, code, limit_bytes)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
