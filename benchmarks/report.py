"""Report speed and size on N CloudTrail records, each step in its own process.

    python benchmarks/report.py 100000

Uses the CloudTrail world of ``benchmarks/ingest.py`` and the provenance of ``benchmarks/correlate.py``
(tasks, approvals for 90 % of them, grants), then measures:

- correlation: ``nhiaudit sql --policy P "SELECT 1"`` on the fresh store (it rebuilds every derived
  table, the stored findings included, then answers);
- report: ``nhiaudit report --output-dir DIR --fail-on none`` on the correlated store, every format
  at once — wall time, peak RSS, the size of each output, the SARIF result count and its gzip size
  (GitHub code scanning: at most 25,000 results a run, 10 MB gzip), the JUnit size (GitLab: 30 MB);
- DuckDB alone: one ``COPY`` of the stored findings joined to their chains to a JSON file, from a
  bare Python process: what exporting the same facts costs without nhiaudit's writers.

Goals (issue 11): every output within its consumer's limit, HTML under 20 MB, report under 2x the
correlation time, peak memory under 2 GB at the default --memory-limit.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from correlate import build_world, sizes_argument  # noqa: E402  (the sibling benchmarks' world)
from ingest import run  # noqa: E402

DUCKDB_EXPORT = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
con.execute(f\"\"\"COPY (SELECT f.*, c.verdict, c.tier FROM findings f
                      LEFT JOIN chains c USING (source, event_id)) TO '{sys.argv[2]}' (FORMAT json)\"\"\")
"""


def main() -> None:
    (n,) = sizes_argument(__doc__)
    nhiaudit = shutil.which("nhiaudit") or str(Path(sys.executable).with_name("nhiaudit"))
    with tempfile.TemporaryDirectory(prefix="nhiaudit-bench-") as tmp:
        world = build_world(n, Path(tmp))
        db, policy, out = world.db, world.policy, Path(tmp) / "reports"
        corr_wall, _, corr_rss, _ = run([nhiaudit, "sql", "--db", str(db), "--policy", str(policy), "SELECT 1"])
        os.environ["SOURCE_DATE_EPOCH"] = "1700000000"  # the children's reports are byte-stable
        report_argv = [nhiaudit, "report", "--db", str(db), "--policy", str(policy), "--output-dir", str(out)]
        rep_wall, rep_cpu, rep_rss, _ = run([*report_argv, "--fail-on", "none"])
        export = Path(tmp) / "duckdb.json"
        duck_wall, _, duck_rss, _ = run([sys.executable, "-c", DUCKDB_EXPORT, str(db), str(export)])
        sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir())}
        sarif_text = (out / "nhiaudit.sarif").read_text(encoding="utf-8")
        sarif = json.loads(sarif_text)["runs"][0]
        sarif_gzip = len(gzip.compress(sarif_text.encode()))
        import duckdb

        con = duckdb.connect(str(db), read_only=True)
        events, chains, findings = con.execute(
            "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM chains), (SELECT count(*) FROM findings)"
        ).fetchone()
        con.close()

    print(f"\n{events:,} events, {chains:,} audited actions, {findings:,} findings ({n:,} CloudTrail records)")
    print(f"correlation (sql SELECT 1 on a fresh store) {corr_wall:8.2f} s   peak RSS {corr_rss / 1e6:,.0f} MB")
    print(
        f"report, every format                        {rep_wall:8.2f} s   peak RSS {rep_rss / 1e6:,.0f} MB   "
        f"cpu {rep_cpu:.1f} s   {rep_wall / corr_wall:.2f}x correlation (goal < 2x)"
    )
    print(
        f"DuckDB alone: COPY findings+chains to JSON  {duck_wall:8.2f} s   peak RSS {duck_rss / 1e6:,.0f} MB   "
        f"report / DuckDB alone = {rep_wall / duck_wall:.1f}x"
    )
    for name, size in sizes.items():
        print(f"  {name:<22}{size / 1e6:10.1f} MB")
    aggregation = sarif["properties"].get("aggregation")
    print(
        f"SARIF: {len(sarif['results']):,} results (GitHub: <= 25,000), {sarif_gzip / 1e6:.1f} MB gzip (<= 10 MB)"
        + (f"; aggregated {aggregation['findings']:,} findings by {aggregation['grouped_by']}" if aggregation else "")
    )
    print(f"JUnit: {sizes.get('nhiaudit.junit.xml', 0) / 1e6:.1f} MB (GitLab: <= 30 MB)")
    goals = [
        ("SARIF results <= 25,000", len(sarif["results"]) <= 25_000),
        ("SARIF gzip < 10 MB", sarif_gzip < 10e6),
        ("JUnit < 30 MB", sizes.get("nhiaudit.junit.xml", 0) < 30e6),
        ("HTML < 20 MB", sizes.get("nhiaudit.html", 0) < 20e6),
        ("report < 2x correlation", rep_wall < 2 * corr_wall),
        ("peak RSS < 2 GB", rep_rss < 2e9),
    ]
    print("goals: " + ", ".join(f"{name} {'ok' if met else 'MISSED'}" for name, met in goals))


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"(benchmark wall {time.perf_counter() - started:.0f} s)")
