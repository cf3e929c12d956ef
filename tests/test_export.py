"""``nhiaudit export DIR``: the store as Hive-partitioned Parquet that other engines read as is,
a deterministic manifest, and re-export that rewrites only the partitions whose events changed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.dataset as ds
import pytest
from helpers import invoke, said

from nhiaudit import export as export_module
from nhiaudit import ingest, lake, store

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "sample_logs" / "nhiaudit.toml"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, sample_world, copy_store) -> Path:
    return copy_store(sample_world[1], tmp_path_factory.mktemp("world") / "world.duckdb")


def export(db: Path, folder: Path, *more: str) -> dict:
    result = invoke(["export", "--db", str(db), str(folder), *more])
    assert result.exit_code == 0, result.output
    return json.loads((folder / lake.MANIFEST).read_text(encoding="utf-8"))


def store_counts(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql).fetchall()


def test_polars_and_pyarrow_read_the_lake_as_is(world: Path, tmp_path: Path) -> None:
    folder = tmp_path / "lake"
    manifest = export(world, folder)
    by_source = dict(store_counts(world, "SELECT source, count(*) FROM events GROUP BY 1"))
    assert sum(by_source.values()) == manifest["tables"]["events"]["rows"] > 100

    frame = pl.scan_parquet(folder / "events", hive_partitioning=True).collect()
    assert dict(frame.group_by("source").len().iter_rows()) == by_source
    assert frame.schema["details"] == pl.String and frame.schema["raw"] == pl.String  # not Binary
    assert frame.schema["occurred_at"] == pl.Datetime("us", "UTC")
    # An event without a time is in Hive's NULL partition, read back as a null day.
    assert frame.filter(pl.col("occurred_at").is_null()).get_column("day").null_count() == len(
        frame.filter(pl.col("occurred_at").is_null())
    ) > 0
    raw = frame.filter(pl.col("source") == "cloudtrail").get_column("raw")[0]
    assert json.loads(raw)["eventVersion"]

    dataset = ds.dataset(folder / "events", format="parquet", partitioning="hive")
    assert dataset.count_rows() == sum(by_source.values())
    table = dataset.to_table(columns=["source", "event_id"])
    assert dict(pl.from_arrow(table).group_by("source").len().iter_rows()) == by_source
    for name in ("evidence_files", "rejected", "meta", "audit_runs"):
        (count,) = store_counts(world, f"SELECT count(*) FROM {name}")[0]
        assert ds.dataset(folder / name, format="parquet").count_rows() == count == manifest["tables"][name]["rows"]
        assert pl.scan_parquet(folder / name).collect().height == count


def test_manifest_is_deterministic_and_names_every_file_with_its_sha256(world: Path, tmp_path: Path) -> None:
    first = export(world, tmp_path / "a", "--policy", str(POLICY), "--derived")
    second = export(world, tmp_path / "b", "--policy", str(POLICY), "--derived")
    assert (tmp_path / "a" / lake.MANIFEST).read_bytes() == (tmp_path / "b" / lake.MANIFEST).read_bytes()
    on_disk = sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*.parquet"))
    assert on_disk == sorted(first["files"])
    for name, info in first["files"].items():
        assert lake.sha256_file(tmp_path / "a" / name) == info["sha256"]
        assert (tmp_path / "a" / name).stat().st_size == info["bytes"]
    (generation,) = store_counts(world, "SELECT value FROM meta WHERE key = 'evidence_generation'")[0]
    assert first["evidence_generation"] == int(generation)
    assert first["store_schema_version"] == store.SCHEMA_VERSION and first["lake_version"] == lake.LAKE_VERSION
    assert {"chains", "findings", "event_evidence"} <= set(first["tables"]) and second["derived"] is True
    (chains,) = store_counts(world, "SELECT count(*) FROM chains")[0]
    assert first["tables"]["chains"]["rows"] == chains == pl.scan_parquet(tmp_path / "a" / "chains").collect().height


def _files(folder: Path) -> dict[str, int]:
    """Each Parquet file and its inode: a file rewritten in place or replaced gets another."""
    return {p.relative_to(folder).as_posix(): p.stat().st_ino for p in folder.rglob("*.parquet")}


def test_reexport_after_one_new_file_rewrites_only_the_partitions_it_touched(world: Path, tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    shutil.copy(world, db)
    folder = tmp_path / "lake"
    before = export(db, folder, "--policy", str(POLICY), "--derived")
    files_before = _files(folder)

    again = export(db, folder, "--policy", str(POLICY), "--derived")  # nothing changed: nothing written
    assert again == before and _files(folder) == files_before

    # One CloudTrail record on a day already exported (2026-11-02) and one on a new day.
    lines = (ROOT / "sample_logs" / "cloudtrail" / "extra.ndjson").read_text(encoding="utf-8").splitlines()
    records = []
    for n, when in enumerate(("2026-11-02T23:00:00Z", "2026-11-09T08:00:00Z")):
        record = json.loads(lines[0])
        record.update(eventID=f"f0000000-0000-4000-8000-00000000000{n}", eventTime=when)
        records.append(json.dumps(record))
    new = tmp_path / "new" / "late.ndjson"
    new.parent.mkdir()
    new.write_text("\n".join(records) + "\n", encoding="utf-8")
    with store.connect(db) as con:
        assert ingest.ingest(con, [new]).files[0].loaded == 2

    result = invoke(["export", "--db", str(db), str(folder)])  # and the derived tables are no longer exported
    assert result.exit_code == 0, result.output
    after = json.loads((folder / lake.MANIFEST).read_text(encoding="utf-8"))
    old_parts, new_parts = before["tables"]["events"]["partitions"], after["tables"]["events"]["partitions"]
    touched = {"source=cloudtrail/day=2026-11-02", "source=cloudtrail/day=2026-11-09"}
    assert set(new_parts) == set(old_parts) | touched
    assert {k for k in new_parts if new_parts[k] != old_parts.get(k)} == touched
    same_day = "source=cloudtrail/day=2026-11-02"
    assert new_parts[same_day]["rows"] == old_parts[same_day]["rows"] + 1
    files_after = _files(folder)
    for key, part in new_parts.items():
        for name in part["files"]:
            assert (files_after[name] == files_before.get(name)) == (key not in touched), name
    # The old file of the rewritten partition and the derived tables are gone; the manifest names the rest.
    assert sorted(files_after) == sorted(after["files"])
    assert not any(name.startswith("chains/") for name in files_after) and after["derived"] is False
    assert f"2 of {len(new_parts)} event partitions written" in result.output
    assert after["evidence_generation"] == before["evidence_generation"] + 1


def test_export_refuses_a_folder_that_is_not_a_lake(world: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me", encoding="utf-8")
    result = invoke(["export", "--db", str(world), str(folder)])
    assert result.exit_code == 2
    assert "not an nhiaudit lake" in said(result)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


def test_export_of_an_empty_store_is_an_error(tmp_path: Path) -> None:
    db = tmp_path / "empty.duckdb"
    store.connect(db).close()
    result = invoke(["export", "--db", str(db), str(tmp_path / "lake")])
    assert result.exit_code == 2 and "no events" in said(result)
    assert not (tmp_path / "lake").exists()


def test_reexport_repairs_a_changed_file(world: Path, tmp_path: Path) -> None:
    folder = tmp_path / "lake"
    manifest = export(world, folder)
    name = next(n for n in manifest["files"] if n.startswith("events/source=cloudtrail/"))
    (folder / name).write_bytes(b"PAR1 not what was exported")
    result = invoke(["export", "--db", str(world), str(folder)])
    assert result.exit_code == 0, result.output
    assert f"1 of {len(manifest['tables']['events']['partitions'])} event partitions written" in result.output
    assert lake.sha256_file(folder / name) == manifest["files"][name]["sha256"]
    assert json.loads((folder / lake.MANIFEST).read_text(encoding="utf-8")) == manifest


def test_an_interrupted_export_leaves_the_previous_lake_whole(
    world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "store.duckdb"
    shutil.copy(world, db)
    folder = tmp_path / "lake"
    before = export(db, folder)
    with store.connect(db) as con:  # new evidence: one partition changes
        con.execute("UPDATE events SET action = 'changed' WHERE source = 'kong'")

    def disk_full(path: Path, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_module, "_replace", disk_full)
    result = invoke(["export", "--db", str(db), str(folder)])
    assert result.exit_code == 2 and "could not write the lake (No space left on device)" in said(result)
    monkeypatch.undo()
    # The old manifest still describes the lake exactly; the new partition's file is an orphan.
    assert json.loads((folder / lake.MANIFEST).read_text(encoding="utf-8")) == before
    assert lake.open_lake(folder).manifest == before
    assert len(_files(folder)) == len(before["files"]) + 1
    after = export(db, folder)
    assert sorted(_files(folder)) == sorted(after["files"]) and not (folder / ".export-staging").exists()


def test_one_export_at_a_time_per_lake(world: Path, tmp_path: Path) -> None:
    import fcntl

    folder = tmp_path / "lake"
    export(world, folder)
    with open(folder / ".export.lock", "a+b") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = invoke(["export", "--db", str(world), str(folder)])
    assert result.exit_code == 2 and "another nhiaudit export is writing this lake" in said(result)
