"""Correlation: one small evidence world per link kind (issue #3), then the real samples.

Each test writes a few CloudTrail / provenance / Vault / OTLP records (built by the helpers below,
with the field names of DESIGN §4), ingests them into an in-memory store, correlates under a
policy, and reads ``chains`` (one row per audited action) or the findings.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import duckdb
import pytest
from helpers import SAMPLES, build_world, rows, sample, write_lines

from nhiaudit import correlate, evaluate, ingest, store
from nhiaudit.policy import Policy, load_policy
from nhiaudit.rules import load_rules
from nhiaudit.sources import SOURCES

ACCOUNT = "111122223333"
DAY = "2026-11-02"
ORCHESTRATOR = f"arn:aws:iam::{ACCOUNT}:user/agent-orchestrator"
ORCHESTRATOR_KEY = "AKIAORCHESTRATOR0001"
HUMANS_POLICY = """
[identities]
humans = ["arn:aws:iam::*:user/*@*", "*@example.com"]
brokers = ["arn:aws:sts::*:assumed-role/agent-orchestrator/*"]
"""

# --------------------------------------------------------------------------------------------------
# Record builders (also used by test_trace.py)
# --------------------------------------------------------------------------------------------------


def at(hms: str, day: str = DAY) -> str:
    return f"{day}T{hms}Z"


def _identity(arn: str, key: str, source_identity: str | None = None) -> dict:
    """CloudTrail userIdentity for an IAM user, an assumed-role session or a federated user."""
    if ":user/" in arn:
        return {
            "type": "IAMUser",
            "principalId": "AIDA" + key[4:],
            "arn": arn,
            "accountId": ACCOUNT,
            "accessKeyId": key,
            "userName": arn.rsplit("/", 1)[1],
        }
    kind = "FederatedUser" if ":federated-user/" in arn else "AssumedRole"
    role = arn.split("/")[1]
    context: dict = {
        "sessionIssuer": {
            "type": "Role",
            "principalId": "AROA" + key[4:],
            "arn": f"arn:aws:iam::{ACCOUNT}:role/{role}",
            "accountId": ACCOUNT,
            "userName": role,
        },
        "attributes": {"creationDate": f"{DAY}T08:00:00Z", "mfaAuthenticated": "false"},
    }
    if source_identity:
        context["sourceIdentity"] = source_identity
    return {
        "type": kind,
        "principalId": "AROA" + key[4:] + ":" + arn.rsplit("/", 1)[1],
        "arn": arn,
        "accountId": ACCOUNT,
        "accessKeyId": key,
        "sessionContext": context,
    }


def ct_assume_role(
    event_id: str,
    time: str,
    *,
    caller: str,
    caller_key: str,
    role: str,
    session: str,
    new_key: str,
    source_identity: str | None = None,
    tags: dict[str, str] | None = None,
) -> dict:
    """sts:AssumeRole by ``caller`` (with ``caller_key``) issuing ``new_key`` for role/session."""
    request: dict = {
        "roleArn": f"arn:aws:iam::{ACCOUNT}:role/{role}",
        "roleSessionName": session,
        "durationSeconds": 900,
    }
    if source_identity:
        request["sourceIdentity"] = source_identity
    if tags:
        request["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
    response: dict = {
        "credentials": {"accessKeyId": new_key, "expiration": "Nov 2, 2026, 11:00:00 PM"},
        "assumedRoleUser": {
            "assumedRoleId": f"AROA{new_key[4:]}:{session}",
            "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}",
        },
    }
    if source_identity:
        response["sourceIdentity"] = source_identity
    return {
        "eventVersion": "1.08",
        "userIdentity": _identity(caller, caller_key),
        "eventTime": time,
        "eventSource": "sts.amazonaws.com",
        "eventName": "AssumeRole",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "10.0.1.20",
        "userAgent": "aws-sdk-go-v2/1.30.3",
        "requestParameters": request,
        "responseElements": response,
        "requestID": event_id[::-1],
        "eventID": event_id,
        "readOnly": True,
        "resources": [{"accountId": ACCOUNT, "type": "AWS::IAM::Role", "ARN": request["roleArn"]}],
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management",
    }


def ct_federation_token(
    event_id: str, time: str, *, caller: str, caller_key: str, name: str, new_key: str, tags: dict[str, str]
) -> dict:
    """sts:GetFederationToken by an IAM user: the federated user acts with the user's authority."""
    return {
        "eventVersion": "1.08",
        "userIdentity": _identity(caller, caller_key),
        "eventTime": time,
        "eventSource": "sts.amazonaws.com",
        "eventName": "GetFederationToken",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "10.0.1.21",
        "userAgent": "aws-cli/2.17.20",
        "requestParameters": {
            "name": name,
            "durationSeconds": 3600,
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        },
        "responseElements": {
            "credentials": {"accessKeyId": new_key, "expiration": "Nov 2, 2026, 11:00:00 PM"},
            "federatedUser": {
                "federatedUserId": f"{ACCOUNT}:{name}",
                "arn": f"arn:aws:sts::{ACCOUNT}:federated-user/{name}",
            },
            "packedPolicySize": 6,
        },
        "requestID": event_id[::-1],
        "eventID": event_id,
        "readOnly": True,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management",
    }


def ct_call(
    event_id: str,
    time: str,
    *,
    actor: str,
    key: str,
    action: str = "s3:PutObject",
    resource: str | None = "arn:aws:s3:::reports-prod/2026/11/sales.csv",
    source_identity: str | None = None,
    read_only: bool = False,
) -> dict:
    """A call by ``actor`` with ``key``; an S3 object resource is logged object-first, then its bucket."""
    service, name = action.split(":")
    resources = []
    request: dict | None = None
    if resource and service == "s3" and "/" in resource.split(":::", 1)[1]:
        bucket, _, object_key = resource.split(":::", 1)[1].partition("/")
        request = {"bucketName": bucket, "key": object_key, "Host": f"{bucket}.s3.us-east-1.amazonaws.com"}
        resources = [
            {"type": "AWS::S3::Object", "ARN": resource},
            {"accountId": ACCOUNT, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{bucket}"},
        ]
    elif resource:
        resources = [{"accountId": ACCOUNT, "ARN": resource}]
    record = {
        "eventVersion": "1.09",
        "userIdentity": _identity(actor, key, source_identity),
        "eventTime": time,
        "eventSource": f"{service}.amazonaws.com",
        "eventName": name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "10.0.2.30",
        "userAgent": "[aws-sdk-go-v2/1.30.3]",
        "requestParameters": request,
        "responseElements": None,
        "requestID": event_id[::-1],
        "eventID": event_id,
        "readOnly": read_only,
        "eventType": "AwsApiCall",
        "managementEvent": service != "s3",
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Data" if service == "s3" else "Management",
    }
    if resources:
        record["resources"] = resources
    return record


def task(
    task_id: str,
    *,
    agent: str = "report-bot",
    requested_by: str = "bob@example.com",
    started: str = "09:00:00",
    ended: str | None = "09:40:00",
    intent: str = "Publish the November sales report",
) -> dict:
    record = {
        "record_type": "task",
        "task_id": task_id,
        "agent_id": agent,
        "intent": intent,
        "requested_by": requested_by,
        "started_at": at(started),
        "status": "completed",
    }
    if ended:
        record["ended_at"] = at(ended)
    return record


def approval(
    approval_id: str,
    task_id: str,
    *,
    approver: str = "alice@example.com",
    decision: str = "approved",
    decided: str = "08:55:00",
    expires: str | None = None,
    scope: dict | None = None,
) -> dict:
    record = {
        "record_type": "approval",
        "approval_id": approval_id,
        "task_id": task_id,
        "approver": approver,
        "decision": decision,
        "decided_at": decided if "T" in decided else at(decided),
        "justification": "Monthly report",
        "ticket": "CHG0031337",
    }
    if expires:
        record["expires_at"] = at(expires)
    if scope is not None:
        record["scope"] = scope
    return record


def grant(
    approver: str,
    role: str,
    valid_from: str = "2026-01-01T00:00:00Z",
    valid_to: str | None = "2027-01-01T00:00:00Z",
) -> dict:
    record = {"record_type": "grant", "approver": approver, "role": role, "valid_from": valid_from}
    if valid_to:
        record["valid_to"] = valid_to
    return record


def build(
    folder: Path, policy_text: str = "", **files: Iterable[dict] | dict
) -> tuple[duckdb.DuckDBPyConnection, Policy]:
    """``name_ext=records`` keyword arguments as files (``cloudtrail_ndjson`` -> ``cloudtrail.ndjson``),
    written compactly, ingested and correlated by ``helpers.build_world``."""
    named = {name.replace("_", ".", 1): content for name, content in files.items()}
    return build_world(folder, named, policy_text, separators=(",", ":"))


def chain(con: duckdb.DuckDBPyConnection, event_id: str) -> dict:
    found = rows(con, "SELECT * FROM chains WHERE event_id = ?", [event_id])
    assert len(found) == 1, f"{len(found)} chain rows for {event_id}"
    return found[0]


def findings(con: duckdb.DuckDBPyConnection, policy: Policy, event_id: str | None = None) -> set[str]:
    """Rule ids found (on ``event_id`` when given)."""
    return {f.rule for f in evaluate.evaluate(con, policy, load_rules()) if event_id is None or f.event_id == event_id}


def agent_world(task_id: str = "t-7f3a", **issue_options) -> list[dict]:
    """The orchestrator's long-term key vends a report-bot session, which writes a report."""
    return [
        ct_assume_role(
            "11111111-0000-4000-8000-000000000001",
            at("09:01:00"),
            caller=ORCHESTRATOR,
            caller_key=ORCHESTRATOR_KEY,
            role="report-bot",
            session=task_id,
            new_key="ASIAREPORTBOT0000001",
            **issue_options,
        ),
        ct_call(
            "11111111-0000-4000-8000-000000000002",
            at("09:05:00"),
            actor=f"arn:aws:sts::{ACCOUNT}:assumed-role/report-bot/{task_id}",
            key="ASIAREPORTBOT0000001",
        ),
    ]


ACTION_ID = "11111111-0000-4000-8000-000000000002"


# --------------------------------------------------------------------------------------------------
# Link kinds
# --------------------------------------------------------------------------------------------------


def test_source_identity_links_the_task(tmp_path: Path) -> None:
    con, policy = build(
        tmp_path,
        cloudtrail_ndjson=agent_world(source_identity="t-7f3a"),
        provenance_ndjson=[task("t-7f3a"), approval("APR-1042", "t-7f3a")],
    )
    row = chain(con, ACTION_ID)
    assert (row["task_id"], row["task_link"], row["task_status"]) == ("t-7f3a", "sourceIdentity", "found")
    assert row["issuance_event_id"] == "11111111-0000-4000-8000-000000000001"
    assert (row["root_credential_id"], row["root_kind"]) == (ORCHESTRATOR_KEY, "long_term")
    assert (row["approval_id"], row["approval_status"], row["verdict"]) == ("APR-1042", "found", "approved")
    assert findings(con, policy, ACTION_ID) == set()


def test_session_tag_links_the_task(tmp_path: Path) -> None:
    con, _ = build(
        tmp_path,
        cloudtrail_ndjson=agent_world(tags={"Project": "reports", "TaskId": "t-7f3a"}),
        provenance_ndjson=[task("t-7f3a")],
    )
    row = chain(con, ACTION_ID)
    assert (row["task_id"], row["task_link"], row["task_known"]) == ("t-7f3a", "session_tag", True)


def test_session_tag_keys_come_from_the_policy(tmp_path: Path) -> None:
    con, _ = build(
        tmp_path,
        '[correlation]\ntask_tag_keys = ["JobId"]\n',
        cloudtrail_ndjson=agent_world(tags={"TaskId": "t-other", "JobId": "t-7f3a"}),
        provenance_ndjson=[task("t-7f3a")],
    )
    assert chain(con, ACTION_ID)["task_id"] == "t-7f3a"


def test_role_chaining_inherits_the_task_of_the_first_hop(tmp_path: Path) -> None:
    first, second = "ASIAREPORTBOT0000001", "ASIAPUBLISHER0000002"
    con, _ = build(
        tmp_path,
        cloudtrail_ndjson=[
            ct_assume_role(
                "22222222-0000-4000-8000-000000000001",
                at("09:01:00"),
                caller=ORCHESTRATOR,
                caller_key=ORCHESTRATOR_KEY,
                role="report-bot",
                session="t-7f3a",
                new_key=first,
                source_identity="t-7f3a",
            ),
            # The second hop carries no task id of its own.
            ct_assume_role(
                "22222222-0000-4000-8000-000000000002",
                at("09:02:00"),
                caller=f"arn:aws:sts::{ACCOUNT}:assumed-role/report-bot/t-7f3a",
                caller_key=first,
                role="report-publisher",
                session="publish",
                new_key=second,
            ),
            ct_call(
                "22222222-0000-4000-8000-000000000003",
                at("09:05:00"),
                actor=f"arn:aws:sts::{ACCOUNT}:assumed-role/report-publisher/publish",
                key=second,
            ),
        ],
        provenance_ndjson=[task("t-7f3a")],
    )
    row = chain(con, "22222222-0000-4000-8000-000000000003")
    assert row["issuance_event_id"] == "22222222-0000-4000-8000-000000000002"
    assert row["parent_credential_id"] == first
    assert list(row["chain_credential_ids"]) == [second, first, ORCHESTRATOR_KEY]
    assert (row["chain_depth"], row["root_credential_id"], row["root_kind"]) == (
        2,
        ORCHESTRATOR_KEY,
        "long_term",
    )
    assert (row["task_id"], row["task_link"], row["task_credential_id"]) == (
        "t-7f3a",
        "sourceIdentity",
        first,
    )
    assert row["task_status"] == "found" and row["broken_credential_id"] is None


def _vault_pair(request_id: str, time: str, request: dict, response: dict, auth: dict | None = None) -> list[dict]:
    """One Vault request as the audit device writes it: a request line, then a response line."""
    head = {"time": time, "type": "request", "request": {"id": request_id, **request}}
    tail = {
        "time": time.replace("Z", ".5Z"),
        "type": "response",
        "request": {"id": request_id, **request},
        "response": response,
    }
    if auth is not None:
        head["auth"] = tail["auth"] = auth
    return [head, tail]


@pytest.mark.skipif("vault" not in SOURCES, reason="the vault source is not registered yet")
def test_vault_login_metadata_task_reaches_the_dynamic_aws_key(tmp_path: Path) -> None:
    accessor = "hmac-sha256:6f1c0d9e4b2a7c3f5e8d1a0b9c2e4f6a8b0d2c4e6f8a0b1c3d5e7f9a1b3c5d7e"
    token_auth = {
        "client_token": "hmac-sha256:0c3e",
        "accessor": accessor,
        "display_name": "approle-report-bot",
        "policies": ["default", "aws-report"],
        "token_policies": ["default", "aws-report"],
        "metadata": {"role_name": "report-bot", "task_id": "t-vault"},
        "token_ttl": 900,
        "token_type": "service",
    }
    vault = [
        *_vault_pair(
            "8b3c1f2e-1111-4a5b-9c6d-000000000001",
            at("09:00:30"),
            {
                "operation": "update",
                "mount_type": "approle",
                "path": "auth/approle/login",
                "remote_address": "10.0.3.40",
            },
            {"auth": {**token_auth, "token_issue_time": at("09:00:30")}, "mount_type": "approle"},
        ),
        *_vault_pair(
            "8b3c1f2e-1111-4a5b-9c6d-000000000002",
            at("09:00:40"),
            {
                "operation": "read",
                "mount_type": "aws",
                "path": "aws/creds/report-bot",
                "client_token": "hmac-sha256:0c3e",
                "client_token_accessor": accessor,
                "remote_address": "10.0.3.40",
            },
            {
                "mount_type": "aws",
                "secret": {"lease_id": "aws/creds/report-bot/Xyz", "lease_duration": 900},
                "data": {
                    "access_key": "ASIAVAULTREPORT00001",
                    "secret_key": "hmac-sha256:55aa",
                    "security_token": "hmac-sha256:66bb",
                },
            },
            auth=token_auth,
        ),
    ]
    con, policy = build(
        tmp_path,
        HUMANS_POLICY,
        vault_log=vault,
        cloudtrail_ndjson=[
            ct_call(
                "33333333-0000-4000-8000-000000000001",
                at("09:05:00"),
                actor=f"arn:aws:sts::{ACCOUNT}:assumed-role/vault-report-bot/vault-approle-report-bot-17303",
                key="ASIAVAULTREPORT00001",
            ),
        ],
        provenance_ndjson=[task("t-vault"), approval("APR-7", "t-vault")],
    )
    row = chain(con, "33333333-0000-4000-8000-000000000001")
    assert row["issuance_source"] == "vault"
    assert row["parent_credential_id"] == accessor
    assert (row["root_credential_id"], row["root_kind"]) == (accessor, "vault")
    assert row["task_id"] == "t-vault" and row["task_link"].startswith("vault")
    token = con.execute("SELECT task_id, task_link FROM credentials WHERE credential_id = ?", [accessor]).fetchone()
    assert token == ("t-vault", "vault_metadata")
    assert row["broken_credential_id"] is None and row["verdict"] == "approved"
    assert findings(con, policy, "33333333-0000-4000-8000-000000000001") == set()


@pytest.mark.parametrize("tagged", [True, False])
def test_federation_token_from_a_human_user_is_agent_used_human_identity(tmp_path: Path, tagged: bool) -> None:
    bob = f"arn:aws:iam::{ACCOUNT}:user/bob@example.com"
    con, policy = build(
        tmp_path,
        HUMANS_POLICY,
        cloudtrail_ndjson=[
            ct_federation_token(
                "44444444-0000-4000-8000-000000000001",
                at("09:01:00"),
                caller=bob,
                caller_key="AKIABOBEXAMPLE000001",
                name="report-bot",
                new_key="ASIAFEDERATED0000001",
                tags={"TaskId": "t-7f3a"} if tagged else {"Project": "reports"},
            ),
            ct_call(
                "44444444-0000-4000-8000-000000000002",
                at("09:05:00"),
                actor=f"arn:aws:sts::{ACCOUNT}:federated-user/report-bot",
                key="ASIAFEDERATED0000001",
            ),
        ],
        provenance_ndjson=[task("t-7f3a"), approval("APR-1042", "t-7f3a")],
    )
    row = chain(con, "44444444-0000-4000-8000-000000000002")
    assert row["credential_holder"] == f"arn:aws:sts::{ACCOUNT}:federated-user/report-bot"
    assert row["issuance_event_id"] == "44444444-0000-4000-8000-000000000001"
    assert (row["human_holder"], row["human_credential_id"]) == (bob, "AKIABOBEXAMPLE000001")
    found = findings(con, policy, "44444444-0000-4000-8000-000000000002")
    if tagged:
        assert (row["task_id"], row["task_link"]) == ("t-7f3a", "session_tag")
        assert "agent-used-human-identity" in found
    else:  # not task-linked: the break is the missing task, reported once
        assert row["task_id"] is None
        assert "agent-used-human-identity" not in found and "credential-without-task" in found


def test_broker_root_is_not_a_broken_chain(tmp_path: Path) -> None:
    broker = f"arn:aws:sts::{ACCOUNT}:assumed-role/agent-orchestrator/orch-7"
    records = agent_world(source_identity="t-7f3a")
    # The orchestrator's own session key was vended outside the evidence: no issuance for it.
    records[0] = ct_assume_role(
        "11111111-0000-4000-8000-000000000001",
        at("09:01:00"),
        caller=broker,
        caller_key="ASIAORCHESTRATOR0007",
        role="report-bot",
        session="t-7f3a",
        new_key="ASIAREPORTBOT0000001",
        source_identity="t-7f3a",
    )
    con, policy = build(
        tmp_path,
        HUMANS_POLICY,
        cloudtrail_ndjson=records,
        provenance_ndjson=[task("t-7f3a"), approval("APR-1042", "t-7f3a")],
    )
    row = chain(con, ACTION_ID)
    assert (row["root_credential_id"], row["root_kind"]) == ("ASIAORCHESTRATOR0007", "broker")
    assert row["broken_credential_id"] is None and row["verdict"] == "approved"
    assert "broken-delegation-chain" not in findings(con, policy, ACTION_ID)


def test_unknown_temporary_parent_breaks_the_chain(tmp_path: Path) -> None:
    runner = f"arn:aws:sts::{ACCOUNT}:assumed-role/ci-runner/job-4411"
    records = agent_world(source_identity="t-7f3a")
    records[0] = ct_assume_role(
        "11111111-0000-4000-8000-000000000001",
        at("09:01:00"),
        caller=runner,
        caller_key="ASIACIRUNNER00004411",
        role="report-bot",
        session="t-7f3a",
        new_key="ASIAREPORTBOT0000001",
        source_identity="t-7f3a",
    )
    con, policy = build(
        tmp_path,
        HUMANS_POLICY,
        cloudtrail_ndjson=records,
        provenance_ndjson=[task("t-7f3a"), approval("APR-1042", "t-7f3a")],
    )
    row = chain(con, ACTION_ID)
    assert row["broken_credential_id"] == "ASIACIRUNNER00004411"
    assert (row["root_credential_id"], row["root_kind"]) == ("ASIACIRUNNER00004411", "unrooted")
    assert row["issuance_status"] == "found" and row["verdict"] == "unknown"
    assert "broken-delegation-chain" in findings(con, policy, ACTION_ID)


def _otel_task_trace(task_id: str) -> dict:
    def attrs(**values: str) -> list[dict]:
        return [{"key": k.replace("__", "."), "value": {"stringValue": v}} for k, v in values.items()]

    return {
        "resourceSpans": [
            {
                "resource": {"attributes": attrs(service__name="report-agent")},
                "scopeSpans": [
                    {
                        "scope": {"name": "openai-agents"},
                        "spans": [
                            {
                                "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
                                "spanId": "00f067aa0ba902b7",
                                "name": "invoke_agent report-bot",
                                "kind": 1,
                                "startTimeUnixNano": "1793610000000000000",
                                "endTimeUnixNano": "1793612400000000000",
                                "attributes": attrs(
                                    gen_ai__operation__name="invoke_agent",
                                    gen_ai__agent__id="report-bot",
                                    nhiaudit__task__id=task_id,
                                    nhiaudit__task__intent="Publish the sales report",
                                ),
                                "status": {"code": 1},
                            }
                        ],
                    }
                ],
            }
        ]
    }


@pytest.mark.skipif("otel" not in SOURCES, reason="the otel source is not registered yet")
def test_task_known_only_from_traces(tmp_path: Path) -> None:
    con, policy = build(
        tmp_path,
        cloudtrail_ndjson=agent_world(source_identity="t-otel"),
        otel_json=_otel_task_trace("t-otel"),
    )
    row = chain(con, ACTION_ID)
    assert (row["task_id"], row["task_known"], row["task_known_from"]) == ("t-otel", True, "trace")
    assert (row["agent_id"], row["task_status"]) == ("report-bot", "found")
    assert "unknown-task" not in findings(con, policy, ACTION_ID)


def test_task_known_only_from_provenance(tmp_path: Path) -> None:
    con, policy = build(
        tmp_path,
        cloudtrail_ndjson=agent_world(source_identity="t-7f3a"),
        provenance_ndjson=[task("t-7f3a", agent="report-bot", requested_by="bob@example.com")],
    )
    row = chain(con, ACTION_ID)
    assert (row["task_known"], row["task_known_from"], row["agent_id"]) == (True, "provenance", "report-bot")
    assert row["task_requested_by"] == "bob@example.com"
    assert {"unknown-task", "credential-without-task"}.isdisjoint(findings(con, policy, ACTION_ID))


def test_task_id_no_record_knows_is_unknown(tmp_path: Path) -> None:
    con, policy = build(
        tmp_path, cloudtrail_ndjson=agent_world(source_identity="t-ghost"), provenance_ndjson=[task("t-7f3a")]
    )
    row = chain(con, ACTION_ID)
    assert (row["task_id"], row["task_known"], row["task_status"], row["verdict"]) == (
        "t-ghost",
        False,
        "missing",
        "unknown",
    )
    # The break is reported once, where it broke: not again as a missing approval.
    assert findings(con, policy, ACTION_ID) == {"unknown-task"}


# --------------------------------------------------------------------------------------------------
# Several approvals on one task, and clock skew
# --------------------------------------------------------------------------------------------------


def _approvals_world(tmp_path: Path, approvals: list[dict], policy_text: str = "") -> tuple[dict, set[str]]:
    con, policy = build(
        tmp_path,
        policy_text,
        cloudtrail_ndjson=agent_world(source_identity="t-7f3a"),
        provenance_ndjson=[task("t-7f3a"), *approvals],
    )
    return chain(con, ACTION_ID), findings(con, policy, ACTION_ID)


def test_approved_before_and_denied_after_the_action_is_approved(tmp_path: Path) -> None:
    row, found = _approvals_world(
        tmp_path,
        [
            approval("APR-1", "t-7f3a", decided="08:55:00"),
            approval("APR-2", "t-7f3a", decision="denied", decided="09:30:00"),
        ],
    )
    assert (row["approval_id"], row["effective_decision"], row["approval_status"]) == (
        "APR-1",
        "approved",
        "found",
    )
    assert (row["approval_records"], row["verdict"]) == (2, "approved")
    assert found == set()


def test_denied_before_and_approved_after_the_action_is_a_late_approval(tmp_path: Path) -> None:
    row, found = _approvals_world(
        tmp_path,
        [
            approval("APR-1", "t-7f3a", decision="denied", decided="08:55:00"),
            approval("APR-2", "t-7f3a", decided="09:30:00"),
        ],
    )
    assert (row["approval_id"], row["approval_late"], row["verdict"]) == ("APR-2", True, "unapproved")
    # Not a withdrawn approval: no approval existed when the denial was taken (DESIGN §6:
    # approval-denied needs all records to be denials, or a denial superseding an approval).
    assert found == {"approval-after-action"}


def test_approval_superseded_by_a_denial_before_the_action_is_denied(tmp_path: Path) -> None:
    row, found = _approvals_world(
        tmp_path,
        [
            approval("APR-1", "t-7f3a", decided="08:30:00"),
            approval("APR-2", "t-7f3a", decision="denied", decided="08:50:00"),
        ],
    )
    assert (row["effective_decision"], row["effective_approval_id"], row["approval_status"]) == (
        "denied",
        "APR-2",
        "conflict",
    )
    assert row["verdict"] == "unapproved"
    assert found == {"approval-denied"}


def test_the_same_approval_re_decided_as_denied_is_denied(tmp_path: Path) -> None:
    # A provenance record re-emitted with a new decision is a new event with the same approval id.
    row, found = _approvals_world(
        tmp_path,
        [
            approval("APR-1", "t-7f3a", decided="08:30:00"),
            approval("APR-1", "t-7f3a", decision="denied", decided="08:50:00"),
        ],
    )
    assert (row["effective_decision"], row["approval_records"], row["verdict"]) == ("denied", 2, "unapproved")
    assert found == {"approval-denied"}


def test_only_denials_are_denied(tmp_path: Path) -> None:
    row, found = _approvals_world(
        tmp_path,
        [
            approval("APR-1", "t-7f3a", decision="denied", decided="08:30:00"),
            approval("APR-2", "t-7f3a", decision="denied", decided="09:30:00"),
        ],
    )
    assert (row["approval_id"], row["approval_status"], row["denied_records"]) == (None, "conflict", 2)
    assert found == {"approval-denied"}


@pytest.mark.parametrize(
    ("decided", "skew", "late"),
    [
        ("09:06:40", "120s", False),  # 100 s after the action, inside the skew
        ("09:08:20", "120s", True),  # 200 s after the action
        ("09:03:20", "120s", False),  # 100 s before
        ("09:06:40", "60s", True),  # the same 100 s with a tighter skew
    ],
)
def test_clock_skew_bounds_a_late_approval(tmp_path: Path, decided: str, skew: str, late: bool) -> None:
    row, found = _approvals_world(
        tmp_path, [approval("APR-1", "t-7f3a", decided=decided)], f'[correlation]\nclock_skew = "{skew}"\n'
    )
    assert row["approval_late"] is late
    assert ("approval-after-action" in found) is late
    assert row["verdict"] == ("unapproved" if late else "approved")


@pytest.mark.parametrize(("expires", "expired"), [("09:03:20", False), ("09:01:40", True)])
def test_clock_skew_bounds_an_expired_approval(tmp_path: Path, expires: str, expired: bool) -> None:
    # The action ran at 09:05:00: 100 s and 200 s after the approval's expires_at.
    row, found = _approvals_world(tmp_path, [approval("APR-1", "t-7f3a", decided="08:55:00", expires=expires)])
    assert row["approval_expired"] is expired
    assert ("approval-expired" in found) is expired


def test_max_age_expires_an_old_approval(tmp_path: Path) -> None:
    row, found = _approvals_world(
        tmp_path,
        [approval("APR-1", "t-7f3a", decided="2026-11-01T08:00:00Z")],
        '[approval]\nmax_age = "24h"\n',
    )
    assert row["approval_expired"] is True and found == {"approval-expired"}


# --------------------------------------------------------------------------------------------------
# Staleness and the real samples
# --------------------------------------------------------------------------------------------------


def test_staleness_follows_evidence_and_policy(tmp_path: Path) -> None:
    con = store.connect(":memory:")
    evidence = write_lines(tmp_path / "cloudtrail.ndjson", agent_world(source_identity="t-7f3a"), separators=(",", ":"))
    ingest.ingest(con, [evidence])
    policy = Policy()
    assert correlate.is_stale(con, policy)
    correlate.correlate(con, policy)
    assert not correlate.is_stale(con, policy)
    (tmp_path / "nhiaudit.toml").write_text('[audit]\nmin_tier = "low"\n', encoding="utf-8")
    changed = load_policy(tmp_path / "nhiaudit.toml")
    assert correlate.is_stale(con, changed)
    assert correlate.ensure(con, changed) and not correlate.is_stale(con, changed)
    ingest.ingest(con, [write_lines(tmp_path / "more.ndjson", [task("t-7f3a")], separators=(",", ":"))])
    assert correlate.is_stale(con, changed)


@pytest.fixture(scope="module")
def samples_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    con = store.connect(":memory:")
    ingest.ingest(con, [sample(SAMPLES / "aws_cloudtrail")])
    policy_file = tmp_path_factory.mktemp("samples") / "nhiaudit.toml"
    policy_file.write_text('[audit]\nmin_tier = "low"\n', encoding="utf-8")
    correlate.correlate(con, load_policy(policy_file))
    yield con
    con.close()


def test_otrf_sample_key_resolves_to_its_issuance(samples_store: duckdb.DuckDBPyConnection) -> None:
    rows = samples_store.execute(
        "SELECT DISTINCT issuance_event_id FROM chains WHERE credential_id = 'ASIA5FLZVX4OPVKKVBMX'"
    ).fetchall()
    assert rows == [("a3a3dded-7c27-42c0-a42d-891cdd436278",)]
    count = samples_store.execute(
        "SELECT count(*) FROM chains WHERE credential_id = 'ASIA5FLZVX4OPVKKVBMX'"
    ).fetchone()[0]
    assert count > 1


def test_stratus_sample_key_is_rooted_at_its_long_term_key(samples_store: duckdb.DuckDBPyConnection) -> None:
    rows = samples_store.execute(
        """SELECT DISTINCT issuance_event_id, root_credential_id, root_kind FROM chains
           WHERE credential_id = 'ASIANQQHHS551LWULIWD'"""
    ).fetchall()
    assert rows == [("fd179e25-9f1a-406c-8d7d-62f9d4938ef6", "AKIAWOGXN38MFN92ING5", "long_term")]
