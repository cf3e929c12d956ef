"""Correlation and trace speed on N events, in one run.

    python benchmarks/correlate.py 1000000

Uses the CloudTrail world of ``benchmarks/ingest.py`` (agents assuming task-tagged roles and acting
with the keys) plus provenance for its tasks (a task record for each task id, an approval for 90 % of
them, grants for the approvers), then measures, each in its own process:

- ingest: ``nhiaudit ingest`` of the CloudTrail files and the provenance file (for the ratio below);
- correlation: ``correlate.correlate`` (every derived table rebuilt) — goal: within 3x of ingest;
- ``nhiaudit trace ID`` wall time on that store (CLI start-up included) against a bare DuckDB point
  query on the same file from a Python process (``SELECT * FROM events WHERE event_id = ?``, with
  pandas marked absent as trace does, so that neither pays DuckDB's pandas import) — goal: trace
  under 0.2 s at a million events;
- ``nhiaudit --help`` against ``python -c "import duckdb"`` — goal: within 2x.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import DATA, generate, run  # noqa: E402  (the sibling benchmark's generator)

CORRELATE = """
import sys, time
from pathlib import Path
from nhiaudit import correlate, store
from nhiaudit.policy import load_policy
con = store.connect(Path(sys.argv[1]))
policy = load_policy(Path(sys.argv[2]))
started = time.perf_counter()
timings = correlate.correlate(con, policy)
total = time.perf_counter() - started
lines = [str(total)]
lines += [f"  {name:<24}{seconds:8.2f} s" for name, seconds in timings.items()]
lines.append(f"chains {con.execute('SELECT count(*) FROM chains').fetchone()[0]}")
lines.append(f"verdicts {con.execute('SELECT verdict, count(*) FROM chains GROUP BY 1 ORDER BY 1').fetchall()}")
con.close()
Path(sys.argv[3]).write_text("\\n".join(lines))  # a file, not stdout: nothing else can write into it
"""

POINT_QUERY = """
import sys
sys.modules["pandas"] = None  # as `nhiaudit trace` does: DuckDB would import pandas for the parameter
import duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print(con.execute("SELECT * FROM events WHERE event_id = ?", [sys.argv[2]]).fetchall()[0][0])
"""

POLICY = """
[identities]
brokers = []
[risk]
high = ["iam:*", "kms:*", "s3:DeleteObject"]
[audit]
min_tier = "medium"
[authority]
medium = ["team-lead", "change-manager"]
high = ["change-manager"]
critical = ["security-officer"]
"""


def write_provenance(db: Path, out: Path) -> int:
    """Task, approval and grant records for every task id the CloudTrail world stamped."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute(
        """SELECT task_id, min(occurred_at), max(occurred_at) FROM events
           WHERE task_id IS NOT NULL GROUP BY task_id ORDER BY task_id"""
    ).fetchall()
    con.close()
    approvers = [f"approver{n}@example.com" for n in range(10)]
    with open(out, "w", encoding="utf-8") as fh:
        for n, approver in enumerate(approvers):
            role = "change-manager" if n % 2 else "team-lead"
            fh.write(
                json.dumps(
                    {
                        "record_type": "grant",
                        "approver": approver,
                        "role": role,
                        "valid_from": "2025-01-01T00:00:00Z",
                        "valid_to": "2027-01-01T00:00:00Z",
                    }
                )
                + "\n"
            )
        for n, (task_id, first, last) in enumerate(rows):
            start = first.strftime("%Y-%m-%dT%H:%M:%SZ")
            end = last.strftime("%Y-%m-%dT%H:%M:%SZ")
            fh.write(
                json.dumps(
                    {
                        "record_type": "task",
                        "task_id": task_id,
                        "agent_id": f"agent-{n % 24:02d}",
                        "intent": "benchmark task",
                        "requested_by": "requester@example.com",
                        "started_at": start,
                        "ended_at": end,
                        "status": "completed",
                    }
                )
                + "\n"
            )
            if n % 10:
                fh.write(
                    json.dumps(
                        {
                            "record_type": "approval",
                            "approval_id": f"APR-{n}",
                            "task_id": task_id,
                            "approver": approvers[n % 10],
                            "decision": "approved",
                            "decided_at": start,
                            "scope": {
                                "actions": ["s3:*", "ec2:*", "iam:*", "kms:*", "secretsmanager:*"],
                                "resources": ["*"],
                            },
                        }
                    )
                    + "\n"
                )
    return len(rows)


NHIAUDIT = [sys.executable, "-m", "nhiaudit"]


@dataclass
class BenchWorld:
    """The benchmark world of one N: a store of N CloudTrail records plus their provenance."""

    n: int
    db: Path
    policy: Path
    events: int
    tasks: int
    ingest_seconds: float  # the CloudTrail folder's ingest (CLI wall time)
    provenance_seconds: float  # the provenance file's ingest
    ingest_rss: int


def build_world(n: int, tmp: Path) -> BenchWorld:
    """The one recipe every benchmark's world follows: generate N CloudTrail records (cached under
    benchmarks/data), ingest them into ``tmp/store.duckdb``, write provenance for their tasks and
    ingest it; the policy is POLICY at ``tmp/nhiaudit.toml``. Each ingest runs in its own process."""
    data = DATA / f"cloudtrail-{n}"
    generate(n, data)
    db, policy = tmp / "store.duckdb", tmp / "nhiaudit.toml"
    policy.write_text(POLICY, encoding="utf-8")
    ingest_wall, _, ingest_rss, _ = run([*NHIAUDIT, "ingest", "--db", str(db), str(data)])
    provenance = tmp / "provenance"
    provenance.mkdir()
    tasks = write_provenance(db, provenance / "provenance.ndjson")
    prov_wall, _, _, _ = run([*NHIAUDIT, "ingest", "--db", str(db), str(provenance)])
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        events = con.execute("SELECT count(*) FROM events").fetchone()[0]
    return BenchWorld(n, db, policy, events, tasks, ingest_wall, prov_wall, ingest_rss)


def sizes_argument(doc: str | None, many: bool = False) -> list[int]:
    """The benchmark's N (or Ns) from the command line, with the script's docstring as help."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if many:
        parser.add_argument("n", type=int, nargs="+", help="numbers of CloudTrail records (one world each)")
    else:
        parser.add_argument("n", type=int, nargs=1, help="number of CloudTrail records")
    return parser.parse_args().n


def main() -> None:
    (n,) = sizes_argument(__doc__)
    nhiaudit = shutil.which("nhiaudit") or str(Path(sys.executable).with_name("nhiaudit"))
    with tempfile.TemporaryDirectory(prefix="nhiaudit-bench-") as tmp:
        world = build_world(n, Path(tmp))
        db, policy, tasks = world.db, world.policy, world.tasks
        ingest_wall, prov_wall, ingest_rss = world.ingest_seconds, world.provenance_seconds, world.ingest_rss
        corr_file = Path(tmp) / "correlate.out"
        corr_wall, _, corr_rss, _ = run([sys.executable, "-c", CORRELATE, str(db), str(policy), str(corr_file)])
        corr_out = corr_file.read_text(encoding="utf-8")
        corr_seconds = float(corr_out.splitlines()[0])

        import duckdb

        con = duckdb.connect(str(db), read_only=True)
        # A late action of a task-tagged session: its chain has every link.
        target = con.execute(
            """SELECT event_id FROM chains WHERE task_id IS NOT NULL AND approval_id IS NOT NULL
               ORDER BY occurred_at DESC LIMIT 1"""
        ).fetchone()[0]
        events = con.execute("SELECT count(*) FROM events").fetchone()[0]
        con.close()
        trace_runs = [
            run([nhiaudit, "trace", "--db", str(db), "--policy", str(policy), target])[0] for _ in range(5)
        ]
        point_runs = [run([sys.executable, "-c", POINT_QUERY, str(db), target])[0] for _ in range(5)]
        trace_json = run([nhiaudit, "trace", "--db", str(db), "--policy", str(policy), target, "--json"])[3]
        help_runs = [run([nhiaudit, "--help"])[0] for _ in range(5)]
        import_runs = [run([sys.executable, "-c", "import duckdb"])[0] for _ in range(5)]
        verdict = json.loads(trace_json)["verdict"]

    ingest_total = ingest_wall + prov_wall
    trace_best, point_best = min(trace_runs), min(point_runs)
    print(f"\n{events:,} events ({n:,} CloudTrail + provenance for {tasks:,} tasks)")
    print(f"ingest (CLI, both folders)   {ingest_total:8.2f} s   peak RSS {ingest_rss / 1e6:,.0f} MB")
    print(
        f"correlation (library)        {corr_seconds:8.2f} s   peak RSS {corr_rss / 1e6:,.0f} MB   "
        f"{corr_seconds / ingest_total:.2f}x ingest (goal <= 3x)"
    )
    print("\n".join(line for line in corr_out.splitlines()[1:]))
    print(
        f"trace {target} ({verdict}): best {trace_best:.3f} s, median {sorted(trace_runs)[2]:.3f} s "
        f"(goal < 0.2 s)"
    )
    print(
        f"bare DuckDB point query (python -c): best {point_best:.3f} s   "
        f"trace / point query = {trace_best / point_best:.2f}x"
    )
    help_median, import_median = sorted(help_runs)[2], sorted(import_runs)[2]
    print(
        f"nhiaudit --help: median {help_median:.3f} s; python -c 'import duckdb': median {import_median:.3f} s; "
        f"{help_median / import_median:.2f}x (goal <= 2x)"
    )


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"(benchmark wall {time.perf_counter() - started:.0f} s)")
