"""Spark local vs DuckDB on the same world, as a ratio (DESIGN §10, issue 12).

    python benchmarks/spark_vs_duckdb.py 200000

Builds the CloudTrail + provenance world of ``benchmarks/correlate.py`` (N CloudTrail records), then
in this process: correlation and findings on DuckDB (``correlate.correlate``), and the same on Spark
local[2] (``spark_runner.run``: load, every relation, findings) with Spark's start-up timed apart.
Prints both, the ratio, and whether the findings agree. Needs ``pip install ".[spark]"`` and Java 17.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from correlate import POLICY, write_provenance  # noqa: E402  (the sibling benchmark's world)
from ingest import DATA, generate, run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", type=int, help="number of CloudTrail records")
    args = parser.parse_args()
    data = DATA / f"cloudtrail-{args.n}"
    generate(args.n, data)
    nhiaudit = shutil.which("nhiaudit") or str(Path(sys.executable).with_name("nhiaudit"))

    from nhiaudit import correlate, rules, spark_runner, store
    from nhiaudit.policy import install, load_policy

    with tempfile.TemporaryDirectory(prefix="nhiaudit-bench-") as tmp:
        db = Path(tmp) / "store.duckdb"
        policy_file = Path(tmp) / "nhiaudit.toml"
        policy_file.write_text(POLICY, encoding="utf-8")
        run([nhiaudit, "ingest", "--db", str(db), str(data)])
        provenance = Path(tmp) / "provenance"
        provenance.mkdir()
        write_provenance(db, provenance / "provenance.ndjson")
        run([nhiaudit, "ingest", "--db", str(db), str(provenance)])
        policy = load_policy(policy_file)
        con = store.connect(db)
        events = con.execute("SELECT count(*) FROM events").fetchone()[0]

        started = time.perf_counter()
        correlate.correlate(con, policy)
        duck = time.perf_counter() - started
        duck_findings = con.execute("SELECT count(*) FROM findings").fetchone()[0]

        started = time.perf_counter()
        spark = spark_runner.spark_session()
        startup = time.perf_counter() - started
        install(policy, con)
        started = time.perf_counter()
        runner = spark_runner.run(spark, con, policy, rules.load_rules(list(policy.rules.dirs)))
        spark_seconds = time.perf_counter() - started
        spark_findings = spark.table("findings").count()
        spark.stop()
        con.close()

    print(f"\n{events:,} events ({args.n:,} CloudTrail + provenance)")
    print(f"DuckDB correlation + findings   {duck:8.2f} s   {duck_findings:,} findings")
    print(f"Spark local[2] start-up         {startup:8.2f} s")
    print(
        f"Spark local[2] load + run       {spark_seconds:8.2f} s   {spark_findings:,} findings   "
        f"{spark_seconds / duck:.1f}x DuckDB"
    )
    slowest = sorted(runner.timings.items(), key=lambda kv: -kv[1])[:5]
    print("slowest Spark relations: " + ", ".join(f"{name} {s:.1f} s" for name, s in slowest))
    print("findings agree" if spark_findings == duck_findings else "FINDINGS DIFFER")


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"(benchmark wall {time.perf_counter() - started:.0f} s)")
