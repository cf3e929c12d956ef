"""The evidence store: schema version, migration, read-only opening and the single-writer rule."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from nhiaudit import store as nhistore  # the name ``store`` is the in-memory store fixture
from nhiaudit.errors import StoreError

TABLES = {"meta", "evidence_files", "events", "rejected"}


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute("SELECT table_name FROM duckdb_tables() WHERE NOT temporary").fetchall()
    return {r[0] for r in rows}


def _set_version(path: Path, version: int) -> None:
    con = duckdb.connect(str(path))
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(version)])
    con.close()


def test_in_memory_store_has_the_current_schema(store: duckdb.DuckDBPyConnection) -> None:
    assert store.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
        str(nhistore.SCHEMA_VERSION),
    )
    assert TABLES <= _tables(store)
    columns = [r[0] for r in store.execute("SELECT column_name FROM (DESCRIBE events)").fetchall()]
    assert columns == list(nhistore.EVENT_COLUMNS)


def test_empty_database_is_migrated_to_the_current_version(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    duckdb.connect(str(path)).close()  # a valid DuckDB file with no tables: schema version 0
    raw = duckdb.connect(str(path))
    assert nhistore.schema_version(raw) == 0
    raw.close()

    con = nhistore.connect(path)
    assert nhistore.schema_version(con) == nhistore.SCHEMA_VERSION
    assert TABLES <= _tables(con)
    con.close()
    # Reopening (read-write and read-only) is a no-op: no second migration, no error.
    nhistore.connect(path).close()
    con = nhistore.connect(path, read_only=True)
    assert nhistore.schema_version(con) == nhistore.SCHEMA_VERSION
    con.close()


def test_new_store_file_is_created_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "sub-does-not-matter.duckdb"
    con = nhistore.connect(path)
    assert path.exists()
    assert nhistore.get_meta(con, "schema_version") == str(nhistore.SCHEMA_VERSION)
    con.close()


def test_newer_schema_version_says_to_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "future.duckdb"
    nhistore.connect(path).close()
    _set_version(path, nhistore.SCHEMA_VERSION + 6)
    with pytest.raises(StoreError) as err:
        nhistore.connect(path)
    assert str(err.value) == (
        f"{path}: store schema version {nhistore.SCHEMA_VERSION + 6} is newer than this nhiaudit "
        f"({nhistore.SCHEMA_VERSION}). Upgrade nhiaudit (pip install -U nhiaudit)."
    )


def test_newer_schema_version_read_only_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.duckdb"
    nhistore.connect(path).close()
    _set_version(path, nhistore.SCHEMA_VERSION + 6)
    with pytest.raises(StoreError, match=f"store schema version {nhistore.SCHEMA_VERSION + 6}"):
        nhistore.connect(path, read_only=True)


def test_newer_schema_version_read_only_does_not_advise_ingest(tmp_path: Path) -> None:
    path = tmp_path / "future.duckdb"
    nhistore.connect(path).close()
    _set_version(path, nhistore.SCHEMA_VERSION + 6)
    with pytest.raises(StoreError) as err:
        nhistore.connect(path, read_only=True)
    assert "Upgrade nhiaudit" in str(err.value)


def test_read_only_open_of_a_missing_store(tmp_path: Path) -> None:
    path = tmp_path / "missing.duckdb"
    with pytest.raises(StoreError) as err:
        nhistore.connect(path, read_only=True)
    assert str(err.value) == (
        f"{path}: no store here. Run `nhiaudit ingest PATH...` first, or pass --db / NHIAUDIT_DB."
    )
    assert not path.exists()  # a read-only command never creates a store


def test_a_file_that_is_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "notes.duckdb"
    path.write_text("not a database\n" * 100)
    with pytest.raises(StoreError, match=r"notes\.duckdb: cannot open the store"):
        nhistore.connect(path)
    assert path.read_text() == "not a database\n" * 100  # left untouched


@contextlib.contextmanager
def _held_open(path: Path) -> Iterator[None]:
    """Another Python process holds ``path`` open read-write until the block ends."""
    script = textwrap.dedent(f"""
        import time, duckdb
        con = duckdb.connect({str(path)!r})
        print("open", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
        yield
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.mark.parametrize("read_only", [False, True], ids=["writer", "reader"])
def test_second_process_gets_a_clear_error(tmp_path: Path, read_only: bool) -> None:
    path = tmp_path / "busy.duckdb"
    nhistore.connect(path).close()
    with _held_open(path), pytest.raises(StoreError) as err:
        nhistore.connect(path, read_only=read_only)
    assert str(err.value) == (
        f"{path}: the store is open in another nhiaudit or DuckDB process. Wait for it to finish, or use another --db."
    )


def test_store_is_intact_after_the_other_writer_leaves(tmp_path: Path) -> None:
    path = tmp_path / "busy.duckdb"
    con = nhistore.connect(path)
    con.execute("INSERT INTO meta VALUES ('probe', 'kept')")
    con.close()
    with _held_open(path), pytest.raises(StoreError, match="open in another"):
        nhistore.connect(path)
    con = nhistore.connect(path)
    assert nhistore.get_meta(con, "probe") == "kept"
    assert nhistore.schema_version(con) == nhistore.SCHEMA_VERSION
    con.close()


def test_resolve_db_path_order(tmp_path: Path) -> None:
    option = tmp_path / "a.duckdb"
    assert nhistore.resolve_db_path(option, {"NHIAUDIT_DB": "b.duckdb"}) == option
    assert nhistore.resolve_db_path(None, {"NHIAUDIT_DB": "b.duckdb"}) == Path("b.duckdb")
    assert nhistore.resolve_db_path(None, {}) == Path("nhiaudit.duckdb")


def test_generation_bumps(store: duckdb.DuckDBPyConnection) -> None:
    assert nhistore.get_meta(store, "evidence_generation") is None
    nhistore.bump_generation(store)
    nhistore.bump_generation(store)
    assert nhistore.get_meta(store, "evidence_generation") == "2"


# --- issue 13 item 7: damaged and tampered stores -------------------------------------------------


def _store_with_events(path: Path) -> None:
    con = nhistore.connect(path)
    con.execute("INSERT INTO events (event_id, source, file_sha256, record_index, category, dedupe_key) "
                "SELECT 'e' || i, 'cloudtrail', 'f', i, 'action', 'k' || i FROM range(20000) t(i)")
    con.close()


@pytest.mark.parametrize("damage", ["flipped", "truncated"])
def test_a_damaged_store_is_not_reported_as_locked(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "s.duckdb"
    _store_with_events(path)
    data = bytearray(path.read_bytes())
    if damage == "flipped":
        for i in range(5000, 9000):  # inside the first database header and block
            data[i] ^= 0x55
    else:
        data = data[: len(data) // 3]
    path.write_bytes(bytes(data))
    for read_only in (False, True):
        with pytest.raises(StoreError) as err:
            nhistore.connect(path, read_only=read_only)
        assert str(err.value).startswith(f"{path}: the store file is damaged (")
        assert str(err.value).endswith(
            "Restore it from a backup, or ingest the evidence again into a new --db (the evidence files "
            "themselves are not changed)."
        )
        assert "another" not in str(err.value)


@pytest.mark.parametrize(
    ("tamper", "what"),
    [
        ("DROP TABLE rejected", "table rejected is missing"),
        ("ALTER TABLE events DROP COLUMN dedupe_key", "table events lacks column(s) dedupe_key"),
    ],
)
def test_a_tampered_store_says_what_was_altered(tmp_path: Path, tamper: str, what: str) -> None:
    path = tmp_path / "s.duckdb"
    nhistore.connect(path).close()
    with contextlib.closing(duckdb.connect(str(path))) as con:
        con.execute(tamper)
    with pytest.raises(StoreError) as err:
        nhistore.connect(path, read_only=True)
    assert str(err.value) == (
        f"{path}: the store was altered outside nhiaudit ({what}). Restore it from a backup, or ingest "
        "the evidence again into a new --db."
    )


def test_a_garbage_schema_version_is_a_message(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    nhistore.connect(path).close()
    with contextlib.closing(duckdb.connect(str(path))) as con:
        con.execute("UPDATE meta SET value = 'v2; DROP' WHERE key = 'schema_version'")
    for read_only in (False, True):
        with pytest.raises(StoreError, match="the schema version in meta is not a number"):
            nhistore.connect(path, read_only=read_only)


def test_disk_full_while_report_correlates_is_a_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nhiaudit import correlate, session

    path = tmp_path / "s.duckdb"
    _store_with_events(path)

    def full(con, policy):
        raise duckdb.IOException("Could not write file \"s.duckdb.wal\": No space left on device")

    monkeypatch.setattr(correlate, "correlate", full)
    with pytest.raises(StoreError) as err:
        session.open_audit(path)
    assert str(err.value).startswith(
        f"{path}: could not rebuild the derived tables (Could not write file \"s.duckdb.wal\": No "
        "space left on device). Free disk space"
    )
