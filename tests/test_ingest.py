"""Ingest framework: bad evidence (DESIGN §9), idempotency, per-file transactions, errors.

Every case checks that ingest does not raise on bad input and that, per file,
records read = loaded + rejected + duplicates (nothing silently lost).
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path
from typing import Any

import duckdb
import pytest

from nhiaudit import ingest
from nhiaudit import store as nhistore
from nhiaudit.errors import NhiauditError
from nhiaudit.sources import cloudtrail


def record(i: int, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "eventVersion": "1.08",
        "eventID": f"evt-{i:06d}",
        "eventTime": f"2024-05-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
        "eventSource": "s3.amazonaws.com",
        "eventName": "GetObject",
        "awsRegion": "eu-west-1",
        "recipientAccountId": "111122223333",
        "userIdentity": {
            "type": "AssumedRole",
            "accessKeyId": "ASIAAGENTKEY00000001",
            "arn": "arn:aws:sts::111122223333:assumed-role/agent/t-1",
        },
        "requestParameters": {"bucketName": "reports", "key": f"k/{i}"},
    }
    base.update(fields)
    return base


def ndjson(records: list[Any]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def ingest_one(con: duckdb.DuckDBPyConnection, path: Path, source: str | None = None) -> ingest.FileResult:
    result = ingest.ingest(con, [path], source=source)
    assert not result.unrecognized
    (file_result,) = result.files
    assert_balanced(con, file_result)
    return file_result


def assert_balanced(con: duckdb.DuckDBPyConnection, result: ingest.FileResult) -> None:
    """read = loaded + rejected + duplicates, in the result and in the stored custody row."""
    assert result.read == result.loaded + result.rejected + result.duplicates
    if result.already_ingested:
        return
    row = con.execute(
        """SELECT records_read, records_loaded, records_rejected, records_duplicate FROM evidence_files
        WHERE sha256 = ?""",
        [result.sha256],
    ).fetchone()
    assert row == (result.read, result.loaded, result.rejected, result.duplicates)
    assert (
        con.execute("SELECT count(*) FROM events WHERE file_sha256 = ?", [result.sha256]).fetchone()[0] == result.loaded
    )
    assert (
        con.execute("SELECT count(*) FROM rejected WHERE file_sha256 = ?", [result.sha256]).fetchone()[0]
        == result.rejected
    )


def rejected(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    return con.execute("SELECT record_index, line, reason, raw FROM rejected ORDER BY line NULLS LAST").fetchall()


def event_ids(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute("SELECT event_id FROM events ORDER BY event_id").fetchall()]


def counts(con: duckdb.DuckDBPyConnection) -> tuple[int, int, int]:
    return con.execute(
        "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM evidence_files), (SELECT count(*) FROM rejected)"
    ).fetchone()


# --- damaged gzip ----------------------------------------------------------------------------------

RECORDS = [record(i) for i in range(300)]


def complete_lines_in(prefix: bytes) -> int:
    """How many whole lines the decompressible prefix of a cut gzip holds (independent of nhiaudit)."""
    text = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(prefix)
    return text.count(b"\n")


def test_truncated_gzip_loads_the_good_lines(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    data = gzip.compress(ndjson(RECORDS).encode())
    cut = data[: len(data) // 2]
    path = tmp_path / "cut.ndjson.gz"
    path.write_bytes(cut)
    good = complete_lines_in(cut)
    assert 0 < good < len(RECORDS)

    result = ingest_one(store, path)
    assert (result.loaded, result.rejected, result.read) == (good, 1, good + 1)
    ((index, line, reason, raw),) = rejected(store)
    assert reason.startswith("gzip stream ends early (truncated file): records after byte ")
    assert reason.endswith("of the decompressed stream are lost; the partial record at the break was dropped")
    assert (index, line, raw) == (None, None, None)
    assert event_ids(store) == [r["eventID"] for r in RECORDS[:good]]
    assert result.note == reason


def test_gzip_missing_only_its_trailer_is_flagged(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    """DuckDB reads this file without complaint; the CRC and length are missing all the same."""
    data = gzip.compress(ndjson(RECORDS).encode())
    path = tmp_path / "no-trailer.ndjson.gz"
    path.write_bytes(data[:-8])
    result = ingest_one(store, path)
    assert (result.loaded, result.rejected) == (len(RECORDS), 1)
    assert rejected(store)[0][2].startswith("gzip stream ends early (truncated file)")


def test_truncated_gzip_cut_between_lines(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    """A cut that falls on a line boundary would otherwise lose the rest of the file silently."""
    text = ndjson(RECORDS).encode()
    first_half = text[: text.index(b"\n", len(text) // 2) + 1]
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    # A full flush makes the compressed bytes so far decode to exactly first_half.
    cut = compressor.compress(first_half) + compressor.flush(zlib.Z_FULL_FLUSH)
    path = tmp_path / "cut-on-line.ndjson.gz"
    path.write_bytes(cut)
    good = first_half.count(b"\n")
    result = ingest_one(store, path)
    assert (result.loaded, result.rejected) == (good, 1)
    assert "truncated" in rejected(store)[0][2]


def test_corrupt_gzip_is_not_trusted(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    data = bytearray(gzip.compress(ndjson(RECORDS).encode()))
    data[-8] ^= 0xFF  # the CRC: the data decompresses, its checksum does not match
    path = tmp_path / "bad-crc.ndjson.gz"
    path.write_bytes(bytes(data))
    result = ingest_one(store, path)
    assert (result.read, result.loaded, result.rejected) == (1, 0, 1)
    reason = rejected(store)[0][2]
    assert reason.startswith("gzip data is corrupt (")
    assert "fails its integrity check, so none of its records are loaded" in reason


def _whole_before_cut(data: bytes, records: list[dict[str, Any]], separators: tuple[str, str]) -> int:
    """How many of ``records`` a cut gzip of ``{"Records": records}`` holds whole (by serializing them)."""
    readable = len(zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data))
    return sum(
        len(json.dumps({"Records": records[: n + 1]}, separators=separators)) - 2 <= readable
        for n in range(len(records))
    )


@pytest.mark.parametrize("separators", [(",", ":"), (", ", ": ")], ids=["compact", "python"])
def test_truncated_gzip_records_document(
    store: duckdb.DuckDBPyConnection, tmp_path: Path, separators: tuple[str, str]
) -> None:
    # An S3 delivery file is one line: the records complete before the break load, the damage is
    # one rejected record (issue 13).
    data = gzip.compress(json.dumps({"Records": RECORDS}, separators=separators).encode())
    path = tmp_path / "111122223333_CloudTrail_eu-west-1_cut.json.gz"
    path.write_bytes(data[: len(data) // 2])
    whole = _whole_before_cut(data[: len(data) // 2], RECORDS, separators)
    assert 0 < whole < len(RECORDS)
    result = ingest_one(store, path)
    assert (result.read, result.loaded, result.rejected) == (whole + 1, whole, 1)
    assert event_ids(store) == sorted(r["eventID"] for r in RECORDS[:whole])
    (reason,) = [r[2] for r in rejected(store)]
    assert reason.startswith("gzip stream ends early (truncated file): records after byte ")


def test_truncated_gzip_array_pretty_printed(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    text = json.dumps(RECORDS[:40], indent=2).encode()
    data = gzip.compress(text)
    path = tmp_path / "export.json.gz"
    path.write_bytes(data[: len(data) * 3 // 4])
    readable = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[: len(data) * 3 // 4])
    whole = sum(len(json.dumps(RECORDS[: n + 1], indent=2)) - 2 <= len(readable) for n in range(40))
    result = ingest_one(store, path)
    assert (result.loaded, result.rejected) == (whole, 1)
    assert event_ids(store) == sorted(r["eventID"] for r in RECORDS[:whole])


def test_truncated_gzip_document_cut_in_its_first_record(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    data = gzip.compress(json.dumps({"Records": [record(1, padding="x" * 5000)]}).encode())
    path = tmp_path / "cut.json.gz"
    path.write_bytes(data[: len(data) // 2])
    result = ingest_one(store, path)
    assert (result.read, result.loaded, result.rejected) == (1, 0, 1)
    assert "gzip stream ends early (truncated file)" in rejected(store)[0][2]


# --- not JSON, invalid lines, wrong types -----------------------------------------------------------


def test_file_that_is_not_json_at_all(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "notes.log"
    path.write_text("this is not a log\njust text\n")
    result = ingest.ingest(store, [path])
    assert result.unrecognized == [path] and result.files == []
    assert counts(store) == (0, 0, 0)

    forced = ingest_one(store, path, source="cloudtrail")
    assert (forced.read, forced.loaded, forced.rejected) == (1, 0, 1)
    ((index, line, reason, raw),) = rejected(store)
    assert reason.startswith("cloudtrail could not read the file: ")
    assert "Malformed JSON" in reason
    assert forced.note == reason


def test_binary_garbage_forced(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "blob.json"
    path.write_bytes(bytes(range(256)) * 40)
    result = ingest_one(store, path, source="cloudtrail")
    assert (result.read, result.rejected, result.loaded) == (1, 1, 0)


def test_looks_like_cloudtrail_but_is_broken(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"Records": [{"eventVersion": "1.08", "eventSource": "s3.amazonaws.com", oops}]}')
    assert ingest.detect(path) == "cloudtrail"
    result = ingest_one(store, path)
    assert (result.read, result.rejected) == (1, 1)
    assert rejected(store)[0][2].startswith("cloudtrail could not read the file: Invalid Input Error: Malformed JSON")


def test_invalid_json_line_among_good_ones(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "mixed.ndjson"
    path.write_text(ndjson(RECORDS[:2]) + '{"eventVersion": "1.08", "eventID": "cut-off\n' + ndjson(RECORDS[2:4]))
    result = ingest_one(store, path)
    assert (result.read, result.loaded, result.rejected) == (5, 4, 1)
    ((index, line, reason, raw),) = rejected(store)
    assert (index, line) == (None, 3)
    assert reason == "line 3: not valid JSON (truncated or malformed record)"
    assert raw == '{"eventVersion": "1.08", "eventID": "cut-off'
    lines = store.execute("SELECT line FROM events ORDER BY record_index").fetchall()
    assert [r[0] for r in lines] == [1, 2, 4, 5]


def test_bad_line_after_a_big_first_record(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    """The first line is longer than the head: only the bad line is lost, line numbers stay right."""
    big = record(0, requestParameters={"bucketName": "reports", "policy": "p" * 20_000})
    path = tmp_path / "big-first.ndjson"
    path.write_text(ndjson([big, RECORDS[1], RECORDS[2]]) + "{not json\n" + ndjson([RECORDS[3]]))
    result = ingest_one(store, path)
    assert (result.read, result.loaded, result.rejected) == (5, 4, 1)
    assert rejected(store)[0][1:3] == (4, "line 4: not valid JSON (truncated or malformed record)")
    assert store.execute("SELECT event_id, line FROM events ORDER BY record_index").fetchall() == [
        ("evt-000000", 1),
        ("evt-000001", 2),
        ("evt-000002", 3),
        ("evt-000003", 5),
    ]


def test_big_first_record_keeps_line_numbers(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    big = record(0, requestParameters={"bucketName": "reports", "policy": "p" * 20_000})
    path = tmp_path / "big-first-ok.ndjson"
    path.write_text(ndjson([big, *RECORDS[1:4]]))
    ingest_one(store, path)
    assert store.execute("SELECT record_index, line FROM events ORDER BY record_index").fetchall() == [
        (0, 1),
        (1, 2),
        (2, 3),
        (3, 4),
    ]


def test_line_separator_inside_a_string_is_not_a_line_break(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    """U+2028 is legal unescaped in a JSON string; only "\\n" ends an NDJSON line."""
    first = record(0, userAgent="agent\u2028v2\u2029")
    path = tmp_path / "separators.ndjson"
    path.write_text(json.dumps(first, ensure_ascii=False) + "\n" + ndjson(RECORDS[1:3]), encoding="utf-8")
    ingest_one(store, path)
    rows = store.execute("SELECT line, user_agent FROM events ORDER BY record_index").fetchall()
    assert rows == [(1, "agent\u2028v2\u2029"), (2, None), (3, None)]


def test_concatenated_documents_keep_file_order(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "two-documents.json"
    path.write_text(
        json.dumps({"Records": RECORDS[5:8]}, indent=2) + "\n" + json.dumps({"Records": RECORDS[0:2]}, indent=2)
    )
    result = ingest_one(store, path)
    assert (result.read, result.loaded) == (5, 5)
    order = store.execute("SELECT event_id FROM events ORDER BY record_index").fetchall()
    assert [r[0] for r in order] == [r["eventID"] for r in RECORDS[5:8] + RECORDS[0:2]]


@pytest.mark.parametrize("content", ['{"Records": []}', "[]", '{"Records": []}\n{"Records": []}\n'])
def test_documents_without_records(store: duckdb.DuckDBPyConnection, tmp_path: Path, content: str) -> None:
    path = tmp_path / "nothing-inside.json"
    path.write_text(content)
    result = ingest_one(store, path, source="cloudtrail")
    assert (result.read, result.loaded, result.rejected) == (0, 0, 0)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (record(9, eventTime=12345), "eventTime is a JSON number, expected an ISO-8601 string"),
        (record(9, eventTime="yesterday"), "eventTime 'yesterday' is not an ISO-8601 time"),
        (record(9, eventTime={"at": "now"}), "eventTime is a JSON object, expected an ISO-8601 string"),
        (record(9, userIdentity="x"), "userIdentity is a JSON string, expected an object"),
        (record(9, eventName=5), "eventName is a JSON number, expected a string"),
        (record(9, eventSource=["s3"]), "eventSource is a JSON array, expected a string"),
        (record(9, resources={"ARN": "arn:aws:s3:::b"}), "resources is a JSON object, expected an array"),
        (True, "record 1 is a JSON boolean, not an object"),
        ("just a string", "record 1 is a JSON varchar, not an object"),
    ],
    ids=[
        "time-number",
        "time-text",
        "time-object",
        "identity-string",
        "name-number",
        "source-array",
        "resources-object",
        "boolean-record",
        "string-record",
    ],
)
def test_wrong_types_are_rejected_with_the_field_named(
    store: duckdb.DuckDBPyConnection, tmp_path: Path, bad: Any, reason: str
) -> None:
    path = tmp_path / "types.ndjson"
    path.write_text(ndjson([RECORDS[0], bad, RECORDS[1]]))
    result = ingest_one(store, path)
    assert (result.read, result.loaded, result.rejected) == (3, 2, 1)
    ((index, line, got, raw),) = rejected(store)
    assert (index, line, got) == (1, 2, reason)
    assert json.loads(raw) == bad


def test_rejected_raw_is_bounded(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "long-bad.ndjson"
    path.write_text(ndjson([record(1, eventTime=1, requestParameters={"blob": "x" * 100_000})]))
    ingest_one(store, path)
    assert len(rejected(store)[0][3]) == 4096


# --- size, emptiness, duplicates, order ----------------------------------------------------------


def test_50_mb_single_record(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    blob = "A" * (50 << 20)
    path = tmp_path / "huge.ndjson"
    path.write_text(json.dumps(record(1, requestParameters={"bucketName": "reports", "blob": blob})) + "\n")
    started = time.perf_counter()
    result = ingest_one(store, path)
    assert (result.read, result.loaded, result.rejected) == (1, 1, 0)
    size, resource = store.execute("SELECT length(raw::VARCHAR), resource FROM events").fetchone()
    assert size > 50 << 20
    assert resource == "arn:aws:s3:::reports"
    assert time.perf_counter() - started < 60  # generous: a shared CI machine; typically a few seconds


@pytest.mark.parametrize("content", ["", "  \n\n \t\n"], ids=["empty", "whitespace"])
def test_empty_and_blank_files(store: duckdb.DuckDBPyConnection, tmp_path: Path, content: str) -> None:
    path = tmp_path / "nothing.json"
    path.write_text(content)
    result = ingest.ingest(store, [path])
    # Nothing in it says what it is; no bytes at all is listed as empty, not as unknown (DESIGN §9).
    assert (result.empty, result.unrecognized) == (([path], []) if not content else ([], [path]))
    forced = ingest_one(store, path, source="cloudtrail")
    assert (forced.read, forced.loaded, forced.rejected, forced.duplicates) == (0, 0, 0, 0)
    assert counts(store) == (0, 1, 0)  # custody of the empty file is still recorded


def test_duplicates_within_a_file(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "dups.ndjson"
    path.write_text(ndjson([RECORDS[0], RECORDS[1], RECORDS[0], RECORDS[0], RECORDS[2]]))
    result = ingest_one(store, path)
    assert (result.read, result.loaded, result.duplicates) == (5, 3, 2)
    # The first copy is the one kept: its position is the evidence pointer.
    assert store.execute("SELECT record_index FROM events WHERE event_id = 'evt-000000'").fetchall() == [(0,)]


def test_duplicates_across_files(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    first, second = tmp_path / "a.ndjson", tmp_path / "b.ndjson"
    first.write_text(ndjson(RECORDS[:10]))
    second.write_text(json.dumps(RECORDS[5:15], indent=1))  # other bytes, five of the same events
    result = ingest.ingest(store, [tmp_path])
    a, b = result.files
    for f in (a, b):
        assert_balanced(store, f)
    assert (a.loaded, a.duplicates) == (10, 0)
    assert (b.read, b.loaded, b.duplicates) == (10, 5, 5)
    assert len(event_ids(store)) == 15
    assert store.execute("SELECT count(DISTINCT event_id) FROM events").fetchone()[0] == 15


def test_records_out_of_time_order(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    shuffled = [RECORDS[i] for i in (7, 2, 9, 0, 5, 1, 8, 3, 6, 4)]
    path = tmp_path / "shuffled.json"
    path.write_text(json.dumps({"Records": shuffled}))
    result = ingest_one(store, path)
    assert (result.loaded, result.rejected) == (10, 0)
    rows = store.execute("SELECT event_id, occurred_at, record_index FROM events ORDER BY record_index").fetchall()
    assert [r[0] for r in rows] == [r["eventID"] for r in shuffled]  # file order kept
    times = [r[1] for r in rows]
    assert times != sorted(times) and sorted(times) == sorted(set(times))


# --- idempotency and transactions ------------------------------------------------------------------


def test_ingesting_the_same_directory_twice(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    (tmp_path / "a.ndjson").write_text(ndjson(RECORDS[:20]))
    (tmp_path / "b.json.gz").write_bytes(gzip.compress(json.dumps({"Records": RECORDS[20:50]}).encode()))
    (tmp_path / "README.md").write_text("# notes\n")
    first = ingest.ingest(store, [tmp_path])
    assert [f.loaded for f in first.files] == [20, 30]
    assert first.ignored == [tmp_path / "README.md"]
    before = counts(store)
    generation = nhistore.get_meta(store, "evidence_generation")

    second = ingest.ingest(store, [tmp_path])
    assert [f.already_ingested for f in second.files] == [True, True]
    assert all((f.read, f.loaded, f.rejected, f.duplicates) == (0, 0, 0, 0) for f in second.files)
    assert [f.note for f in second.files] == ["already ingested (same SHA-256)"] * 2
    assert counts(store) == before
    assert nhistore.get_meta(store, "evidence_generation") == generation  # derived tables stay fresh


def _fail_after_merge(exc: BaseException):
    real_merge = ingest._merge

    def merge_then_fail(con, source, evidence, result):
        real_merge(con, source, evidence, result)  # events, rejected and custody rows are written
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] > 0
        raise exc

    return merge_then_fail


def _bad_file(tmp_path: Path) -> Path:
    path = tmp_path / "half-bad.ndjson"
    path.write_text(ndjson(RECORDS[:5]) + "{bad\n")
    return path


def test_machine_failure_mid_file_rolls_back_and_stops(
    store: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _bad_file(tmp_path)
    monkeypatch.setattr(ingest, "_merge", _fail_after_merge(duckdb.IOException("could not write the WAL")))
    with pytest.raises(NhiauditError) as err:
        ingest.ingest(store, [path])
    assert str(err.value).startswith(f"{path}: could not load this file (could not write the WAL). Nothing from it")
    assert "run the same ingest again" in str(err.value)
    assert counts(store) == (0, 0, 0)
    assert nhistore.get_meta(store, "evidence_generation") is None

    monkeypatch.undo()
    result = ingest_one(store, path)  # the rerun loads it: it was not recorded as ingested
    assert (result.loaded, result.rejected) == (5, 1)


def test_unexpected_exception_mid_file_rolls_back(
    store: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _bad_file(tmp_path)
    monkeypatch.setattr(ingest, "_merge", _fail_after_merge(KeyboardInterrupt()))
    with pytest.raises(ingest.IngestInterrupted):  # Ctrl-C: says what was committed (issue 13 item 8)
        ingest.ingest(store, [path])
    assert counts(store) == (0, 0, 0)  # seen through the same connection: no transaction left open
    monkeypatch.undo()
    assert ingest_one(store, path).loaded == 5


def test_content_error_mid_file_becomes_one_rejected_record(
    store: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_merge = ingest._merge
    calls = []

    def merge_then_fail(con, source, evidence, result):
        real_merge(con, source, evidence, result)
        calls.append(result.loaded)
        if len(calls) == 1:  # the events are inserted; then a cast of the data fails
            con.execute("SELECT CAST('not a number' AS INTEGER)")

    monkeypatch.setattr(ingest, "_merge", merge_then_fail)
    path = _bad_file(tmp_path)
    result = ingest_one(store, path)
    assert calls[0] == 5  # the first attempt had inserted the good records
    assert (result.read, result.loaded, result.rejected) == (1, 0, 1)
    assert rejected(store)[0][2].startswith("cloudtrail could not read the file: Conversion Error")
    assert counts(store) == (0, 1, 1)  # the events inserted before the error were rolled back


def test_parallel_ingest_matches_a_sequential_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files are staged concurrently but committed in file order: the same store either way."""
    logs = tmp_path / "logs"
    logs.mkdir()
    for n in range(8):  # overlapping windows: every file repeats events of the one before
        (logs / f"{n}.ndjson").write_text(ndjson(RECORDS[n * 20 : n * 20 + 35]) + ("{bad\n" if n == 3 else ""))
    (logs / "8.ndjson").write_text((logs / "2.ndjson").read_text())  # the same bytes under another name
    (logs / "9.json.gz").write_bytes(gzip.compress(json.dumps({"Records": RECORDS[:40]}).encode())[:-8])

    def run(workers: int) -> tuple[list[Any], list[Any], list[Any]]:
        monkeypatch.setattr(ingest, "MAX_WORKERS", workers)
        con = nhistore.connect(":memory:")
        con.execute("SET threads = 4")
        result = ingest.ingest(con, [logs])
        for f in result.files:
            assert_balanced(con, f)
        summary = [(f.path.name, f.read, f.loaded, f.rejected, f.duplicates, f.already_ingested) for f in result.files]
        events = con.execute("SELECT event_id, file_sha256, record_index FROM events ORDER BY event_id").fetchall()
        bad = con.execute("SELECT file_sha256, line, reason FROM rejected ORDER BY ALL").fetchall()
        con.close()
        return summary, events, bad

    sequential, parallel = run(1), run(4)
    assert parallel == sequential
    summary = {row[0]: row for row in sequential[0]}
    assert summary["8.ndjson"][-1] is True  # stored once, though staged alongside its twin
    assert summary["1.ndjson"][4] == 15  # the overlap with 0.ndjson
    assert len(sequential[1]) == len(RECORDS[:175])


def test_nhiaudit_sql_bug_propagates(
    store: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def buggy_load(con, files):
        con.execute("INSERT INTO staged (event_id) SELECT no_such_column FROM staged")

    monkeypatch.setattr(cloudtrail, "load", buggy_load)
    path = _bad_file(tmp_path)
    with pytest.raises(duckdb.BinderException):
        ingest.ingest(store, [path])
    with pytest.raises(duckdb.ParserException):
        monkeypatch.setattr(cloudtrail, "load", lambda con, files: con.execute("SELEC 1"))
        ingest.ingest(store, [path])
    assert counts(store) == (0, 0, 0)  # never disguised as a rejected file
    monkeypatch.undo()
    assert ingest_one(store, path).loaded == 5


def test_killed_mid_file_leaves_the_store_as_before(tmp_path: Path) -> None:
    """A SIGKILL after the file's events were inserted, before COMMIT: the file is not there."""
    (tmp_path / "logs").mkdir()
    first, second = tmp_path / "logs" / "a.ndjson", tmp_path / "logs" / "b.ndjson"
    first.write_text(ndjson(RECORDS[:10]))
    second.write_text(ndjson(RECORDS[10:30]))
    db = tmp_path / "store.duckdb"
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from nhiaudit import ingest, store
        real_merge = ingest._merge
        def merge_then_die(con, source, evidence, result):
            real_merge(con, source, evidence, result)
            if evidence.path.name == "b.ndjson":
                os.kill(os.getpid(), signal.SIGKILL)
        ingest._merge = merge_then_die
        con = store.connect(Path({str(db)!r}))
        ingest.ingest(con, [Path({str(tmp_path / "logs")!r})])
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    con = nhistore.connect(db)
    assert [r[0] for r in con.execute("SELECT path FROM evidence_files").fetchall()] == [str(first)]
    assert event_ids(con) == [r["eventID"] for r in RECORDS[:10]]
    result = ingest.ingest(con, [tmp_path / "logs"])
    assert [f.already_ingested for f in result.files] == [True, False]
    assert result.files[1].loaded == 20
    con.close()


def test_unknown_source_name(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "a.ndjson"
    path.write_text(ndjson(RECORDS[:1]))
    with pytest.raises(NhiauditError) as err:
        ingest.ingest(store, [path], source="cloudtrial")
    assert str(err.value).startswith(
        "--source: unknown source 'cloudtrial'. Did you mean 'cloudtrail'? Known sources: "
    )
    assert "cloudtrail" in str(err.value).split("Known sources: ")[1]
    assert counts(store) == (0, 0, 0)


def test_missing_path(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    with pytest.raises(NhiauditError, match=r"no-such-dir: no such file or directory\. Check the path\."):
        ingest.ingest(store, [tmp_path / "no-such-dir"])


def test_progress_reports_every_file(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    (tmp_path / "a.ndjson").write_text(ndjson(RECORDS[:3]))
    (tmp_path / "b.ndjson").write_text(ndjson(RECORDS[3:4]))
    seen: list[tuple[str, str, int]] = []
    ingest.ingest(store, [tmp_path], progress=lambda kind, f: seen.append((kind, f.path.name, f.read)))
    assert seen == [
        ("start", "a.ndjson", 0),
        ("done", "a.ndjson", 3),
        ("start", "b.ndjson", 0),
        ("done", "b.ndjson", 1),
    ]


def test_hidden_files_and_directories_are_skipped(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "x.ndjson").write_text(ndjson(RECORDS[:1]))
    (tmp_path / ".partial.ndjson").write_text(ndjson(RECORDS[1:2]))
    (tmp_path / "real.ndjson").write_text(ndjson(RECORDS[2:3]))
    result = ingest.ingest(store, [tmp_path])
    assert [f.path.name for f in result.files] == ["real.ndjson"]


def test_unreadable_file_is_a_clear_error(
    store: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "secret.ndjson"
    path.write_text(ndjson(RECORDS[:1]))

    def denied(p: Path) -> str:
        raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(ingest, "sha256_of", denied)
    result = ingest.ingest(store, [path])  # listed with why, never raised (issue 13 item 3)
    assert result.files == []
    assert result.unreadable == [(path, "cannot be read (permission denied). Check its permissions")]
    assert counts(store) == (0, 0, 0)


# --- issue 13: hostile and damaged evidence never stops the run ---------------------------------


def _cut_where_trailer_reads_large(data: bytes, at_least: int = 600 << 20) -> bytes:
    """A prefix of a gzip whose last four bytes, read as the ISIZE trailer, say ``at_least`` or more."""
    for cut in range(len(data) - 9, len(data) // 2, -1):
        if int.from_bytes(data[cut - 4 : cut], "little") >= at_least:
            return data[:cut]
    raise AssertionError("no such cut")


def test_truncated_gzip_with_a_huge_trailer_does_not_stop_the_run(
    store: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    from nhiaudit.sources._read import record_limit

    store.execute("SET memory_limit = '1GB'")
    document = gzip.compress(json.dumps({"Records": RECORDS[:200]}).encode())
    cut = _cut_where_trailer_reads_large(document)
    (tmp_path / "a.json.gz").write_bytes(cut)
    whole = _whole_before_cut(cut, RECORDS[:200], (", ", ": "))
    assert whole > 150
    (tmp_path / "b.ndjson").write_text(ndjson(RECORDS[200:250]))
    assert record_limit(tmp_path / "a.json.gz") < 64 << 20  # from what the stream holds, not the trailer

    result = ingest.ingest(store, [tmp_path])
    for file in result.files:
        assert_balanced(store, file)
    # The records whole before the cut load, the damage is one rejected record (issue 13).
    assert [(f.loaded, f.rejected) for f in result.files] == [(whole, 1), (50, 0)]
    assert result.files[0].note.startswith("gzip stream ends early (truncated file)")
    assert event_ids(store) == [r["eventID"] for r in RECORDS[:whole] + RECORDS[200:250]]


def test_out_of_memory_rejects_that_file_alone(
    store: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.ndjson").write_text(ndjson(RECORDS[:5]))
    (tmp_path / "b.ndjson").write_text(ndjson(RECORDS[5:10]))
    real_load = cloudtrail.load
    tries: list[str] = []

    def load(con, files, **kwargs):
        if files[0].path.name == "a.ndjson":
            tries.append("a")
            raise duckdb.OutOfMemoryException("failed to allocate data of size 2.0 GiB")
        return real_load(con, files, **kwargs)

    monkeypatch.setattr(cloudtrail, "load", load)
    result = ingest.ingest(store, [tmp_path])
    for file in result.files:
        assert_balanced(store, file)
    assert [(f.loaded, f.rejected) for f in result.files] == [(0, 1), (5, 0)]
    assert len(tries) >= 1
    (reason,) = store.execute("SELECT reason FROM rejected").fetchone()
    assert reason.startswith("the file does not fit in the memory limit (")
    assert reason.endswith("Re-run with a larger --memory-limit and --retry-rejected")


@pytest.mark.parametrize("layout", ["array", "records"])
def test_large_documents_are_streamed_with_the_same_records(
    store: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    from nhiaudit.sources import _read

    monkeypatch.setattr(_read, "STREAM_DOCUMENT_BYTES", 1000)  # stream even this small file
    monkeypatch.setattr(_read, "ELEMENT_BYTES", 1 << 10)  # and retry a bigger bound per element
    body = RECORDS[:40] if layout == "array" else {"Records": RECORDS[:40]}
    path = tmp_path / "big.json.gz"
    path.write_bytes(gzip.compress(json.dumps(body, indent=1).encode()))
    result = ingest_one(store, path)
    assert (result.loaded, result.rejected) == (40, 0)
    assert event_ids(store) == [r["eventID"] for r in RECORDS[:40]]
    indexes = store.execute("SELECT record_index, event_id FROM events ORDER BY record_index").fetchall()
    assert indexes == [(i, r["eventID"]) for i, r in enumerate(RECORDS[:40])]


@pytest.fixture
def cli_run(monkeypatch: pytest.MonkeyPatch):
    """The CLI on wide consoles: (exit code, stdout, stderr)."""
    from rich.console import Console
    from typer.testing import CliRunner

    from nhiaudit import cli

    monkeypatch.setattr(cli, "console", Console(width=250))
    monkeypatch.setattr(cli, "err_console", Console(width=250, stderr=True))
    monkeypatch.delenv("NHIAUDIT_DB", raising=False)
    monkeypatch.delenv("NHIAUDIT_POLICY", raising=False)

    def run(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(cli.app, list(args))
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return result.exit_code, result.stdout, result.stderr

    return run


def test_corrupt_gzip_at_its_start_is_listed_not_raised(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    data = bytearray(gzip.compress(ndjson(RECORDS[:100]).encode()))
    data[40] ^= 0xFF  # inside the first deflate block: zlib fails while the head is read
    (tmp_path / "a.ndjson.gz").write_bytes(bytes(data))
    (tmp_path / "b.ndjson").write_text(ndjson(RECORDS[100:105]))
    result = ingest.ingest(store, [tmp_path])
    assert [f.loaded for f in result.files] == [5]
    ((path, why),) = result.unreadable
    assert path == tmp_path / "a.ndjson.gz" and why.startswith("gzip data is corrupt")


def test_deeply_nested_first_line_does_not_raise(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "deep.ndjson"
    path.write_text('{"a":' * 2000 + "1" + "}" * 2000 + "\n" + ndjson(RECORDS[:3]))
    result = ingest.ingest(store, [path], source="cloudtrail")
    (file,) = result.files
    assert_balanced(store, file)
    assert (file.loaded, file.rejected) == (4, 0)  # DuckDB parses what Python's json cannot
    (short,) = tmp_path.glob("deep.ndjson")
    short.write_text("[" * 1200 + "]" * 1200 + "\n")  # short enough for the head: every detect() parses it
    assert ingest.ingest(nhistore.connect(":memory:"), [short]).unrecognized == [short]


def test_file_name_that_is_not_utf8(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    import os

    path = Path(os.fsdecode(bytes(tmp_path) + b"/bad\xffname.ndjson"))
    path.write_text(ndjson(RECORDS[:2]))
    (file,) = ingest.ingest(store, [path]).files
    assert_balanced(store, file)
    assert file.loaded == 2
    (stored,) = store.execute("SELECT path FROM evidence_files").fetchone()
    assert stored == str(tmp_path) + "/bad\\xffname.ndjson"


def test_fifo_broken_link_and_unreadable_directory_are_listed(
    store: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    os.mkfifo(tmp_path / "pipe.ndjson")
    (tmp_path / "gone.ndjson").symlink_to(tmp_path / "missing")
    (tmp_path / "locked").mkdir()
    (tmp_path / "good.ndjson").write_text(ndjson(RECORDS[:1]))
    real_walk = os.walk

    def walk(top, onerror=None, **kwargs):  # root reads any directory: make one unreadable
        for root, dirs, names in real_walk(top, onerror=onerror, **kwargs):
            if Path(root).name == "locked":
                onerror(PermissionError(13, "Permission denied", root))
                dirs[:] = []
                continue
            yield root, dirs, names

    monkeypatch.setattr(ingest.os, "walk", walk)
    result = ingest.ingest(store, [tmp_path])
    assert [f.loaded for f in result.files] == [1]
    assert sorted(result.unreadable) == [
        (tmp_path / "gone.ndjson", "broken symbolic link (its target does not exist)"),
        (tmp_path / "locked", "directory cannot be read (Permission denied); its files were not ingested"),
        (tmp_path / "pipe.ndjson", "not a regular file (a FIFO, socket or device): not read"),
    ]
    # A FIFO named on the command line is listed too, never opened (opening one blocks).
    assert ingest.ingest(store, [tmp_path / "pipe.ndjson"]).unreadable[0][0] == tmp_path / "pipe.ndjson"


def test_ndjson_whose_first_line_is_partial_loads_the_rest(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "chunk.ndjson"
    path.write_text(ndjson(RECORDS[:20])[37:])  # a shipper's chunk that starts mid-record
    file = ingest_one(store, path)
    assert (file.loaded, file.rejected) == (19, 1)
    assert rejected(store)[0][1:3] == (1, "line 1: not valid JSON (truncated or malformed record)")


def test_retry_rejected_loads_a_file_again_and_keeps_custody(
    store: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.ndjson"
    path.write_text(ndjson(RECORDS[:4]))
    real_load = cloudtrail.load

    def older_nhiaudit(con, files, **kwargs):  # a release that could not read the file
        raise duckdb.InvalidInputException("Malformed JSON")

    monkeypatch.setattr(cloudtrail, "load", older_nhiaudit)
    first = ingest_one(store, path)
    assert (first.loaded, first.rejected) == (0, 1)
    (received,) = store.execute("SELECT ingested_at FROM evidence_files").fetchone()
    monkeypatch.setattr(cloudtrail, "load", real_load)
    assert ingest_one(store, path).already_ingested  # a plain re-run skips it
    again = ingest.ingest(store, [path], retry_rejected=True).files[0]
    assert_balanced(store, again)
    assert (again.loaded, again.rejected, again.already_ingested) == (4, 0, False)
    assert store.execute("SELECT count(*), any_value(ingested_at) FROM evidence_files").fetchone() == (1, received)
    assert ingest.ingest(store, [path], retry_rejected=True).files[0].already_ingested  # nothing rejected now


def test_array_of_s3_delivery_documents_yields_their_records(
    store: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    path = tmp_path / "deliveries.json"
    path.write_text(json.dumps([{"Records": RECORDS[:3]}, {"Records": RECORDS[3:5]}], indent=2))
    file = ingest_one(store, path)
    assert (file.loaded, file.rejected) == (5, 0)
    assert event_ids(store) == [r["eventID"] for r in RECORDS[:5]]


def test_cli_ingest_lists_empty_unreadable_and_exits_2_without_evidence(cli_run, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "empty.ndjson").write_text("")
    db = str(tmp_path / "s.duckdb")
    code, out, err = cli_run("ingest", str(logs), "--db", db)
    assert code == 2  # DESIGN §7: no evidence never exits 0
    assert f"1 empty file(s) (no bytes, nothing to load): {logs / 'empty.ndjson'}" in out
    assert f"no evidence: no file with records was found in {logs}" in err
    (logs / "good.ndjson").write_text(ndjson(RECORDS[:2]))
    code, out, err = cli_run("ingest", str(logs), "--db", db)
    assert code == 0  # an empty file beside evidence is listed, not an error
    import os

    os.mkfifo(logs / "pipe.ndjson")
    code, out, err = cli_run("ingest", str(logs / "pipe.ndjson"), "--db", db)
    assert code == 2
    assert f"  {logs / 'pipe.ndjson'}: not a regular file (a FIFO, socket or device): not read" in err


def test_cli_ctrl_c_says_what_was_committed(cli_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.ndjson").write_text(ndjson(RECORDS[:2]))
    (tmp_path / "b.ndjson").write_text(ndjson(RECORDS[2:4]))
    real_load = cloudtrail.load

    def load(con, files, **kwargs):
        if files[0].path.name == "b.ndjson":
            raise KeyboardInterrupt
        return real_load(con, files, **kwargs)

    monkeypatch.setattr(cloudtrail, "load", load)
    monkeypatch.setattr(ingest, "MAX_WORKERS", 1)
    code, out, err = cli_run("ingest", str(tmp_path), "--db", str(tmp_path / "s.duckdb"))
    assert code == 2
    assert (
        "error: ingest: interrupted. 1 of 2 file(s) were committed before it (each file is stored whole or not "
        "at all). Run the same ingest again to resume: files already stored are skipped." in err
    )


def test_a_planted_token_never_reaches_a_reason(store: duckdb.DuckDBPyConnection, tmp_path: Path, cli_run) -> None:
    token = "IQoJb3JpZ2luX2VjEHoaCXVzLWVhc3QtMSJHMEUCIQDx7secrettoken"
    path = tmp_path / "planted.ndjson"
    path.write_text(
        ndjson([record(1, eventTime=token), record(2, eventTime="it's\n\x1b[31mred"), record(3, eventTime="yesterday")])
    )
    ingest_one(store, path)
    reasons = [r[2] for r in rejected(store)]
    assert reasons == [
        "eventTime '…' is not an ISO-8601 time",  # the field and the problem, not the value
        "eventTime 'it's  [31mred' is not an ISO-8601 time",  # no line feed or escape reaches a terminal
        "eventTime 'yesterday' is not an ISO-8601 time",  # a short plain value helps and stays
    ]
    assert all(token not in "".join(map(str, row[:3])) for row in rejected(store))
    code, out, err = cli_run("ingest", str(path), "--db", str(tmp_path / "s.duckdb"))
    assert token not in out + err


# --- issue 10: evidence pointers, same id with other content, empty files ----------------------


@pytest.mark.parametrize("layout", ["array", "records"])
def test_records_of_a_pretty_printed_document_get_the_line_where_they_start(
    store: duckdb.DuckDBPyConnection, tmp_path: Path, layout: str
) -> None:
    body = RECORDS[:3] if layout == "array" else {"Records": RECORDS[:3]}
    path = tmp_path / "pretty.json"
    path.write_text(json.dumps(body, indent=2))
    ingest_one(store, path)
    starts = [n for n, text in enumerate(path.read_text().split("\n"), 1) if text.strip() == "{"]
    starts = starts[1:] if layout == "records" else starts  # the wrapper's own brace is line 1
    lines = [r[0] for r in store.execute("SELECT line FROM events ORDER BY record_index").fetchall()]
    assert lines == starts and len(set(lines)) == 3


def test_a_compact_document_keeps_line_1(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "compact.json"
    path.write_text(json.dumps({"Records": RECORDS[:3]}) + "\n")
    ingest_one(store, path)
    assert store.execute("SELECT list(line ORDER BY record_index) FROM events").fetchone()[0] == [1, 1, 1]


def test_same_id_with_other_content_keeps_both(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    original = record(1)
    forged = record(1, requestParameters={"bucketName": "reports", "key": "other"})  # same id, time, name
    (tmp_path / "a.ndjson").write_text(ndjson([original, original]))
    (tmp_path / "b.json").write_text(json.dumps([forged, original], indent=2))
    a, b = ingest.ingest(store, [tmp_path]).files
    for f in (a, b):
        assert_balanced(store, f)
    assert (a.loaded, a.duplicates) == (1, 1)  # identical: a duplicate
    assert (b.loaded, b.duplicates) == (1, 1)  # other content: kept; the pretty-printed copy: a duplicate
    assert b.note.startswith("1 id(s) of this file were seen with different content: every version is kept")
    rows = store.execute(
        "SELECT event_id, line, raw->>'$.requestParameters.key' FROM events ORDER BY file_sha256 = ?, line",
        [b.sha256],
    ).fetchall()
    # Each with its own pointer; the later version under its own id (correlation joins on the id).
    assert [(row[1], row[2]) for row in rows] == [(1, "k/1"), (2, "other")]
    assert rows[0][0] == "evt-000001" and re.fullmatch(r"evt-000001~[0-9a-f]{8}", rows[1][0])


def test_versions_of_one_id_do_not_multiply_chains(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    from nhiaudit import session
    from nhiaudit.policy import Policy

    action = record(1, eventName="DeleteObject", readOnly=False)
    for i in range(3):
        other = dict(action["userIdentity"], accessKeyId=f"ASIAAGENTKEY0000000{i}")  # what the source reads
        (tmp_path / f"{i}.ndjson").write_text(ndjson([dict(action, userIdentity=other)]))
    ingest.ingest(store, [tmp_path])
    session.AuditSession.attach(store, Policy())
    assert store.execute("SELECT count(*), count(DISTINCT event_id) FROM chains").fetchone() == (3, 3)
    assert store.execute("SELECT count(*) FROM event_evidence").fetchone()[0] == 3


def test_a_huge_first_line_does_not_hide_the_source(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "big-first.ndjson"
    path.write_text(ndjson([{"padding": "x" * 20000}, *RECORDS[:3]]))
    assert ingest.detect(path) == "cloudtrail"  # from the lines after the first


def test_ingest_runs_without_dictionary_compression_and_restores_it(
    store: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Dictionary compression's analysis is held outside DuckDB's memory limit (issue 13: a 300,000-
    # record file's merge peaked at 1.77 GB at 1 GB); a setting the user made stays disabled too.
    store.execute("SET disabled_compression_methods = 'fsst'")
    (tmp_path / "a.ndjson").write_text(ndjson(RECORDS[:5]))
    seen: list[str] = []
    real_load = cloudtrail.load

    def load(con: duckdb.DuckDBPyConnection, files: list[Any]) -> None:
        seen.append(con.execute("SELECT current_setting('disabled_compression_methods')").fetchone()[0].lower())
        real_load(con, files)

    monkeypatch.setattr(cloudtrail, "load", load)
    assert ingest_one(store, tmp_path / "a.ndjson").loaded == 5
    assert [sorted(s.split(",")) for s in seen] == [["dictionary", "fsst"]]
    assert store.execute("SELECT current_setting('disabled_compression_methods')").fetchone()[0].lower() == "fsst"


# --- small files in batches (issue 14 goal 1) -------------------------------------------------------


def _delivery(records: list[Any]) -> bytes:
    """A CloudTrail S3 delivery file: one compact {"Records": [...]} document, gzip."""
    return gzip.compress(json.dumps({"Records": records}, separators=(",", ":")).encode())


@pytest.mark.parametrize("damaged", [False, True])
def test_batched_small_files_match_one_file_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damaged: bool
) -> None:
    """Small S3 delivery files are staged and merged together, with the store, custody, counts,
    duplicates, conflicts, rejections and notes of a file-by-file ingest. A batch with a file it
    cannot read as one (a damaged gzip) falls back to file by file."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.json.gz").write_bytes(_delivery(RECORDS[:30]))
    (logs / "b.json.gz").write_bytes(_delivery(RECORDS[20:50] + [7, None]))  # 10 duplicates, 2 non-objects
    changed = [record(3, sourceIPAddress="10.9.9.9"), record(60, eventID=None)]  # a conflict; an id from position
    (logs / "c.json.gz").write_bytes(_delivery(changed + RECORDS[50:55] + [record(60, eventID=None)]))
    (logs / "d.json.gz").write_bytes((logs / "a.json.gz").read_bytes())  # the same bytes under another name
    (logs / "e.json.gz").write_bytes(_delivery([record(3, eventName=7)] + RECORDS[55:60]))  # a wrong type
    if damaged:
        (logs / "f.json.gz").write_bytes(_delivery(RECORDS[60:90])[:-8])
    batches: list[int] = []
    real = ingest.stage_record_batch
    monkeypatch.setattr(ingest, "stage_record_batch", lambda con, files: batches.append(len(files)) or real(con, files))

    def run(batch_files: int) -> tuple[list[Any], ...]:
        monkeypatch.setattr(ingest, "BATCH_FILES", batch_files)
        con = nhistore.connect(":memory:")
        result = ingest.ingest(con, [logs])
        for f in result.files:
            assert_balanced(con, f)
        summary = [(f.path.name, f.read, f.loaded, f.rejected, f.duplicates, f.already_ingested, f.note)
                   for f in result.files]
        events = con.execute("SELECT * EXCLUDE (raw), raw::VARCHAR FROM events ORDER BY ALL").fetchall()
        custody = con.execute("SELECT * EXCLUDE (ingested_at) FROM evidence_files ORDER BY ALL").fetchall()
        bad = con.execute("SELECT * FROM rejected ORDER BY ALL").fetchall()
        con.close()
        return summary, events, custody, bad

    alone = run(1)
    assert not batches
    together = run(256)
    assert batches == ([] if damaged else [4])  # d.json.gz, a's twin, is not staged again
    assert together == alone
    summary = {row[0]: row for row in alone[0]}
    assert summary["b.json.gz"][1:5] == (32, 20, 2, 10)
    assert "1 id(s) of this file were seen with different content" in summary["c.json.gz"][6]
    assert summary["d.json.gz"][5] is True
    assert summary["e.json.gz"][3] == 1
    ids = [row[0] for row in alone[1]]
    assert any(i.startswith("evt-000003~") for i in ids)
    assert sum(i.startswith("rec-") for i in ids) == 1  # record(60) without an id, twice in c: one duplicate
    if damaged:
        assert "truncated" in summary["f.json.gz"][6]


def test_killed_mid_batch_leaves_the_store_as_before(tmp_path: Path) -> None:
    """A SIGKILL after a batch's events were inserted, before its COMMIT: none of its files is there."""
    logs = tmp_path / "logs"
    logs.mkdir()
    for n in range(3):
        (logs / f"{n}.json.gz").write_bytes(_delivery(RECORDS[n * 10 : n * 10 + 10]))
    db = tmp_path / "store.duckdb"
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from nhiaudit import ingest, store
        real_merge = ingest._merge_files
        def merge_then_die(con, source, files, batched=False):
            real_merge(con, source, files, batched)
            assert batched and con.execute("SELECT count(*) FROM events").fetchone()[0] == 30
            os.kill(os.getpid(), signal.SIGKILL)
        ingest._merge_files = merge_then_die
        con = store.connect(Path({str(db)!r}))
        ingest.ingest(con, [Path({str(logs)!r})])
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    con = nhistore.connect(db)
    assert counts(con) == (0, 0, 0)
    result = ingest.ingest(con, [logs])
    assert [f.loaded for f in result.files] == [10, 10, 10]
    assert event_ids(con) == sorted(r["eventID"] for r in RECORDS[:30])
    con.close()
