"""AWS API Gateway access logs in JSON (REST and HTTP APIs): one object a line, whose keys are the
``$context`` variables the stage's access-log format names. DESIGN §4, FORMATS §6.

The keys read are those of AWS's documented "JSON" (common) format — ``requestId``, ``ip``,
``caller``, ``user``, ``requestTime``, ``httpMethod``, ``resourcePath``, ``status``, ``protocol``,
``responseLength`` — plus the documented extras people add for identity and tracing:
``userArn``, ``accessKey``, ``principalId``, ``accountId``, ``userAgent``, ``xrayTraceId``,
``traceparent``, ``requestTimeEpoch``, ``routeKey``/``path`` (HTTP APIs), ``stage``, ``apiId``,
``domainName``. ``-`` is API Gateway's "no value".
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from nhiaudit.sources import _sql
from nhiaudit.sources._read import RAW_EXCERPT, EvidenceFile, head, stage_json_records

NAME = "apigateway"
READS = (
    "AWS API Gateway access logs in JSON ($context variables; the common JSON format and its identity extras)"
)
DETECTION = (
    'JSON whose first record has "requestId" with "httpMethod" or "routeKey" and "requestTime" or '
    '"requestTimeEpoch" (and no CloudTrail "eventVersion")'
)

_STRUCT = """{
    "requestId": "VARCHAR", "extendedRequestId": "VARCHAR", "ip": "VARCHAR", "sourceIp": "VARCHAR",
    "caller": "VARCHAR", "user": "VARCHAR", "userArn": "VARCHAR", "accessKey": "VARCHAR",
    "principalId": "VARCHAR", "accountId": "VARCHAR", "userAgent": "VARCHAR",
    "requestTime": "JSON", "requestTimeEpoch": "JSON", "httpMethod": "JSON", "resourcePath": "VARCHAR",
    "routeKey": "VARCHAR", "path": "VARCHAR", "status": "JSON", "protocol": "VARCHAR",
    "responseLength": "VARCHAR", "stage": "VARCHAR", "apiId": "VARCHAR", "domainName": "VARCHAR",
    "xrayTraceId": "VARCHAR", "traceparent": "VARCHAR", "errorMessage": "VARCHAR"
}"""


def detect(path: Path) -> bool:
    text = head(path)
    return (
        text.lstrip()[:1] in ("{", "[")
        and '"requestId"' in text
        and ('"httpMethod"' in text or '"routeKey"' in text)
        and ('"requestTime"' in text or '"requestTimeEpoch"' in text)
        and '"eventVersion"' not in text
    )


def load(con: duckdb.DuckDBPyConnection, files: list[EvidenceFile]) -> None:
    for file in files:
        stage_json_records(con, file)
        _normalize(con)


def _normalize(con: duckdb.DuckDBPyConnection) -> None:
    s = _sql
    # $context.requestTime is CLF ("10/Jun/2023:15:36:28 +0000"); requestTimeEpoch is epoch ms.
    clf = "try_strptime(json_extract_string(doc, '$.requestTime'), '%d/%b/%Y:%H:%M:%S %z')"
    epoch = "TRY_CAST(json_extract_string(doc, '$.requestTimeEpoch') AS DOUBLE)"
    type_problem = s.first_problem(
        s.wrong_type("json_type(doc, '$.requestTime')", "requestTime", s.STRING, "a CLF time string"),
        s.wrong_type("json_type(doc, '$.httpMethod')", "httpMethod", s.STRING, "a string"),
        s.wrong_type("json_type(doc, '$.status')", "status", s.STRING + s.NUMBER, "an HTTP status"),
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE apigw AS
        SELECT record_index, line, doc, r,
            coalesce({clf}, CASE WHEN {epoch} BETWEEN 0 AND 253402300799999
                                 THEN timezone('UTC', epoch_ms({epoch}::BIGINT)) END) AS occurred_at,
            TRY_CAST(json_extract_string(doc, '$.status') AS INTEGER) AS status,
            coalesce({type_problem}, CASE
                WHEN json_type(doc, '$.requestTime') = 'VARCHAR' AND {clf} IS NULL
                     AND json_extract_string(doc, '$.requestTime') <> '-'
                    THEN 'requestTime ''' || left(json_extract_string(doc, '$.requestTime'), 60)
                         || ''' is not a CLF time (dd/Mon/yyyy:HH:MM:SS +zzzz)'
                WHEN json_type(doc, '$.requestTimeEpoch') NOT IN ('NULL') AND {clf} IS NULL
                     AND NOT coalesce({epoch} BETWEEN 0 AND 253402300799999, false)
                    THEN 'requestTimeEpoch ''' || left(json_extract_string(doc, '$.requestTimeEpoch'), 40)
                         || ''' is not epoch milliseconds'
                WHEN json_type(doc, '$.status') IS NOT NULL AND json_extract_string(doc, '$.status') <> '-'
                     AND TRY_CAST(json_extract_string(doc, '$.status') AS INTEGER) IS NULL
                    THEN 'status ''' || left(json_extract_string(doc, '$.status'), 20)
                         || ''' is not an HTTP status'
                WHEN r.requestId IS NULL AND json_type(doc, '$.httpMethod') IS NULL AND r.routeKey IS NULL
                    THEN 'neither requestId nor httpMethod/routeKey: not an API Gateway access-log record'
            END) AS reason
        FROM (SELECT record_index, line, doc, json_transform(doc, '{_STRUCT}') AS r FROM records)"""
    )
    con.execute(
        """INSERT INTO staged_rejected SELECT record_index, line, reason, left(doc::VARCHAR, ?)
        FROM apigw WHERE reason IS NOT NULL""",
        [RAW_EXCERPT],
    )
    con.execute(
        f"""INSERT INTO staged BY NAME
        WITH base AS (
            SELECT *,
                nullif(r.accessKey, '-') AS access_key,
                nullif(r.user, '-') AS iam_user,
                nullif(r.userArn, '-') AS user_arn,
                nullif(r.caller, '-') AS caller,
                nullif(r.principalId, '-') AS principal_id,
                -- HTTP APIs log routeKey ("GET /pets/{{id}}") and path instead of httpMethod/resourcePath
                nullif(coalesce(json_extract_string(doc, '$.httpMethod'),
                                split_part(r.routeKey, ' ', 1)), '-') AS method,
                nullif(coalesce(r.resourcePath, nullif(split_part(r.routeKey, ' ', 2), ''), r.path), '-')
                    AS api_path,
                nullif(r.apiId, '-') AS api_id, nullif(r.stage, '-') AS stage,
                nullif(r.domainName, '-') AS domain,
                nullif(r.traceparent, '-') AS traceparent,
                -- X-Ray ids map to W3C ids: "1-<8 hex time>-<24 hex>" -> the 32 hex digits
                -- (AWS X-Ray docs, "Tracing header"; the OpenTelemetry X-Ray propagator does the same)
                regexp_extract(lower(r.xrayTraceId), '(?:root=)?1-([0-9a-f]{{8}})-([0-9a-f]{{24}})',
                               ['t', 'r']) AS xray,
                regexp_extract(lower(r.xrayTraceId), 'parent=([0-9a-f]{{16}})', 1) AS xray_parent
            FROM apigw WHERE reason IS NULL
        )
        SELECT
            nullif(r.requestId, '-') AS event_id,
            record_index, line, occurred_at,
            'action' AS category,
            coalesce(user_arn, caller, iam_user, principal_id) AS actor_id,
            'unknown' AS actor_type,
            coalesce(access_key, 'apigw-user:' || iam_user) AS credential_id,
            CASE WHEN access_key IS NOT NULL THEN coalesce(aws_key_type(access_key), 'aws_access_key')
                 ELSE 'apigw_iam_principal' END AS credential_type,
            'http:' || upper(method) AS action,
            -- The API's own path template (/pets/{{petId}}) is stable across calls; prefixed with the API
            -- and stage when the format logs them.
            CASE WHEN api_id IS NOT NULL THEN 'apigateway:' || api_id || coalesce('/' || stage, '')
                 WHEN domain IS NOT NULL THEN 'apigateway:' || domain
                 ELSE '' END || coalesce({s.without_query("api_path")}, '') AS resource,
            {s.read_only("method")} AS read_only,
            {s.http_outcome("status")} AS outcome,
            {s.http_error_code("status")} AS error_code,
            nullif(r.accountId, '-') AS account,
            nullif(regexp_extract(domain, '\\.execute-api\\.([a-z0-9-]+)\\.amazonaws\\.com', 1), '')
                AS region,
            nullif(coalesce(r.ip, r.sourceIp), '-') AS src_ip,
            nullif(r.userAgent, '-') AS user_agent,
            coalesce({s.trace_id("traceparent")}, nullif(xray.t || xray.r, '')) AS trace_id,
            coalesce({s.parent_span_id("traceparent")},
                     CASE WHEN nullif(xray.t, '') IS NOT NULL THEN nullif(xray_parent, '') END)
                AS parent_span_id,
            json_merge_patch('{{}}', json_object(
                'caller', caller, 'user', iam_user, 'user_arn', user_arn, 'principal_id', principal_id,
                'status', status, 'protocol', nullif(r.protocol, '-'),
                'response_length', TRY_CAST(r.responseLength AS BIGINT),
                'api_id', api_id, 'stage', stage, 'domain_name', domain, 'resource_path', api_path,
                'route_key', nullif(r.routeKey, '-'), 'extended_request_id', nullif(r.extendedRequestId, '-'),
                'xray_trace_id', nullif(r.xrayTraceId, '-'), 'traceparent', traceparent,
                'error_message', nullif(r.errorMessage, '-')
            )) AS details,
            doc AS raw,
            CASE WHEN nullif(r.requestId, '-') IS NOT NULL
                 THEN r.requestId || '|' || coalesce(json_extract_string(doc, '$.requestTime'),
                                                     json_extract_string(doc, '$.requestTimeEpoch'), '') END
                AS dedupe_key
        FROM base"""
    )
