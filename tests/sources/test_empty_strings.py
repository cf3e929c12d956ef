"""Empty strings are absent values in every column of every source (DESIGN §9): one framework-level
pass, ``nhiaudit.sources._sql.null_empty_strings``, over what a source staged."""

from __future__ import annotations

from pathlib import Path

import duckdb
from helpers import load, rows, write_lines

from nhiaudit.sources import _sql


def test_every_varchar_column_gets_null_for_an_empty_string() -> None:
    con = duckdb.connect()
    con.execute(
        "CREATE TEMP TABLE staged (event_id VARCHAR, actor_id VARCHAR, credential_id VARCHAR, "
        "credential_type VARCHAR, record_index BIGINT, details JSON)"
    )
    con.execute(
        """INSERT INTO staged VALUES ('e1', '', '  ', 'aws_access_key', 0, '{"a": ""}'),
                                     ('e2', 'arn:x', 'AKIA1', ' padded ', 1, NULL)"""
    )
    _sql.null_empty_strings(con)
    assert rows(con, "SELECT * EXCLUDE (details) FROM staged ORDER BY record_index") == [
        {"event_id": "e1", "actor_id": None, "credential_id": None, "credential_type": "aws_access_key",
         "record_index": 0},
        # a value with text is kept exactly, spaces included
        {"event_id": "e2", "actor_id": "arn:x", "credential_id": "AKIA1", "credential_type": " padded ",
         "record_index": 1},
    ]
    # JSON columns (details, raw) are not strings: untouched
    assert con.execute("SELECT details FROM staged WHERE event_id = 'e1'").fetchone()[0] == '{"a": ""}'


def test_ingest_stores_no_empty_strings(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    # A CloudTrail record whose optional fields are logged as "" (the shape of AWS service events).
    record = {
        "eventVersion": "1.08", "eventID": "00000000-0000-0000-0000-000000000001",
        "eventTime": "2024-05-01T10:00:00Z", "eventSource": "s3.amazonaws.com", "eventName": "PutObject",
        "awsRegion": "", "sourceIPAddress": "", "userAgent": "", "recipientAccountId": "111122223333",
        "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::111122223333:assumed-role/a/t",
                         "accessKeyId": "", "sessionContext": {"sourceIdentity": ""}},
    }
    load(store, "cloudtrail", write_lines(tmp_path / "ct.ndjson", [record]))
    got = rows(store, "SELECT region, src_ip, user_agent, credential_id, credential_type, task_id FROM events")
    assert got == [dict.fromkeys(("region", "src_ip", "user_agent", "credential_id", "credential_type", "task_id"))]
