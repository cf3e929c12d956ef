"""Build the sample CloudTrail evidence for the example.com world (see sample_logs/README.md).

Writes, byte-for-byte reproducibly (tests/test_sample_logs.py checks that the committed files are its output):
  sample_logs/cloudtrail/111122223333_CloudTrail_eu-west-1_20261102T0900Z_x1.json.gz  (S3 delivery: gzip of
                                                                                      compact {"Records": [...]})
  sample_logs/cloudtrail/extra.ndjson                                                (one record a line)

The records below are the source of truth: edit them here, then run `python tools/make_cloudtrail.py`
(`--out DIR` writes DIR/cloudtrail/ instead). It lives outside sample_logs/ because that folder is evidence a
user ingests whole. Shapes follow real CloudTrail (../shared/samples/aws_cloudtrail): key names and order,
string booleans in sessionContext.attributes, both real spellings of `expiration`, S3 data events with the
object ARN before the bucket ARN in resources[], bracketed user agents on S3 data events, fake session tokens.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

SAMPLE_LOGS = Path(__file__).resolve().parents[1] / "sample_logs"
GZ_NAME = "cloudtrail/111122223333_CloudTrail_eu-west-1_20261102T0900Z_x1.json.gz"
NDJSON_NAME = "cloudtrail/extra.ndjson"

ACCOUNT = "111122223333"
REGION = "eu-west-1"
DAY = "2026-11-02"

BOTO = (
    "Boto3/1.35.36 md/Botocore#1.35.36 ua/2.0 os/linux#6.1.109 md/arch#x86_64 lang/python#3.12.7 "
    "md/pyimpl#CPython cfg/retry-mode#standard Botocore/1.35.36"
)
TLS = {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256"}


# --- small deterministic helpers -------------------------------------------------------------------------


def at(hhmmss: str) -> str:
    """'09:05:12' -> '2026-11-02T09:05:12Z' (CloudTrail eventTime: UTC, whole seconds)."""
    return f"{DAY}T{hhmmss}Z"


def event_id(scenario: int, n: int) -> str:
    """Memorable, UUID-shaped: scenario 1, record 2 -> e1000000-0000-4000-8000-000000010002."""
    return f"e1000000-0000-4000-8000-{scenario:08d}{n:04d}"


def _digest(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def request_id(eid: str) -> str:
    return str(uuid.UUID(_digest("requestID", eid)[:32]))


def s3_request_id(eid: str) -> str:
    return _digest("s3requestID", eid)[:16].upper()


def amz_id_2(eid: str) -> str:
    return _digest("x-amz-id-2", eid)[:76]


def expiration(issued_at: str, seconds: int, comma: bool) -> str:
    """The two real spellings (UTC, no zone): 'Oct 2, 2019 11:12:29 PM' / 'Sep 14, 2020, 7:01:26 AM'."""
    t = datetime.strptime(issued_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc) + timedelta(seconds=seconds)
    hour = t.hour % 12 or 12
    sep = ", " if comma else " "
    return f"{t:%b} {t.day}, {t.year}{sep}{hour}:{t:%M:%S} {'AM' if t.hour < 12 else 'PM'}"


def fake_session_token(key: str) -> str:
    # Never a real token; nhiaudit must never copy it into a report anyway (DESIGN 9).
    return "IQoJb3JpZ2luX2VjEXAMPLETOKEN" + _digest("token", key)[:64] + "EXAMPLETOKEN=="


def role_id(role: str) -> str:
    return "AROA" + _digest("roleid", role)[:17].upper()


def user_id(name: str) -> str:
    return "AIDA" + _digest("userid", name)[:17].upper()


def check_key(key: str) -> str:
    assert len(key) == 20 and key[:4] in ("ASIA", "AKIA") and key.isalnum() and key.isupper(), key
    return key


# --- identities ------------------------------------------------------------------------------------------


def iam_user(name: str, key: str, console_session_at: str | None = None) -> dict:
    ident = {
        "type": "IAMUser",
        "principalId": user_id(name),
        "arn": f"arn:aws:iam::{ACCOUNT}:user/{name}",
        "accountId": ACCOUNT,
        "accessKeyId": check_key(key),
        "userName": name,
    }
    if console_session_at:  # console sessions run on an ASIA key created at sign-in, MFA'd
        ident["sessionContext"] = {"attributes": {"creationDate": console_session_at, "mfaAuthenticated": "true"}}
    return ident


def role_session(role: str, session: str, key: str, created_at: str, source_identity: str | None = None) -> dict:
    ctx: dict = {
        "sessionIssuer": {
            "type": "Role",
            "principalId": role_id(role),
            "arn": f"arn:aws:iam::{ACCOUNT}:role/{role}",
            "accountId": ACCOUNT,
            "userName": role,
        },
        "webIdFederationData": {},
        "attributes": {"creationDate": created_at, "mfaAuthenticated": "false"},
    }
    if source_identity:
        ctx["sourceIdentity"] = source_identity
    return {
        "type": "AssumedRole",
        "principalId": f"{role_id(role)}:{session}",
        "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}",
        "accountId": ACCOUNT,
        "accessKeyId": check_key(key),
        "sessionContext": ctx,
    }


# The orchestrator, a trusted broker (identities.brokers). Its own key was issued before the log window.
BROKER = role_session("agent-orchestrator", "orchestrator", "ASIAEXAMPLEBROKER001", at("07:45:00"))
BROKER_IP, BROKER_UA = "203.0.113.10", BOTO + " app/agent-orchestrator#2.3.1"


# --- record builders -------------------------------------------------------------------------------------


def assume_role(
    scenario: int,
    n: int,
    when: str,
    caller: dict,
    role: str,
    session: str,
    new_key: str,
    *,
    source_identity: str | None = None,
    tags: list[dict] | None = None,
    duration: int = 3600,
    comma_expiration: bool = True,
    ip: str = BROKER_IP,
    ua: str = BROKER_UA,
) -> tuple[dict, dict]:
    """One sts:AssumeRole record, and the role-session identity its new key acts as afterwards."""
    eid = event_id(scenario, n)
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/{role}"
    params: dict = {"roleArn": role_arn, "roleSessionName": session, "durationSeconds": duration}
    if source_identity:
        params["sourceIdentity"] = source_identity
    if tags:
        params["tags"] = tags
    response: dict = {
        "credentials": {
            "accessKeyId": check_key(new_key),
            "sessionToken": fake_session_token(new_key),
            "expiration": expiration(when, duration, comma_expiration),
        },
        "assumedRoleUser": {
            "assumedRoleId": f"{role_id(role)}:{session}",
            "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}",
        },
    }
    if tags:
        response["packedPolicySize"] = 3
    # sourceIdentity is set once and then enforced down a role chain (it propagates; session tags do not).
    inherited = caller.get("sessionContext", {}).get("sourceIdentity")
    effective_si = source_identity or inherited
    if effective_si:
        response["sourceIdentity"] = effective_si
    record = {
        "eventVersion": "1.08",
        "userIdentity": caller,
        "eventTime": when,
        "eventSource": "sts.amazonaws.com",
        "eventName": "AssumeRole",
        "awsRegion": REGION,
        "sourceIPAddress": ip,
        "userAgent": ua,
        "requestParameters": params,
        "responseElements": response,
        "requestID": request_id(eid),
        "eventID": eid,
        "readOnly": True,
        "resources": [{"accountId": ACCOUNT, "type": "AWS::IAM::Role", "ARN": role_arn}],
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management",
        "tlsDetails": {**TLS, "clientProvidedHostHeader": f"sts.{REGION}.amazonaws.com"},
    }
    return record, role_session(role, session, new_key, when, effective_si)


def api_call(
    scenario: int,
    n: int,
    when: str,
    who: dict,
    service: str,
    name: str,
    params: dict | None,
    response: dict | None = None,
    *,
    ip: str,
    ua: str,
    read_only: bool = False,
    region: str = REGION,
    resources: list[dict] | None = None,
    error: tuple[str, str] | None = None,
    version: str = "1.09",
) -> dict:
    """A management event (control plane call)."""
    eid = event_id(scenario, n)
    rec: dict = {
        "eventVersion": version,
        "userIdentity": who,
        "eventTime": when,
        "eventSource": f"{service}.amazonaws.com",
        "eventName": name,
        "awsRegion": region,
        "sourceIPAddress": ip,
        "userAgent": ua,
    }
    if error:  # errorCode/errorMessage are absent on success
        rec["errorCode"], rec["errorMessage"] = error
    rec.update(
        {
            "requestParameters": params,
            "responseElements": response,
            "requestID": request_id(eid),
            "eventID": eid,
            "readOnly": read_only,
        }
    )
    if resources:
        rec["resources"] = resources
    rec.update(
        {
            "eventType": "AwsApiCall",
            "managementEvent": True,
            "recipientAccountId": ACCOUNT,
            "eventCategory": "Management",
            "tlsDetails": {**TLS, "clientProvidedHostHeader": f"{service}.{region}.amazonaws.com"},
        }
    )
    return rec


def s3_object_event(
    scenario: int,
    n: int,
    when: str,
    who: dict,
    name: str,
    bucket: str,
    key: str,
    *,
    ip: str,
    ua: str,
    size: float = 0.0,
    error: tuple[str, str] | None = None,
) -> dict:
    """An S3 data event: resources[] holds the object ARN first, then the bucket ARN."""
    eid = event_id(scenario, n)
    read_only = name in ("GetObject", "HeadObject")
    rec: dict = {
        "eventVersion": "1.09",
        "userIdentity": who,
        "eventTime": when,
        "eventSource": "s3.amazonaws.com",
        "eventName": name,
        "awsRegion": REGION,
        "sourceIPAddress": ip,
        "userAgent": f"[{ua}]",
    }
    if error:
        rec["errorCode"], rec["errorMessage"] = error
    response = None
    if not error and name == "PutObject":
        response = {"x-amz-server-side-encryption": "AES256"}
    rec.update(
        {
            "requestParameters": {
                "bucketName": bucket,
                "Host": f"{bucket}.s3.{REGION}.amazonaws.com",
                "key": key,
            },
            "responseElements": response,
            "additionalEventData": {
                "SignatureVersion": "SigV4",
                "CipherSuite": "TLS_AES_128_GCM_SHA256",
                "bytesTransferredIn": size if name == "PutObject" else 0.0,
                "AuthenticationMethod": "AuthHeader",
                "x-amz-id-2": amz_id_2(eid),
                "bytesTransferredOut": size if name == "GetObject" and not error else 0.0,
            },
            "requestID": s3_request_id(eid),
            "eventID": eid,
            "readOnly": read_only,
            "resources": [
                {"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{bucket}/{key}"},
                {"accountId": ACCOUNT, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{bucket}"},
            ],
            "eventType": "AwsApiCall",
            "managementEvent": False,
            "recipientAccountId": ACCOUNT,
            "eventCategory": "Data",
            "tlsDetails": {**TLS, "clientProvidedHostHeader": f"{bucket}.s3.{REGION}.amazonaws.com"},
        }
    )
    return rec


def agent_ua(agent: str) -> str:
    return f"{BOTO} app/{agent}#1.0"


# --- the world -------------------------------------------------------------------------------------------
# Scenario numbers match the table in README.md. Every audited action is commented with its expectation.

gz_records: list[dict] = []
ndjson_records: list[dict] = []

# 1. Clean: report-bot, task t-7f3a, approved by alice (change-manager) at 08:55. Key K1 via sourceIdentity.
issue, K1 = assume_role(
    1,
    1,
    at("09:01:00"),
    BROKER,
    "agent-report-bot",
    "report-bot-t-7f3a",
    "ASIAT7F3AEXAMPLE0001",
    source_identity="t-7f3a",
    comma_expiration=False,
)
gz_records.append(issue)
REPORT_IP = "203.0.113.21"
# 15 (noise): read-only, low tier, not audited.
gz_records.append(
    s3_object_event(
        15,
        1,
        at("09:03:40"),
        K1,
        "GetObject",
        "reports-prod",
        "2026/10/sales.csv",
        ip=REPORT_IP,
        ua=agent_ua("report-bot"),
        size=48213.0,
    )
)
# AUDITED, approved, no findings.
gz_records.append(
    s3_object_event(
        1,
        2,
        at("09:05:12"),
        K1,
        "PutObject",
        "reports-prod",
        "2026/11/sales.csv",
        ip=REPORT_IP,
        ua=agent_ua("report-bot"),
        size=51877.0,
    )
)
# 15 (noise): denied read of another bucket; read-only, low tier, not audited.
gz_records.append(
    s3_object_event(
        15,
        2,
        at("09:07:03"),
        K1,
        "GetObject",
        "finance-prod",
        "ledger/2026-10.csv",
        ip=REPORT_IP,
        ua=agent_ua("report-bot"),
        error=("AccessDenied", "Access Denied"),
    )
)

# 2. Role chaining: hop 1 stamps the task as a session tag (no sourceIdentity); hop 2 is called with K2a.
issue, K2A = assume_role(
    2,
    1,
    at("09:11:00"),
    BROKER,
    "agent-infra-bot",
    "infra-bot-t-8b21",
    "ASIAT8B21EXAMPLE0001",
    tags=[{"key": "TaskId", "value": "t-8b21"}, {"key": "Team", "value": "platform"}],
)
gz_records.append(issue)
INFRA_IP = "203.0.113.22"
# 15 (noise): read-only.
gz_records.append(
    api_call(
        15,
        3,
        at("09:11:30"),
        K2A,
        "sts",
        "GetCallerIdentity",
        None,
        None,
        ip=INFRA_IP,
        ua=agent_ua("infra-bot"),
        read_only=True,
        version="1.08",
    )
)
issue, K2B = assume_role(
    2,
    2,
    at("09:12:00"),
    K2A,
    "ec2-decommission",
    "infra-bot-t-8b21-ec2",
    "ASIAT8B21EXAMPLE0002",
    duration=1800,
    ip=INFRA_IP,
    ua=agent_ua("infra-bot"),
)
gz_records.append(issue)
# AUDITED (high): approved by bob, who only holds team-lead -> approver-lacks-authority.
gz_records.append(
    api_call(
        2,
        3,
        at("09:14:30"),
        K2B,
        "ec2",
        "TerminateInstances",
        {"instancesSet": {"items": [{"instanceId": "i-0a12b34c56d78e901"}, {"instanceId": "i-0b23c45d67e89f012"}]}},
        {
            "requestId": "6b0c5a5e-1f1e-4f8e-9a64-2d6c1f3b7e21",
            "instancesSet": {
                "items": [
                    {
                        "instanceId": "i-0a12b34c56d78e901",
                        "currentState": {"code": 32, "name": "shutting-down"},
                        "previousState": {"code": 16, "name": "running"},
                    },
                    {
                        "instanceId": "i-0b23c45d67e89f012",
                        "currentState": {"code": 32, "name": "shutting-down"},
                        "previousState": {"code": 16, "name": "running"},
                    },
                ]
            },
        },
        ip=INFRA_IP,
        ua=agent_ua("infra-bot"),
    )
)

# 3. Vault -> AWS: K3 was read from aws/creds/deploy-role by deploy-bot's approle token (vault/audit.log);
#    Vault assumed vault-deploy-role for it. Task t-c3d9 has no approval record.
K3 = role_session(
    "vault-deploy-role", "vault-approle-deploy-aws-1793611265-7341", "ASIATC3D9EXAMPLE0001", at("09:21:05")
)
# AUDITED (high): missing-approval.
gz_records.append(
    api_call(
        3,
        1,
        at("09:24:00"),
        K3,
        "lambda",
        "UpdateFunctionCode20150331v2",
        {
            "functionName": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:payments-api",
            "s3Bucket": "deploy-artifacts-prod",
            "s3Key": "payments-api/v2.14.0.zip",
            "publish": True,
        },
        {
            "functionName": "payments-api",
            "functionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:payments-api:14",
            "runtime": "python3.12",
            "version": "14",
            "lastUpdateStatus": "InProgress",
            "state": "Active",
        },
        ip="203.0.113.23",
        ua=agent_ua("deploy-bot"),
    )
)

# 4. Approval denied at 09:28, the agent ran anyway.
issue, K4 = assume_role(
    4,
    1,
    at("09:30:00"),
    BROKER,
    "agent-iam-bot",
    "iam-bot-t-d4e0",
    "ASIATD4E0EXAMPLE0001",
    source_identity="t-d4e0",
)
gz_records.append(issue)
# AUDITED (high, iam:*): approval-denied. IAM is global: its events carry us-east-1.
gz_records.append(
    api_call(
        4,
        2,
        at("09:33:00"),
        K4,
        "iam",
        "AttachRolePolicy",
        {"roleName": "ci-runner", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"},
        None,
        ip="203.0.113.24",
        ua=agent_ua("iam-bot"),
        region="us-east-1",
    )
)

# 9. Credential outlived its task: t-b9c0 ended 10:00; K9 (valid until 10:31) still writes at 10:30.
issue, K9 = assume_role(
    9,
    1,
    at("09:31:00"),
    BROKER,
    "agent-sync-bot",
    "sync-bot-t-b9c0",
    "ASIATB9C0EXAMPLE0001",
    source_identity="t-b9c0",
    comma_expiration=False,
)
gz_records.append(issue)
SYNC_IP = "203.0.113.29"
# AUDITED: approved, no findings (inside the task window).
gz_records.append(
    s3_object_event(
        9,
        2,
        at("09:40:00"),
        K9,
        "PutObject",
        "datalake-prod",
        "crm/export-1.csv",
        ip=SYNC_IP,
        ua=agent_ua("sync-bot"),
        size=1048576.0,
    )
)
# AUDITED: credential-outlived-task (30 min after ended_at).
gz_records.append(
    s3_object_event(
        9,
        3,
        at("10:30:00"),
        K9,
        "PutObject",
        "datalake-prod",
        "crm/export-2.csv",
        ip=SYNC_IP,
        ua=agent_ua("sync-bot"),
        size=524288.0,
    )
)

# 5. Approval after action: t-e5f1 acts at 10:10, alice approves at 10:30.
issue, K5 = assume_role(
    5,
    1,
    at("10:05:00"),
    BROKER,
    "agent-forecast-bot",
    "forecast-bot-t-e5f1",
    "ASIATE5F1EXAMPLE0001",
    source_identity="t-e5f1",
)
gz_records.append(issue)
# AUDITED: approval-after-action.
gz_records.append(
    s3_object_event(
        5,
        2,
        at("10:10:00"),
        K5,
        "PutObject",
        "datalake-prod",
        "forecast/q4.parquet",
        ip="203.0.113.25",
        ua=agent_ua("forecast-bot"),
        size=2097152.0,
    )
)

# 10. Unknown task: sourceIdentity t-ghost is known to no task record and no trace.
issue, K10 = assume_role(
    10,
    1,
    at("10:15:00"),
    BROKER,
    "agent-ops-bot",
    "ops-bot-t-ghost",
    "ASIATGHOSTEXAMPLE001",
    source_identity="t-ghost",
)
gz_records.append(issue)
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/payments/api-key-Xq3ZfP"
# AUDITED: unknown-task.
gz_records.append(
    api_call(
        10,
        2,
        at("10:18:00"),
        K10,
        "secretsmanager",
        "PutSecretValue",
        {"secretId": SECRET_ARN, "clientRequestToken": "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f"},
        {"arn": SECRET_ARN, "versionId": "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f"},
        ip="203.0.113.30",
        ua=agent_ua("ops-bot"),
    )
)

# 6. Expired approval: APR-1046 expired at 09:00; the action runs at 10:40.
issue, K6 = assume_role(
    6,
    1,
    at("10:35:00"),
    BROKER,
    "agent-snapshot-bot",
    "snapshot-bot-t-6c2e",
    "ASIAT6C2EEXAMPLE0001",
    source_identity="t-6c2e",
)
gz_records.append(issue)
# AUDITED (high, rds:Delete*): approval-expired.
gz_records.append(
    api_call(
        6,
        2,
        at("10:40:00"),
        K6,
        "rds",
        "DeleteDBSnapshot",
        {"dBSnapshotIdentifier": "orders-db-2026-10-01"},
        {
            "dBSnapshotIdentifier": "orders-db-2026-10-01",
            "dBInstanceIdentifier": "orders-db",
            "snapshotCreateTime": "Oct 1, 2026, 3:00:12 AM",
            "engine": "postgres",
            "status": "deleted",
            "dBSnapshotArn": f"arn:aws:rds:{REGION}:{ACCOUNT}:snapshot:orders-db-2026-10-01",
        },
        ip="203.0.113.26",
        ua=agent_ua("snapshot-bot"),
    )
)

# 7. Self-approval: dave requested t-7d8f and approved it himself. Task stamped with the `task_id` tag key.
issue, K7 = assume_role(
    7,
    1,
    at("10:52:00"),
    BROKER,
    "agent-cost-bot",
    "cost-bot-t-7d8f",
    "ASIAT7D8FEXAMPLE0001",
    tags=[{"key": "task_id", "value": "t-7d8f"}],
)
gz_records.append(issue)
# AUDITED: self-approval.
gz_records.append(
    api_call(
        7,
        2,
        at("10:55:00"),
        K7,
        "ec2",
        "StopInstances",
        {"instancesSet": {"items": [{"instanceId": "i-0c34d56e78f90a123"}]}, "force": False},
        {
            "requestId": "1d3f5b7a-9c2e-4b6d-8f0a-3c5e7a9b1d2f",
            "instancesSet": {
                "items": [
                    {
                        "instanceId": "i-0c34d56e78f90a123",
                        "currentState": {"code": 64, "name": "stopping"},
                        "previousState": {"code": 16, "name": "running"},
                    }
                ]
            },
        },
        ip="203.0.113.27",
        ua=agent_ua("cost-bot"),
    )
)

# 8. Out of scope: report-bot task t-9a0b is approved for s3:GetObject/PutObject on reports-prod/* only.
issue, K8 = assume_role(
    8,
    1,
    at("11:01:00"),
    BROKER,
    "agent-report-bot",
    "report-bot-t-9a0b",
    "ASIAT9A0BEXAMPLE0001",
    source_identity="t-9a0b",
)
gz_records.append(issue)
# AUDITED: out-of-scope-action (resource outside the approval and the standing scope).
gz_records.append(
    s3_object_event(
        8,
        2,
        at("11:05:00"),
        K8,
        "PutObject",
        "finance-prod",
        "ledger/2026-10.csv",
        ip=REPORT_IP,
        ua=agent_ua("report-bot"),
        size=73400.0,
    )
)
# AUDITED: out-of-scope-action (action outside the approval and the standing scope).
gz_records.append(
    s3_object_event(
        8,
        3,
        at("11:06:00"),
        K8,
        "DeleteObject",
        "reports-prod",
        "2026/10/sales-draft.csv",
        ip=REPORT_IP,
        ua=agent_ua("report-bot"),
    )
)

# 13. Agent used a human identity: carol's long-term key assumes the triage-bot role for task t-f6a2.
CAROL = iam_user("carol@example.com", "AKIAEXAMPLECAROL0001")
issue, K13 = assume_role(
    13,
    1,
    at("11:25:00"),
    CAROL,
    "agent-triage-bot",
    "triage-bot-t-f6a2",
    "ASIATF6A2EXAMPLE0001",
    source_identity="t-f6a2",
    ip="198.51.100.77",
    ua="aws-cli/2.17.4 md/awscrt#0.20.11 ua/2.0 os/linux#6.8.0 md/arch#x86_64 lang/python#3.11.9 "
    "md/pyimpl#CPython cfg/retry-mode#standard md/installer#exe command/sts.assume-role",
)
gz_records.append(issue)
# AUDITED: agent-used-human-identity.
gz_records.append(
    api_call(
        13,
        2,
        at("11:28:00"),
        K13,
        "sqs",
        "PurgeQueue",
        {"queueUrl": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/payments-dlq"},
        None,
        ip="203.0.113.31",
        ua=agent_ua("triage-bot"),
    )
)

# 15 (noise): a human in the console. Humans are not audited.
ALICE_CONSOLE = iam_user("alice@example.com", "ASIAEXAMPLEALICECON1", console_session_at=at("11:30:05"))
human = api_call(
    15,
    5,
    at("11:32:10"),
    ALICE_CONSOLE,
    "s3",
    "PutBucketTagging",
    {
        "bucketName": "reports-prod",
        "Host": "s3.eu-west-1.amazonaws.com",
        "tagging": "",
        "Tagging": {
            "xmlns": "http://s3.amazonaws.com/doc/2006-03-01/",
            "TagSet": {"Tag": [{"Key": "owner", "Value": "finance"}]},
        },
    },
    None,
    ip="198.51.100.23",
    ua="[S3Console/0.4, aws-internal/3 aws-sdk-java/1.12.750]",
    resources=[{"accountId": ACCOUNT, "type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::reports-prod"}],
)
human["sessionCredentialFromConsole"] = "true"
gz_records.append(human)

# --- extra.ndjson: the same format, one record a line ----------------------------------------------------

# 11. No task at all: IAM user legacy-etl with a long-term AKIA key.
LEGACY = iam_user("legacy-etl", "AKIAEXAMPLELEGACY001")
# AUDITED: credential-without-task (its waiver EXPIRED) + long-lived-credential (waived).
ndjson_records.append(
    s3_object_event(
        11,
        1,
        at("11:15:00"),
        LEGACY,
        "PutObject",
        "datalake-prod",
        "legacy/daily-2026-11-02.csv",
        ip="192.0.2.50",
        ua="aws-cli/1.29.62 Python/3.9.18 Linux/4.14.343 botocore/1.31.62",
        size=8812331.0,
    )
)

# 12. Broken delegation: an ASIA key whose issuance is nowhere in the evidence, held by a non-broker session.
ORPHAN = role_session("data-migrator", "migrator-7731", "ASIAEXAMPLEORPHAN001", at("07:58:12"))
TABLE_ARN = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/orders-archive-2025"
# AUDITED (high): broken-delegation-chain + credential-without-task.
ndjson_records.append(
    api_call(
        12,
        1,
        at("11:20:00"),
        ORPHAN,
        "dynamodb",
        "DeleteTable",
        {"tableName": "orders-archive-2025"},
        {
            "tableDescription": {
                "tableName": "orders-archive-2025",
                "tableStatus": "DELETING",
                "tableArn": TABLE_ARN,
                "tableId": "4c2a9e1f-5b7d-4e3a-9c1b-7f6e5d4c3b2a",
            }
        },
        ip="192.0.2.77",
        ua=BOTO,
        resources=[{"accountId": ACCOUNT, "type": "AWS::DynamoDB::Table", "ARN": TABLE_ARN}],
    )
)

# 15 (noise): alice signs in to the console (signin, not an action).
ndjson_records.append(
    {
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "IAMUser",
            "principalId": user_id("alice@example.com"),
            "arn": f"arn:aws:iam::{ACCOUNT}:user/alice@example.com",
            "accountId": ACCOUNT,
            "userName": "alice@example.com",
        },
        "eventTime": at("11:30:05"),
        "eventSource": "signin.amazonaws.com",
        "eventName": "ConsoleLogin",
        "awsRegion": REGION,
        "sourceIPAddress": "198.51.100.23",
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0",
        "requestParameters": None,
        "responseElements": {"ConsoleLogin": "Success"},
        "additionalEventData": {
            "LoginTo": "https://console.aws.amazon.com/console/home",
            "MobileVersion": "No",
            "MFAIdentifier": f"arn:aws:iam::{ACCOUNT}:mfa/alice",
            "MFAUsed": "Yes",
        },
        "eventID": event_id(15, 4),
        "readOnly": False,
        "eventType": "AwsConsoleSignIn",
        "managementEvent": True,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management",
        "tlsDetails": {**TLS, "clientProvidedHostHeader": "signin.aws.amazon.com"},
    }
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the sample world's CloudTrail files.")
    parser.add_argument("--out", type=Path, default=SAMPLE_LOGS, help="where to write cloudtrail/ (%(default)s)")
    out = parser.parse_args(argv).out
    ids = [r["eventID"] for r in gz_records + ndjson_records]
    assert len(ids) == len(set(ids)), "duplicate eventID"
    gz_path, ndjson_path = out / GZ_NAME, out / NDJSON_NAME
    gz_path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"Records": gz_records}, separators=(",", ":"), ensure_ascii=False).encode()
    # mtime=0 and no file name in the gzip header: the same records give the same bytes on every run.
    with open(gz_path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(body)
    ndjson_path.write_text(
        "".join(json.dumps(r, separators=(",", ":"), ensure_ascii=False) + "\n" for r in ndjson_records),
        encoding="utf-8",
    )
    print(f"wrote {gz_path} ({len(gz_records)} records), {ndjson_path} ({len(ndjson_records)} records)")


if __name__ == "__main__":
    main()
