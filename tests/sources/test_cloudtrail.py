"""CloudTrail: every shared sample loads cleanly, spot checks against values read in the files,
and the same records give the same events in every layout CloudTrail logs come in."""

from __future__ import annotations

import gzip
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
from helpers import SAMPLES, event, load, rows, sample, sample_files, utc, write_lines

from nhiaudit import ingest
from nhiaudit.sources import cloudtrail

CT_SAMPLES = SAMPLES / "aws_cloudtrail"
SAMPLE_FILES = sample_files(CT_SAMPLES)

OTRF = "otrf__ec2_proxy_s3_exfiltration_2020-09-14011940.ndjson"
FEDERATION = "stratus-red-team__aws.persistence.sts-federation-token.json"
ELASTIC_TAGS = "elastic__test-assume-role-json.log"
IAM_DOCS = "awsdocs-iam-user-guide__sts_and_signin_examples.records.json"
CT_DOCS = "awsdocs-cloudtrail-user-guide__log_file_and_signin_examples.records.json"
PASSWORD_DATA = "stratus-red-team__aws.credential-access.ec2-get-password-data.json"
SQS = "aws-cloudtrail-processing-library__SQSMessageBody.json"
GZIP_RECORDS = "aws-cloudtrail-processing-library__SerializerTestFileCompact.json.gz"


def python_record_count(path: Path) -> int:
    """How many records the file holds, counted independently of DuckDB."""
    data = (gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()).decode()
    try:
        doc = json.loads(data)
    except ValueError:
        return sum(1 for line in data.splitlines() if line.strip())
    if isinstance(doc, list):
        return len(doc)
    if doc.get("Type") == "Notification":
        return 0  # an SNS/SQS delivery notification: no events
    return len(doc["Records"]) if "Records" in doc else 1


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=[p.name for p in SAMPLE_FILES])
def test_every_sample_loads_without_rejections(store: duckdb.DuckDBPyConnection, path: Path) -> None:
    assert cloudtrail.detect(path)
    result = load(store, "cloudtrail", path)
    assert result.rejected == 0, rows(store, "SELECT reason FROM rejected")
    assert result.read == python_record_count(path)
    assert result.read == result.loaded + result.duplicates
    assert store.execute("SELECT count(*) FROM events").fetchone()[0] == result.loaded
    record_indexes = [r[0] for r in store.execute("SELECT record_index FROM events").fetchall()]
    assert len(set(record_indexes)) == len(record_indexes)
    assert all(0 <= i < max(result.read, 1) for i in record_indexes)
    (stored,) = rows(store, "SELECT * FROM evidence_files")
    assert (stored["records_read"], stored["records_loaded"], stored["records_rejected"]) == (
        result.read,
        result.loaded,
        0,
    )
    assert stored["path"] == str(path) and stored["size"] == path.stat().st_size


def test_sqs_notification_is_recognized_and_holds_no_events(
    store: duckdb.DuckDBPyConnection, samples_dir: Path
) -> None:
    path = samples_dir / "aws_cloudtrail" / SQS
    assert ingest.detect(path) == "cloudtrail"
    result = load(store, "cloudtrail", path)
    assert (result.read, result.loaded, result.rejected, result.duplicates) == (0, 0, 0, 0)
    assert store.execute("SELECT count(*) FROM evidence_files").fetchone()[0] == 1  # custody recorded


def test_gzip_records_sample(store: duckdb.DuckDBPyConnection, samples_dir: Path) -> None:
    result = load(store, "cloudtrail", samples_dir / "aws_cloudtrail" / GZIP_RECORDS)
    assert (result.read, result.loaded, result.rejected) == (6, 6, 0)
    first = rows(store, "SELECT * FROM events WHERE record_index = 0")[0]
    assert first["action"] == "eventSource1:eventName1"
    assert first["outcome"] == "failure" and first["error_code"] == "errorCode1"
    assert first["occurred_at"] == utc(2013, 11, 1)


# --- spot checks on real records ----------------------------------------------------------------


@pytest.fixture
def otrf(store: duckdb.DuckDBPyConnection, samples_dir: Path) -> duckdb.DuckDBPyConnection:
    result = load(store, "cloudtrail", samples_dir / "aws_cloudtrail" / OTRF)
    assert (result.read, result.loaded, result.rejected) == (103, 103, 0)
    return store


def test_otrf_instance_credential_issuance(otrf: duckdb.DuckDBPyConnection) -> None:
    issued = event(otrf, "cloudtrail", "a3a3dded-7c27-42c0-a42d-891cdd436278")
    assert issued["category"] == "credential_issue"
    assert issued["action"] == "sts:AssumeRole"
    assert issued["credential_id"] == "ASIA5FLZVX4OPVKKVBMX"
    assert issued["credential_type"] == "aws_temporary_key"
    assert issued["parent_credential_id"] is None  # EC2 (AWSService) asked for it: no caller key
    assert issued["expires_at"] == utc(2020, 9, 14, 7, 10, 27)  # "Sep 14, 2020, 7:10:27 AM"
    # The record has no eventTime (Logstash export): the time comes from @timestamp.
    assert issued["occurred_at"] == utc(2020, 9, 14, 0, 48, 30)
    assert issued["actor_id"] == "ec2.amazonaws.com" and issued["actor_type"] == "service"
    assert issued["resource"] == "arn:aws:iam::123456789123:role/MordorNginxStack-BankingWAFRole-9S3E0UAE1MM0"
    assert issued["details"]["role_session_name"] == "i-0317f6c6b66ae9c40"
    assert issued["account"] == "123456789123" and issued["region"] == "us-east-1"
    assert issued["line"] == 44 and issued["record_index"] == 43


def test_otrf_stolen_credential_used_for_s3(otrf: duckdb.DuckDBPyConnection) -> None:
    get = event(otrf, "cloudtrail", "771299cb-e200-4926-9604-c85358b30499")
    assert get["credential_id"] == "ASIA5FLZVX4OPVKKVBMX"
    assert get["category"] == "action"
    assert get["action"] == "s3:GetObject"
    assert get["resource"] == "arn:aws:s3:::mordors3stack-s3bucket-llp2yingx64a/ring.txt"
    assert get["src_ip"] == "1.2.3.4"
    assert get["actor_type"] == "workload"  # sessionContext.ec2RoleDelivery: an instance credential
    assert get["read_only"] is True and get["outcome"] == "success"
    assert get["occurred_at"] == utc(2020, 9, 14, 1, 2, 34)
    assert get["line"] == 80

    listing = event(otrf, "cloudtrail", "bf575a0c-c344-4302-a468-00e6a84a127a")
    assert listing["action"] == "s3:ListObjects"
    # The object resource is only an ARNPrefix: the bucket is the first real ARN.
    assert listing["resource"] == "arn:aws:s3:::mordors3stack-s3bucket-llp2yingx64a"
    assert listing["credential_id"] == "ASIA5FLZVX4OPVKKVBMX"

    uses = otrf.execute(
        "SELECT count(*) FROM events WHERE credential_id = 'ASIA5FLZVX4OPVKKVBMX' AND category = 'action'"
    ).fetchone()[0]
    assert uses > 10
    assert otrf.execute("SELECT count(*) FROM events WHERE occurred_at IS NULL").fetchone()[0] == 0


def test_federation_token_issuance(store: duckdb.DuckDBPyConnection, samples_dir: Path) -> None:
    load(store, "cloudtrail", samples_dir / "aws_cloudtrail" / FEDERATION)
    issued = event(store, "cloudtrail", "6e882b9d-2af8-4c67-b91f-aeac6a0e5e70")
    assert issued["category"] == "credential_issue"
    assert issued["action"] == "sts:GetFederationToken"
    assert issued["credential_id"] == "ASIASTJKC5GCM7ZE6LUP"
    assert issued["parent_credential_id"] == "AKIA6V1GNZTT65XQH36M"
    assert issued["details"]["holder"] == "arn:aws:sts::742491224508:federated-user/stratus_red_team"
    assert issued["expires_at"] == utc(2024, 11, 30, 20, 43, 17)  # "Nov 30, 2024, 8:43:17 PM"
    assert issued["read_only"] is False
    assert issued["actor_id"] == "arn:aws:iam::742491224508:user/stratus-red-team-user-federation-user"
    # The secret never leaves raw: no normalized column or detail carries the session token.
    assert "IQoJb3JpZ2lu" not in json.dumps(issued["details"])

    used = event(store, "cloudtrail", "91529247-c4c4-4793-afc8-d70bbcfe9d19")
    assert (used["category"], used["action"], used["credential_id"]) == (
        "action",
        "sts:GetCallerIdentity",
        "ASIASTJKC5GCM7ZE6LUP",
    )
    assert used["read_only"] is True
    assert used["details"]["session_issuer"] == issued["actor_id"]


def test_assume_role_with_session_tags(store: duckdb.DuckDBPyConnection, samples_dir: Path) -> None:
    result = load(store, "cloudtrail", samples_dir / "aws_cloudtrail" / ELASTIC_TAGS)
    # Both lines carry eventID 1917948f-… with the same time, name and account: one event.
    # The two copies differ (another resources[] ARN): only identical records are duplicates, so
    # the second is kept as its own version (issue 10), under a suffixed id.
    assert (result.read, result.loaded, result.duplicates) == (2, 2, 0)
    issued = event(store, "cloudtrail", "1917948f-3042-46ec-98e2-62865EXAMPLE")
    assert issued["record_index"] == 0 and issued["line"] == 1  # the first copy is the one kept
    assert issued["details"]["session_tags"] == [
        {"value": "johndoe@example.com", "key": "Email"},
        {"value": "12345", "key": "CostCenter"},
    ]
    assert issued["parent_credential_id"] == "AKIAI44QH8DHBEXAMPLE"  # role chaining
    assert issued["credential_id"] == "ASIAWHOJDLGPOEXAMPLE"
    assert issued["expires_at"] == utc(2019, 10, 2, 23, 12, 29)  # "Oct 2, 2019 11:12:29 PM", no comma
    assert issued["details"]["holder"] == "arn:aws:sts::111111111111:assumed-role/test-role/Role2WithTags"
    assert issued["details"]["duration_seconds"] == 3600
    assert issued["resource"] == "arn:aws:iam::111122223333:role/JohnRole2"


def test_source_identity_is_the_task_id(store: duckdb.DuckDBPyConnection, samples_dir: Path) -> None:
    path = samples_dir / "aws_cloudtrail" / IAM_DOCS
    result = load(store, "cloudtrail", path)
    assert (result.read, result.loaded, result.rejected) == (13, 13, 0)
    john = rows(store, "SELECT * FROM events WHERE record_index = 1")[0]
    assert john["event_id"] == "dEXAMPLE-ac7f-466c-a608-4ac8dEXAMPLE"
    assert (john["category"], john["task_id"]) == ("credential_issue", "JohnDoe")
    assert john["expires_at"] == utc(2023, 7, 18, 16, 7, 39)  # "Jul 18, 2023, 4:07:39 PM"
    assert john["credential_type"] == "aws_long_term_key"  # the doc example issues an AKIA… id

    # A doc fragment with no eventID: the issuance still carries its task id, with a stable id.
    issuance = rows(store, "SELECT * FROM events WHERE record_index = 10")[0]
    assert issuance["task_id"] == "source-identity-value-set"
    assert issuance["category"] == "credential_issue"
    assert issuance["event_id"] == f"rec-{result.sha256[:12]}-10"
    # Later calls carry it in userIdentity.sessionContext.sourceIdentity.
    use = rows(store, "SELECT * FROM events WHERE record_index = 11")[0]
    assert use["task_id"] == "source-identity-value-present"
    assert use["credential_id"] == "ASIAIOSFODNN7EXAMPLE"
    assert use["occurred_at"] is None and use["category"] == "other"

    web = event(store, "cloudtrail", "bEXAMPLE-0b30-4246-b28c-e3da3EXAMPLE")
    assert (web["action"], web["task_id"]) == ("sts:AssumeRoleWithWebIdentity", "MyWebIdentityUser")


def test_error_codes_set_the_outcome(store: duckdb.DuckDBPyConnection, samples_dir: Path) -> None:
    load(store, "cloudtrail", samples_dir / "aws_cloudtrail" / PASSWORD_DATA)
    load(store, "cloudtrail", samples_dir / "aws_cloudtrail" / CT_DOCS)
    outcomes = dict(
        store.execute(
            "SELECT error_code, any_value(outcome) FROM events WHERE error_code IS NOT NULL GROUP BY 1"
        ).fetchall()
    )
    assert outcomes["AccessDenied"] == "denied"
    assert outcomes["Client.UnauthorizedOperation"] == "denied"
    assert outcomes["TrailNotFoundException"] == "failure"
    # Without an errorCode only a failed console sign-in is not a success.
    assert store.execute(
        "SELECT DISTINCT action, outcome FROM events WHERE error_code IS NULL AND outcome <> 'success'"
    ).fetchall() == [("signin:ConsoleLogin", "failure")]
    trail = event(store, "cloudtrail", "b7d4398e-b2f0-4faa-9c76-e2d316a8d67f")
    assert (trail["action"], trail["outcome"]) == ("cloudtrail:UpdateTrail", "failure")


# --- inline records --------------------------------------------------------------------------------


def record(i: int, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "eventVersion": "1.08",
        "eventID": f"00000000-0000-0000-0000-{i:012d}",
        "eventTime": f"2024-05-01T10:{i // 60 % 60:02d}:{i % 60:02d}Z",
        "eventSource": "s3.amazonaws.com",
        "eventName": "PutObject",
        "awsRegion": "eu-west-1",
        "sourceIPAddress": "198.51.100.7",
        "userAgent": "agent/1.0",
        "recipientAccountId": "111122223333",
        "userIdentity": {
            "type": "AssumedRole",
            "arn": "arn:aws:sts::111122223333:assumed-role/agent/t-1",
            "accountId": "111122223333",
            "accessKeyId": "ASIAAGENTKEY00000001",
            "sessionContext": {"sourceIdentity": "t-1"},
        },
        "requestParameters": {"bucketName": "reports", "key": f"r/{i}.csv"},
        "responseElements": None,
    }
    base.update(fields)
    return base


def load_records(con: duckdb.DuckDBPyConnection, tmp_path: Path, records: list[dict[str, Any]]) -> ingest.FileResult:
    return load(con, "cloudtrail", write_lines(tmp_path / "records.ndjson", records))


def test_resources_object_before_bucket(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    bucket = {"ARN": "arn:aws:s3:::reports", "accountId": "111122223333", "type": "AWS::S3::Bucket"}
    obj = {"ARN": "arn:aws:s3:::reports/r/1.csv", "type": "AWS::S3::Object"}
    roles = [{"ARN": f"arn:aws:iam::111122223333:role/r{n}", "type": "AWS::IAM::Role"} for n in range(6)]
    load_records(
        store,
        tmp_path,
        [
            record(1, resources=[bucket, obj]),
            record(2, resources=[obj, bucket]),
            record(3, resources=[{"ARNPrefix": "arn:aws:s3:::reports/", "type": "AWS::S3::Object"}, bucket]),
            record(4, resources=roles),  # no object: the first ARN in the list
            record(5, resources=[], requestParameters={"bucketName": "reports", "key": "k"}),
            record(6, eventSource="ec2.amazonaws.com", eventName="DescribeInstances", requestParameters=None),
        ],
    )
    resource = dict(store.execute("SELECT record_index, resource FROM events").fetchall())
    assert resource == {
        0: "arn:aws:s3:::reports/r/1.csv",
        1: "arn:aws:s3:::reports/r/1.csv",
        2: "arn:aws:s3:::reports",
        3: "arn:aws:iam::111122223333:role/r0",
        4: "arn:aws:s3:::reports/k",  # built from requestParameters
        5: None,
    }


def call(i: int, source: str, name: str, params: Any, **fields: Any) -> dict[str, Any]:
    return record(i, eventSource=f"{source}.amazonaws.com", eventName=name, requestParameters=params, **fields)


def test_resources_from_request_parameters(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    gov = {"type": "AssumedRole", "arn": "arn:aws-us-gov:sts::111122223333:assumed-role/agent/t-1",
           "accountId": "111122223333", "accessKeyId": "ASIAAGENTKEY00000001"}
    secret_arn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:db-AbCdEf"
    load_records(
        store,
        tmp_path,
        [
            call(1, "secretsmanager", "GetSecretValue", {"secretId": "prod/db"}),
            call(2, "secretsmanager", "BatchGetSecretValue", {"secretIdList": [secret_arn, "b", ""]}),
            call(3, "lambda", "Invoke", {"functionName": "resize"}),
            call(4, "ec2", "TerminateInstances",
                 {"instancesSet": {"items": [{"instanceId": "i-0abc"}, {"instanceId": "i-0def"}]}}),
            call(5, "ssm", "SendCommand", {"documentName": "AWS-RunShellScript", "instanceIds": ["i-01", "i-02"]}),
            call(6, "ssm", "GetParameter", {"name": "/prod/db/password", "withDecryption": True}),
            call(7, "bedrock", "InvokeModel", {"modelId": "anthropic.claude-v2"}),
            call(8, "iam", "AttachRolePolicy",
                 {"roleName": "deploy", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}),
            call(9, "kms", "Decrypt", {"keyId": "alias/app"}),
            call(10, "sqs", "SendMessage", {"queueUrl": "https://sqs.eu-west-1.amazonaws.com/444455556666/jobs"}),
            call(11, "cloudtrail", "StopLogging", {"name": "main"}, userIdentity=gov, awsRegion="us-gov-west-1"),
            call(12, "dynamodb", "DeleteTable", {"tableName": "orders"}, awsRegion="cn-north-1",
                 userIdentity={"type": "IAMUser", "accountId": "111122223333"}),
            call(13, "iam", "EnableMFADevice", {"userName": "AWS ROOT USER"}),  # not an IAM name
            call(14, "lambda", "Invoke", {"functionName": "x"}, awsRegion=None),  # no region: no ARN
            call(15, "rds", "DeleteDBInstance", {"dBInstanceIdentifier": "db1"}, resources=[
                {"ARN": "arn:aws:rds:eu-west-1:111122223333:db:listed", "type": "AWS::RDS::DBInstance"}]),
            call(16, "ec2", "TerminateInstances", "HIDDEN_DUE_TO_SECURITY_REASONS"),
            call(17, "sns", "Publish", {"topicArn": "arn:aws:sns:eu-west-1:111122223333:t"}),
        ],
    )
    got = {i: (res, json.loads(d).get("resources")) for i, res, d in
           store.execute("SELECT record_index, resource, details FROM events ORDER BY 1").fetchall()}
    account, region = "111122223333", "eu-west-1"
    assert got == {
        0: (f"arn:aws:secretsmanager:{region}:{account}:secret:prod/db", None),
        1: (secret_arn, [secret_arn, f"arn:aws:secretsmanager:{region}:{account}:secret:b"]),
        2: (f"arn:aws:lambda:{region}:{account}:function:resize", None),
        3: (f"arn:aws:ec2:{region}:{account}:instance/i-0abc",
            [f"arn:aws:ec2:{region}:{account}:instance/i-0abc", f"arn:aws:ec2:{region}:{account}:instance/i-0def"]),
        4: (f"arn:aws:ec2:{region}:{account}:instance/i-01",
            [f"arn:aws:ec2:{region}:{account}:instance/i-01", f"arn:aws:ec2:{region}:{account}:instance/i-02",
             f"arn:aws:ssm:{region}:{account}:document/AWS-RunShellScript"]),
        5: (f"arn:aws:ssm:{region}:{account}:parameter/prod/db/password", None),
        6: (f"arn:aws:bedrock:{region}::foundation-model/anthropic.claude-v2", None),
        7: (f"arn:aws:iam::{account}:role/deploy",
            [f"arn:aws:iam::{account}:role/deploy", "arn:aws:iam::aws:policy/AdministratorAccess"]),
        8: (f"arn:aws:kms:{region}:{account}:alias/app", None),
        9: ("arn:aws:sqs:eu-west-1:444455556666:jobs", None),
        10: (f"arn:aws-us-gov:cloudtrail:us-gov-west-1:{account}:trail/main", None),  # partition of the caller
        11: (f"arn:aws-cn:dynamodb:cn-north-1:{account}:table/orders", None),  # partition of the region
        12: (None, None),
        13: (None, None),
        14: ("arn:aws:rds:eu-west-1:111122223333:db:listed", None),  # resources[] wins
        15: (None, None),
        16: ("arn:aws:sns:eu-west-1:111122223333:t", None),
    }


def test_resource_values_cannot_inject_into_the_arn(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    # Evidence only fills the template's groups: a backslash group in a value or region stays text.
    load_records(store, tmp_path, [call(1, "lambda", "Invoke", {"functionName": "f\\1"}, awsRegion="r\\0")])
    (resource,) = store.execute("SELECT resource FROM events").fetchone()
    assert resource == "arn:aws:lambda:r\\0:111122223333:function:f\\1"


def test_identity_center_user_and_old_console_login(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    # The shapes of the CloudTrail userIdentity docs (IdentityCenterUser) and of event version 1.01.
    idc = {"type": "IdentityCenterUser", "accountId": "111122223333",
           "onBehalfOf": {"userId": "544894e8-80c1-707f-60e3-3ba6510dfac1",
                          "identityStoreArn": "arn:aws:identitystore::111122223333:identitystore/d-9067642ac7"},
           "credentialId": "EXAMPLEVHULjJdTUdPJfofVa1sufHDoj7aYcOYcxFVllWR_Whr1fEXAMPLE"}
    old_login = record(2, eventVersion="1.01", eventSource="signin.amazonaws.com", eventName="ConsoleLogin",
                       requestParameters=None, responseElements={"ConsoleLogin": "Success"})
    load_records(store, tmp_path, [call(1, "s3", "ListBuckets", None, userIdentity=idc), old_login])
    got = rows(store, "SELECT category, actor_id, actor_type, credential_id, credential_type, details "
                      "FROM events ORDER BY record_index")
    assert [(r["category"], r["actor_id"], r["actor_type"], r["credential_id"], r["credential_type"])
            for r in got] == [
        ("action", "544894e8-80c1-707f-60e3-3ba6510dfac1", "human",
         "EXAMPLEVHULjJdTUdPJfofVa1sufHDoj7aYcOYcxFVllWR_Whr1fEXAMPLE", "aws_identity_center_credential"),
        ("signin", "arn:aws:sts::111122223333:assumed-role/agent/t-1", "unknown",
         "ASIAAGENTKEY00000001", "aws_temporary_key"),
    ]
    assert json.loads(got[0]["details"])["identity_store"] == idc["onBehalfOf"]["identityStoreArn"]


def test_read_only(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    load_records(
        store,
        tmp_path,
        [
            record(1, readOnly=True, eventName="PutObject"),  # the field wins over the name
            record(2, readOnly=False, eventName="GetObject"),
            record(3, readOnly="true"),
            record(4, eventName="GetObject"),  # no field: Get/List/Describe… are reads
            record(5, eventName="ListBuckets"),
            record(6, eventName="DeleteObject"),
        ],
    )
    read_only = dict(store.execute("SELECT record_index, read_only FROM events").fetchall())
    assert read_only == {0: True, 1: False, 2: True, 3: True, 4: True, 5: False}


def test_timestamp_fallback_and_precedence(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    no_time = record(1, **{"@timestamp": "2020-09-14T00:48:30.000Z"})
    del no_time["eventTime"]
    both = record(2, **{"@timestamp": "2001-01-01T00:00:00Z"})
    offset = record(3, eventTime="2024-05-01T12:00:00+02:00")
    neither = record(4)
    del neither["eventTime"]
    load_records(store, tmp_path, [no_time, both, offset, neither])
    times = dict(store.execute("SELECT record_index, occurred_at FROM events").fetchall())
    assert times == {
        0: utc(2020, 9, 14, 0, 48, 30),
        1: utc(2024, 5, 1, 10, 0, 2),  # eventTime wins over @timestamp
        2: utc(2024, 5, 1, 10, 0, 0),
        3: None,
    }


@pytest.mark.parametrize(
    ("expiration", "expected"),
    [
        ("Sep 14, 2020, 7:01:26 AM", utc(2020, 9, 14, 7, 1, 26)),
        ("Oct 2, 2019 11:12:29 PM", utc(2019, 10, 2, 23, 12, 29)),
        ("Dec 1, 2024, 12:05:00 AM", utc(2024, 12, 1, 0, 5, 0)),
        ("2024-05-01T11:00:00Z", utc(2024, 5, 1, 11, 0, 0)),
        ("not a time", None),
    ],
)
def test_expiration_spellings(
    store: duckdb.DuckDBPyConnection, tmp_path: Path, expiration: str, expected: datetime | None
) -> None:
    load_records(
        store,
        tmp_path,
        [
            record(
                1,
                eventSource="sts.amazonaws.com",
                eventName="AssumeRole",
                requestParameters={
                    "roleArn": "arn:aws:iam::111122223333:role/agent",
                    "roleSessionName": "t-1",
                    "tags": [{"key": "TaskId", "value": "t-1"}],
                },
                responseElements={
                    "credentials": {
                        "accessKeyId": "ASIANEWKEY0000000001",
                        "expiration": expiration,
                        "sessionToken": "secret",
                    }
                },
            )
        ],
    )
    issued = event(store, "cloudtrail", "00000000-0000-0000-0000-000000000001")
    assert issued["expires_at"] == expected
    assert issued["parent_credential_id"] == "ASIAAGENTKEY00000001"
    assert issued["credential_id"] == "ASIANEWKEY0000000001"


def test_identity_and_outcome_columns(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    load_records(
        store,
        tmp_path,
        [
            record(1),
            record(2, errorCode="AccessDenied", errorMessage="no"),
            record(3, errorCode="NoSuchKey"),
            record(
                4,
                eventType="AwsConsoleSignIn",
                eventSource="signin.amazonaws.com",
                eventName="ConsoleLogin",
                responseElements={"ConsoleLogin": "Failure"},
            ),
            record(
                5,
                userIdentity={
                    "type": "IAMUser",
                    "arn": "arn:aws:iam::111122223333:user/ci",
                    "accessKeyId": "AKIALONGTERMKEY00001",
                },
            ),
        ],
    )
    got = {r["record_index"]: r for r in rows(store, "SELECT * FROM events")}
    assert got[0]["task_id"] == "t-1" and got[0]["outcome"] == "success"
    assert got[0]["action"] == "s3:PutObject" and got[0]["read_only"] is False
    assert (got[1]["outcome"], got[1]["error_code"]) == ("denied", "AccessDenied")
    assert got[2]["outcome"] == "failure"
    assert (got[3]["category"], got[3]["outcome"]) == ("signin", "failure")
    assert got[4]["credential_type"] == "aws_long_term_key"
    assert got[0]["credential_type"] == "aws_temporary_key"


# --- the same records in every layout ------------------------------------------------------------

LAYOUT_RECORDS = [
    record(
        1,
        eventSource="sts.amazonaws.com",
        eventName="AssumeRole",
        requestParameters={
            "roleArn": "arn:aws:iam::111122223333:role/agent",
            "roleSessionName": "t-1",
            "sourceIdentity": "t-1",
        },
        responseElements={
            "credentials": {
                "accessKeyId": "ASIAAGENTKEY00000001",
                "expiration": "May 1, 2024, 11:00:00 AM",
                "sessionToken": "x",
            }
        },
    ),
    record(2),
    record(3, eventName="GetObject", errorCode="AccessDenied"),
    record(4, eventSource="ec2.amazonaws.com", eventName="RunInstances", requestParameters={"note": "ü ✓ \u2028"}),
]


def _write_layout(tmp_path: Path, layout: str) -> Path:
    if layout == "native gzip Records":
        path = tmp_path / "111122223333_CloudTrail_eu-west-1_20240501T1000Z_abc.json.gz"
        path.write_bytes(gzip.compress(json.dumps({"Records": LAYOUT_RECORDS}).encode()))
    elif layout == "NDJSON":
        path = write_lines(tmp_path / "export.ndjson", LAYOUT_RECORDS)
    elif layout == "JSON array":
        path = tmp_path / "array.json"
        path.write_text(json.dumps(LAYOUT_RECORDS, indent=3))
    elif layout == "single-line Records":
        path = tmp_path / "records.json"
        path.write_text(json.dumps({"Records": LAYOUT_RECORDS}))
    elif layout == "pretty Records":
        path = tmp_path / "pretty.json"
        path.write_text(json.dumps({"Records": LAYOUT_RECORDS}, indent=2, ensure_ascii=False))
    else:
        raise AssertionError(layout)
    return path


LAYOUTS = ["native gzip Records", "NDJSON", "JSON array", "single-line Records", "pretty Records"]
COMPARED = (
    "event_id",
    "record_index",
    "occurred_at",
    "category",
    "actor_id",
    "actor_type",
    "credential_id",
    "credential_type",
    "parent_credential_id",
    "action",
    "resource",
    "read_only",
    "outcome",
    "error_code",
    "account",
    "region",
    "src_ip",
    "user_agent",
    "task_id",
    "expires_at",
    "dedupe_key",
)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts_give_the_same_events(tmp_path: Path, layout: str) -> None:
    from nhiaudit import store as nhistore

    con = nhistore.connect(":memory:")
    path = _write_layout(tmp_path, layout)
    assert cloudtrail.detect(path)
    result = load(con, "cloudtrail", path)
    assert (result.read, result.loaded, result.rejected, result.duplicates) == (4, 4, 0, 0)
    got = rows(con, f"SELECT {', '.join(COMPARED)}, raw, line FROM events ORDER BY record_index")
    assert [json.loads(r.pop("raw")) for r in got] == LAYOUT_RECORDS  # the original record, untouched
    lines = [r.pop("line") for r in got]
    if layout == "NDJSON":
        assert lines == [1, 2, 3, 4]
    elif layout in ("native gzip Records", "single-line Records"):
        assert lines == [1, 1, 1, 1]

    reference = nhistore.connect(":memory:")
    (tmp_path / "ref").mkdir()
    load(reference, "cloudtrail", _write_layout(tmp_path / "ref", "NDJSON"))
    expected = rows(reference, f"SELECT {', '.join(COMPARED)} FROM events ORDER BY record_index")
    assert got == expected
    assert [r["event_id"] for r in got] == [r["eventID"] for r in LAYOUT_RECORDS]
    assert got[0]["category"] == "credential_issue" and got[0]["task_id"] == "t-1"
    assert got[0]["expires_at"] == utc(2024, 5, 1, 11, 0, 0)
    con.close()
    reference.close()


# --- wrappers: EventBridge events and LookupEvents output --------------------------------------

# What must come out the same whether a record is read natively or out of a wrapper.
NORMALIZED = tuple(c for c in COMPARED if c != "record_index") + ("details",)


def federation_records() -> list[dict[str, Any]]:
    """The stratus GetFederationToken issuance and the GetCallerIdentity made with its key."""
    return json.loads(sample(CT_SAMPLES / FEDERATION).read_text())


def eventbridge_event(rec: dict[str, Any], n: int) -> dict[str, Any]:
    """``rec`` as EventBridge delivers it (and an EventBridge -> Firehose -> S3 archive keeps it)."""
    kind = {"AwsConsoleSignIn": "AWS Console Sign In", "AwsServiceEvent": "AWS Service Event"}
    return {
        "version": "0",
        "id": f"4d9b5c2e-6c1f-2a7b-9e0d-3b8f1a6c7d{n:02d}",
        "detail-type": kind.get(rec["eventType"], "AWS API Call") + " via CloudTrail",
        "source": "aws." + rec["eventSource"].removesuffix(".amazonaws.com"),
        "account": rec["recipientAccountId"],
        "time": rec["eventTime"],
        "region": rec["awsRegion"],
        "resources": [],
        "detail": rec,
    }


def lookup_event(rec: dict[str, Any]) -> dict[str, Any]:
    """``rec`` as ``aws cloudtrail lookup-events`` prints it: the record as a JSON string."""
    ident = rec["userIdentity"]
    return {
        "EventId": rec["eventID"],
        "EventName": rec["eventName"],
        "ReadOnly": str(rec["readOnly"]).lower(),
        "AccessKeyId": ident["accessKeyId"],
        "EventTime": rec["eventTime"].replace("Z", "+00:00"),
        "EventSource": rec["eventSource"],
        "Username": ident.get("userName") or ident["arn"].rsplit("/", 1)[-1],
        "Resources": [],
        "CloudTrailEvent": json.dumps(rec, separators=(",", ":")),
    }


def write_eventbridge(path: Path, records: list[dict[str, Any]], array: bool = False) -> Path:
    events = [eventbridge_event(rec, n) for n, rec in enumerate(records)]
    if array:
        path.write_text(json.dumps(events, indent=2))
        return path
    return write_lines(path, events, separators=(",", ":"))


def write_lookup(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"Events": events, "NextToken": "eyJOZXh0VG9rZW4iOiBudWxsfQ=="}, indent=4))
    return path


def normalized(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    return rows(con, f"SELECT {', '.join(NORMALIZED)} FROM events ORDER BY record_index")


@pytest.fixture
def native() -> list[dict[str, Any]]:
    """The federation records loaded natively (the sample as it is), normalized."""
    from nhiaudit import store as nhistore

    con = nhistore.connect(":memory:")
    load(con, "cloudtrail", sample(CT_SAMPLES / FEDERATION))
    got = normalized(con)
    con.close()
    return got


@pytest.mark.parametrize("layout", ["NDJSON", "JSON array"])
def test_eventbridge_events_load_like_native(
    store: duckdb.DuckDBPyConnection, tmp_path: Path, native: list[dict[str, Any]], layout: str
) -> None:
    records = federation_records()
    path = write_eventbridge(tmp_path / "eventbridge-ct.ndjson", records, array=layout == "JSON array")
    assert cloudtrail.detect(path) and ingest.detect(path) == "cloudtrail"
    result = load(store, "cloudtrail", path)
    assert (result.read, result.loaded, result.rejected, result.duplicates) == (2, 2, 0, 0)
    assert normalized(store) == native
    issued = event(store, "cloudtrail", "6e882b9d-2af8-4c67-b91f-aeac6a0e5e70")  # detail.eventID, not id
    assert (issued["action"], issued["credential_id"], issued["parent_credential_id"], issued["occurred_at"]) == (
        "sts:GetFederationToken",
        "ASIASTJKC5GCM7ZE6LUP",
        "AKIA6V1GNZTT65XQH36M",
        utc(2024, 11, 30, 8, 43, 17),
    )
    # raw is the whole envelope, as delivered.
    got = rows(store, "SELECT raw, line FROM events ORDER BY record_index")
    assert [json.loads(r["raw"]) for r in got] == [eventbridge_event(rec, n) for n, rec in enumerate(records)]
    if layout == "NDJSON":
        assert [r["line"] for r in got] == [1, 2]


def test_lookup_events_output_loads_like_native(
    store: duckdb.DuckDBPyConnection, tmp_path: Path, native: list[dict[str, Any]]
) -> None:
    records = federation_records()
    path = write_lookup(tmp_path / "lookup-events.json", [lookup_event(rec) for rec in records])
    assert cloudtrail.detect(path) and ingest.detect(path) == "cloudtrail"
    result = load(store, "cloudtrail", path)
    assert (result.read, result.loaded, result.rejected, result.duplicates) == (2, 2, 0, 0)
    assert normalized(store) == native
    issued = event(store, "cloudtrail", "6e882b9d-2af8-4c67-b91f-aeac6a0e5e70")
    assert (issued["action"], issued["credential_id"], issued["parent_credential_id"], issued["occurred_at"]) == (
        "sts:GetFederationToken",
        "ASIASTJKC5GCM7ZE6LUP",
        "AKIA6V1GNZTT65XQH36M",
        utc(2024, 11, 30, 8, 43, 17),
    )
    # raw is the LookupEvents event, CloudTrailEvent still the string it was.
    raws = [json.loads(r) for (r,) in store.execute("SELECT raw FROM events ORDER BY record_index").fetchall()]
    assert raws == [lookup_event(rec) for rec in records]
    assert isinstance(raws[0]["CloudTrailEvent"], str)


def test_bad_lookup_events_are_rejected_with_the_field_named(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    issuance, use = federation_records()
    truncated = lookup_event(issuance)
    truncated["CloudTrailEvent"] = truncated["CloudTrailEvent"][:300]
    not_json = {**lookup_event(issuance), "CloudTrailEvent": "eventVersion=1.08 eventName=GetFederationToken"}
    an_array = {**lookup_event(issuance), "CloudTrailEvent": "[]"}
    a_number = {**lookup_event(issuance), "CloudTrailEvent": 42}
    missing = {k: v for k, v in lookup_event(issuance).items() if k != "CloudTrailEvent"}
    bad_time = {**lookup_event(issuance), "CloudTrailEvent": json.dumps({**issuance, "eventTime": "yesterday"})}
    path = write_lookup(
        tmp_path / "lookup-events.json",
        [truncated, not_json, an_array, a_number, missing, bad_time, lookup_event(use)],
    )
    result = load(store, "cloudtrail", path)
    assert (result.read, result.loaded, result.rejected) == (7, 1, 6)
    rejected = rows(store, "SELECT record_index, reason, raw FROM rejected ORDER BY record_index")
    assert [r["reason"] for r in rejected] == [
        "CloudTrailEvent is not valid JSON (a truncated or malformed string)",
        "CloudTrailEvent is not valid JSON (a truncated or malformed string)",
        "CloudTrailEvent holds a JSON array, expected an object",
        "CloudTrailEvent is a JSON number, expected the CloudTrail record as a JSON string",
        "LookupEvents event has no CloudTrailEvent (the CloudTrail record)",
        "CloudTrailEvent.eventTime 'yesterday' is not an ISO-8601 time",
    ]
    assert [r["record_index"] for r in rejected] == [0, 1, 2, 3, 4, 5]
    assert json.loads(rejected[0]["raw"]) == truncated  # the wrapper as it was, for the analyst
    assert event(store, "cloudtrail", use["eventID"])["action"] == "sts:GetCallerIdentity"


def test_bad_eventbridge_events_are_rejected(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    issuance, use = federation_records()
    not_cloudtrail = {
        "version": "0",
        "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "detail": {"instance-id": "i-1234567890abcdef0", "state": "running"},
    }
    no_record = {**eventbridge_event(issuance, 1), "detail": "GetFederationToken"}
    bad_record = eventbridge_event({**issuance, "userIdentity": "stratus"}, 2)
    path = write_lines(
        tmp_path / "bus-archive.ndjson", [eventbridge_event(use, 0), not_cloudtrail, no_record, bad_record]
    )
    result = load(store, "cloudtrail", path)
    assert (result.read, result.loaded, result.rejected) == (4, 1, 3)
    assert [r for (r,) in store.execute("SELECT reason FROM rejected ORDER BY line").fetchall()] == [
        'EventBridge detail-type "EC2 Instance State-change Notification" is not a CloudTrail event '
        '(expected one ending "via CloudTrail")',
        "EventBridge detail is a JSON string, expected an object (the CloudTrail record)",
        "detail.userIdentity is a JSON string, expected an object",
    ]


def test_a_record_native_and_wrapped_is_stored_once(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    # The dedupe key is built from the record inside the wrapper (eventID, eventTime, eventName,
    # recipientAccountId), never from the wrapper: the same event delivered twice is one event.
    records = federation_records()
    native_result = load(store, "cloudtrail", CT_SAMPLES / FEDERATION)
    assert (native_result.loaded, native_result.duplicates) == (2, 0)
    bridge = load(store, "cloudtrail", write_eventbridge(tmp_path / "eventbridge.ndjson", records))
    lookup = load(store, "cloudtrail", write_lookup(tmp_path / "lookup.json", [lookup_event(r) for r in records]))
    for result in (bridge, lookup):
        assert (result.read, result.loaded, result.rejected, result.duplicates) == (2, 0, 0, 2)
    assert store.execute("SELECT count(*) FROM events").fetchone()[0] == 2
    assert store.execute("SELECT count(*) FROM evidence_files").fetchone()[0] == 3  # custody of all three


def test_native_and_wrapped_in_one_file(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    # Wrappers are told apart per record: one file may mix them (and the first copy is kept).
    issuance, use = federation_records()
    mixed = write_lines(
        tmp_path / "mixed.ndjson",
        [eventbridge_event(issuance, 0), issuance, lookup_event(issuance), lookup_event(use), use],
    )
    result = load(store, "cloudtrail", mixed)
    assert (result.read, result.loaded, result.rejected, result.duplicates) == (5, 2, 0, 3)
    kept = rows(store, "SELECT line, raw FROM events ORDER BY line")
    assert [k["line"] for k in kept] == [1, 4]
    assert json.loads(kept[0]["raw"])["detail-type"] == "AWS API Call via CloudTrail"
    assert json.loads(kept[1]["raw"])["EventId"] == use["eventID"]


def test_detection_of_wrappers_is_specific(tmp_path: Path) -> None:
    # Another EventBridge event, and a JSON object with an "Events" list, are not CloudTrail.
    other = write_lines(
        tmp_path / "ec2-events.ndjson",
        [{"version": "0", "id": "1", "detail-type": "EC2 Instance State-change Notification", "detail": {}}],
    )
    assert not cloudtrail.detect(other)
    events = tmp_path / "calendar.json"
    events.write_text(json.dumps({"Events": [{"Id": "1", "Name": "standup"}]}))
    assert not cloudtrail.detect(events)
