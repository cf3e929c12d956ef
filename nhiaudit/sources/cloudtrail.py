"""AWS CloudTrail: S3 delivery files, JSON arrays and NDJSON exports (DESIGN §4, FORMATS §1).

Each record is parsed once with ``json_transform`` into a struct; fields whose type varies by
service (requestParameters, responseElements) stay JSON and are read only where needed.
Digest files and SNS/SQS notifications are recognized and skipped: they hold no events.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

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

# The part of a record nhiaudit reads, typed once. Fields whose type is checked stay JSON.
_STRUCT = """{
    "eventID": "VARCHAR", "eventTime": "JSON", "@timestamp": "VARCHAR", "eventSource": "JSON",
    "eventName": "JSON", "eventType": "VARCHAR", "awsRegion": "VARCHAR", "sourceIPAddress": "VARCHAR",
    "userAgent": "VARCHAR", "errorCode": "VARCHAR", "readOnly": "JSON", "recipientAccountId": "VARCHAR",
    "userIdentity": "JSON", "requestParameters": "JSON", "responseElements": "JSON", "resources": "JSON",
    "digestStartTime": "VARCHAR", "Message": "VARCHAR", "Type": "VARCHAR"
}"""

_IDENTITY = """{
    "type": "VARCHAR", "arn": "VARCHAR", "principalId": "VARCHAR", "accountId": "VARCHAR",
    "accessKeyId": "VARCHAR", "userName": "VARCHAR", "invokedBy": "VARCHAR",
    "sessionContext": {"sourceIdentity": "VARCHAR", "ec2RoleDelivery": "VARCHAR",
                       "sessionIssuer": {"type": "VARCHAR", "arn": "VARCHAR"}}
}"""


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


def _kind(json_type: str) -> str:
    """SQL naming a ``json_type()`` result as a reader of the log would: ``a JSON number``."""
    return (
        f"CASE WHEN {json_type} IN ('BIGINT', 'UBIGINT', 'DOUBLE') THEN 'number' "
        f"WHEN {json_type} = 'VARCHAR' THEN 'string' ELSE lower({json_type}) END"
    )


def _normalize(con: duckdb.DuckDBPyConnection) -> None:
    # One typed parse per record; then each record is consumed, rejected or staged exactly once.
    # Wrong types are rejected with the field named; missing fields are not an error (real
    # records and AWS doc fragments omit many). Digest files and delivery notifications describe
    # log files, not events: consumed on purpose.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE ct AS
        SELECT *,
            r.digestStartTime IS NOT NULL OR (r.Type = 'Notification' AND r.Message IS NOT NULL) AS skipped,
            CASE
                WHEN time_type NOT IN ('VARCHAR', 'NULL')
                    THEN 'eventTime is a JSON ' || {_kind("time_type")} || ', expected an ISO-8601 string'
                WHEN time_type = 'VARCHAR' AND event_time IS NULL
                    THEN 'eventTime ''' || left(event_time_text, 60) || ''' is not an ISO-8601 time'
                WHEN coalesce(json_type(r.eventName), 'NULL') NOT IN ('VARCHAR', 'NULL')
                    THEN 'eventName is a JSON ' || {_kind("json_type(r.eventName)")} || ', expected a string'
                WHEN coalesce(json_type(r.eventSource), 'NULL') NOT IN ('VARCHAR', 'NULL')
                    THEN 'eventSource is a JSON ' || {_kind("json_type(r.eventSource)")} || ', expected a string'
                WHEN coalesce(json_type(r.userIdentity), 'NULL') NOT IN ('OBJECT', 'NULL')
                    THEN 'userIdentity is a JSON ' || {_kind("json_type(r.userIdentity)")} || ', expected an object'
                WHEN coalesce(json_type(r.resources), 'NULL') NOT IN ('ARRAY', 'NULL')
                    THEN 'resources is a JSON ' || {_kind("json_type(r.resources)")} || ', expected an array'
            END AS reason
        FROM (
            SELECT record_index, line, doc, r,
                   CASE WHEN json_type(r.userIdentity) = 'OBJECT'
                        THEN json_transform(r.userIdentity, '{_IDENTITY}') END AS u,
                   coalesce(json_type(r.eventTime), 'NULL') AS time_type,
                   json_extract_string(r.eventTime, '$') AS event_time_text,
                   try_cast(json_extract_string(r.eventTime, '$') AS TIMESTAMPTZ) AS event_time,
                   coalesce(try_cast(json_extract_string(r.eventTime, '$') AS TIMESTAMPTZ),
                            try_cast(r."@timestamp" AS TIMESTAMPTZ)) AS occurred_at,
                   json_extract_string(r.eventSource, '$') AS event_source,
                   json_extract_string(r.eventName, '$') AS event_name
            FROM (SELECT record_index, line, doc, json_transform(doc, '{_STRUCT}') AS r FROM records)
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
            SELECT *, event_source = 'sts.amazonaws.com' AND event_name IN ({issuing}) AS issuing,
                   CASE WHEN json_type(r.responseElements) = 'OBJECT' THEN r.responseElements END AS resp,
                   CASE WHEN json_type(r.requestParameters) = 'OBJECT' THEN r.requestParameters END AS req,
                   CASE WHEN json_type(r.resources) = 'ARRAY'
                        THEN json_transform(r.resources, '[{{"ARN": "VARCHAR", "type": "VARCHAR"}}]') END AS res
            FROM ct
            WHERE NOT skipped AND reason IS NULL
        ), keyed AS (
            SELECT *,
                CASE WHEN issuing THEN json_extract_string(resp, '$.credentials.accessKeyId') ELSE u.accessKeyId END AS cred,
                CASE WHEN issuing THEN u.accessKeyId END AS parent_cred,
                -- An object before its bucket (DESIGN §4), else the first ARN listed. List functions,
                -- not a correlated subquery: that one joined on the whole record and took most of ingest.
                coalesce(list_filter(res, lambda x: x.ARN IS NOT NULL AND x.type = 'AWS::S3::Object')[1].ARN,
                         list_filter(res, lambda x: x.ARN IS NOT NULL)[1].ARN) AS first_arn
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
                CASE WHEN event_source = 's3.amazonaws.com' AND json_extract_string(req, '$.bucketName') IS NOT NULL
                     THEN 'arn:aws:s3:::' || json_extract_string(req, '$.bucketName')
                          || coalesce('/' || json_extract_string(req, '$.key'), '') END,
                CASE WHEN issuing THEN json_extract_string(req, '$.roleArn') END
            ) AS resource,
            coalesce(
                CASE json_type(r.readOnly) WHEN 'BOOLEAN' THEN json_extract_string(r.readOnly, '$') = 'true'
                                           WHEN 'VARCHAR' THEN lower(json_extract_string(r.readOnly, '$')) = 'true' END,
                regexp_matches(event_name, '^(Get|List|Describe|Head|Lookup|BatchGet|Search|Select)')
            ) AS read_only,
            CASE WHEN r.errorCode IS NULL AND coalesce(json_extract_string(resp, '$.ConsoleLogin'), '') <> 'Failure' THEN 'success'
                 WHEN regexp_matches(coalesce(r.errorCode, ''), 'AccessDenied|Unauthorized|Forbidden|NotAuthorized')
                     THEN 'denied'
                 ELSE 'failure' END AS outcome,
            r.errorCode AS error_code,
            coalesce(r.recipientAccountId, u.accountId) AS account,
            r.awsRegion AS region,
            r.sourceIPAddress AS src_ip,
            r.userAgent AS user_agent,
            CASE WHEN issuing THEN coalesce(json_extract_string(req, '$.sourceIdentity'), json_extract_string(resp, '$.sourceIdentity'))
                 ELSE u.sessionContext.sourceIdentity END AS task_id,
            CASE WHEN issuing THEN coalesce(
                try_strptime(json_extract_string(resp, '$.credentials.expiration'), '%b %d, %Y, %I:%M:%S %p'),
                try_strptime(json_extract_string(resp, '$.credentials.expiration'), '%b %d, %Y %I:%M:%S %p'),
                try_cast(json_extract_string(resp, '$.credentials.expiration') AS TIMESTAMP)
            )::TIMESTAMP AT TIME ZONE 'UTC' END AS expires_at,
            CASE WHEN issuing THEN json_object(
                'holder', coalesce(json_extract_string(resp, '$.assumedRoleUser.arn'), json_extract_string(resp, '$.federatedUser.arn'),
                                   CASE WHEN event_name = 'GetSessionToken' THEN u.arn END),
                'session_tags', CASE WHEN json_type(req, '$.tags') = 'ARRAY' THEN json_extract(req, '$.tags') END,
                'source_identity', coalesce(json_extract_string(req, '$.sourceIdentity'), json_extract_string(resp, '$.sourceIdentity')),
                'role_arn', json_extract_string(req, '$.roleArn'),
                'role_session_name', json_extract_string(req, '$.roleSessionName'),
                'duration_seconds', try_cast(json_extract_string(req, '$.durationSeconds') AS BIGINT),
                'long_term', false)
            ELSE json_object('identity_type', u.type, 'session_issuer', u.sessionContext.sessionIssuer.arn)
            END AS details,
            doc AS raw,
            CASE WHEN r.eventID IS NOT NULL
                 THEN r.eventID || '|' || coalesce(event_time_text, r."@timestamp", '') || '|'
                      || coalesce(event_name, '') || '|' || coalesce(r.recipientAccountId, '') END AS dedupe_key
        FROM keyed"""
    )
