"""AWS CloudTrail: S3 delivery files, JSON arrays and NDJSON exports (DESIGN §4, FORMATS §1), and
two wrappers around the record: EventBridge events (``"detail-type": "… via CloudTrail"``, the
record in ``detail``) and ``LookupEvents`` output (``{"Events": [{"CloudTrailEvent": "<the record as
a JSON string>"}]}``). The wrapper stays the ``raw`` evidence; the record inside it is normalized
exactly as if it had been read natively (same event id, same dedupe key).

DuckDB parses each record twice: ``json_transform`` into a struct of just the fields nhiaudit
reads (request and response fields included), and one multi-path ``json_type`` that checks the
types the struct cannot show. Nothing is re-serialized to JSON and parsed again per field.
Digest files and SNS/SQS notifications are recognized and skipped: they hold no events.

Approval and task evidence inside CloudTrail: Systems Manager just-in-time node access (a request,
its Automation approval signals, the token it issues) and IAM Identity Center account assignments
(grants, read by 50_approvals.sql from ``details.assignment``).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from nhiaudit.sources import _sql
from nhiaudit.sources._read import RAW_EXCERPT, EvidenceFile, head, stage_json_records

NAME = "cloudtrail"
READS = (
    'CloudTrail S3 delivery files ({"Records": [...]}, gzip or not), JSON arrays, NDJSON exports; '
    'EventBridge "... via CloudTrail" events (NDJSON or array); LookupEvents output ({"Events": [...]})'
)
DETECTION = (
    'JSON whose first record has "eventVersion" with "eventSource"/"eventName" or "userIdentity"; '
    'an EventBridge "detail-type" ending "via CloudTrail"; a LookupEvents "CloudTrailEvent"; '
    "also CloudTrail digest files and SNS/SQS delivery notifications (skipped, no events)"
)

# The dedupe key (eventID|eventTime|eventName|account, below) fixes occurred_at, which is read from
# the same eventTime (or "@timestamp"): the merge looks for stored copies in the staged time span.
DEDUPE_KEY_FIXES_TIME = True

ISSUING = (
    "AssumeRole",
    "AssumeRoleWithSAML",
    "AssumeRoleWithWebIdentity",
    "GetFederationToken",
    "GetSessionToken",
)

# Systems Manager just-in-time node access (docs: "Approving and denying just-in-time node access
# requests"): StartAccessRequest opens request oi-<12 hex> (a task, ssm-access-request:<id>); the
# approvers answer the request's Automation execution with SendAutomationSignal (signalType Approve
# or Deny/Reject: an approval decision, tied to the request in 50_approvals.sql); GetAccessToken
# (the request id in requestParameters) issues the requester the session credentials. The request id
# is an OpsItem id: the documented approval procedure reads it (GetOpsItem, whose OperationalData
# /aws/accessrequest names the execution) before signalling, so GetOpsItem keeps the id it read.
SSM_JIT_TASK = "ssm-access-request:"
_SSM_SIGNALS = "('approve', 'deny', 'reject')"
# IAM Identity Center: an account assignment gives a principal a permission set in an account
# (grants in 50_approvals.sql; the call itself stays an audited action).
_ACCESS_REQUEST_ID = r"oi-[0-9a-f]{12}"

# requestParameters: the few fields read by name, typed here; the resource of a call is read per
# service (RESOURCE_PARAMS), only the parameters that table names — never the
# whole object, which can hold a 50 MB policy document.
_REQUEST = """{
    "bucketName": "VARCHAR", "key": "VARCHAR", "roleArn": "VARCHAR", "roleSessionName": "VARCHAR",
    "sourceIdentity": "VARCHAR", "durationSeconds": "VARCHAR", "tags": "JSON",
    "accessRequestId": "VARCHAR", "reason": "VARCHAR", "targets": "JSON", "signalType": "VARCHAR",
    "automationExecutionId": "VARCHAR", "instanceArn": "VARCHAR", "permissionSetArn": "VARCHAR",
    "principalId": "VARCHAR", "principalType": "VARCHAR", "targetId": "VARCHAR", "targetType": "VARCHAR",
    "payload": "JSON", "parameters": "JSON", "opsItemId": "VARCHAR"
}"""

# The part of a record nhiaudit reads, typed in one parse (json_transform). A value of another
# type converts or becomes NULL there, so the fields whose type matters are checked by one more
# parse: json_type over the paths in _CHECKED, in that order.
_STRUCT = (
    """{
    "eventID": "VARCHAR", "eventTime": "VARCHAR", "@timestamp": "VARCHAR", "eventSource": "VARCHAR",
    "eventName": "VARCHAR", "eventType": "VARCHAR", "awsRegion": "VARCHAR", "sourceIPAddress": "VARCHAR",
    "userAgent": "VARCHAR", "errorCode": "VARCHAR", "readOnly": "VARCHAR", "recipientAccountId": "VARCHAR",
    "userIdentity": {
        "type": "VARCHAR", "arn": "VARCHAR", "principalId": "VARCHAR", "accountId": "VARCHAR",
        "accessKeyId": "VARCHAR", "userName": "VARCHAR", "invokedBy": "VARCHAR", "credentialId": "VARCHAR",
        "onBehalfOf": {"userId": "VARCHAR", "identityStoreArn": "VARCHAR"},
        "sessionContext": {"sourceIdentity": "VARCHAR", "ec2RoleDelivery": "VARCHAR",
                           "sessionIssuer": {"type": "VARCHAR", "arn": "VARCHAR"}}
    },
    "requestParameters": """
    + _REQUEST
    + """,
    "responseElements": {
        "credentials": {"accessKeyId": "VARCHAR", "expiration": "VARCHAR", "expirationTime": "VARCHAR"},
        "accessRequestId": "VARCHAR", "accessRequestStatus": "VARCHAR", "automationExecutionId": "VARCHAR",
        "assumedRoleUser": {"arn": "VARCHAR"}, "federatedUser": {"arn": "VARCHAR"},
        "sourceIdentity": "VARCHAR", "ConsoleLogin": "VARCHAR"
    },
    "resources": [{"ARN": "VARCHAR", "type": "VARCHAR"}],
    "digestStartTime": "VARCHAR", "Message": "VARCHAR", "Type": "VARCHAR"
}"""
)
_CHECKED = ["eventTime", "eventName", "eventSource", "userIdentity", "resources", "readOnly", "requestParameters.tags"]

# Wrappers, told apart per record by top-level keys a CloudTrail record never has. EventBridge:
# "detail-type" ("AWS API Call via CloudTrail", "AWS Console Sign In via CloudTrail", "AWS Service
# Event via CloudTrail", ...) with the record in "detail". LookupEvents: "CloudTrailEvent" (the
# record as a JSON string; an object is taken too) beside "EventId".
_WRAPPER_PATHS = ['$."detail-type"', "$.CloudTrailEvent", "$.EventId"]


# The resources a call names in its requestParameters, per service: data, not code (DESIGN §6).
RESOURCE_PARAMS = "cloudtrail_resources.csv"
_PARAM_COLUMNS = "{'event_source': 'VARCHAR', 'event_name': 'VARCHAR', 'param': 'VARCHAR', 'item': 'VARCHAR', 'pattern': 'VARCHAR', 'arn': 'VARCHAR'}"


def _install_resource_params(con: duckdb.DuckDBPyConnection) -> None:
    """TEMP table ``ct_resource_params`` (the rows of RESOURCE_PARAMS, ``rank`` = file order)."""
    _sql.install_data_table(con, "ct_resource_params", RESOURCE_PARAMS, _PARAM_COLUMNS)


def detect(path: Path) -> bool:
    text = head(path)
    if '"eventVersion"' in text and ('"eventSource"' in text or '"userIdentity"' in text):
        return True
    if '"digestStartTime"' in text and '"digestS3Bucket"' in text:
        return True
    if '"detail-type"' in text and 'via CloudTrail"' in text:
        return True  # EventBridge: the envelope comes first, the record may start past the head
    if '"CloudTrailEvent"' in text or ('"Events"' in text and '"EventId"' in text and '"EventSource"' in text):
        return True  # LookupEvents: the record is an escaped string, its keys do not show as keys
    return '"TopicArn"' in text and "s3ObjectKey" in text and "CloudTrail" in text


def load(con: duckdb.DuckDBPyConnection, files: list[EvidenceFile]) -> None:
    for file in files:
        # LookupEvents output opens with its "Events" key. Only then is it a layout to look for:
        # each one costs another parse of every document (and its memory, for a 50 MB record).
        lookup = '"Events"' in head(file.read_path)
        stage_json_records(con, file, unwrap=("Records", "Events") if lookup else ("Records",))
        load_records(con)


def load_records(con: duckdb.DuckDBPyConnection) -> None:
    """Normalize the staged ``records`` table. The framework calls it directly for a batch of
    small S3 delivery files staged at once (``nhiaudit.ingest``, ``_read.stage_record_batch``)."""
    _install_resource_params(con)
    _normalize(con)


def _unwrapped(checked: list[str]) -> str:
    """SQL over ``records``: ``ev``, the CloudTrail record itself (``doc``, or the record inside an
    EventBridge or LookupEvents wrapper); ``wrapped_in``, the wrapper field it came from (NULL when
    native; it prefixes field names in reasons); ``wrap_reason`` when the wrapper holds no usable
    record; and ``t0``, the JSON types of ``checked`` (then of the wrapper keys) in ``doc``.

    A native record is parsed here once, by the json_type that _normalize needs anyway: the wrapper
    keys are three more paths in it. Only a wrapped record is parsed again (its wrapper fields, then
    ``ev`` in _normalize). (A substring test for the keys costs more than this parse.)
    """
    n = len(checked)
    types = "[" + ", ".join(f"'{p}'" for p in [*checked, *_WRAPPER_PATHS]) + "]"
    # w: [detail-type, detail, CloudTrailEvent]. json() parses the CloudTrailEvent string once
    # (held); try() makes a malformed one NULL. held is minified JSON (json() and json_extract
    # write it): its first character tells an object without parsing it again.
    return f"""
        SELECT record_index, line, doc, t0, wrapped_in,
            CASE WHEN wrapped_in IS NULL THEN doc WHEN held_object THEN held END AS ev,
            CASE wrapped_in
                WHEN 'detail.' THEN CASE
                    WHEN NOT coalesce(w[1] ->> '$' LIKE '%via CloudTrail', false)
                        THEN 'EventBridge detail-type ' || left(w[1]::VARCHAR, 80)
                             || ' is not a CloudTrail event (expected one ending "via CloudTrail")'
                    WHEN NOT coalesce(held_object, false)
                        THEN 'EventBridge detail is ' || coalesce('a JSON ' || json_kind(json_type(w[2])), 'missing')
                             || ', expected an object (the CloudTrail record)' END
                WHEN 'CloudTrailEvent.' THEN coalesce(
                    CASE WHEN w[3] IS NULL THEN 'LookupEvents event has no CloudTrailEvent (the CloudTrail record)' END,
                    json_type_problem(json_type(w[3]), 'CloudTrailEvent', ['VARCHAR', 'OBJECT'],
                                      'the CloudTrail record as a JSON string'),
                    CASE WHEN held IS NULL THEN 'CloudTrailEvent is not valid JSON (a truncated or malformed string)'
                         WHEN NOT held_object
                         THEN 'CloudTrailEvent holds a JSON ' || json_kind(json_type(held)) || ', expected an object' END)
            END AS wrap_reason
        FROM (SELECT *, starts_with(held::VARCHAR, '{{') AS held_object FROM (
            SELECT *,
                CASE wrapped_in
                    WHEN 'detail.' THEN w[2]
                    WHEN 'CloudTrailEvent.' THEN CASE json_type(w[3]) WHEN 'OBJECT' THEN w[3]
                                                     WHEN 'VARCHAR' THEN try(json(w[3] ->> '$')) END
                END AS held
            FROM (
                SELECT *,
                    CASE WHEN wrapped_in IS NOT NULL
                         THEN json_extract(doc, ['$."detail-type"', '$.detail', '$.CloudTrailEvent']) END AS w
                FROM (
                    SELECT record_index, line, doc, t0,
                        CASE WHEN t0[{n + 1}] IS NOT NULL THEN 'detail.'
                             WHEN t0[{n + 2}] IS NOT NULL OR t0[{n + 3}] IS NOT NULL THEN 'CloudTrailEvent.'
                        END AS wrapped_in
                    FROM (SELECT record_index, line, doc, json_type(doc, {types}) AS t0 FROM records)
                )
            )
        ))"""


def _param_list(con: duckdb.DuckDBPyConnection, under: str = "") -> str:
    """The parameters ``ct_resource_params`` names (JSON paths ``$.…``), as a SQL list literal in
    one fixed order: the positions of ``ct.req_values``. ``under`` prefixes each path
    (``$.requestParameters``) to read them from the whole record."""
    params = [p for (p,) in con.execute("SELECT DISTINCT param FROM ct_resource_params ORDER BY 1").fetchall()]
    return "[" + ", ".join("'" + ("$" + under + p[1:]).replace("'", "''") + "'" for p in params) + "]"


def _param_resources(con: duckdb.DuckDBPyConnection) -> None:
    r"""TEMP table ``ct_param_resources(record_index, partition, param_resources)``: the ARNs a record's
    requestParameters name by the rows of ``ct_resource_params`` (in rank order, then element order,
    each once), and the record's partition. Values are evidence: they only ever fill ``\0``…``\9`` of
    a template; the record's region, account and partition go into the template escaped."""
    listed_params = _param_list(con)
    # Its own statement, not a column of ``ct``: two JSON functions over one 50 MB record in one
    # statement hold a parse arena each (256 MiB apiece), more than a 1 GB limit allows.
    con.execute(
        r"""CREATE OR REPLACE TEMP TABLE ct_param_resources AS
        WITH rec AS (
            SELECT record_index, json_extract(coalesce(wrapped_ev, doc), REQUEST_PARAMS) AS req_values,
                   r.eventSource AS event_source, r.eventName AS event_name,
                   nullif(r.awsRegion, '') AS region, nullif(coalesce(r.recipientAccountId, r.userIdentity.accountId), '') AS account,
                   CASE WHEN regexp_full_match(r.userIdentity.arn, 'arn:aws[a-z-]*:.*') THEN split_part(r.userIdentity.arn, ':', 2)
                        WHEN r.awsRegion LIKE 'us-gov-%' THEN 'aws-us-gov' WHEN r.awsRegion LIKE 'cn-%' THEN 'aws-cn'
                        WHEN r.awsRegion LIKE 'us-isob-%' THEN 'aws-iso-b' WHEN r.awsRegion LIKE 'us-iso-%' THEN 'aws-iso'
                        ELSE 'aws' END AS partition
            FROM ct WHERE NOT skipped AND reason IS NULL
        ), matched AS (
            SELECT rec.record_index, m.rank, m.item, m.pattern,
                   -- the template with the record's parts; NULL when it needs a part the record lacks
                   CASE WHEN NOT (contains(m.arn, '{region}') AND region IS NULL)
                         AND NOT (contains(m.arn, '{account}') AND account IS NULL)
                        THEN replace(replace(replace(m.arn, '{partition}', replace(partition, '\', '\\')),
                                             '{region}', replace(coalesce(region, ''), '\', '\\')),
                                     '{account}', replace(coalesce(account, ''), '\', '\\')) END AS template,
                   rec.req_values[list_position(PARAMS, m.param)] AS v
            FROM rec JOIN ct_resource_params m ON m.event_source = rec.event_source
                 AND (m.event_name IS NULL OR regexp_full_match(rec.event_name, m.event_name))
            WHERE rec.req_values IS NOT NULL
        ), valued AS (
            SELECT record_index, rank, pattern, template,
                   list_transform(CASE WHEN json_type(v) = 'ARRAY' THEN json_extract(v, '$[*]') ELSE [v] END,
                       e -> nullif(trim(CASE WHEN item IS NOT NULL THEN json_extract_string(e, '$."' || item || '"')
                                             WHEN json_type(e) IN ('VARCHAR', 'BIGINT', 'UBIGINT')
                                             THEN json_extract_string(e, '$') END), '')) AS vals
            FROM matched WHERE v IS NOT NULL AND template IS NOT NULL
        ), built AS (
            SELECT record_index, rank,
                   list_filter(list_transform(vals, x -> CASE
                       WHEN starts_with(x, 'arn:') THEN x
                       WHEN regexp_full_match(x, coalesce(pattern, '.+'))
                       THEN regexp_replace(x, '^(?:' || coalesce(pattern, '(.+)') || ')$', template) END),
                       x -> x IS NOT NULL) AS arns
            FROM valued
        ), listed AS (
            SELECT record_index, flatten(list(arns ORDER BY rank)) AS l FROM built GROUP BY record_index
        )
        SELECT rec.record_index, rec.partition,
               nullif(list_filter(l, (x, i) -> list_position(l, x) = i), []) AS param_resources
        FROM rec LEFT JOIN listed USING (record_index)""".replace("REQUEST_PARAMS", _param_list(con, ".requestParameters"))
        .replace("PARAMS", listed_params)
    )


def _normalize(con: duckdb.DuckDBPyConnection) -> None:
    # Each record is consumed, rejected or staged exactly once. Wrong types are rejected with the
    # field named; missing fields are not an error (real records and AWS doc fragments omit many).
    # Digest files and delivery notifications describe log files, not events: consumed on purpose.
    # ``ev`` is the record read; ``doc`` (the wrapper, if any) stays the evidence: raw, rejects.
    checked = [f"$.{p}" for p in _CHECKED]
    paths = "[" + ", ".join(f"'{p}'" for p in checked) + "]"
    s = _sql  # t[i]: the JSON type of _CHECKED[i - 1]
    bad_time = "CASE WHEN t[1] = 'VARCHAR' AND event_time IS NULL THEN 'eventTime ''' || left(r.eventTime, 60) || ''' is not an ISO-8601 time' END"
    problem = s.first_problem(
        s.wrong_type("t[1]", "eventTime", s.STRING, "an ISO-8601 string"),
        bad_time,
        s.wrong_type("t[2]", "eventName", s.STRING, "a string"),
        s.wrong_type("t[3]", "eventSource", s.STRING, "a string"),
        s.wrong_type("t[4]", "userIdentity", s.OBJECT, "an object"),
        s.wrong_type("t[5]", "resources", s.ARRAY, "an array"),
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE ct AS
        SELECT *,
            wrapped_in IS NULL AND coalesce(r.digestStartTime IS NOT NULL
                                    OR (r.Type = 'Notification' AND r.Message IS NOT NULL), false) AS skipped,
            coalesce(wrap_reason, coalesce(wrapped_in, '') || {problem}) AS reason
        FROM (
            SELECT record_index, line, doc, wrapped_in, wrap_reason, wrapped_ev, r, t,
                   try_cast(r.eventTime AS TIMESTAMPTZ) AS event_time
            FROM (SELECT record_index, line, doc, wrapped_in, wrap_reason, json_transform(ev, '{_STRUCT}') AS r,
                         CASE WHEN wrapped_in IS NULL THEN t0 ELSE json_type(ev, {paths}) END AS t,
                         CASE WHEN wrapped_in IS NOT NULL THEN ev END AS wrapped_ev
                  FROM ({_unwrapped(checked)}))
        )"""
    )
    con.execute("INSERT INTO consumed SELECT record_index FROM ct WHERE skipped")
    con.execute(
        """INSERT INTO staged_rejected SELECT record_index, line, reason, left(doc::VARCHAR, ?)
        FROM ct WHERE NOT skipped AND reason IS NOT NULL""",
        [RAW_EXCERPT],
    )
    _param_resources(con)
    issuing = ", ".join(f"'{name}'" for name in ISSUING)
    con.execute(
        f"""INSERT INTO staged BY NAME
        WITH base AS (
            SELECT record_index, line, doc, r, t, r.userIdentity AS u, r.requestParameters AS req,
                   pr.param_resources, pr.partition,
                   r.responseElements AS resp, r.eventSource AS event_source, r.eventName AS event_name,
                   coalesce(event_time, try_cast(r."@timestamp" AS TIMESTAMPTZ)) AS occurred_at,
                   (r.eventSource = 'sts.amazonaws.com' AND r.eventName IN ({issuing}))
                   OR (r.eventSource = 'ssm.amazonaws.com' AND r.eventName = 'GetAccessToken'
                       AND r.responseElements.credentials.accessKeyId IS NOT NULL) AS issuing,
                   r.eventSource = 'ssm.amazonaws.com' AND r.eventName = 'StartAccessRequest'
                       AND r.errorCode IS NULL AND r.responseElements.accessRequestId IS NOT NULL AS jit_request,
                   r.eventSource = 'ssm.amazonaws.com' AND r.eventName = 'SendAutomationSignal'
                       AND r.errorCode IS NULL AND lower(r.requestParameters.signalType) IN {_SSM_SIGNALS} AS jit_signal,
                   -- the access request an Automation record names (its parameters, a signal's payload),
                   -- or the OpsItem an approver reads (GetOpsItem: the access request id is the OpsItem id)
                   CASE WHEN r.eventSource = 'ssm.amazonaws.com' AND r.eventName IN
                             ('SendAutomationSignal', 'StartAutomationExecution', 'StartChangeRequestExecution',
                              'GetOpsItem')
                        THEN nullif(regexp_extract(concat_ws(' ', r.requestParameters.opsItemId,
                                                             r.requestParameters.payload::VARCHAR,
                                                             r.requestParameters.parameters::VARCHAR),
                                                   '{_ACCESS_REQUEST_ID}'), '') END AS named_request
            FROM ct LEFT JOIN ct_param_resources pr USING (record_index)
            WHERE NOT skipped AND reason IS NULL
        ), keyed AS (
            SELECT *,
                -- IdentityCenterUser: no access key, a bearer credentialId (CloudTrail userIdentity docs)
                CASE WHEN issuing THEN resp.credentials.accessKeyId ELSE coalesce(u.accessKeyId, u.credentialId) END AS cred,
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
                 WHEN jit_request THEN 'task'
                 WHEN jit_signal THEN 'approval'
                 -- eventType came with event version 1.02: an older ConsoleLogin has none, and one
                 -- AWS doc example spells it AwsConsoleSignin
                 WHEN lower(r.eventType) = 'awsconsolesignin' OR (event_name = 'ConsoleLogin'
                      AND coalesce(event_source, 'signin.amazonaws.com') = 'signin.amazonaws.com')
                     THEN 'signin'
                 WHEN r.eventType = 'AwsServiceEvent' OR event_name IS NULL THEN 'other'
                 ELSE 'action' END AS category,
            coalesce(u.arn, u.principalId, u.onBehalfOf.userId, u.invokedBy) AS actor_id,
            CASE WHEN u.type = 'AWSService' THEN 'service'
                 WHEN u.type = 'IdentityCenterUser' THEN 'human'
                 WHEN u.sessionContext.ec2RoleDelivery IS NOT NULL THEN 'workload'
                 ELSE 'unknown' END AS actor_type,
            cred AS credential_id,
            CASE WHEN NOT issuing AND u.accessKeyId IS NULL AND u.credentialId IS NOT NULL
                 THEN 'aws_identity_center_credential'
                 ELSE coalesce(aws_key_type(cred), 'aws_access_key') END AS credential_type,
            parent_cred AS parent_credential_id,
            CASE WHEN event_name IS NOT NULL
                 THEN coalesce(regexp_replace(event_source, '\\.amazonaws\\.com$', ''), 'unknown') || ':' || event_name
            END AS action,
            coalesce(
                first_arn,
                param_resources[1],
                CASE WHEN event_source = 's3.amazonaws.com' AND req.bucketName IS NOT NULL
                     THEN 'arn:' || partition || ':s3:::' || req.bucketName || coalesce('/' || req.key, '') END,
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
            CASE WHEN jit_request THEN '{SSM_JIT_TASK}' || resp.accessRequestId
                 WHEN issuing AND event_name = 'GetAccessToken' AND req.accessRequestId IS NOT NULL
                     THEN '{SSM_JIT_TASK}' || req.accessRequestId
                 WHEN jit_signal AND named_request IS NOT NULL THEN '{SSM_JIT_TASK}' || named_request
                 WHEN issuing THEN coalesce(req.sourceIdentity, resp.sourceIdentity)
                 ELSE u.sessionContext.sourceIdentity END AS task_id,
            CASE WHEN issuing THEN coalesce(
                try_strptime(resp.credentials.expiration, '%b %d, %Y, %I:%M:%S %p'),
                try_strptime(resp.credentials.expiration, '%b %d, %Y %I:%M:%S %p'),
                try_cast(resp.credentials.expiration AS TIMESTAMP),
                -- GetAccessToken: ExpirationTime is an epoch number (seconds) or an ISO time
                to_timestamp(try_cast(resp.credentials.expirationTime AS DOUBLE))::TIMESTAMP,
                try_strptime(resp.credentials.expirationTime, '%b %d, %Y, %I:%M:%S %p'),
                try_cast(resp.credentials.expirationTime AS TIMESTAMP)
            )::TIMESTAMP AT TIME ZONE 'UTC' END AS expires_at,
            CASE WHEN jit_request THEN json_object(
                'requested_by', coalesce(u.arn, u.onBehalfOf.userId), 'agent_id', coalesce(u.arn, u.onBehalfOf.userId),
                'intent', coalesce(req.reason, 'just-in-time node access'), 'justification', req.reason,
                'status', 'requested', 'known_from', 'ssm_jit', 'access_request_id', resp.accessRequestId,
                'targets', req.targets)
            WHEN jit_signal THEN json_object(
                'approval_id', coalesce(named_request, req.automationExecutionId),
                'approver', coalesce(u.arn, u.onBehalfOf.userId),
                'decision', CASE WHEN lower(req.signalType) = 'approve' THEN 'approved' ELSE 'denied' END,
                'stage', coalesce(u.arn, u.onBehalfOf.userId),
                'stage_decision', CASE WHEN lower(req.signalType) = 'approve' THEN 'approved' ELSE 'denied' END,
                'automation_execution_id', req.automationExecutionId, 'access_request_id', named_request)
            WHEN issuing THEN json_object(
                'holder', coalesce(resp.assumedRoleUser.arn, resp.federatedUser.arn,
                                   CASE WHEN event_name IN ('GetSessionToken', 'GetAccessToken') THEN u.arn END),
                'session_tags', CASE WHEN t[7] = 'ARRAY' THEN req.tags END,
                'source_identity', coalesce(req.sourceIdentity, resp.sourceIdentity),
                'role_arn', req.roleArn,
                'role_session_name', req.roleSessionName,
                'duration_seconds', try_cast(req.durationSeconds AS BIGINT),
                'access_request_id', req.accessRequestId, 'access_request_status', resp.accessRequestStatus,
                'task_link', CASE WHEN event_name = 'GetAccessToken' THEN 'ssm_access_request_id' END,
                'long_term', false)
            ELSE json_object('identity_type', u.type, 'session_issuer', u.sessionContext.sessionIssuer.arn,
                             'identity_store', u.onBehalfOf.identityStoreArn,
                             -- every resource the call names, when it names several (scope checks read all)
                             'resources', CASE WHEN first_arn IS NULL AND len(param_resources) > 1
                                               THEN param_resources END,
                             -- SSM Automation: the execution and the access request it serves
                             'automation_execution_id', coalesce(resp.automationExecutionId, req.automationExecutionId),
                             'access_request_id', named_request,
                             -- IAM Identity Center account assignments (grants, 50_approvals.sql)
                             'assignment', CASE WHEN event_source = 'sso.amazonaws.com' AND req.permissionSetArn IS NOT NULL
                                 THEN json_object('principal_id', req.principalId, 'principal_type', req.principalType,
                                                  'permission_set_arn', req.permissionSetArn, 'target_id', req.targetId,
                                                  'target_type', req.targetType, 'instance_arn', req.instanceArn) END)
            END AS details,
            doc AS raw,
            CASE WHEN r.eventID IS NOT NULL
                 THEN r.eventID || '|' || coalesce(r.eventTime, r."@timestamp", '') || '|'
                      || coalesce(event_name, '') || '|' || coalesce(r.recipientAccountId, '') END AS dedupe_key
        FROM keyed"""
    )
