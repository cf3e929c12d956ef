"""Envoy access logs (Envoy, Istio, Ambassador/Emissary, Contour): the default text format, and
JSON-format (``json_format``) logs. DESIGN §4, FORMATS §6.

Text lines follow Envoy's default format
(https://www.envoyproxy.io/docs/envoy/latest/configuration/observability/access_log/usage#default-format-string):

    [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE%
    %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%
    "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"

optionally prefixed ``ACCESS `` (Ambassador), optionally wrapped in a container log line
(``{"message": …}`` Kubernetes/Ambassador, ``{"log": …}`` Docker json-file). TCP proxy lines have
``"- - -"``. The default format carries no identity and no trace context; a ``json_format`` log
names its own keys: the JSON keys read are ``FIELD_MAP``, with the policy's ``[sources.envoy]
fields`` over it (``load(con, files, fields=...)``). Detection reads the defaults only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb

from nhiaudit.errors import NhiauditError, did_you_mean
from nhiaudit.policy_schema import At, Key, Kind, toml_type
from nhiaudit.sources import _sql
from nhiaudit.sources._read import EvidenceFile, head, sql_str

NAME = "envoy"
READS = (
    "Envoy access logs: the default text format (plain, ACCESS-prefixed or container-wrapped) "
    "and json_format logs"
)
DETECTION = (
    'a default-format access-log line ([START_TIME] "METHOD PATH PROTOCOL" CODE …), plain or in a '
    "container JSON wrapper, among the first 20 lines; or a first line that is a JSON object with "
    "FIELD_MAP's start_time, response_code and method/authority/upstream_host/response_flags keys"
)

# json_format access logs: logical field -> the JSON keys that may hold it, first present wins.
# A key is a top-level key; a value starting with "$" is used as a JSON path (nested formats).
# Defaults follow Envoy's docs and Istio's JSON encoding. The policy's [sources.envoy] fields
# replace the candidates of the fields it names (see load); detect() always reads these defaults.
FIELD_MAP: dict[str, tuple[str, ...]] = {
    "start_time": ("start_time",),
    "method": ("method",),
    "path": ("path",),
    "protocol": ("protocol",),
    "response_code": ("response_code",),
    "response_flags": ("response_flags",),
    "request_id": ("x_request_id", "request_id"),
    "traceparent": ("traceparent",),
    "jwt_id": ("jwt_jti",),  # %DYNAMIC_METADATA(envoy.filters.http.jwt_authn:<payload>:jti)%
    "peer_uri_san": ("downstream_peer_uri_san",),  # the SPIFFE id of an mTLS workload
    "jwt_sub": ("jwt_sub",),
    "client_id": ("client_id",),
    "authority": ("authority",),
    "upstream_host": ("upstream_host",),
    "user_agent": ("user_agent",),
    "remote_address": ("downstream_remote_address",),
    "x_forwarded_for": ("x_forwarded_for",),
    "bytes_received": ("bytes_received",),
    "bytes_sent": ("bytes_sent",),
    "duration": ("duration",),
}

# The default text format, one named group per command operator (RE2 syntax).
TEXT_PATTERN = (
    r'^(?:ACCESS )?\[(?P<start_time>[^\]]+)\] "(?P<method>[^ "]+) (?P<path>[^ "]+) (?P<protocol>[^"]+)" '
    r"(?P<response_code>\d+) (?P<response_flags>[^ ]+) (?P<bytes_received>\d+|-) (?P<bytes_sent>\d+|-) "
    r'(?P<duration>\d+|-) (?P<upstream_service_time>[^ ]+) "(?P<x_forwarded_for>[^"]*)" '
    r'"(?P<user_agent>[^"]*)" "(?P<request_id>[^"]*)" "(?P<authority>[^"]*)" "(?P<upstream_host>[^"]*)"'
    r"(?P<extra>.*)$"
)
_GROUPS = re.findall(r"\?P<(\w+)>", TEXT_PATTERN)
_DETECT = re.compile(r'^(?:ACCESS )?\[\d{4}-\d\d-\d\dT[^\]]*\] "[^"]*" \d+ ')
# The JSON paths a FIELD_MAP key may be: "$" then .key, ."quoted key" or [index] steps. Wildcards
# ("$.*", "$..key", even a quoted "*") are refused: DuckDB answers them with a list, not one value.
JSON_PATH = re.compile(r'\$(?:\.(?:"(?!\*")(?:[^"\\]|\\.)+"|[^.\["*]+)|\[\d+\])+')
# Columns both layouts have (TEXT_PATTERN group = FIELD_MAP entry), and those only json_format has.
_BOTH = (
    "start_time",
    "method",
    "path",
    "protocol",
    "response_flags",
    "request_id",
    "authority",
    "upstream_host",
    "user_agent",
    "x_forwarded_for",
    "bytes_received",
    "bytes_sent",
    "duration",
)
_JSON_ONLY = ("remote_address", "traceparent", "jwt_id", "peer_uri_san", "jwt_sub", "client_id")
_WRAPPER_KEYS = ("message", "log")  # Kubernetes/Ambassador, Docker json-file
_DETECT_LINES = 20
NOT_ENVOY = (
    'not an Envoy access-log line (expected the default format: [START_TIME] "METHOD PATH PROTOCOL" ...)'
)


def detect(path: Path) -> bool:
    # Container logs mix access lines with the proxy's own diagnostics (Ambassador, Istio
    # sidecars): an access line among the first lines of the head is enough; a json_format log is
    # recognized on its first line.
    lines = [line.strip() for line in head(path).splitlines() if line.strip()]
    for number, line in enumerate(lines[:_DETECT_LINES]):
        if _DETECT.match(line):
            return True
        doc = _json_object(line)
        if doc is None:
            continue
        wrapped = next((doc[k] for k in _WRAPPER_KEYS if isinstance(doc.get(k), str)), None)
        if wrapped is not None:
            if _DETECT.match(wrapped.strip()):
                return True
        elif number == 0:
            return (
                _has(doc, "start_time")
                and _has(doc, "response_code")
                and any(_has(doc, f) for f in ("method", "authority", "upstream_host", "response_flags"))
            )
    return False


def _json_object(line: str) -> dict | None:
    if not line.startswith("{"):
        return None
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _has(doc: dict, field: str) -> bool:
    return any(key in doc for key in FIELD_MAP.get(field, ()) if not key.startswith("$"))


def _field(field: str, fields: Mapping[str, tuple[str, ...]]) -> str:
    """SQL: the first present key of ``fields[field]`` in the line's JSON, as text."""
    parts = []
    for key in fields.get(field, ()):
        # ensure_ascii=False: DuckDB does not decode \uXXXX escapes in a quoted path step.
        path = key if key.startswith("$") else "$." + json.dumps(key, ensure_ascii=False)
        parts.append(_sql.json_string("doc", sql_str(path)[1:-1]))
    return f"coalesce({', '.join(parts)}, NULL)" if parts else "NULL"


def field_map(fields: Mapping[str, str | Sequence[str]] | None = None) -> dict[str, tuple[str, ...]]:
    """``FIELD_MAP`` with ``fields`` over it: an entry replaces that field's candidate keys.

    Raises ``NhiauditError`` for an unknown field, a field with no key, or a bad JSON path (the
    policy loader reports the same problems with their line first).
    """
    effective = dict(FIELD_MAP)
    for name, keys in (fields or {}).items():
        candidates = (keys,) if isinstance(keys, str) else tuple(keys)
        if name not in FIELD_MAP:
            raise NhiauditError(
                f"envoy fields: unknown field '{name}'.{did_you_mean(name, FIELD_MAP)} "
                f"Fields: {', '.join(FIELD_MAP)}."
            )
        if not candidates:
            raise NhiauditError(f"envoy fields: {name} names no JSON key. Name one, or leave {name} out.")
        for key in candidates:
            if problem := key_problem(key):
                raise NhiauditError(f"envoy fields: {name} key '{key}' {problem}.")
        effective[name] = candidates
    return effective


def key_problem(key: str) -> str | None:
    """Why ``key`` cannot be a FIELD_MAP key (``<what>. <fix>``), or None when it can."""
    if not key:
        return "is empty. Name a JSON key, or a JSON path such as $.jwt.sub"
    if key == "*":
        return "is a wildcard, which reads every key. Name one JSON key"
    if key.startswith("$") and not JSON_PATH.fullmatch(key):
        return 'is not a JSON path nhiaudit reads. Write $.a.b, $."a key" or $.a[0] (no wildcards)'
    return None


def _read_fields(value: Any, at: At) -> Any:
    """The policy's ``fields``: the problems ``field_map`` raises on, each reported on its line."""
    if not isinstance(value, dict):
        return at.bad(
            f"{at.label} must be a table, not {toml_type(value)}. "
            'Write fields = { request_id = ["req_id", "x_request_id"] }.'
        )
    fields: dict[str, tuple[str, ...]] = {}
    for name, keys in value.items():
        where = f"{at.label}.{name}"
        keys = [keys] if isinstance(keys, str) else keys
        if name not in FIELD_MAP:
            hint = did_you_mean(name, FIELD_MAP) or f" Fields: {', '.join(FIELD_MAP)}."
            at.bad(f"unknown Envoy field '{name}' in {at.label}.{hint}", name)
        elif not isinstance(keys, list):
            at.bad(
                f"{where} must be a JSON key or an array of keys, not {toml_type(keys)}. "
                f'Write {name} = "key" or {name} = ["key", "other_key"].',
                name,
            )
        elif not keys:
            at.bad(
                f"{where} is an empty array. Name one JSON key or more, or leave {name} out to keep the "
                f"default ({', '.join(FIELD_MAP[name])}).",
                name,
            )
        else:
            bad = []
            for position, key in enumerate(keys):
                if not isinstance(key, str):
                    bad.append(at.bad(f"{where}[{position}] must be a string, not {toml_type(key)}. Quote it.", name))
                elif problem := key_problem(key):
                    bad.append(at.bad(f"{where}: the key '{key}' {problem}.", name))
            if not bad:
                fields[name] = tuple(keys)
    return fields


# [sources.envoy] in the policy: nhiaudit.policy reads it with these rows (docs/policy.md lists them).
OPTIONS = (
    Key(
        f"sources.{NAME}",
        "fields",
        Kind("table: field = JSON key or array of keys", _read_fields),
        {},
        "json_format keys of FIELD_MAP's logical fields, the first present winning; a key starting with $ "
        'is a JSON path ($.a.b, $."a key", $.a[0]). An entry replaces the default keys of that field.',
        example={"request_id": ["req_id", "x_request_id"], "traceparent": "trace_parent", "jwt_sub": "$.jwt.sub"},
    ),
)


def load(
    con: duckdb.DuckDBPyConnection,
    files: list[EvidenceFile],
    fields: Mapping[str, str | Sequence[str]] | None = None,
) -> None:
    """Stage Envoy access-log lines. ``fields`` (the policy's ``[sources.envoy] fields``) renames
    the json_format keys; it is a parameter, never written into ``FIELD_MAP``, because parallel
    ingest stages several files at once."""
    effective = field_map(fields)
    for file in files:
        _sql.stage_lines(con, file)
        _normalize(con, effective)


def _normalize(con: duckdb.DuckDBPyConnection, fields: Mapping[str, tuple[str, ...]]) -> None:
    def field(name: str) -> str:
        return _field(name, fields)

    pattern = sql_str(TEXT_PATTERN)
    groups = "[" + ", ".join(sql_str(g) for g in _GROUPS) + "]"
    wrapped = " ".join(
        f"WHEN json_type(doc, '$.{k}') = 'VARCHAR' THEN json_extract_string(doc, '$.{k}')"
        for k in _WRAPPER_KEYS
    )
    # One row per line: the text to match (the line, or the message of a container wrapper) or,
    # for a json_format line, the FIELD_MAP values. Both end up in the same columns.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE envoy_lines AS
        SELECT *, CASE WHEN log_text IS NOT NULL AND regexp_matches(log_text, {pattern})
                       THEN regexp_extract(log_text, {pattern}, {groups}) END AS m
        FROM (
            SELECT record_index, line, text, doc,
                   regexp_replace(CASE WHEN doc IS NULL THEN text {wrapped} END, '\\s+$', '') AS log_text,
                   doc IS NOT NULL AND coalesce({field("start_time")}, {field("response_code")}) IS NOT NULL
                       AND NOT coalesce(json_type(doc, '$.message') = 'VARCHAR'
                                        OR json_type(doc, '$.log') = 'VARCHAR', false)
                       AS json_format
            FROM lines
        )"""
    )
    # The keys a json_format line lacked, named as configured: "start_time/response_code".
    format_keys = "/".join(k for f in ("start_time", "response_code") for k in fields.get(f, ()))
    not_json_format = (
        "a JSON object that is neither a json_format access log "
        f'(no {format_keys} keys) nor a container log wrapper ("message"/"log")'
    )
    # "-" is Envoy's "no value" in both layouts.
    both = ", ".join(
        f"nullif(nullif(CASE WHEN json_format THEN {field(f)} ELSE m.{f} END, '-'), '') AS {f}"
        for f in _BOTH
    )
    json_only = ", ".join(
        f"CASE WHEN json_format THEN nullif(nullif({field(f)}, '-'), '') END AS {f}" for f in _JSON_ONLY
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE envoy AS
        SELECT record_index, line, text, doc, json_format,
            CASE WHEN json_format THEN 'json' WHEN doc IS NOT NULL THEN 'text-wrapped' ELSE 'text' END
                AS layout,
            {both}, {json_only},
            CASE WHEN json_format THEN {field("response_code")} ELSE m.response_code END
                AS response_code_text,
            nullif(nullif(m.upstream_service_time, '-'), '') AS upstream_service_time,
            CASE
                WHEN NOT json_format AND m IS NULL AND doc IS NOT NULL AND log_text IS NULL
                    THEN 'line ' || line || ': ' || {sql_str(not_json_format)}
                WHEN NOT json_format AND m IS NULL AND doc IS NULL AND starts_with(text, '{{')
                    THEN 'line ' || line || ': not valid JSON (truncated or malformed record)'
                WHEN NOT json_format AND m IS NULL THEN 'line ' || line || ': ' || {sql_str(NOT_ENVOY)}
            END AS reason
        FROM envoy_lines"""
    )
    con.execute(
        """UPDATE envoy SET reason = CASE
            WHEN start_time IS NULL THEN 'line ' || line || ': no START_TIME'
            WHEN TRY_CAST(start_time AS TIMESTAMPTZ) IS NULL AND TRY_CAST(start_time AS DOUBLE) IS NULL
                THEN 'line ' || line || ': START_TIME ''' || left(start_time, 60)
                     || ''' is not an ISO-8601 time'
            WHEN TRY_CAST(response_code_text AS INTEGER) IS NULL AND response_code_text IS NOT NULL
                THEN 'line ' || line || ': RESPONSE_CODE ''' || left(response_code_text, 20)
                     || ''' is not a number'
        END WHERE reason IS NULL"""
    )
    _sql.reject_lines(con, "envoy")
    s = _sql
    con.execute(
        f"""INSERT INTO staged BY NAME
        WITH base AS (
            SELECT *,
                TRY_CAST(response_code_text AS INTEGER) AS status,
                method IS NULL AND path IS NULL AS tcp,
                coalesce(TRY_CAST(start_time AS TIMESTAMPTZ),
                         -- a numeric START_TIME(%s) / (%s%3f): seconds, milliseconds above 1e11
                         CASE WHEN TRY_CAST(start_time AS DOUBLE) > 1e11
                              THEN timezone('UTC', epoch_ms(TRY_CAST(start_time AS DOUBLE)::BIGINT))
                              ELSE to_timestamp(TRY_CAST(start_time AS DOUBLE)) END) AS occurred_at,
                -- the client: Envoy's peer address (ip:port, [v6]:port) or the first X-Forwarded-For hop
                coalesce(
                    CASE WHEN regexp_matches(remote_address, '^\\[.*\\]:\\d+$')
                         THEN regexp_extract(remote_address, '^\\[(.*)\\]:\\d+$', 1)
                         WHEN regexp_matches(remote_address, '^[^:]+:\\d+$')
                         THEN split_part(remote_address, ':', 1)
                         ELSE remote_address END,
                    nullif(trim(split_part(x_forwarded_for, ',', 1)), '')) AS client_ip,
                CASE WHEN jwt_id IS NOT NULL THEN jwt_id
                     WHEN peer_uri_san IS NOT NULL THEN peer_uri_san
                     WHEN jwt_sub IS NOT NULL THEN 'jwt-sub:' || jwt_sub
                     WHEN client_id IS NOT NULL THEN 'oauth-client:' || client_id END AS credential_id,
                CASE WHEN jwt_id IS NOT NULL THEN 'jwt'
                     WHEN peer_uri_san IS NOT NULL THEN 'mtls_peer_certificate'
                     WHEN jwt_sub IS NOT NULL THEN 'jwt_subject'
                     WHEN client_id IS NOT NULL THEN 'oauth_client' END AS credential_type
            FROM envoy WHERE reason IS NULL
        )
        SELECT
            coalesce(request_id, md5(text)) AS event_id,
            record_index, line, occurred_at,
            CASE WHEN tcp THEN 'other' ELSE 'action' END AS category,
            coalesce(jwt_sub, peer_uri_san, client_id) AS actor_id,
            'unknown' AS actor_type,
            credential_id, credential_type,
            CASE WHEN tcp THEN 'tcp:connect' ELSE 'http:' || upper(method) END AS action,
            CASE WHEN tcp THEN upstream_host
                 ELSE coalesce(authority, '') || coalesce({s.without_query("path")}, '') END AS resource,
            {s.read_only("method")} AS read_only,
            CASE WHEN tcp THEN CASE WHEN response_flags IS NULL THEN 'success' ELSE 'failure' END
                 ELSE {s.http_outcome("status")} END AS outcome,
            CASE WHEN tcp THEN response_flags
                 WHEN status = 0 THEN coalesce(response_flags, '0')  -- no response: the flags say why
                 ELSE {s.http_error_code("status")} END AS error_code,
            client_ip AS src_ip,
            user_agent,
            {s.trace_id("traceparent")} AS trace_id,
            {s.parent_span_id("traceparent")} AS parent_span_id,
            json_merge_patch('{{}}', json_object(
                'format', layout, 'protocol', protocol, 'response_code', status,
                'response_flags', response_flags, 'authority', authority, 'upstream_host', upstream_host,
                'x_forwarded_for', x_forwarded_for,
                'bytes_received', TRY_CAST(bytes_received AS BIGINT),
                'bytes_sent', TRY_CAST(bytes_sent AS BIGINT),
                'duration_ms', TRY_CAST(duration AS BIGINT),
                'upstream_service_time_ms', TRY_CAST(upstream_service_time AS BIGINT),
                'request_id', request_id, 'traceparent', traceparent,
                'jwt_sub', jwt_sub, 'peer_uri_san', peer_uri_san, 'client_id', client_id
            )) AS details,
            coalesce(doc, to_json(text)) AS raw,
            -- Envoy logs one line per hop with the same x-request-id: keep hops apart.
            CASE WHEN request_id IS NOT NULL
                 THEN concat_ws('|', request_id, start_time, method, path, response_code_text, upstream_host)
            END
                AS dedupe_key
        FROM base"""
    )
