"""Kong Gateway request logs: the JSON of the file-log, http-log, tcp-log, udp-log and syslog
plugins (one object a line; http-log batches as JSON arrays). DESIGN §4, FORMATS §6.

Every proxied call is an ``action``. The credential is the Kong credential record that
authenticated the call (``authenticated_entity.id``: the key-auth key, JWT or OAuth2 credential);
the actor is the consumer. The W3C ``traceparent`` request header joins the call to the agent's
``execute_tool`` span that made it (its span id is the caller's span: ``parent_span_id``).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from nhiaudit.sources import _sql
from nhiaudit.sources._read import RAW_EXCERPT, EvidenceFile, head, stage_json_records

NAME = "kong"
READS = "Kong file-log/http-log/tcp-log JSON request logs (one object a line, or http-log batch arrays)"
DETECTION = (
    'JSON whose first record has Kong\'s log serializer keys "started_at", "latencies" and "client_ip" '
    'or "upstream_uri"'
)

_MAX_EPOCH_MS = 253402300799999  # 9999-12-31T23:59:59.999Z
_STATUS = "an HTTP status (a number)"

_STRUCT = """{
    "started_at": "JSON", "client_ip": "VARCHAR", "upstream_uri": "VARCHAR",
    "request": "JSON", "response": "JSON", "route": "JSON", "service": "JSON",
    "consumer": "JSON", "authenticated_entity": "JSON", "workspace": "VARCHAR", "workspace_name": "VARCHAR"
}"""


def detect(path: Path) -> bool:
    text = head(path)
    return (
        text.lstrip()[:1] in ("{", "[")
        and '"started_at"' in text
        and '"latencies"' in text
        and ('"client_ip"' in text or '"upstream_uri"' in text)
    )


def load(con: duckdb.DuckDBPyConnection, files: list[EvidenceFile]) -> None:
    for file in files:
        stage_json_records(con, file)
        _normalize(con)


def _normalize(con: duckdb.DuckDBPyConnection) -> None:
    s = _sql
    epoch_ms = f"BETWEEN 0 AND {_MAX_EPOCH_MS}"
    reason = s.first_problem(
        s.wrong_type("json_type(doc, '$.started_at')", "started_at", s.NUMBER, "epoch milliseconds (a number)"),
        s.wrong_type("json_type(doc, '$.request')", "request", s.OBJECT, "an object"),
        s.wrong_type("json_type(doc, '$.request.method')", "request.method", s.STRING, "a string"),
        s.wrong_type("json_type(doc, '$.request.headers')", "request.headers", s.OBJECT, "an object"),
        s.wrong_type("json_type(doc, '$.response')", "response", s.OBJECT, "an object"),
        s.wrong_type("json_type(doc, '$.response.status')", "response.status", s.NUMBER, _STATUS),
        s.wrong_type("json_type(doc, '$.authenticated_entity')", "authenticated_entity", s.OBJECT, "an object"),
        s.wrong_type("json_type(doc, '$.consumer')", "consumer", s.OBJECT, "an object"),
        s.wrong_type("json_type(doc, '$.route')", "route", s.OBJECT, "an object"),
        s.wrong_type("json_type(doc, '$.service')", "service", s.OBJECT, "an object"),
        f"""CASE
            WHEN NOT coalesce(TRY_CAST(json_extract_string(doc, '$.started_at') AS DOUBLE) {epoch_ms}, true)
                THEN 'started_at ' || json_extract_string(doc, '$.started_at') || ' is not epoch milliseconds'
            WHEN json_type(doc, '$.request') IS NULL AND json_type(doc, '$.started_at') IS NULL
                THEN 'neither request nor started_at: not a Kong request log record'
        END""",
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE kong AS
        SELECT record_index, line, doc, r, {reason} AS reason
        FROM (SELECT record_index, line, doc, json_transform(doc, '{_STRUCT}') AS r FROM records)"""
    )
    con.execute(
        """INSERT INTO staged_rejected SELECT record_index, line, reason, left(doc::VARCHAR, ?)
        FROM kong WHERE reason IS NOT NULL""",
        [RAW_EXCERPT],
    )
    headers = "json_extract(doc, '$.request.headers')"
    con.execute(
        f"""INSERT INTO staged BY NAME
        WITH base AS (
            SELECT *,
                {s.json_string("doc", "$.request.id")} AS request_id,
                coalesce({s.header(headers, "x-kong-request-id")}, {s.header(headers, "kong-request-id")})
                    AS kong_request_id_header,
                {s.header(headers, "traceparent")} AS traceparent,
                {s.header(headers, "user-agent")} AS user_agent_header,
                {s.header(headers, "host")} AS host_header,
                json_extract_string(doc, '$.request.method') AS method,
                json_extract_string(doc, '$.request.uri') AS uri,
                TRY_CAST(json_extract_string(doc, '$.response.status') AS INTEGER) AS status,
                CASE WHEN json_type(doc, '$.started_at') <> 'NULL'
                     THEN timezone('UTC', epoch_ms(
                         TRY_CAST(json_extract_string(doc, '$.started_at') AS DOUBLE)::BIGINT))
                END AS occurred_at,
                {s.json_string("doc", "$.authenticated_entity.id")} AS entity_id,
                {s.json_string("doc", "$.consumer.username")} AS consumer_username,
                {s.json_string("doc", "$.consumer.id")} AS consumer_id,
                {s.json_string("doc", "$.consumer.custom_id")} AS consumer_custom_id,
                {s.json_string("doc", "$.service.name")} AS service_name,
                {s.json_string("doc", "$.service.host")} AS service_host,
                {s.json_string("doc", "$.route.name")} AS route_name,
                {s.json_string("doc", "$.route.id")} AS route_id
            FROM kong WHERE reason IS NULL
        ), ided AS (
            -- Kong 3.5+ logs request.id; older versions only echo the request-id header (x-kong-request-id,
            -- or the correlation-id plugin's default Kong-Request-ID) when
            -- the request-id/correlation-id plugin adds it. Otherwise the record's hash is its id.
            SELECT *, coalesce(request_id, kong_request_id_header) AS gateway_id FROM base
        )
        SELECT
            coalesce(gateway_id, md5(doc::VARCHAR)) AS event_id,
            record_index, line, occurred_at,
            'action' AS category,
            'kong-consumer:' || coalesce(consumer_username, consumer_id, consumer_custom_id) AS actor_id,
            'unknown' AS actor_type,
            'kong:' || entity_id AS credential_id,
            'kong_credential' AS credential_type,
            'http:' || upper(method) AS action,
            'kong:' || coalesce(service_name, service_host, host_header, '-')
                || coalesce({s.without_query("uri")}, '') AS resource,
            {s.read_only("method")} AS read_only,
            {s.http_outcome("status")} AS outcome,
            {s.http_error_code("status")} AS error_code,
            r.client_ip AS src_ip,
            user_agent_header AS user_agent,
            {s.trace_id("traceparent")} AS trace_id,
            {s.parent_span_id("traceparent")} AS parent_span_id,
            json_merge_patch('{{}}', json_object(  -- drops null members: keys absent when unknown
                'consumer', CASE WHEN json_type(doc, '$.consumer') = 'OBJECT' THEN json_object(
                    'id', consumer_id, 'username', consumer_username, 'custom_id', consumer_custom_id) END,
                'route', CASE WHEN json_type(doc, '$.route') = 'OBJECT' THEN json_object(
                    'id', route_id, 'name', route_name, 'paths', json_extract(doc, '$.route.paths')) END,
                'service', CASE WHEN json_type(doc, '$.service') = 'OBJECT' THEN json_object(
                    'id', {s.json_string("doc", "$.service.id")}, 'name', service_name, 'host', service_host,
                    'path', {s.json_string("doc", "$.service.path")}) END,
                'workspace', coalesce(r.workspace_name, r.workspace),
                'status', status,
                'upstream_uri', {s.without_query("r.upstream_uri")},
                'traceparent', traceparent
            )) AS details,
            doc AS raw,
            CASE WHEN gateway_id IS NOT NULL
                 THEN gateway_id || '|' || coalesce(json_extract_string(doc, '$.started_at'), '')
            END AS dedupe_key
        FROM ided"""
    )
