"""Security review tests (DESIGN §7-§9): secrets never reach an output, hostile log text is inert in
every medium it is written to, paths are quoted into SQL safely, reports are byte-identical, and the
store fails clearly when it is busy, empty or given a broken policy.

One hostile world is ingested once per module: CloudTrail, Vault, Kong, Envoy, API Gateway, Auth0,
Keycloak and provenance records carrying session tokens, client tokens, bearer tokens, API keys and
query-string tokens, and fields full of terminal escapes, OSC 8 links, bidi overrides, Rich markup,
HTML, CSV formulas, CDATA terminators and NUL. Every command's output is checked.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest
from helpers import invoke as cli_invoke
from helpers import write_lines
from rich.console import Console

from nhiaudit import cli
from nhiaudit.reports import WRITERS

# A value that tries everything: clear screen, an OSC 8 hyperlink, a carriage return, a bidi
# override, Rich markup, HTML, a spreadsheet formula, a CDATA terminator, a closing textarea, NUL.
HOSTILE = (
    "\x1b[2J\x1b]8;;http://x\x07lnk\x1b]8;;\x07\r\u202e[link=http://evil]x[/link]<script>alert(1)</script>"
    '=HYPERLINK("http://e")]]></textarea>\x00'
)
# What must never be seen raw in an output meant for a terminal, a report or a CSV cell.
RAW_CONTROLS = ("\x1b", "\x07", "\r", "\u202e", "\x00")
SECRET = "SECRET"  # every secret planted in the evidence contains this word, nothing else does
POLICY = """\
[identities]
humans = ["*@example.com"]
[risk]
high = ["iam:*"]
[authority]
medium = ["change-manager"]
high = ["change-manager", "team-lead"]
"""


def _cloudtrail(folder: Path) -> None:
    agent = "arn:aws:sts::111122223333:assumed-role/agent/" + HOSTILE
    used = {
        "type": "AssumedRole",
        "arn": agent,
        "accountId": "111122223333",
        "accessKeyId": "ASIAHOSTILE00000001",
        "sessionContext": {"sourceIdentity": "t-1"},
    }
    write_lines(
        folder / "cloudtrail.ndjson",
        [
            {
                "eventVersion": "1.09",
                "eventID": "ev-assume-1",
                "eventTime": "2026-11-02T09:00:00Z",
                "eventSource": "sts.amazonaws.com",
                "eventName": "AssumeRole",
                "recipientAccountId": "111122223333",
                "userIdentity": {
                    "type": "IAMUser",
                    "arn": "arn:aws:iam::111122223333:user/orchestrator",
                    "accountId": "111122223333",
                    "accessKeyId": "AKIAORCHESTRATOR0001",
                },
                # The task id comes from a session tag; the key is given twice (the first one counts).
                "requestParameters": {
                    "roleArn": "arn:aws:iam::111122223333:role/agent",
                    "roleSessionName": "s",
                    "tags": [{"key": "TaskId", "value": "t-1"}, {"key": "TaskId", "value": "t-2"}],
                },
                "responseElements": {
                    "credentials": {
                        "accessKeyId": "ASIAHOSTILE00000001",
                        "sessionToken": "SECRETTOKEN123",
                        "secretAccessKey": "SECRETACCESSKEY",
                        "expiration": "Nov 2, 2026, 10:00:00 AM",
                    },
                    "assumedRoleUser": {"arn": agent},
                },
            },
            {
                "eventVersion": "1.09",
                "eventID": "ev-put-" + HOSTILE,
                "eventTime": "2026-11-02T09:10:00Z",
                "eventSource": "s3.amazonaws.com",
                "eventName": "PutObject",
                "recipientAccountId": "111122223333",
                "userIdentity": used,
                "requestParameters": {"bucketName": "reports-prod", "key": "k" + HOSTILE},
            },
            {
                "eventVersion": "1.09",
                "eventID": "ev-iam-1",
                "eventTime": "2026-11-02T09:11:00Z",
                "eventSource": "iam.amazonaws.com",
                "eventName": "CreateUser",
                "recipientAccountId": "111122223333",
                "userIdentity": used,
                "requestParameters": {"userName": "u"},
            },
        ],
    )


def _provenance(folder: Path) -> None:
    write_lines(
        folder / "provenance.ndjson",
        [
            {
                "record_type": "task",
                "task_id": "t-1",
                "agent_id": "agent" + HOSTILE,
                "intent": "Intent " + HOSTILE,
                "requested_by": "req" + HOSTILE,
                "started_at": "2026-11-02T08:50:00Z",
                "ended_at": "2026-11-02T09:40:00Z",
                "status": "completed",
            },
            # Two approvals decided at the same instant (a tie the correlation must break the same way
            # every run), one with scope globs full of regex and SQL metacharacters.
            {
                "record_type": "approval",
                "approval_id": "APR-1" + HOSTILE,
                "task_id": "t-1",
                "approver": "appr" + HOSTILE,
                "decision": "approved",
                "decided_at": "2026-11-02T08:55:00Z",
                "scope": {
                    "actions": ["s3:*", "vault:*"],
                    "resources": ["arn:aws:s3:::reports-(a|b)[x]\\'); DROP TABLE events; --*", "*"],
                },
                "justification": "j" + HOSTILE,
                "ticket": "T" + HOSTILE,
            },
            {
                "record_type": "approval",
                "approval_id": "APR-2",
                "task_id": "t-1",
                "approver": "alice@example.com",
                "decision": "approved",
                "decided_at": "2026-11-02T08:55:00Z",
            },
            {
                "record_type": "grant",
                "approver": "appr" + HOSTILE,
                "role": "change-manager",
                "valid_from": "2026-01-01T00:00:00Z",
            },
            {
                "record_type": "grant",
                "approver": "alice@example.com",
                "role": "change-manager",
                "valid_from": "2026-01-01T00:00:00Z",
            },
            {
                "record_type": "grant",
                "approver": "alice@example.com",
                "role": "team-lead",
                "valid_from": "2026-01-01T00:00:00Z",
            },
        ],
    )


def _vault(folder: Path) -> None:
    token = {
        "client_token": "hmac-sha256:SECRETHMAC",
        "accessor": "hmac-sha256:acc1",
        "display_name": "approle" + HOSTILE,
        "metadata": {"role_name": "bot", "task_id": "t-1"},
        "token_ttl": 1800,
    }
    write_lines(
        folder / "vault.log",
        [
            {
                "time": "2026-11-02T09:01:00Z",
                "type": "request",
                "auth": {"token_type": "default"},
                "request": {"id": "vreq-1", "operation": "update", "path": "auth/approle/login"},
            },
            {
                "time": "2026-11-02T09:01:00Z",
                "type": "response",
                "auth": token,
                "request": {"id": "vreq-1", "operation": "update", "path": "auth/approle/login"},
                "response": {"auth": token},
            },
            {
                "time": "2026-11-02T09:05:00Z",
                "type": "request",
                "auth": token,
                "request": {
                    "id": "vreq-2",
                    "operation": "delete",
                    "path": "secret/data/x" + HOSTILE,
                    "client_token": "hmac-sha256:SECRETHMAC",
                    "client_token_accessor": "hmac-sha256:acc1",
                    "headers": {"authorization": ["hmac-sha256:SECRETHMAC"]},
                },
            },
        ],
    )


def _gateways(folder: Path) -> None:
    kong = {
        "started_at": 1793610000000,
        "latencies": {"request": 1},
        "client_ip": "192.0.2.4",
        "upstream_uri": "/v1/orders?token=SECRETQS",
        "request": {
            "id": "kong-" + HOSTILE,
            "method": "POST",
            "uri": "/v1/orders" + HOSTILE + "?token=SECRETQS",
            "url": "https://api.example.com/v1/orders?token=SECRETQS",
            "querystring": {"token": "SECRETQS"},
            "headers": {
                "authorization": "Bearer SECRETBEARER",
                "apikey": "SECRETAPIKEY",
                "host": "api" + HOSTILE,
                "user-agent": "ua" + HOSTILE,
            },
        },
        "response": {"status": 200},
        "authenticated_entity": {"id": "ent" + HOSTILE},
        "consumer": {"username": "cons" + HOSTILE},
        "service": {"name": "svc" + HOSTILE},
    }
    # The second line is malformed JSON holding a bearer token: it is rejected, and its reason
    # must not quote it.
    (folder / "kong.log").write_text(
        json.dumps(kong) + "\n" + '{"started_at":1793610000001,"latencies":{},"client_ip":"x","request":{"headers":'
        '{"authorization":"Bearer SECRETMALFORMED"\n',
        encoding="utf-8",
    )
    # A line that is not UTF-8: DuckDB's CSV reader quotes the whole line in its error message.
    kong2 = dict(kong, request=dict(kong["request"], id="kong-2"))
    (folder / "kong_bad_utf8.log").write_bytes(
        json.dumps(kong2).encode() + b"\n" + b'{"started_at":1,"latencies":{},"client_ip":"x","request":{"headers":'
        b'{"authorization":"Bearer SECRETUTF8 \xff\xfe"}}}\n'
    )
    (folder / "envoy.log").write_text(
        '[2026-11-02T09:20:00.000Z] "POST /api/things?access_token=SECRETENVOY HTTP/1.1" 200 - 10 20 5 4 '
        '"192.0.2.4" "ua" "env-req-1" "api.example.com" "10.0.0.9:8080"\n'
        + json.dumps(
            {
                "start_time": "2026-11-02T09:21:00.000Z",
                "method": "DELETE",
                "path": "/api/x?sig=SECRETENVJSON",
                "response_code": 200,
                "x_request_id": "env-req-2",
                "authority": "api" + HOSTILE,
                "jwt_sub": "sub" + HOSTILE,
            }
        )
        + "\n",
        encoding="utf-8",
    )
    write_lines(
        folder / "apigw.ndjson",
        [
            {
                "requestId": "apigw-1",
                "ip": "192.0.2.4",
                "requestTime": "02/Nov/2026:09:30:00 +0000",
                "httpMethod": "POST",
                "resourcePath": "/pets?api_key=SECRETAPIGW",
                "path": "/pets?api_key=SECRETAPIGW",
                "status": "200",
                "protocol": "HTTP/1.1",
                "accessKey": "ASIAHOSTILE00000001",
            },
        ],
    )


def _idps(folder: Path) -> None:
    write_lines(
        folder / "auth0.ndjson",
        [
            {
                "log_id": "a0-1",
                "data": {
                    "date": "2026-11-02T09:00:30Z",
                    "type": "seccft",
                    "client_id": "cid",
                    "client_name": "bot",
                    "details": {"access_token": "SECRETAUTH0", "client_secret": "SECRETAUTH0CS"},
                },
            },
        ],
    )
    write_lines(
        folder / "keycloak.ndjson",
        [
            {
                "id": "kc-1",
                "time": 1793610000000,
                "type": "CLIENT_LOGIN",
                "realmId": "r",
                "clientId": "c",
                "userId": "u",
                "details": {"token_id": "jti-1", "refresh_token": "SECRETKC", "client_secret": "SECRETKCCS"},
            },
        ],
    )


def write_world(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    _cloudtrail(folder)
    _provenance(folder)
    _vault(folder)
    _gateways(folder)
    _idps(folder)
    return folder


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None

    @property
    def text(self) -> str:
        return self.stdout + self.stderr


def invoke(*args: str, env: dict[str, str] | None = None) -> Run:
    """The CLI in-process, consoles wide enough that no value is folded across lines."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli, "console", Console(width=2000))
        mp.setattr(cli, "err_console", Console(width=2000, stderr=True))
        mp.delenv("NHIAUDIT_DB", raising=False)
        mp.delenv("NHIAUDIT_POLICY", raising=False)
        result = cli_invoke(args, env=env)
    return Run(result.exit_code, result.stdout, result.stderr, result.exception)


@dataclass
class World:
    root: Path
    evidence: Path
    db: Path
    policy: Path
    ingest: Run
    outputs: dict[str, Path] = field(default_factory=dict)


REPORT_FORMATS = {fmt: f"r.{fmt}" for fmt in WRITERS}  # every writer, as `report --<fmt> r.<fmt>`


def report_args(world: World, out: Path, db: Path | None = None) -> list[str]:
    args = ["report", "--db", str(db or world.db), "--policy", str(world.policy), "--fail-on", "critical"]
    for fmt, name in REPORT_FORMATS.items():
        args += [f"--{fmt}", str(out / name)]
    return args


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("security")
    evidence = write_world(root / "evidence")
    policy = root / "nhiaudit.toml"
    policy.write_text(POLICY, encoding="utf-8")
    db = root / "store.duckdb"
    ingest = invoke("ingest", str(evidence), "--db", str(db))
    return World(root, evidence, db, policy, ingest)


@pytest.fixture(scope="module")
def reports(world: World) -> tuple[Run, Path]:
    out = world.root / "reports"
    out.mkdir()
    run = invoke(*report_args(world, out), env={"SOURCE_DATE_EPOCH": "1800000000"})
    assert run.exit_code in (0, 1), run.text
    return run, out


@pytest.fixture(scope="module")
def traces(world: World, reports) -> dict[tuple[str, bool], Run]:
    """``trace`` (tree and --json) of every action and credential issuance in the store."""
    with duckdb.connect(str(world.db), read_only=True) as con:
        ids = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT source || ':' || event_id FROM events "
                "WHERE category IN ('action', 'credential_issue') ORDER BY 1"
            ).fetchall()
        ]
    assert len(ids) >= 8
    out = {}
    for ident in ids:
        for as_json in (False, True):
            args = ["trace", ident, "--db", str(world.db), "--policy", str(world.policy)]
            out[(ident, as_json)] = invoke(*args, *(["--json"] if as_json else []))
    return out


# --- 1. secrets ------------------------------------------------------------------------------------


def test_the_evidence_really_holds_the_secrets(world: World) -> None:
    """The store keeps evidence untouched (raw, rejected.raw): the other tests are not vacuous."""
    with duckdb.connect(str(world.db), read_only=True) as con:
        raw = " ".join(r[0] for r in con.execute("SELECT raw::VARCHAR FROM events").fetchall())
        rejected_raw = " ".join(r[0] or "" for r in con.execute("SELECT raw FROM rejected").fetchall())
    for secret in (
        "SECRETTOKEN123",
        "SECRETHMAC",
        "SECRETBEARER",
        "SECRETAPIKEY",
        "SECRETQS",
        "SECRETENVOY",
        "SECRETENVJSON",
        "SECRETAPIGW",
        "SECRETAUTH0",
        "SECRETKC",
    ):
        assert secret in raw, secret
    assert "SECRETMALFORMED" in rejected_raw


def test_no_secret_in_ingest_output_or_rejected_reasons(world: World) -> None:
    assert world.ingest.exit_code == 0, world.ingest.text
    assert SECRET not in world.ingest.text
    with duckdb.connect(str(world.db), read_only=True) as con:
        reasons = dict(con.execute("SELECT path, reason FROM rejected ORDER BY path, line").fetchall())
        kong = sorted(r[0] for r in con.execute("SELECT event_id FROM events WHERE source = 'kong'").fetchall())
    assert SECRET not in " ".join(reasons.values())
    assert reasons[str(world.evidence / "kong.log")] == "line 2: not valid JSON (truncated or malformed record)"
    # The line that is not UTF-8 is one rejected record; the rest of its file loads.
    assert reasons[str(world.evidence / "kong_bad_utf8.log")] == (
        "line 2: not UTF-8 text (invalid byte at column 105); the line was not read"
    )
    assert kong == ["kong-" + HOSTILE, "kong-2"]
    note = f"note: {world.evidence / 'kong_bad_utf8.log'}: 1 line(s) not UTF-8 text were rejected"
    assert note in world.ingest.stdout


def test_duckdb_errors_lose_the_quoted_evidence(tmp_path: Path) -> None:
    """DuckDB quotes the offending line ("Original Line: ...") or value in its errors; a reason
    built from one (ingest note, rejected.reason) keeps what went wrong and drops the evidence."""
    from nhiaudit.ingest import duckdb_reason
    from nhiaudit.sources._read import read_lines_sql

    path = tmp_path / "bad.log"
    path.write_bytes(b'{"ok": 1}\n{"authorization": "Bearer SECRETLINE \xff"}\n')
    with duckdb.connect() as con, pytest.raises(duckdb.Error) as csv_error:
        con.execute(read_lines_sql(path)).fetchall()
    with duckdb.connect() as con, pytest.raises(duckdb.Error) as cast_error:
        con.execute("SELECT CAST('SECRETVALUE' AS INTEGER)").fetchall()
    assert "SECRETLINE" in str(csv_error.value) and "SECRETVALUE" in str(cast_error.value)
    csv_reason, cast_reason = duckdb_reason(csv_error.value), duckdb_reason(cast_error.value)
    assert SECRET not in csv_reason and "Original Line" not in csv_reason and "Possible Solution" not in csv_reason
    assert "CSV Error on Line: 2" in csv_reason and "Invalid unicode" in csv_reason
    assert SECRET not in cast_reason and "Conversion Error" in cast_reason


def test_lines_that_are_not_utf8_are_rejected_one_by_one(tmp_path: Path) -> None:
    """One raw byte an attacker sent through a proxy must not blind the audit to the whole log."""
    envoy = tmp_path / "envoy.log"
    line = '[2026-11-02T09:20:0{s}.000Z] "POST /a HTTP/1.1" 200 - 10 20 5 4 "192.0.2.4" "{ua}" "e-{s}" "api" "up"\n'
    envoy.write_bytes(
        line.format(s=1, ua="ua").encode().replace(b'"ua"', b'"ua\xff"') + line.format(s=2, ua="ua").encode()
    )
    # A JSON document over several lines is not salvaged: blanking a line could drop one field.
    document = tmp_path / "trail.json"
    document.write_bytes(
        b'{"Records": [\n {"eventVersion": "1.09", "eventID": "d-1", "eventSource": '
        b'"s3.amazonaws.com", "eventName": "Get\xff"}\n]}\n'
    )
    db = tmp_path / "s.duckdb"
    run = invoke("ingest", str(envoy), str(document), "--db", str(db))
    assert run.exit_code == 2  # the document could not be read at all
    with duckdb.connect(str(db), read_only=True) as con:
        events = con.execute("SELECT event_id, line FROM events").fetchall()
        rejected = con.execute("SELECT path, line, reason, raw FROM rejected ORDER BY path").fetchall()
    assert events == [("e-2", 2)]
    assert rejected[0][:3] == (
        str(envoy),
        1,
        "line 1: not UTF-8 text (invalid byte at column 78); the line was not read",
    )
    assert rejected[0][3].startswith('[2026-11-02T09:20:01.000Z] "POST /a') and '"ua\\xff"' in rejected[0][3]
    assert rejected[1][0] == str(document) and rejected[1][2].startswith("cloudtrail could not read the file")


def test_no_secret_in_any_report(reports) -> None:
    run, out = reports
    assert SECRET not in run.text
    for name in REPORT_FORMATS.values():
        assert SECRET not in (out / name).read_text(encoding="utf-8"), name


def test_no_secret_in_any_trace(traces) -> None:
    for (ident, as_json), run in traces.items():
        assert run.exit_code == 0, (ident, run.text)
        assert SECRET not in run.text, (ident, as_json)


def test_no_secret_in_error_messages(world: World) -> None:
    run = invoke("trace", "kong:SECRETNOPE", "--db", str(world.db), "--policy", str(world.policy))
    assert run.exit_code == 2
    # The id the user typed is echoed back; no id from the evidence carries a secret.
    assert run.stderr.count(SECRET) == run.stderr.count("SECRETNOPE")


# --- 2. escaping -----------------------------------------------------------------------------------


def assert_inert(text: str, where: str) -> None:
    for char in RAW_CONTROLS:
        assert char not in text, f"{where}: raw {char!r}"


def test_terminal_outputs_are_inert(world: World, reports, traces) -> None:
    assert_inert(world.ingest.text, "ingest")
    assert_inert(reports[0].text, "report summary")
    for (ident, as_json), run in traces.items():
        assert_inert(run.text, f"trace {ident!r} json={as_json}")
    tree = next(
        run for (ident, as_json), run in traces.items() if ident.startswith("cloudtrail:ev-put-") and not as_json
    )
    # Shown escaped and literal: the markup is text, not a link; the escape sequences are spelled out.
    assert "[link=http://evil]x[/link]<script>" in tree.stdout
    assert "\\x1b[2J\\x1b]8;;http://x\\x07" in tree.stdout
    assert "\\u202e" in tree.stdout and "\\x0d" in tree.stdout and "\\x00" in tree.stdout


def test_trace_json_is_ascii_and_lossless(traces) -> None:
    for (ident, as_json), run in traces.items():
        if not as_json:
            continue
        assert run.stdout.isascii(), ident
        doc = json.loads(run.stdout)
        assert f"{doc['action']['source']}:{doc['action']['event_id']}" == ident
    put = next(run for (ident, as_json), run in traces.items() if ident.startswith("cloudtrail:ev-put-") and as_json)
    doc = json.loads(put.stdout)
    assert doc["action"]["event_id"] == "ev-put-" + HOSTILE
    task = next(link for link in doc["links"] if link["kind"] == "task")
    assert ("Intent " + HOSTILE) in task["label"]


def test_report_files_escape_for_their_medium(reports) -> None:
    _, out = reports
    texts = {fmt: (out / name).read_text(encoding="utf-8") for fmt, name in REPORT_FORMATS.items()}
    for fmt, text in texts.items():
        assert_inert(text.replace("\r\n", "\n"), fmt)
        # CSV is data for a spreadsheet: markup is inert there, formulas are not (checked below).
        assert "<script>" not in text or fmt == "csv", fmt
    for fmt in ("json", "sarif"):
        assert texts[fmt].isascii() and "<script>" not in texts[fmt]
        json.loads(texts[fmt])
    for line in texts["ocsf"].splitlines():
        assert line.isascii() and "<" not in line
        json.loads(line)
    # Hostile values survive the JSON round trip exactly.
    actors = [f["actor_id"] for f in json.loads(texts["json"])["findings"]]
    assert "kong-consumer:cons" + HOSTILE in actors
    # HTML: text, never markup; nothing closes the document's elements early.
    html = texts["html"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;/textarea&gt;" in html
    assert "<script" not in html and "</textarea>" not in html and "http://evil" not in html.split("<body>")[0]
    # JUnit: well-formed XML 1.0 whose text holds the hostile value spelled out.
    root = ET.fromstring(texts["junit"].encode("utf-8"))
    # (this world runs with --fail-on critical: its findings are in system-out, not failures)
    text = " ".join(
        [*(f.get("message", "") for f in root.iter("failure")), *(o.text or "" for o in root.iter("system-out"))]
    )
    assert "\\x1b[2J" in text and "]]>" in text
    # CSV: no cell a spreadsheet would run as a formula.
    import csv as csv_module
    import io

    cells = [c for row in csv_module.reader(io.StringIO(texts["csv"])) for c in row]
    assert cells and not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    # Markdown: no link, no HTML, no table break from log text, as GitHub renders it (cmark-gfm); log
    # text is in code spans where Markdown would act on it, so "[link=…]" may stand there as text.
    import cmarkgfm
    from cmarkgfm.cmark import Options

    md = texts["markdown"]
    assert "<script" not in md and "</textarea" not in md
    rendered = cmarkgfm.github_flavored_markdown_to_html(md, options=Options.CMARK_OPT_UNSAFE)
    assert "<a " not in rendered and "<script" not in rendered and "<textarea" not in rendered


def test_hostile_file_names(tmp_path: Path) -> None:
    """A file name is log text too: in the progress bar, the summary notes and the unknown-file list."""
    folder = tmp_path / "names"
    folder.mkdir()
    loaded = folder / "p\x1b]0;t\x07[link=e.x]'q.ndjson"  # short: the progress bar shows 40 characters
    loaded.write_text(
        json.dumps({"record_type": "task", "task_id": "t-9", "agent_id": "a", "started_at": "2026-11-02T09:00:00Z"})
        + "\n{broken\n",
        encoding="utf-8",
    )
    (folder / "u\x1b[2J[blink]x\u202e.dat").write_text("not a log\n", encoding="utf-8")
    err = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        # A terminal, so that the progress bar renders; styles then add escapes of Rich's own.
        mp.setattr(cli, "console", Console(file=io.StringIO(), width=2000, force_terminal=True))
        mp.setattr(cli, "err_console", Console(file=err, width=2000, force_terminal=True))
        result = cli_invoke(["ingest", str(folder), "--db", str(tmp_path / "s.duckdb")])
        out = cli.console.file.getvalue()
    assert result.exit_code == 2  # the .dat file is not recognized
    for text, where in ((out, "stdout"), (err.getvalue(), "stderr")):
        assert "\x1b]8;" not in text, f"{where}: a hyperlink made from a file name"
        for char in ("\x1b]0;", "\x07", "\x1b[2J", "\x1b[5m", "\u202e"):  # Rich itself emits none of these
            assert char not in text, f"{where}: raw {char!r}"
    assert "p\\x1b]0;t\\x07[link=e.x]'q.ndjson" in err.getvalue()  # the progress bar shows the name as text
    assert "u\\x1b[2J[blink]x\\u202e.dat" in err.getvalue()


def test_sql_outputs_are_inert(world: World) -> None:
    db = ["--db", str(world.db)]
    query = (
        "SELECT actor_id, resource, '=1+1' AS \"=cmd|' /C calc'!A0\" FROM events "
        "WHERE source = 'cloudtrail' AND category = 'action' ORDER BY event_id"
    )
    table = invoke("sql", query, *db)
    assert table.exit_code == 0 and "[link=http://evil]" in table.stdout
    assert_inert(table.text, "sql table")
    # A PIVOT turns log values into column names.
    pivot = invoke("sql", "PIVOT (SELECT actor_id FROM events WHERE source = 'kong') ON actor_id USING count(*)", *db)
    assert pivot.exit_code == 0 and "[link=http://evil]" in pivot.stdout
    assert_inert(pivot.text, "sql pivot")
    as_csv = invoke("sql", query, *db, "--csv")
    assert as_csv.exit_code == 0
    assert_inert(as_csv.stdout.replace("\n", ""), "sql --csv")
    rows = list(csv.reader(io.StringIO(as_csv.stdout)))
    assert rows[0][2] == "'=cmd|' /C calc'!A0"  # a header is a cell too
    assert rows[1][2] == "'=1+1"
    assert rows[1][0].endswith(
        "\\x1b[2J\\x1b]8;;http://x\\x07lnk\\x1b]8;;\\x07\\x0d\\u202e[link=http://evil]x"
        '[/link]<script>alert(1)</script>=HYPERLINK("http://e")]]></textarea>\\x00'
    )
    as_json = invoke("sql", query, *db, "--json")
    assert as_json.exit_code == 0
    assert_inert(as_json.stdout, "sql --json")
    assert json.loads(as_json.stdout)[0]["actor_id"].endswith(HOSTILE)  # lossless


def test_error_messages_are_inert(world: World) -> None:
    runs = [
        invoke("trace", "cloudtrail:\x1b[31m[bold]no\u202e", "--db", str(world.db), "--policy", str(world.policy)),
        invoke("ingest", str(world.evidence), "--db", str(world.root / "x.duckdb"), "--source", "\x1b[2J[bold]x"),
        invoke("ingest", str(world.root / "no\x1b[2J[bold]such"), "--db", str(world.root / "x.duckdb")),
    ]
    for run in runs:
        assert run.exit_code == 2
        assert_inert(run.text, "error")
        assert "[bold]" in run.stderr  # printed as text, not applied as markup
    assert "closest ids:" in runs[0].stderr  # suggestions come from the (hostile) store, escaped


# --- 3. SQL: paths with quotes ----------------------------------------------------------------------


def test_a_path_with_single_quotes_ingests(tmp_path: Path) -> None:
    folder = tmp_path / "o'brien's logs"
    folder.mkdir()
    path = folder / "it's'; DROP TABLE events; --.ndjson"
    write_lines(
        path,
        [
            {
                "eventVersion": "1.09",
                "eventID": "q-1",
                "eventTime": "2026-11-02T09:00:00Z",
                "eventSource": "s3.amazonaws.com",
                "eventName": "GetObject",
                "userIdentity": {
                    "type": "AssumedRole",
                    "arn": "arn:aws:sts::1:assumed-role/a/b",
                    "accessKeyId": "ASIAQUOTE00000000001",
                },
            }
        ],
    )
    gz = folder / "o'k.ndjson.gz"
    import gzip

    gz.write_bytes(gzip.compress(path.read_bytes().replace(b"q-1", b"q-2")))
    db = tmp_path / "s.duckdb"
    run = invoke("ingest", str(folder), "--db", str(db))
    assert run.exit_code == 0, run.text
    with duckdb.connect(str(db), read_only=True) as con:
        assert sorted(con.execute("SELECT path FROM evidence_files").fetchall()) == sorted([(str(gz),), (str(path),)])
        assert sorted(r[0] for r in con.execute("SELECT event_id FROM events").fetchall()) == ["q-1", "q-2"]


def test_hostile_scope_globs_are_data_not_sql(world: World, reports) -> None:
    """Approval scope globs from the evidence are matched as globs (regex metacharacters escaped)."""
    with duckdb.connect(str(world.db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] > 10
        scopes = con.execute("SELECT scope_resources FROM approvals WHERE has_scope").fetchone()[0]
    assert scopes[0] == "arn:aws:s3:::reports-(a|b)[x]\\'); DROP TABLE events; --*"


# --- 4. determinism -----------------------------------------------------------------------------------


def test_reports_are_byte_identical(world: World, reports, tmp_path: Path) -> None:
    """Same evidence and policy, same bytes: a second run and a second store built from scratch."""
    _, first = reports
    env = {"SOURCE_DATE_EPOCH": "1800000000"}
    again = tmp_path / "again"
    again.mkdir()
    assert invoke(*report_args(world, again), env=env).exit_code in (0, 1)
    other_db = tmp_path / "other.duckdb"
    assert invoke("ingest", str(world.evidence), "--db", str(other_db)).exit_code == 0
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert invoke(*report_args(world, fresh, db=other_db), env=env).exit_code in (0, 1)
    for name in REPORT_FORMATS.values():
        expected = (first / name).read_bytes()
        assert (again / name).read_bytes() == expected, name
        assert (fresh / name).read_bytes() == expected, name
    assert json.loads((first / REPORT_FORMATS["json"]).read_text())["generated_at"] == "2027-01-15T08:00:00Z"


def test_ties_are_broken_the_same_way(world: World, reports) -> None:
    """Two approvals and two grants at the same instant, a session tag key given twice: the choice
    is fixed by the records' own keys, not by DuckDB's row order."""
    with duckdb.connect(str(world.db), read_only=True) as con:
        task = con.execute("SELECT task_id FROM credentials WHERE credential_id = 'ASIAHOSTILE00000001'").fetchone()[0]
        approval, grant = con.execute(
            "SELECT approval_id, grant_role FROM chains WHERE source = 'cloudtrail' AND action = 'iam:CreateUser'"
        ).fetchone()
    assert task == "t-1"
    assert approval == "APR-2"  # approval_key breaks the tie: provenance:<sha>:2 > provenance:<sha>:1
    assert grant == "change-manager"  # the earliest grant, then by role


def test_discovery_order_is_sorted(tmp_path: Path) -> None:
    from nhiaudit.ingest import discover

    for name in ("b.ndjson", "a.ndjson", "c/z.ndjson", "c/a.ndjson", "B.ndjson"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}\n")
    found, _ = discover([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "B.ndjson",
        "a.ndjson",
        "b.ndjson",
        "c/a.ndjson",
        "c/z.ndjson",
    ]


# --- 5. robustness ------------------------------------------------------------------------------------


@pytest.fixture
def held_store(tmp_path: Path) -> Iterator[Path]:
    """A store held open for writing by another process, as during a long ingest."""
    db = tmp_path / "busy.duckdb"
    duckdb.connect(str(db)).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; con = duckdb.connect(sys.argv[1]); print('ready', flush=True); sys.stdin.read()",
            str(db),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        yield db
    finally:
        holder.stdin.close()  # type: ignore[union-attr]
        holder.wait(timeout=30)


def test_a_second_writer_gets_a_clear_error(held_store: Path, world: World) -> None:
    # The holder never lets go: a 1 s bound on the wait (instead of the default 10 s) gives the same error.
    for args in (["ingest", str(world.evidence / "vault.log")], ["report"], ["sql", "SELECT 1"]):
        run = invoke(*args, "--db", str(held_store), env={"NHIAUDIT_LOCK_WAIT": "1"})
        assert run.exit_code == 2, (args, run.text)
        assert f"error: {held_store}: the store is open in another nhiaudit or DuckDB process." in run.stderr
        assert "Traceback" not in run.text
        if args[0] != "ingest":  # ingest does not wait: a second writer is refused at once
            assert "Waited 1 s for it" in " ".join(run.stderr.split())


def test_report_on_an_empty_store_exits_2(tmp_path: Path) -> None:
    db = tmp_path / "empty.duckdb"
    empty = tmp_path / "empty"
    empty.mkdir()
    # No evidence: ingest exits 2 (DESIGN §7: never 0 without evidence) but creates the store.
    assert invoke("ingest", str(empty), "--db", str(db)).exit_code == 2 and db.exists()
    run = invoke("report", "--db", str(db))
    assert run.exit_code == 2
    assert run.stderr.strip() == "error: store: no events in the store. Run `nhiaudit ingest PATH...` first."


def test_policy_syntax_error_names_file_and_line(world: World, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[identities]\nhumans = ["*@example.com"\n[risk]\n', encoding="utf-8")
    run = invoke("report", "--db", str(world.db), "--policy", str(bad))
    assert run.exit_code == 2
    assert run.stderr.startswith(f"error: {bad}:3: invalid TOML")
