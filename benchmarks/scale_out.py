"""Scale-out: the Parquet lake against the store (and, in later sections, other engines), in one run.

    python benchmarks/scale_out.py 200000 1000000

For each N: the CloudTrail world of ``benchmarks/ingest.py`` (N records) plus provenance for its
tasks (``benchmarks/correlate.py``), ingested into a fresh store with the CLI. Then, each step in its
own process (``python -m nhiaudit``, so the checkout's code runs):

- **export**: ``nhiaudit export DIR`` (wall time, files, MB against the store's size) against DuckDB
  alone writing the same events with one ``COPY … (FORMAT parquet, PARTITION_BY (source, day))``
  and no digests, manifest or total order; then the same export again with nothing changed (digests
  and file checks only: the incremental path);
- **audit**: ``nhiaudit sql`` of the findings' count and digest on the store as ingested (the
  derived tables are stale: correlation and every rule) and again (derived tables current), against
  ``nhiaudit sql --lake DIR`` of the same (manifest check, scratch store, correlation, every rule: a
  lake is always audited from scratch); store and lake must give the same digest. (A report's
  presentation costs the same from either side.)

Each section is a function ``(World) -> list of (label, seconds, note)`` in ``SECTIONS``; a section
for another engine appends itself there and reads what the earlier ones left in ``World.seconds``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from correlate import NHIAUDIT, build_world, sizes_argument  # noqa: E402  (the sibling benchmarks' world)
from ingest import run  # noqa: E402
from spark_vs_duckdb import spark_section  # noqa: E402

PLAIN_COPY = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
con.execute("SET TimeZone = 'UTC'")
con.execute(f'''COPY (SELECT * REPLACE (CAST(details AS VARCHAR) AS details, CAST(raw AS VARCHAR) AS raw),
                      CAST(occurred_at AS DATE) AS day FROM events)
               TO '{sys.argv[2]}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (source, day))''')
"""


@dataclass
class World:
    """One N's store, lake and scratch folder, and the seconds each section measured."""

    n: int
    tmp: Path
    db: Path
    policy: Path
    lake: Path
    events: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def _mb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 1e6
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def export_section(world: World) -> list[tuple[str, float, str]]:
    store_mb = _mb(world.db)
    wall, _, rss, _ = run([*NHIAUDIT, "export", "--db", str(world.db), str(world.lake)])
    manifest = json.loads((world.lake / "manifest.json").read_text(encoding="utf-8"))
    lake_mb = _mb(world.lake)
    again, _, _, _ = run([*NHIAUDIT, "export", "--db", str(world.db), str(world.lake)])
    plain_dir = world.tmp / "plain-copy"
    plain, _, _, _ = run([sys.executable, "-c", PLAIN_COPY, str(world.db), str(plain_dir)])
    plain_mb = _mb(plain_dir)
    shutil.rmtree(plain_dir)
    world.seconds.update(export=wall, export_again=again, plain_copy=plain)
    parts = len(manifest["tables"]["events"]["partitions"])
    return [
        (
            "nhiaudit export",
            wall,
            f"{len(manifest['files'])} files, {parts} event partitions, {lake_mb:,.0f} MB "
            f"({lake_mb / store_mb:.2f}x the {store_mb:,.0f} MB store); peak RSS {rss / 1e6:,.0f} MB; "
            f"{wall / plain:.2f}x DuckDB alone",
        ),
        ("DuckDB alone: one partitioned COPY", plain, f"{plain_mb:,.0f} MB"),
        ("nhiaudit export again, nothing changed", again, f"{again / wall:.2f}x the first export"),
    ]


# What every side answers once audited: the findings (correlation materializes them with every
# rule) as a count and a digest, so that store and lake can be compared without printing them.
FINDINGS_DIGEST = """SELECT count(*) AS findings, md5(string_agg(concat_ws(chr(31), rule, source, event_id,
    message, waived), chr(30) ORDER BY rule, source, event_id, message)) AS digest FROM findings"""


def audit_section(world: World) -> list[tuple[str, float, str]]:
    # `nhiaudit sql` over the findings: the audit (scratch store or not, correlation, every rule)
    # without the report's presentation, which costs the same from either side and at a million
    # events is mostly Python building and writing the report (json.dumps: 28 of 60 s at 20k events).
    query = ["--policy", str(world.policy), "--json", FINDINGS_DIGEST]
    cold, _, cold_rss, from_store = run([*NHIAUDIT, "sql", "--db", str(world.db), *query])
    warm, _, _, again = run([*NHIAUDIT, "sql", "--db", str(world.db), *query])
    lake, _, lake_rss, from_lake = run([*NHIAUDIT, "sql", "--lake", str(world.lake), *query])
    if not from_store == again == from_lake:
        raise SystemExit(f"lake and store disagree:\n{from_store}\n{from_lake}")
    findings = json.loads(from_lake)[0]["findings"]
    world.seconds.update(store_audit=cold, store_audit_warm=warm, lake_audit=lake)
    return [
        ("audit the store (correlates)", cold, f"peak RSS {cold_rss / 1e6:,.0f} MB"),
        ("audit the store (derived tables current)", warm, ""),
        (
            "audit --lake (correlates in a scratch store)",
            lake,
            f"{lake / cold:.2f}x the store's correlating audit; peak RSS {lake_rss / 1e6:,.0f} MB; "
            f"{findings:,} findings, the same digest",
        ),
    ]


# Sections in order; a later engine's section appends itself here (it may read world.seconds).
SECTIONS: list[tuple[str, Callable[[World], list[tuple[str, float, str]]]]] = [
    ("export", export_section),
    ("audit: lake vs store", audit_section),
    ("audit: Spark local[2] vs DuckDB", lambda world: spark_section(world.db, world.policy)),
]


def build(n: int, tmp: Path) -> World:
    built = build_world(n, tmp)
    return World(n, tmp, built.db, built.policy, tmp / "lake", built.events)


def main() -> None:
    for n in sizes_argument(__doc__, many=True):
        with tempfile.TemporaryDirectory(prefix="nhiaudit-scale-") as tmp:
            world = build(n, Path(tmp))
            print(f"\n{world.events:,} events ({n:,} CloudTrail records + provenance), {os.cpu_count()} CPUs")
            for title, section in SECTIONS:
                print(f"-- {title}")
                for label, seconds, note in section(world):
                    print(f"  {label:<48}{seconds:8.2f} s   {note}")


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"(benchmark wall {time.perf_counter() - started:.0f} s)")
