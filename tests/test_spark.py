"""The differential test (DESIGN §10, issue 12): the same audit on DuckDB and on Spark local[2].

The sample world and every rule case world (tests/rules/<id>/{fires,quiet}) are correlated on
DuckDB and, through nhiaudit.spark_runner, on Spark in one JVM; every derived relation (the chain
links included) and the (rule, source, event_id, message) set must be identical. Marked ``spark``:
deselected by default (it needs ``pip install ".[spark]"`` and Java 17); ``pytest -m spark`` runs it,
and .ci/run does as its own step.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from nhiaudit import correlate, ingest, rules, store
from nhiaudit.policy import load_policy

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[1]
CASES = Path(__file__).parent / "rules"
EVIDENCE_SUFFIXES = (".ndjson", ".json", ".jsonl", ".log", ".gz")
WORLDS = sorted(p for p in CASES.glob("*/*") if p.is_dir() and p.name in ("fires", "quiet"))


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    if os.environ.get("CI"):
        import pyspark  # noqa: F401 - on CI a missing spark extra fails the step, it never skips
    else:
        pytest.importorskip("pyspark", reason='pip install ".[spark]"')
    from nhiaudit import spark_runner

    session = spark_runner.spark_session()
    yield session
    session.stop()


def _store(files: list[Path], policy_file: Path | None) -> tuple[duckdb.DuckDBPyConnection, object]:
    con = store.connect(":memory:")
    result = ingest.ingest(con, files)
    assert not result.unrecognized
    policy = load_policy(policy_file)
    correlate.correlate(con, policy)
    return con, policy


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[str]:
    return sorted(repr(r) for r in con.execute(sql).fetchall())


def assert_same_audit(spark: object, con: duckdb.DuckDBPyConnection, policy: object) -> None:
    """Every relation of spark_runner.OUTPUT_RELATIONS has the same rows on both engines."""
    from nhiaudit import spark_runner

    spark_runner.run(spark, con, policy, rules.load_rules(list(policy.rules.dirs)))
    got = duckdb.connect()
    got.execute("SET TimeZone = 'UTC'")
    spark_runner.to_duckdb(spark_runner.collect(spark), got)
    for name in spark_runner.OUTPUT_RELATIONS:
        columns = [d[0] for d in con.execute(f"SELECT * FROM {name} LIMIT 0").description]
        spark_columns = [d[0] for d in got.execute(f"SELECT * FROM {name} LIMIT 0").description]
        assert spark_columns == columns, name
        select = "SELECT " + ", ".join(f'"{c}"' for c in columns) + f" FROM {name}"
        assert _rows(got, select) == _rows(con, select), name
    key = "SELECT rule, source, event_id, message FROM findings"
    assert set(_rows(got, key)) == set(_rows(con, key))


def test_sample_world_is_identical_on_spark(spark: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    con, policy = _store([Path("sample_logs")], Path("sample_logs/nhiaudit.toml"))
    assert con.execute("SELECT count(*) FROM findings").fetchone()[0] > 0
    assert_same_audit(spark, con, policy)


@pytest.mark.parametrize("world", WORLDS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_rule_case_world_is_identical_on_spark(spark: object, world: Path) -> None:
    files = sorted(p for p in world.iterdir() if p.name.endswith(EVIDENCE_SUFFIXES))
    policy_file = next((p for p in (world / "nhiaudit.toml", world.parent / "nhiaudit.toml") if p.is_file()), None)
    con, policy = _store(files, policy_file)
    assert_same_audit(spark, con, policy)


def _same_json_report(tmp_path: Path, engine: list[str], expect_engine: str) -> None:
    """The sample world's JSON report from ``report <engine options>`` is DuckDB's, byte for byte."""
    from helpers import invoke

    os.environ["SOURCE_DATE_EPOCH"] = "1793750400"
    db = str(tmp_path / "world.duckdb")
    assert invoke(["ingest", "--db", db, "sample_logs"]).exit_code == 0
    policy = ["--policy", "sample_logs/nhiaudit.toml", "--db", db, "--fail-on", "none"]
    duck = invoke(["report", *policy, "--json", str(tmp_path / "duck.json")])
    on_spark = invoke(["report", *policy, *engine, "--json", str(tmp_path / "spark.json")])
    assert duck.exit_code == on_spark.exit_code == 0, on_spark.output
    assert f"engine: {expect_engine}" in on_spark.output
    assert (tmp_path / "spark.json").read_bytes() == (tmp_path / "duck.json").read_bytes()


def test_report_engine_spark_writes_the_same_json_report(
    spark: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1793750400")
    _same_json_report(tmp_path, ["--engine", "spark"], "Spark local[2]")


@pytest.fixture()
def connect_server(tmp_path: Path) -> Iterator[str]:
    """A local Spark Connect server (local[2]) started from the installed pyspark's own jars, and
    its sc:// URL; skipped when pyspark ships no Connect server (3.5 does not: its spark-connect jar
    comes from Maven; 4.x pip packages include it)."""
    pyspark = pytest.importorskip("pyspark")
    home = Path(pyspark.__file__).parent
    jars = sorted((home / "jars").glob("spark-connect_*.jar"))
    if not jars:
        pytest.skip(f"pyspark {pyspark.__version__} ships no Spark Connect server jar")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (tmp_path / "connect-server.log").open("w")
    argv = [str(home / "bin" / "spark-submit"), "--class", "org.apache.spark.sql.connect.service.SparkConnectServer"]
    argv += ["--master", "local[2]", "--driver-memory", "2g", "--conf", f"spark.connect.grpc.binding.port={port}"]
    argv += ["--conf", "spark.ui.enabled=false", "--conf", "spark.sql.shuffle.partitions=2", "spark-internal"]
    server = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "SPARK_HOME": str(home)})
    try:
        deadline = time.monotonic() + 600
        while True:
            assert server.poll() is None, (tmp_path / "connect-server.log").read_text()[-2000:]
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "the Spark Connect server did not listen within 600 s"
            time.sleep(1)
        yield f"sc://localhost:{port}"
    finally:
        server.terminate()
        server.wait(120)
        log.close()


def test_report_through_spark_connect_writes_the_same_json_report(
    connect_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1793750400")
    _same_json_report(tmp_path, ["--engine", "spark", "--spark-remote", connect_server], "Spark Connect")
