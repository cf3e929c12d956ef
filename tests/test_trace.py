"""``trace``: the chain of one action as values (library) and as a tree or JSON (CLI).

One evidence world holds an action for every link status: approved end to end, a long-term key
with no task, an approver without authority for the tier, a denied task, a broken delegation chain,
and an actor id carrying a terminal escape and Rich markup.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from helpers import invoke, write_lines
from rich.console import Console
from test_correlate import (
    ACCOUNT,
    ORCHESTRATOR,
    ORCHESTRATOR_KEY,
    approval,
    at,
    ct_assume_role,
    ct_call,
    grant,
    task,
)

from nhiaudit import cli, correlate, ingest, store
from nhiaudit import trace as tracing
from nhiaudit.errors import NotFoundError
from nhiaudit.policy import load_policy

POLICY = """
[identities]
humans = ["arn:aws:iam::*:user/*@*", "*@example.com"]
[risk]
high = ["s3:DeleteObject*"]
[authority]
medium = ["team-lead", "change-manager"]
high = ["change-manager"]
"""


def eid(n: int) -> str:
    return f"7ace0000-{n:04d}-4000-8000-{n:012d}"


APPROVED, NO_TASK, NO_AUTHORITY, DENIED, BROKEN, HOSTILE = eid(2), eid(10), eid(4), eid(6), eid(8), eid(12)
ISSUANCE = eid(1)
HOSTILE_ACTOR = f"arn:aws:sts::{ACCOUNT}:assumed-role/report-bot/\x1b[31m[bold]evil[/bold]"


def _session(
    n: int,
    task_id: str,
    key: str,
    *,
    caller: str = ORCHESTRATOR,
    caller_key: str = ORCHESTRATOR_KEY,
    actor: str | None = None,
    **call,
) -> list[dict]:
    return [
        ct_assume_role(
            eid(n),
            at("09:01:00"),
            caller=caller,
            caller_key=caller_key,
            role="report-bot",
            session=task_id,
            new_key=key,
            source_identity=task_id,
        ),
        ct_call(
            eid(n + 1),
            at("09:05:00"),
            actor=actor or f"arn:aws:sts::{ACCOUNT}:assumed-role/report-bot/{task_id}",
            key=key,
            **call,
        ),
    ]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The evidence folder, a store file built from it, and the policy, side by side."""
    folder = tmp_path_factory.mktemp("trace")
    write_lines(
        folder / "cloudtrail.ndjson",
        [
            *_session(1, "t-0001", "ASIAREPORTBOT0000001"),
            *_session(
                3,
                "t-0003",
                "ASIAREPORTBOT0000003",
                action="s3:DeleteObject",
                resource="arn:aws:s3:::reports-prod/2025/old.csv",
            ),
            *_session(5, "t-0005", "ASIAREPORTBOT0000005"),
            *_session(
                7,
                "t-0007",
                "ASIAREPORTBOT0000007",
                caller=f"arn:aws:sts::{ACCOUNT}:assumed-role/ci-runner/job-1",
                caller_key="ASIACIRUNNER00000001",
            ),
            ct_call(
                NO_TASK,
                at("09:06:00"),
                actor=f"arn:aws:iam::{ACCOUNT}:user/legacy-etl",
                key="AKIALEGACYETL0000001",
            ),
            *_session(11, "t-0011", "ASIAREPORTBOT0000011", actor=HOSTILE_ACTOR),
        ],
        separators=(",", ":"),
    )
    write_lines(
        folder / "provenance.ndjson",
        [
            task("t-0001"),
            approval("APR-1", "t-0001", scope={"actions": ["s3:PutObject"]}),
            task("t-0003"),
            approval("APR-3", "t-0003", approver="dave@example.com"),
            task("t-0005"),
            approval("APR-5", "t-0005", decision="denied"),
            task("t-0007"),
            approval("APR-7", "t-0007"),
            task("t-0011"),
            approval("APR-11", "t-0011"),
            grant("alice@example.com", "change-manager"),
            grant("dave@example.com", "team-lead"),
        ],
        separators=(",", ":"),
    )
    (folder / "nhiaudit.toml").write_text(POLICY, encoding="utf-8")
    con = store.connect(folder / "store.duckdb")
    result = ingest.ingest(con, [folder / "cloudtrail.ndjson", folder / "provenance.ndjson"])
    assert sum(f.rejected for f in result.files) == 0
    con.close()
    return folder


@pytest.fixture
def con(world: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = store.connect(":memory:")
    ingest.ingest(connection, [world / "cloudtrail.ndjson", world / "provenance.ndjson"])
    correlate.correlate(connection, load_policy(world / "nhiaudit.toml"))
    yield connection
    connection.close()


@pytest.fixture
def run(world: Path, monkeypatch: pytest.MonkeyPatch):
    """``nhiaudit trace ...`` against the world's store and policy; wide consoles so that no
    line of the tree wraps."""
    monkeypatch.setattr(cli, "console", Console(width=250))
    monkeypatch.setattr(cli, "err_console", Console(width=250, stderr=True))
    return lambda *args: invoke(
        ["trace", *args, "--db", str(world / "store.duckdb"), "--policy", str(world / "nhiaudit.toml")]
    )


def _statuses(action) -> dict[str, str]:
    return {link.kind: link.status for link in action.links if link.kind != "parent"}


# --------------------------------------------------------------------------------------------------
# The library
# --------------------------------------------------------------------------------------------------


def test_trace_returns_every_link_with_evidence(con: duckdb.DuckDBPyConnection, world: Path) -> None:
    traced = tracing.trace(con, APPROVED)
    action, event = traced.action, traced.event
    assert action is not None and event["source"] == "cloudtrail"
    assert [link.kind for link in action.links] == [
        "action",
        "credential",
        "issuance",
        "parent",
        "task",
        "approval",
        "authority",
    ]
    assert {link.status for link in action.links} == {"found"}
    assert action.verdict == "approved"
    links = {link.kind: link for link in action.links}
    assert links["issuance"].id == f"cloudtrail:{ISSUANCE}"
    assert links["parent"].id == ORCHESTRATOR_KEY and links["parent"].depth == 1
    assert (links["task"].id, links["approval"].id, links["authority"].id) == (
        "t-0001",
        "APR-1",
        "change-manager",
    )
    evidence = links["action"].evidence
    assert (evidence.file, evidence.record_index, evidence.line) == (str(world / "cloudtrail.ndjson"), 1, 2)
    assert links["issuance"].evidence.line == 1
    assert links["approval"].evidence.file == str(world / "provenance.ndjson")
    assert links["authority"].evidence.event_id.startswith("alice@example.com|change-manager|")


@pytest.mark.parametrize(
    ("event_id", "statuses", "verdict"),
    [
        (
            NO_TASK,
            {
                "credential": "found",
                "issuance": "not_required",
                "task": "missing",
                "approval": "missing",
                "authority": "missing",
            },
            "unknown",
        ),
        (NO_AUTHORITY, {"task": "found", "approval": "found", "authority": "conflict"}, "unapproved"),
        (DENIED, {"task": "found", "approval": "conflict", "authority": "missing"}, "unapproved"),
        (BROKEN, {"issuance": "found", "task": "found", "approval": "found"}, "unknown"),
    ],
)
def test_trace_statuses_and_verdicts(
    con: duckdb.DuckDBPyConnection, event_id: str, statuses: dict, verdict: str
) -> None:
    action = tracing.trace(con, event_id).action
    assert action is not None
    assert _statuses(action).items() >= statuses.items()
    assert action.verdict == verdict


def test_trace_shows_the_missing_parent_of_a_broken_chain(con: duckdb.DuckDBPyConnection) -> None:
    action = tracing.trace(con, BROKEN).action
    parents = [link for link in action.links if link.kind == "parent"]
    assert [(p.id, p.status) for p in parents] == [("ASIACIRUNNER00000001", "missing")]


def test_trace_of_an_event_that_is_not_an_audited_action(con: duckdb.DuckDBPyConnection) -> None:
    traced = tracing.trace(con, f"cloudtrail:{ISSUANCE}")
    assert traced.action is None
    assert traced.not_audited_because == "it is a credential_issue event, not an action"



def test_trace_of_an_unknown_id_names_the_closest(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(NotFoundError) as caught:
        tracing.trace(con, APPROVED[:-1] + "9")
    assert f"cloudtrail:{APPROVED}" in caught.value.suggestions


# --------------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------------


def _line(kind: str, status: str) -> re.Pattern[str]:
    return re.compile(rf"\b{kind} {status}\b")


def test_tree_shows_every_link_kind_and_status(run) -> None:
    outputs = {}
    for event_id in (APPROVED, NO_TASK, NO_AUTHORITY, DENIED, BROKEN):
        result = run(event_id)
        assert result.exit_code == 0, result.output
        outputs[event_id] = result.stdout
    approved = outputs[APPROVED]
    assert "verdict: approved" in approved
    for kind in ("action", "credential", "issuance", "parent", "task", "approval", "authority"):
        assert _line(kind, "found").search(approved), kind
    assert "findings: none" in approved
    assert "cloudtrail.ndjson:2 record 1 id" in approved  # the evidence pointer: file, line, record

    assert "verdict: unknown" in outputs[NO_TASK]
    for kind, status in (("issuance", "not_required"), ("task", "missing"), ("approval", "missing")):
        assert _line(kind, status).search(outputs[NO_TASK]), (kind, status)
    assert re.search(r"high\s+credential-without-task", outputs[NO_TASK])
    assert re.search(r"medium\s+long-lived-credential", outputs[NO_TASK])

    assert "verdict: unapproved" in outputs[NO_AUTHORITY]
    assert _line("authority", "conflict").search(outputs[NO_AUTHORITY])
    assert "approver-lacks-authority" in outputs[NO_AUTHORITY]
    assert _line("approval", "conflict").search(outputs[DENIED]) and "approval-denied" in outputs[DENIED]
    assert _line("parent", "missing").search(outputs[BROKEN]) and "broken-delegation-chain" in outputs[BROKEN]


def test_json_has_action_verdict_links_and_findings(run) -> None:
    result = run(NO_AUTHORITY, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {"action", "verdict", "links", "findings"} <= doc.keys()
    assert (doc["action"]["event_id"], doc["action"]["source"]) == (NO_AUTHORITY, "cloudtrail")
    assert doc["verdict"] == "unapproved"
    for link in doc["links"]:
        assert {"kind", "id", "status", "evidence"} <= link.keys()
    kinds = {link["kind"]: link for link in doc["links"]}
    assert kinds["authority"]["status"] == "conflict"
    assert kinds["approval"]["evidence"]["file"].endswith("provenance.ndjson")
    assert {f["rule"] for f in doc["findings"]} == {"approver-lacks-authority"}


def test_source_prefixed_id(run) -> None:
    result = run(f"cloudtrail:{APPROVED}", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["action"]["source"], doc["action"]["event_id"], doc["verdict"]) == (
        "cloudtrail",
        APPROVED,
        "approved",
    )


def test_unknown_id_exits_2_and_names_the_closest_ids(run) -> None:
    wrong = APPROVED[:-1] + "9"
    result = run(wrong)
    assert result.exit_code == cli.EXIT_ERROR == 2
    assert f"error: trace: no event '{wrong}' in the store." in result.stderr
    closest = re.search(r"closest ids: (.*)", result.stderr)
    assert closest and f"cloudtrail:{APPROVED}" in closest.group(1).split(", ")
    assert result.stdout == ""


def test_hostile_actor_id_is_printed_inert(run) -> None:
    for args in ((HOSTILE,), (HOSTILE, "--json")):
        result = run(*args)
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output
    tree = run(HOSTILE).stdout
    # The markup is shown as text (not applied), the escape as a visible \x1b.
    assert "report-bot/\\x1b[31m[bold]evil[/bold]" in tree
    assert json.loads(run(HOSTILE, "--json").stdout)["action"]["actor_id"] == HOSTILE_ACTOR


def test_the_executable_traces_without_importing_pandas(world: Path) -> None:
    """``nhiaudit trace`` as a process: the same JSON as in-process, and pandas is never imported
    (DuckDB's client would import it, when installed, for the first parameterized statement)."""
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: sys.stderr.write(f\"\\npandas: {sys.modules.get('pandas', 'absent')}\\n\"))\n"
        "sys.argv = ['nhiaudit', *sys.argv[1:]]\n"
        "from nhiaudit.cli import run\n"
        "run()\n"
    )
    argv = ["trace", f"cloudtrail:{APPROVED}", "--json", "--db", str(world / "store.duckdb")]
    argv += ["--policy", str(world / "nhiaudit.toml")]
    done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["verdict"] == "approved"
    assert done.stderr.rstrip().endswith("pandas: None"), done.stderr  # marked absent, never imported


def test_one_events_links_by_index_equal_the_chain_links_view(con: duckdb.DuckDBPyConnection) -> None:
    """``trace`` reads one event's links from chain_link_rows and looks their evidence up by event id
    (so that DuckDB answers from the event_id index): row for row what the chain_links view says."""
    actions = con.execute("SELECT DISTINCT source, event_id FROM chains ORDER BY ALL").fetchall()
    assert len(actions) >= 6
    with_evidence = 0
    for source, event_id in actions:
        cursor = con.execute(
            "SELECT * FROM chain_links WHERE source = ? AND event_id = ? ORDER BY position", [source, event_id]
        )
        columns = [d[0] for d in cursor.description]
        expected = [dict(zip(columns, r, strict=True)) for r in cursor.fetchall()]
        assert tracing._links_of(con, source, event_id) == expected
        with_evidence += sum(link["path"] is not None for link in expected)
    assert with_evidence > len(actions)  # the evidence join is exercised, not only NULLs


def test_correlation_indexes_event_ids_for_point_lookups(con: duckdb.DuckDBPyConnection) -> None:
    indexed = set(con.execute("SELECT table_name, expressions FROM duckdb_indexes()").fetchall())
    for table, column in correlate.LOOKUP_INDEXES:
        assert (table, f"[{column}]") in indexed, indexed
