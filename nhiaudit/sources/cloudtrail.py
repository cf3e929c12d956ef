"""AWS CloudTrail: S3 delivery files, JSON arrays and NDJSON exports (DESIGN §4, FORMATS §1).

DuckDB parses each record twice: ``json_transform`` into a struct of just the fields nhiaudit
reads (request and response fields included), and one multi-path ``json_type`` that checks the
types the struct cannot show. Nothing is re-serialized to JSON and parsed again per field.
Digest files and SNS/SQS notifications are recognized and skipped: they hold no events.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from nhiaudit.sources import _sql
from nhiaudit.sources._read import RAW_EXCERPT, EvidenceFile, head, stage_json_records

NAME = "cloudtrail"
READS = 'CloudTrail S3 delivery files ({"Records": [...]}, gzip or not), JSON arrays, NDJSON exports'
DETECTION = (
    'JSON whose first record has "eventVersion" with "eventSource"/"eventName" or "userIdentity"; '
    "also CloudTrail digest files and SNS/SQS delivery notifications (skipped, no events)"
)

ISSUING = (
    "AssumeRole",
    "AssumeRoleWithSAML",
    "AssumeRoleWithWebIdentity",
    "GetFederationToken",
    "GetSessionToken",
)

# The part of a record nhiaudit reads, typed in one parse (json_transform). A value of another
# type converts or becomes NULL there, so the fields whose type matters are checked by one more
# parse: json_type over the paths in _CHECKED, in that order.
_STRUCT = """{
    "eventID": "VARCHAR", "eventTime": "VARCHAR", "@timestamp": "VARCHAR", "eventSource": "VARCHAR",
    "eventName": "VARCHAR", "eventType": "VARCHAR", "awsRegion": "VARCHAR", "sourceIPAddress": "VARCHAR",
    "userAgent": "VARCHAR", "errorCode": "VARCHAR", "readOnly": "VARCHAR", "recipientAccountId": "VARCHAR",
    "userIdentity": {
        "type": "VARCHAR", "arn": "VARCHAR", "principalId": "VARCHAR", "accountId": "VARCHAR",
        "accessKeyId": "VARCHAR", "userName": "VARCHAR", "invokedBy": "VARCHAR",
        "sessionContext": {"sourceIdentity": "VARCHAR", "ec2RoleDelivery": "VARCHAR",
                           "sessionIssuer": {"type": "VARCHAR", "arn": "VARCHAR"}}
    },
    "requestParameters": {
        "bucketName": "VARCHAR", "key": "VARCHAR", "roleArn": "VARCHAR", "roleSessionName": "VARCHAR",
        "sourceIdentity": "VARCHAR", "durationSeconds": "VARCHAR", "tags": "JSON"
    },
    "responseElements": {
        "credentials": {"accessKeyId": "VARCHAR", "expiration": "VARCHAR"},
        "assumedRoleUser": {"arn": "VARCHAR"}, "federatedUser": {"arn": "VARCHAR"},
        "sourceIdentity": "VARCHAR", "ConsoleLogin": "VARCHAR"
    },
    "resources": [{"ARN": "VARCHAR", "type": "VARCHAR"}],
    "digestStartTime": "VARCHAR", "Message": "VARCHAR", "Type": "VARCHAR"
}"""
_CHECKED = ["eventTime", "eventName", "eventSource", "userIdentity", "resources", "readOnly", "requestParameters.tags"]


def detect(path: Path) -> bool:
    text = head(path)
    if '"eventVersion"' in text and ('"eventSource"' in text or '"userIdentity"' in text):
        return True
    if '"digestStartTime"' in text and '"digestS3Bucket"' in text:
        return True
    return '"TopicArn"' in text and "s3ObjectKey" in text and "CloudTrail" in text


def load(con: duckdb.DuckDBPyConnection, files: list[EvidenceFile]) -> None:
    for file in files:
        stage_json_records(con, file, unwrap=("Records",))
        _normalize(con)



def _wrong_type(index: int, field: str, allowed: tuple[str, ...], expected: str) -> str:
    kind = f"t[{index}]"
    allowed_sql = ", ".join(f"'{a}'" for a in (*allowed, "NULL"))
    return (
        f"WHEN coalesce({kind}, 'NULL') NOT IN ({allowed_sql}) "
        f"THEN '{field} is a JSON ' || {_sql.json_kind(kind)} || ', expected {expected}'"
    )


def _normalize(con: duckdb.DuckDBPyConnection) -> None:
    # Each record is consumed, rejected or staged exactly once. Wrong types are rejected with the
    # field named; missing fields are not an error (real records and AWS doc fragments omit many).
    # Digest files and delivery notifications describe log files, not events: consumed on purpose.
    paths = "[" + ", ".join(f"'$.{p}'" for p in _CHECKED) + "]"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE ct AS
        SELECT *,
            r.digestStartTime IS NOT NULL OR (r.Type = 'Notification' AND r.Message IS NOT NULL) AS skipped,
            CASE
                {_wrong_type(1, "eventTime", ("VARCHAR",), "an ISO-8601 string")}
                WHEN t[1] = 'VARCHAR' AND event_time IS NULL
                    THEN 'eventTime ''' || left(r.eventTime, 60) || ''' is not an ISO-8601 time'
                {_wrong_type(2, "eventName", ("VARCHAR",), "a string")}
                {_wrong_type(3, "eventSource", ("VARCHAR",), "a string")}
                {_wrong_type(4, "userIdentity", ("OBJECT",), "an object")}
                {_wrong_type(5, "resources", ("ARRAY",), "an array")}
            END AS reason
        FROM (
            SELECT record_index, line, doc, r, t, try_cast(r.eventTime AS TIMESTAMPTZ) AS event_time
            FROM (SELECT record_index, line, doc, json_transform(doc, '{_STRUCT}') AS r, json_type(doc, {paths}) AS t
                  FROM records)
        )"""
    )
    con.execute("INSERT INTO consumed SELECT record_index FROM ct WHERE skipped")
    con.execute(
        """INSERT INTO staged_rejected SELECT record_index, line, reason, left(doc::VARCHAR, ?)
        FROM ct WHERE NOT skipped AND reason IS NOT NULL""",
        [RAW_EXCERPT],
    )
    issuing = ", ".join(f"'{name}'" for name in ISSUING)
    con.execute(
        f"""INSERT INTO staged BY NAME
        WITH base AS (
            SELECT record_index, line, doc, r, t, r.userIdentity AS u, r.requestParameters AS req,
                   r.responseElements AS resp, r.eventSource AS event_source, r.eventName AS event_name,
                   coalesce(event_time, try_cast(r."@timestamp" AS TIMESTAMPTZ)) AS occurred_at,
                   r.eventSource = 'sts.amazonaws.com' AND r.eventName IN ({issuing}) AS issuing
            FROM ct
            WHERE NOT skipped AND reason IS NULL
        ), keyed AS (
            SELECT *,
                CASE WHEN issuing THEN resp.credentials.accessKeyId ELSE u.accessKeyId END AS cred,
                CASE WHEN issuing THEN u.accessKeyId END AS parent_cred,
                -- An object before its bucket (DESIGN §4), else the first ARN listed. List functions,
                -- not a correlated subquery: that one joined on the whole record and took most of ingest.
                coalesce(list_filter(r.resources, lambda x: x.ARN IS NOT NULL AND x.type = 'AWS::S3::Object')[1].ARN,
                         list_filter(r.resources, lambda x: x.ARN IS NOT NULL)[1].ARN) AS first_arn
            FROM base
        )
        SELECT
            r.eventID AS event_id,
            record_index, line, occurred_at,
            CASE WHEN issuing THEN 'credential_issue'
                 WHEN r.eventType = 'AwsConsoleSignIn' THEN 'signin'
                 WHEN r.eventType = 'AwsServiceEvent' OR event_name IS NULL THEN 'other'
                 ELSE 'action' END AS category,
            coalesce(u.arn, u.principalId, u.invokedBy) AS actor_id,
            CASE WHEN u.type = 'AWSService' THEN 'service'
                 WHEN u.sessionContext.ec2RoleDelivery IS NOT NULL THEN 'workload'
                 ELSE 'unknown' END AS actor_type,
            cred AS credential_id,
            CASE WHEN cred LIKE 'AKIA%' THEN 'aws_long_term_key'
                 WHEN cred LIKE 'ASIA%' THEN 'aws_temporary_key'
                 WHEN cred IS NOT NULL THEN 'aws_access_key' END AS credential_type,
            parent_cred AS parent_credential_id,
            CASE WHEN event_name IS NOT NULL
                 THEN coalesce(regexp_replace(event_source, '\\.amazonaws\\.com$', ''), 'unknown') || ':' || event_name
            END AS action,
            coalesce(
                first_arn,
                CASE WHEN event_source = 's3.amazonaws.com' AND req.bucketName IS NOT NULL
                     THEN 'arn:aws:s3:::' || req.bucketName || coalesce('/' || req.key, '') END,
                CASE WHEN issuing THEN req.roleArn END
            ) AS resource,
            coalesce(
                CASE WHEN t[6] IN ('BOOLEAN', 'VARCHAR') THEN lower(r.readOnly) = 'true' END,
                regexp_matches(event_name, '^(Get|List|Describe|Head|Lookup|BatchGet|Search|Select)')
            ) AS read_only,
            CASE WHEN r.errorCode IS NULL AND coalesce(resp.ConsoleLogin, '') <> 'Failure' THEN 'success'
                 WHEN regexp_matches(coalesce(r.errorCode, ''), 'AccessDenied|Unauthorized|Forbidden|NotAuthorized')
                     THEN 'denied'
                 ELSE 'failure' END AS outcome,
            r.errorCode AS error_code,
            coalesce(r.recipientAccountId, u.accountId) AS account,
            r.awsRegion AS region,
            r.sourceIPAddress AS src_ip,
            r.userAgent AS user_agent,
            CASE WHEN issuing THEN coalesce(req.sourceIdentity, resp.sourceIdentity)
                 ELSE u.sessionContext.sourceIdentity END AS task_id,
            CASE WHEN issuing THEN coalesce(
                try_strptime(resp.credentials.expiration, '%b %d, %Y, %I:%M:%S %p'),
                try_strptime(resp.credentials.expiration, '%b %d, %Y %I:%M:%S %p'),
                try_cast(resp.credentials.expiration AS TIMESTAMP)
            )::TIMESTAMP AT TIME ZONE 'UTC' END AS expires_at,
            CASE WHEN issuing THEN json_object(
                'holder', coalesce(resp.assumedRoleUser.arn, resp.federatedUser.arn,
                                   CASE WHEN event_name = 'GetSessionToken' THEN u.arn END),
                'session_tags', CASE WHEN t[7] = 'ARRAY' THEN req.tags END,
                'source_identity', coalesce(req.sourceIdentity, resp.sourceIdentity),
                'role_arn', req.roleArn,
                'role_session_name', req.roleSessionName,
                'duration_seconds', try_cast(req.durationSeconds AS BIGINT),
                'long_term', false)
            ELSE json_object('identity_type', u.type, 'session_issuer', u.sessionContext.sessionIssuer.arn)
            END AS details,
            doc AS raw,
            CASE WHEN r.eventID IS NOT NULL
                 THEN r.eventID || '|' || coalesce(r.eventTime, r."@timestamp", '') || '|'
                      || coalesce(event_name, '') || '|' || coalesce(r.recipientAccountId, '') END AS dedupe_key
        FROM keyed"""
    )
