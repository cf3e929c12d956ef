"""Incremental re-audit: the correlation after one small new file, against a full re-correlation.

    python benchmarks/incremental.py --store /path/to/store.duckdb --policy /path/to/nhiaudit.toml
    python benchmarks/incremental.py 1000000        # builds the world of benchmarks/correlate.py first

The store is copied to a temporary folder (never written in place). Each step runs in its own
process, with ``correlate.correlate`` timed in it (what ``report`` runs before rendering):

1. a full correlation (every derived table rebuilt, and the incremental keys built);
2. a file of 100 CloudTrail actions by credentials the store has never seen (new keys, new users),
   then the next correlation: its mode, closure and seconds — the ratio to step 1;
3. a file of 100 copies (new event ids) of stored actions: uses of old credentials, whose chains
   reach their issuances, tasks, approvals and approvers' grants — the same figures.

Incremental correlation re-runs the correlation SQL over the events the new ones reach through the
keys correlation joins on (nhiaudit.incremental); when that reaches more than half the store it
re-correlates everything instead (meta correlated_mode says which and why).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import run  # noqa: E402  (the sibling benchmark's child-process timer)

CORRELATE = """
import json, sys, time
from pathlib import Path
from nhiaudit import correlate, store
from nhiaudit.policy import load_policy
con = store.connect(Path(sys.argv[1]))
store.set_memory_limit(con, store.memory_limit(store.DEFAULT_INGEST_MEMORY))
policy = load_policy(Path(sys.argv[2]))
started = time.perf_counter()
timings = correlate.correlate(con, policy, full=sys.argv[3] == "full")
total = time.perf_counter() - started
events = con.execute("SELECT count(*) FROM events").fetchone()[0]
print(json.dumps({"seconds": total, "mode": store.get_meta(con, "correlated_mode"), "events": events,
                  "steps": timings}))
"""


def small_files(db: Path, out: Path) -> tuple[Path, Path]:
    """(new credentials, uses of old credentials): 100 CloudTrail records each, from stored actions."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    raws = [
        json.loads(r[0])
        for r in con.execute(
            """SELECT raw FROM events WHERE source = 'cloudtrail' AND category = 'action'
               ORDER BY hash(event_id) LIMIT 100"""
        ).fetchall()
    ]
    con.close()
    fresh, old = [], []
    for n, record in enumerate(raws):
        reuse = dict(record, eventID=f"bench-reuse-{n:04d}-0000-0000-000000000000")
        old.append(reuse)
        new = dict(record, eventID=f"bench-new-{n:04d}-0000-0000-000000000000")
        new["userIdentity"] = {
            "type": "IAMUser",
            "principalId": f"AIDABENCHNEW{n:08d}",
            "arn": f"arn:aws:iam::111122223333:user/bench-new-{n}",
            "accountId": "111122223333",
            "accessKeyId": f"AKIABENCHNEW{n:08d}",
            "userName": f"bench-new-{n}",
        }
        fresh.append(new)
    paths = []
    for name, records in (("new-credentials.json", fresh), ("old-credentials.json", old)):
        path = out / name
        path.write_text(json.dumps({"Records": records}), encoding="utf-8")
        paths.append(path)
    return paths[0], paths[1]


def correlate_once(db: Path, policy: Path, mode: str) -> dict:
    wall, _, rss, stdout = run([sys.executable, "-c", CORRELATE, str(db), str(policy), mode])
    result = json.loads(stdout.strip().splitlines()[-1])
    result["wall"], result["rss"] = wall, rss
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", type=int, nargs="?", help="build the correlate.py world of N CloudTrail records")
    parser.add_argument("--store", type=Path, help="an existing store (copied, never written)")
    parser.add_argument("--policy", type=Path, help="its policy")
    args = parser.parse_args()
    nhiaudit = shutil.which("nhiaudit") or str(Path(sys.executable).with_name("nhiaudit"))
    with tempfile.TemporaryDirectory(prefix="nhiaudit-incr-") as tmp:
        db, policy = Path(tmp) / "store.duckdb", Path(tmp) / "nhiaudit.toml"
        if args.store is not None:
            shutil.copyfile(args.store, db)
            policy.write_text(args.policy.read_text(encoding="utf-8") if args.policy else "", encoding="utf-8")
        else:
            from correlate import POLICY, write_provenance
            from ingest import DATA, generate

            if args.n is None:
                parser.error("give N or --store")
            data = DATA / f"cloudtrail-{args.n}"
            generate(args.n, data)
            policy.write_text(POLICY, encoding="utf-8")
            run([nhiaudit, "ingest", "--db", str(db), str(data)])
            (Path(tmp) / "provenance").mkdir()
            write_provenance(db, Path(tmp) / "provenance" / "provenance.ndjson")
            run([nhiaudit, "ingest", "--db", str(db), str(Path(tmp) / "provenance")])
        full = correlate_once(db, policy, "full")
        print(f"{full['events']:,} events; machine: 2 cores shared with other jobs (one run each)")
        print(f"full correlation           {full['seconds']:8.2f} s   peak RSS {full['rss'] / 1e6:,.0f} MB")
        for name, path in zip(("new credentials", "old credentials"), small_files(db, Path(tmp)), strict=True):
            run([nhiaudit, "ingest", "--db", str(db), str(path)])
            step = correlate_once(db, policy, "auto")
            reached = step["steps"].get("incremental closure events")
            print(
                f"+100 records, {name:<16}{step['seconds']:7.2f} s   {step['seconds'] / full['seconds']:.3f}x full   "
                f"mode: {step['mode']}" + (f"   (closure: {reached:,.0f} events)" if reached is not None else "")
            )
            for key, seconds in step["steps"].items():
                if key not in ("mode", "incremental closure events") and seconds >= 0.05:
                    print(f"      {key:<26}{seconds:7.2f} s")


if __name__ == "__main__":
    main()
