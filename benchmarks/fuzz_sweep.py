"""Every sample of ../shared/samples under every mutation of tests/test_fuzz.py, once per seed: the
figures for a closing note (files, mutations, crashes, accounting gaps, intact lines lost).

    python benchmarks/fuzz_sweep.py --seeds 1
"""

from __future__ import annotations

import argparse
import gzip
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import test_fuzz  # noqa: E402  (the mutations and checks the test suite uses)
from rich.console import Console  # noqa: E402

from nhiaudit import cli  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()
    cli.console, cli.err_console = Console(width=250), Console(width=250, stderr=True)
    cases = failures = 0
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nhiaudit-fuzz-") as tmp:
        base = Path(tmp)
        for sample in test_fuzz.SAMPLE_FILES:
            for mutation, mutate in sorted(test_fuzz.MUTATIONS.items()):
                for seed in range(args.seeds):
                    cases += 1
                    work = base / f"c{cases}"
                    work.mkdir()
                    original = sample.read_bytes()
                    if sample.suffix == ".gz":
                        original = gzip.decompress(original)
                    name = sample.name.removesuffix(".gz") + (".gz" if mutation == "gzip_damage" else "")
                    path = work / name
                    path.write_bytes(mutate(original, random.Random(seed)))
                    try:
                        _, stdout = test_fuzz.ingest_cli(path, work / "s.duckdb")
                        if (work / "s.duckdb").exists():
                            test_fuzz.check_store(work / "s.duckdb", stdout)
                    except AssertionError as exc:
                        failures += 1
                        problems.append(f"{mutation} of {sample.name} (seed {seed}): {str(exc)[:200]}")
    print(
        f"fuzz sweep: {len(test_fuzz.SAMPLE_FILES)} files x {len(test_fuzz.MUTATIONS)} mutations x {args.seeds} "
        f"seed(s) = {cases} cases, {failures} failure(s) (crash, exit code or accounting gap)"
    )
    for problem in problems:
        print("  " + problem)


if __name__ == "__main__":
    main()
