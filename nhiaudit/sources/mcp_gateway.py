"""MCP gateway message logs: the JSON-RPC 2.0 messages an MCP gateway or proxy relays between agents
(MCP clients) and MCP servers, one JSON object a line (FORMATS §6).

The shape read is the one the GitHub Agentic Workflows MCP gateway (MCPG) writes to
``mcp-logs/rpc-messages.jsonl``: an envelope ``{"timestamp", "direction", "type": "REQUEST" |
"RESPONSE", "server_id", "method", "payload": {JSON-RPC message}}``. Gateways that authenticate
their clients add who called and with what to the same envelope; nhiaudit reads ``session_id`` (the
``Mcp-Session-Id`` of the client's session), ``auth.{subject, client_id, token_id, key_id}`` (the
principal, its OAuth client, the token's ``jti`` or the API key's id: never a secret) and
``duration_ms`` when present.

A request and its response carry the same JSON-RPC ``id`` within one session and server: the n-th
request with an id pairs with the n-th response with that id, as the Vault source pairs its halves
(the request is the evidence pointer, the response is ``consumed``); a half without its partner is
an event of its own. Each ``tools/call`` is an action: ``mcp:<server>:<tool>`` on the target its
arguments name (``TARGETS``); ``resources/read`` reads ``params.uri``. The W3C ``traceparent`` the
client propagates in ``params._meta`` (MCP's trace-context convention) joins the call to the agent's
span and so to its task; a message without one takes the trace of an earlier message of its session.
Argument values stay in ``raw`` only (they may hold secrets): ``details`` names their keys.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from nhiaudit.sources import _sql
from nhiaudit.sources._read import EvidenceFile, first_json_line, head, stage_json_records

NAME = "mcp_gateway"
READS = (
    "MCP gateway JSON-RPC message logs (MCPG rpc-messages.jsonl: timestamp, type REQUEST/RESPONSE, "
    "server_id, payload), with the session and client identity a gateway adds"
)
DETECTION = (
    'NDJSON whose first record has a "payload" object with "jsonrpc": "2.0", a "timestamp", and '
    '"server_id", "method" or a "type" of REQUEST or RESPONSE'
)

TYPES = ("REQUEST", "RESPONSE")
ACTION_METHODS = ("tools/call", "resources/read")

# What a tool call acts on, from its arguments: the first rule whose arguments are present wins.
# (argument names, template): {server} is the MCP server, {0}/{1}/{2} the values in order.
# URIs and URLs are kept as they are (without a query string, which can carry secrets); other
# names are scoped to the server (github:octo-org/site/README.md, filesystem:/srv/reports/q3.csv).
TARGETS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("uri",), "{0}"),
    (("url",), "{0}"),
    (("resource_uri",), "{0}"),
    (("resourceUri",), "{0}"),
    (("arn",), "{0}"),
    (("owner", "repo", "path"), "{server}:{0}/{1}/{2}"),
    (("owner", "repo"), "{server}:{0}/{1}"),
    (("repository",), "{server}:{0}"),
    (("repo",), "{server}:{0}"),
    (("path",), "{server}:{0}"),
    (("file_path",), "{server}:{0}"),
    (("filePath",), "{server}:{0}"),
    (("filename",), "{server}:{0}"),
    (("directory",), "{server}:{0}"),
    (("resource",), "{server}:{0}"),
)
# Arguments naming several targets at once (the filesystem server's read_multiple_files).
MULTI_TARGETS = ("paths", "uris", "urls")
# A JSON-RPC error message that says the gateway or server refused the caller.
DENIED = r"(?i)(unauthori[sz]ed|forbidden|permission denied|access denied|not allowed|denied by policy)"

_CHECKS = (
    ("$.timestamp", _sql.STRING, "an RFC 3339 string"),
    ("$.type", _sql.STRING, "REQUEST or RESPONSE"),
    ("$.direction", _sql.STRING, "a string"),
    ("$.server_id", _sql.STRING, "a string"),
    ("$.method", _sql.STRING, "a string"),
    ("$.session_id", _sql.STRING, "a string"),
    ("$.duration_ms", _sql.NUMBER, "a number of milliseconds"),
    ("$.auth", _sql.OBJECT, "an object"),
    ("$.auth.subject", _sql.STRING, "a string"),
    ("$.auth.client_id", _sql.STRING, "a string"),
    ("$.auth.token_id", _sql.STRING, "a string"),
    ("$.auth.key_id", _sql.STRING, "a string"),
    ("$.payload.method", _sql.STRING, "a string"),
    ("$.payload.id", ("VARCHAR", *_sql.INTEGER), "a string or an integer"),
    ("$.payload.params", _sql.OBJECT, "an object"),
    ("$.payload.params.name", _sql.STRING, "a string"),
    ("$.payload.params.arguments", _sql.OBJECT, "an object"),
    ("$.payload.params._meta", _sql.OBJECT, "an object"),
    ("$.payload.error", _sql.OBJECT, "an object"),
)


def detect(path: Path) -> bool:
    first = first_json_line(head(path))
    if not isinstance(first, dict):
        return False
    payload = first.get("payload")
    return (
        isinstance(payload, dict)
        and payload.get("jsonrpc") == "2.0"
        and "timestamp" in first
        and ("server_id" in first or "method" in first or str(first.get("type", "")).upper() in TYPES)
    )


def load(con: duckdb.DuckDBPyConnection, files: list[EvidenceFile]) -> None:
    for file in files:
        stage_json_records(con, file, line_mode=True)
        _check(con)
        _pair(con)
        _normalize(con)


def _check(con: duckdb.DuckDBPyConnection) -> None:
    s = _sql
    reason = s.first_problem(
        "CASE WHEN coalesce(json_type(doc, '$.payload'), 'NULL') = 'NULL' "
        "THEN 'no \"payload\" (the JSON-RPC message): not an MCP gateway message record' END",
        s.wrong_type("json_type(doc, '$.payload')", "payload", s.OBJECT, "a JSON-RPC message object"),
        "CASE WHEN coalesce(json_type(doc, '$.timestamp'), 'NULL') = 'NULL' THEN 'no \"timestamp\"' END",
        *(s.wrong_type(f"json_type(doc, '{path}')", path[2:], allowed, expected) for path, allowed, expected in _CHECKS),
        s.wrong_time("json_extract(doc, '$.timestamp')", "timestamp"),
        "CASE WHEN upper(json_extract_string(doc, '$.type')) NOT IN ('REQUEST', 'RESPONSE') "
        "THEN 'type ''' || left(json_extract_string(doc, '$.type'), 60) || ''' is not REQUEST or RESPONSE' END",
    )
    s.reject_records(con, "records", reason)
    # The kind of each message: the envelope's type, else what the JSON-RPC message is (a method
    # makes it a request or a notification; a result or an error a response).
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE mcp_lines AS
        SELECT record_index, line, doc,
               coalesce(upper({s.json_text('$.type')}),
                        CASE WHEN json_exists(doc, '$.payload.method') THEN 'REQUEST'
                             WHEN json_exists(doc, '$.payload.result') OR json_exists(doc, '$.payload.error')
                             THEN 'RESPONSE' END) AS type,
               try_cast(json_extract_string(doc, '$.timestamp') AS TIMESTAMPTZ) AS ts,
               {s.json_text('$.session_id')} AS session_id,
               {s.json_text('$.server_id')} AS server,
               -- the id as JSON text (7 and "7" are different ids); a JSON null id is no id
               CASE WHEN json_type(doc, '$.payload.id') IN ('VARCHAR', 'BIGINT', 'UBIGINT')
                    THEN json_extract(doc, '$.payload.id')::VARCHAR END AS rpc_id,
               coalesce({s.json_text('$.payload.method')}, {s.json_text('$.method')}) AS method
        FROM records WHERE {s.not_rejected()}"""
    )


def _pair(con: duckdb.DuckDBPyConnection) -> None:
    """One row per event: the request half (q_*) and the response half (s_*), either may be missing.

    Halves pair on (session, server, JSON-RPC id) and their rank among the messages of that key and
    kind (the n-th request with the n-th response), so a log holding the same exchange twice yields
    two events, not a cross product. Messages without an id (notifications) are events alone.
    """
    con.execute(
        """CREATE OR REPLACE TEMP TABLE mcp_halves AS
        SELECT *, row_number() OVER (PARTITION BY session_id, server, rpc_id, type ORDER BY record_index) AS n,
               count(*) OVER (PARTITION BY session_id, server, rpc_id, type) AS copies
        FROM mcp_lines"""
    )
    half = ("record_index", "line", "doc", "ts", "method", "type")
    paired = ", ".join(f"{side}.{col} AS {side}_{col}" for side in "qs" for col in half)
    lone = ", ".join(
        f"CASE WHEN type {'=' if side == 's' else '<>'} 'RESPONSE' THEN {col} END AS {side}_{col}"
        for side in "qs"
        for col in half
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE mcp_pairs AS
        WITH q AS (SELECT * FROM mcp_halves WHERE type = 'REQUEST' AND rpc_id IS NOT NULL),
             s AS (SELECT * FROM mcp_halves WHERE type = 'RESPONSE' AND rpc_id IS NOT NULL)
        SELECT coalesce(q.session_id, s.session_id) AS session_id, coalesce(q.server, s.server) AS server,
               coalesce(q.rpc_id, s.rpc_id) AS rpc_id, coalesce(q.n, s.n) AS n,
               greatest(q.copies, s.copies) AS copies, {paired}
        FROM q FULL OUTER JOIN s ON q.session_id IS NOT DISTINCT FROM s.session_id
             AND q.server IS NOT DISTINCT FROM s.server AND q.rpc_id = s.rpc_id AND q.n = s.n
        UNION ALL
        SELECT session_id, server, NULL, n, copies, {lone}
        FROM mcp_halves WHERE rpc_id IS NULL"""
    )
    con.execute(
        "INSERT INTO consumed SELECT s_record_index FROM mcp_pairs "
        "WHERE q_record_index IS NOT NULL AND s_record_index IS NOT NULL"
    )


def _arg(name: str) -> str:
    return _sql.json_text("$." + json.dumps(name), "args")


def _target() -> str:
    """SQL: the resource of a call, from its arguments (``TARGETS``, in order)."""
    cases = []
    for names, template in TARGETS:
        parts = template.replace("{server}", "' || coalesce(server, 'mcp') || '")
        for index, name in enumerate(names):
            value = _arg(name)
            if template == "{0}":
                value = _sql.without_query(value)
            parts = parts.replace(f"{{{index}}}", f"' || {value} || '")
        present = " AND ".join(f"{_arg(name)} IS NOT NULL" for name in names)
        cases.append(f"WHEN {present} THEN '{parts}'")
    return "CASE " + " ".join(cases) + " END"


def _targets() -> str:
    """SQL: every resource a call names when an argument lists several (``MULTI_TARGETS``)."""
    lists = [
        f"""CASE WHEN json_type(args, '$.{name}') = 'ARRAY' THEN list_transform(
                list_filter(json_extract_string(args, '$.{name}[*]'), x -> nullif(trim(x), '') IS NOT NULL),
                x -> CASE WHEN '{name}' = 'paths' THEN coalesce(server, 'mcp') || ':' || x
                          ELSE {_sql.without_query('x')} END) END"""
        for name in MULTI_TARGETS
    ]
    return "coalesce(" + ", ".join(lists) + ")"


def _normalize(con: duckdb.DuckDBPyConnection) -> None:
    s = _sql
    q, r = "q_doc", "s_doc"
    traceparent = "json_extract_string(q_doc, '$.payload.params._meta.traceparent')"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE mcp_fields AS
        SELECT *,
            coalesce(q_method, s_method) AS method,
            json_extract(q_doc, '$.payload.params.arguments') AS args,
            {s.json_text('$.payload.params.name', q)} AS tool,
            {s.json_text('$.payload.params.uri', q)} AS read_uri,
            coalesce(q_record_index, s_record_index) AS record_index,
            coalesce(q_line, s_line) AS line,
            coalesce(q_doc, s_doc) AS first_doc,
            {s.trace_id(traceparent)} AS own_trace_id,
            {s.parent_span_id(traceparent)} AS parent_span_id,
            json_extract(s_doc, '$.payload.error') AS err,
            json_extract_string(s_doc, '$.payload.result.isError') = 'true' AS tool_error
        FROM mcp_pairs"""
    )
    # A message without trace context takes the trace of the latest earlier message of its session
    # that had one: the session belongs to one agent run (correlation finds the covering task span).
    con.execute(
        """CREATE OR REPLACE TEMP TABLE mcp_traced AS
        SELECT *,
            coalesce(own_trace_id, CASE WHEN session_id IS NOT NULL THEN last_value(own_trace_id IGNORE NULLS) OVER (
                PARTITION BY session_id ORDER BY record_index ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) END)
                AS trace_id
        FROM mcp_fields"""
    )
    auth = {key: f"coalesce({s.json_text(f'$.auth.{key}', q)}, {s.json_text(f'$.auth.{key}', r)})"
            for key in ("subject", "client_id", "token_id", "key_id")}
    error_message = "json_extract_string(err, '$.message')"
    con.execute(
        f"""INSERT INTO staged BY NAME
        WITH e AS (
            SELECT *,
                CASE WHEN method IN ({", ".join(f"'{m}'" for m in ACTION_METHODS)}) AND q_doc IS NOT NULL
                     THEN 'action' ELSE 'other' END AS category,
                {auth["subject"]} AS subject, {auth["client_id"]} AS client_id,
                {auth["token_id"]} AS token_id, {auth["key_id"]} AS key_id,
                CASE WHEN method = 'resources/read' THEN {s.without_query('read_uri')} ELSE {_target()} END AS target,
                CASE WHEN method = 'tools/call' THEN {_targets()} END AS targets
            FROM mcp_traced
        )
        SELECT
            -- No gateway logs an event id: the session, server and JSON-RPC id name the exchange.
            CASE WHEN rpc_id IS NOT NULL
                 THEN coalesce(session_id, '-') || '/' || coalesce(server, '-') || '/' || rpc_id
                      || CASE WHEN copies > 1 THEN '#' || n ELSE '' END
                 ELSE 'msg-' || left(md5(first_doc::VARCHAR), 16) END AS event_id,
            record_index, line,
            coalesce(q_ts, s_ts) AS occurred_at,
            CASE WHEN q_ts IS NOT NULL THEN s_ts END AS ended_at,
            category,
            coalesce(subject, client_id) AS actor_id,
            CASE WHEN coalesce(subject, client_id) IS NOT NULL THEN 'unknown' END AS actor_type,
            -- the credential the gateway authenticated, by id as Envoy names a JWT (its jti)
            CASE WHEN token_id IS NOT NULL THEN token_id
                 WHEN key_id IS NOT NULL THEN 'mcp-key:' || coalesce(server, '-') || ':' || key_id
                 WHEN client_id IS NOT NULL THEN 'oauth-client:' || client_id END AS credential_id,
            CASE WHEN token_id IS NOT NULL THEN 'jwt'
                 WHEN key_id IS NOT NULL THEN 'mcp_gateway_key'
                 WHEN client_id IS NOT NULL THEN 'oauth_client' END AS credential_type,
            CASE WHEN method = 'tools/call' THEN 'mcp:' || coalesce(server, '-') || ':' || coalesce(tool, '?')
                 WHEN method IS NOT NULL THEN 'mcp:' || coalesce(server, '-') || ':' || method END AS action,
            coalesce(target, targets[1]) AS resource,
            CASE WHEN method = 'resources/read' THEN true END AS read_only,
            CASE WHEN err IS NOT NULL AND regexp_matches(coalesce({error_message}, ''), '{DENIED}') THEN 'denied'
                 WHEN err IS NOT NULL OR tool_error THEN 'failure'
                 WHEN s_doc IS NOT NULL THEN 'success' END AS outcome,
            CASE WHEN err IS NOT NULL THEN coalesce(json_extract_string(err, '$.code'), 'error')
                 WHEN tool_error THEN 'isError' END AS error_code,
            trace_id, CASE WHEN own_trace_id IS NOT NULL THEN parent_span_id END AS parent_span_id,
            json_merge_patch('{{}}', json_object(
                'server', server, 'session_id', session_id, 'jsonrpc_id', rpc_id, 'method', method,
                'tool_name', tool,
                'argument_keys', CASE WHEN json_type(args) = 'OBJECT' THEN json_keys(args) END,
                'resources', CASE WHEN target IS NULL AND len(targets) > 1 THEN targets END,
                'subject', subject, 'client_id', client_id,
                'halves', CASE WHEN q_doc IS NOT NULL AND s_doc IS NOT NULL THEN 'request+response'
                               WHEN q_doc IS NOT NULL THEN 'request' ELSE 'response' END,
                'direction', coalesce(json_extract_string(q_doc, '$.direction'), json_extract_string(s_doc, '$.direction')),
                'duration_ms', coalesce(json_extract(s_doc, '$.duration_ms'), json_extract(q_doc, '$.duration_ms'),
                                        CASE WHEN q_ts IS NOT NULL AND s_ts IS NOT NULL
                                             THEN to_json(round(epoch_ms(s_ts) - epoch_ms(q_ts))) END),
                'error_message', left({error_message}, 200),
                'trace_link', CASE WHEN own_trace_id IS NOT NULL THEN 'traceparent'
                                   WHEN trace_id IS NOT NULL THEN 'session' END
            )) AS details,
            CASE WHEN q_doc IS NOT NULL AND s_doc IS NOT NULL THEN json_object('request', q_doc, 'response', s_doc)
                 ELSE first_doc END AS raw,
            md5(coalesce(q_doc::VARCHAR, '') || '|' || coalesce(s_doc::VARCHAR, '')) AS dedupe_key
        FROM e"""
    )
