"""Incremental correlation (nhiaudit.incremental) gives exactly what a full correlation gives.

Files are added to a store one at a time, correlating after each (incrementally when possible); after
every step every derived table (sorted rows) and the findings must equal those of a fresh store that
ingested the same files and correlated them in full. The worlds: the sample world, a generated world
whose later files link to chains of earlier ones, and every rule-case world.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import write_lines
from test_rules import CASES, EVIDENCE_SUFFIXES

from nhiaudit import correlate, evaluate, incremental, ingest, store
from nhiaudit.policy import Policy, load_policy
from nhiaudit.rules import load_rules

ROOT = Path(__file__).resolve().parents[1]


def derived(con) -> dict[str, list[tuple]]:
    """Every derived table's rows, sorted (the findings' too: their order is not their content)."""
    return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in correlate.DERIVED_TABLES}


def full_of(files: list[Path], policy: Policy) -> tuple[dict, list]:
    con = store.connect(":memory:")
    try:
        ingest.ingest(con, files)
        correlate.correlate(con, policy, full=True)
        return derived(con), evaluate.stored(con, policy)
    finally:
        con.close()


def add_one_at_a_time(files: list[Path], policy: Policy, share: float = 1.0) -> list[str]:
    """Ingest ``files`` one by one, correlating after each; compare with a full correlation each
    time. Returns the correlation mode of every step (meta correlated_mode). A closure of any size
    stays incremental here (these worlds are small: most of a world is one component)."""
    original, incremental.MAX_SHARE = incremental.MAX_SHARE, share
    con = store.connect(":memory:")
    modes = []
    try:
        for n, path in enumerate(files, 1):
            ingest.ingest(con, [path])
            correlate.correlate(con, policy)
            modes.append(store.get_meta(con, "correlated_mode"))
            tables, findings = full_of(files[:n], policy)
            got = derived(con)
            for table in correlate.DERIVED_TABLES:
                assert got[table] == tables[table], f"after {path.name} ({modes[-1]}): {table} differs"
            assert evaluate.stored(con, policy) == findings, f"after {path.name}: findings differ"
    finally:
        incremental.MAX_SHARE = original
        con.close()
    return modes


def test_the_reviewed_sql_is_the_correlation_sql():
    """Editing queries/correlate/*.sql turns the incremental path off until KEYS_SQL is checked
    against the new joins: then set REVIEWED_SQL to this digest."""
    assert incremental.sql_digest(correlate.sql_files()) == incremental.REVIEWED_SQL


def test_sample_world_file_by_file(monkeypatch):
    monkeypatch.chdir(ROOT)
    files = sorted(
        p.relative_to(ROOT)
        for p in (ROOT / "sample_logs").rglob("*")
        if p.is_file() and p.name.endswith(EVIDENCE_SUFFIXES) and p.name != "README.md"
    )
    policy = load_policy(ROOT / "sample_logs" / "nhiaudit.toml")
    modes = add_one_at_a_time(files, policy)
    assert modes[0].startswith("full") and modes[1:] == ["incremental"] * (len(modes) - 1), modes


def _cloudtrail(event_id: str, name: str, when: str, *, key: str, actor: str, **extra) -> dict:
    record = {
        "eventVersion": "1.08",
        "eventID": event_id,
        "eventTime": when,
        "eventSource": "sts.amazonaws.com",
        "eventName": name,
        "awsRegion": "eu-west-1",
        "sourceIPAddress": "10.0.0.1",
        "userAgent": "agent/1.0",
        "recipientAccountId": "111122223333",
        "readOnly": False,
        "eventType": "AwsApiCall",
        "userIdentity": {"type": "AssumedRole", "arn": actor, "accountId": "111122223333", "accessKeyId": key},
    }
    record.update(extra)
    return record


def _assume(event_id: str, when: str, *, parent: str, issued: str, task: str | None, actor: str) -> dict:
    params = {"roleArn": "arn:aws:iam::111122223333:role/agent-task", "roleSessionName": f"s-{event_id}"}
    if task:
        params["sourceIdentity"] = task
    return _cloudtrail(
        event_id,
        "AssumeRole",
        when,
        key=parent,
        actor=actor,
        requestParameters=params,
        responseElements={
            "credentials": {"accessKeyId": issued, "expiration": "2026-11-02T12:00:00Z"},
            "sourceIdentity": task,
        }
        if task
        else {"credentials": {"accessKeyId": issued, "expiration": "2026-11-02T12:00:00Z"}},
    )


def _use(event_id: str, when: str, *, key: str, name: str = "DeleteBucket", actor: str) -> dict:
    record = _cloudtrail(event_id, name, when, key=key, actor=actor, requestParameters={"bucketName": f"b-{event_id}"})
    record["eventSource"] = "s3.amazonaws.com"
    return record


def _prov(kind: str, rid: str, when: str, **fields) -> dict:
    """A provenance record (docs/sources.md): a task, approval or grant."""
    field = {"task": "started_at", "approval": "decided_at", "grant": "valid_from"}[kind]
    named = {"approval": {"approval_id": rid}}.get(kind, {})
    return {"record_type": kind, **named, field: when, **fields}


def test_generated_world_with_chains_across_files(tmp_path):
    """Later files carry a use of an old credential, an approval of an old task, an issuance whose
    parent is old, a grant of an old approver and a task record of an old issuance's task."""
    agent = "arn:aws:sts::111122223333:assumed-role/agent-task/s-1"
    root_key = "AKIAROOT000000000001"
    files = {
        "a.ndjson": [
            _assume(
                "e1",
                "2026-11-02T09:00:00Z",
                parent=root_key,
                issued="ASIAONE0000000000001",
                task="task-1",
                actor="arn:aws:iam::111122223333:user/orchestrator",
            ),
            _use("e2", "2026-11-02T09:01:00Z", key="ASIAONE0000000000001", actor=agent),
            _assume(
                "e3",
                "2026-11-02T09:02:00Z",
                parent=root_key,
                issued="ASIATWO0000000000002",
                task="task-2",
                actor="arn:aws:iam::111122223333:user/orchestrator",
            ),
        ],
        "b.ndjson": [  # a use of an old credential, a chained issuance from an old one
            _use("e4", "2026-11-02T09:05:00Z", key="ASIATWO0000000000002", name="PutObject", actor=agent),
            _assume(
                "e5",
                "2026-11-02T09:06:00Z",
                parent="ASIAONE0000000000001",
                issued="ASIATHR0000000000003",
                task=None,
                actor=agent,
            ),
            _use("e6", "2026-11-02T09:07:00Z", key="ASIATHR0000000000003", actor=agent),
        ],
        "c.provenance.ndjson": [  # the tasks and an approval of an old task
            _prov(
                "task",
                "t1",
                "2026-11-02T08:59:00Z",
                task_id="task-1",
                agent_id="agent-a",
                requested_by="alice@example.com",
                intent="clean up",
            ),
            _prov(
                "approval",
                "ap1",
                "2026-11-02T08:59:30Z",
                task_id="task-1",
                approver="bob@example.com",
                decision="approved",
            ),
        ],
        "d.provenance.ndjson": [  # the approver's grant, a second approval, the second task
            _prov("grant", "g1", "2026-11-01T00:00:00Z", approver="bob@example.com", role="change-manager"),
            _prov(
                "task",
                "t2",
                "2026-11-02T09:01:30Z",
                task_id="task-2",
                agent_id="agent-b",
                requested_by="carol@example.com",
            ),
            _prov(
                "approval",
                "ap2",
                "2026-11-02T09:10:00Z",
                task_id="task-2",
                approver="bob@example.com",
                decision="approved",
            ),
        ],
        "e.ndjson": [  # an unrelated action, and a duplicate of an old record
            _use("e7", "2026-11-02T10:00:00Z", key="AKIAOTHER00000000007", actor="arn:aws:iam::111122223333:user/ci"),
            _use("e2", "2026-11-02T09:01:00Z", key="ASIAONE0000000000001", actor=agent),
        ],
    }
    paths = []
    for name, lines in files.items():
        paths.append(write_lines(tmp_path / name, lines))
    policy_file = tmp_path / "nhiaudit.toml"
    policy_file.write_text(
        '[identities]\nhumans = ["*@example.com"]\n[authority]\nmedium = ["change-manager"]\n'
        'high = ["change-manager"]\n[risk]\nhigh = ["s3:DeleteBucket"]\n',
        encoding="utf-8",
    )
    policy = load_policy(policy_file)
    # the world must load whole, or the comparison proves little
    con = store.connect(":memory:")
    assert not ingest.ingest(con, paths).unrecognized
    assert not con.execute("SELECT count(*) FROM rejected").fetchone()[0]
    assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 12  # e.ndjson repeats e2: deduplicated
    correlate.correlate(con, policy)
    linked = con.execute(
        "SELECT event_id, task_id, approval_id, authorized, chain_depth FROM chains ORDER BY 1"
    ).fetchall()
    con.close()
    # the chains do cross the files: e6's key is issued from e1's, whose task is approved in c, by
    # an approver whose grant is in d
    assert ("e6", "task-1", "ap1", True, 2) in linked and ("e4", "task-2", "ap2", True, 1) in linked, linked
    modes = add_one_at_a_time(paths, policy)
    assert modes[0].startswith("full") and modes[1:] == ["incremental"] * 4, modes


def test_a_closure_too_large_rolls_back_and_rebuilds(monkeypatch):
    """The closure is found too large after the incremental run began writing: all of it is rolled
    back and the full rebuild gives the same tables as a fresh store."""
    monkeypatch.chdir(ROOT)
    files = [
        Path("sample_logs/cloudtrail/extra.ndjson"),
        Path("sample_logs/provenance/provenance.ndjson"),
        Path("sample_logs/gateway/kong.log"),
    ]
    modes = add_one_at_a_time(files, load_policy(ROOT / "sample_logs" / "nhiaudit.toml"), share=0.0)
    assert all(m.startswith("full: the new evidence reaches") for m in modes[1:]), modes


def _case_worlds() -> list[Path]:
    return sorted(w for w in CASES.glob("*/*") if w.is_dir())


@pytest.mark.parametrize("world", _case_worlds(), ids=lambda w: f"{w.parent.name}/{w.name}")
def test_rule_case_world_file_by_file(world: Path):
    files = sorted(p for p in world.iterdir() if p.name.endswith(EVIDENCE_SUFFIXES))
    policy_file = next((p for p in (world / "nhiaudit.toml", world.parent / "nhiaudit.toml") if p.is_file()), None)
    policy = load_policy(policy_file)
    add_one_at_a_time(files, policy)


def test_fallbacks(tmp_path):
    """A removed or replaced file, another policy, rules from [rules] dirs: a full correlation."""
    path = write_lines(
        tmp_path / "a.ndjson",
        [_use("x1", "2026-11-02T09:00:00Z", key="AKIAX0000000000000001", actor="arn:aws:iam::111122223333:user/ci")],
    )
    con = store.connect(":memory:")
    ingest.ingest(con, [path])
    correlate.correlate(con, Policy())
    correlate.correlate(con, _other_policy(tmp_path))
    assert store.get_meta(con, "correlated_mode").startswith("full: the policy")
    con.execute("DELETE FROM correlated_files")  # as if a file had been replaced: nothing matches
    con.execute("INSERT INTO correlated_files VALUES ('gone', now(), 1)")
    correlate.correlate(con, _other_policy(tmp_path))
    assert (
        store.get_meta(con, "correlated_mode")
        == "full: evidence files were removed or replaced since the last correlation"
    )
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (tmp_path / "r.toml").write_text(f'[rules]\ndirs = ["{rules_dir}"]\n', encoding="utf-8")
    ruled = load_policy(tmp_path / "r.toml")
    correlate.correlate(con, ruled)
    second = write_lines(
        tmp_path / "b.ndjson",
        [_use("x2", "2026-11-02T09:00:00Z", key="AKIAX0000000000000001", actor="arn:aws:iam::111122223333:user/ci")],
    )
    ingest.ingest(con, [second])
    correlate.correlate(con, ruled)
    assert store.get_meta(con, "correlated_mode") == "full: rules from [rules] dirs may aggregate across actions"
    assert load_rules(list(ruled.rules.dirs))
    con.close()


def _other_policy(folder: Path) -> Policy:
    path = folder / "other.toml"
    path.write_text('[audit]\nmin_tier = "low"\n', encoding="utf-8")
    return load_policy(path)
