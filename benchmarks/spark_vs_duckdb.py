"""Spark local vs DuckDB on the same world, as a ratio (DESIGN §10, issue 12).

    python benchmarks/spark_vs_duckdb.py 200000

Builds the CloudTrail + provenance world of ``benchmarks/correlate.py`` (``build_world``: N CloudTrail
records), then in this process: correlation and findings on DuckDB (``correlate.correlate``), and the
same on Spark local[2] (``spark_runner.run``: load, every relation, findings) with Spark's start-up
timed apart. Prints both, the ratio, and whether the findings agree. Needs ``pip install ".[spark]"``
and Java 17. ``benchmarks/scale_out.py`` prints the same figures as its Spark section.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from correlate import build_world, sizes_argument  # noqa: E402  (the sibling benchmark's world)


@dataclass
class Measured:
    duck_seconds: float
    duck_findings: int
    startup_seconds: float
    spark_seconds: float
    spark_findings: int
    slowest: list[tuple[str, float]]


def measure(db: Path, policy_file: Path) -> Measured:
    """DuckDB's correlation + findings on the store ``db``, then Spark local[2]'s on the same store."""
    from nhiaudit import correlate, rules, spark_runner, store
    from nhiaudit.policy import install, load_policy

    policy = load_policy(policy_file)
    con = store.connect(db)
    try:
        started = time.perf_counter()
        correlate.correlate(con, policy)
        duck = time.perf_counter() - started
        duck_findings = con.execute("SELECT count(*) FROM findings").fetchone()[0]

        started = time.perf_counter()
        spark = spark_runner.spark_session()
        startup = time.perf_counter() - started
        try:
            install(policy, con)
            started = time.perf_counter()
            runner = spark_runner.run(spark, con, policy, rules.load_rules(list(policy.rules.dirs)))
            spark_seconds = time.perf_counter() - started
            spark_findings = spark.table("findings").count()
        finally:
            spark.stop()
    finally:
        con.close()
    slowest = sorted(runner.timings.items(), key=lambda kv: -kv[1])[:5]
    return Measured(duck, duck_findings, startup, spark_seconds, spark_findings, slowest)


def spark_section(db: Path, policy_file: Path) -> list[tuple[str, float, str]]:
    """The figures as (label, seconds, note) lines (benchmarks/scale_out.py's section format)."""
    m = measure(db, policy_file)
    agree = "findings agree" if m.spark_findings == m.duck_findings else "FINDINGS DIFFER"
    return [
        ("DuckDB correlation + findings", m.duck_seconds, f"{m.duck_findings:,} findings"),
        ("Spark local[2] start-up", m.startup_seconds, ""),
        (
            "Spark local[2] load + correlation + findings",
            m.spark_seconds,
            f"{m.spark_seconds / m.duck_seconds:.1f}x DuckDB; {m.spark_findings:,} findings, {agree}; slowest: "
            + ", ".join(f"{name} {s:.1f} s" for name, s in m.slowest),
        ),
    ]


def main() -> None:
    (n,) = sizes_argument(__doc__)
    with tempfile.TemporaryDirectory(prefix="nhiaudit-bench-") as tmp:
        world = build_world(n, Path(tmp))
        lines = spark_section(world.db, world.policy)
    print(f"\n{world.events:,} events ({n:,} CloudTrail + provenance)")
    for label, seconds, note in lines:
        print(f"{label:<46}{seconds:8.2f} s   {note}")


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"(benchmark wall {time.perf_counter() - started:.0f} s)")
