"""HashiCorp Vault audit device: file, socket or syslog JSON, one object a line (DESIGN §4, FORMATS §5).

Vault writes every request twice: a ``request`` line when it arrives and a ``response`` line when it
is answered, both carrying the same ``request.id``. The two halves are paired into one event (the
request half's position is the evidence pointer, the response half goes to ``consumed``); a half
whose partner is not in the file (log rotation, a crash) is still an event on its own.

Token issuance (logins, ``auth/token/create*``) describes the new token in ``response.auth``; reads
of dynamic cloud credentials expose ``response.data.access_key`` when the mount does not HMAC it.
Accessors and keys are kept exactly as logged: HMACs from one audit device compare equal.

KMIP lines (``kmip-request``/``kmip-response``, the KMIP secrets engine) carry no ``request.id``: a
``kmip-response`` repeats its whole ``request`` object, so a request pairs with the response whose
``request`` is identical (the n-th with the n-th, like the HTTP ids). The message is the KMIP TTLV
tree as JSON ``{"tag", "type", "value"}`` nodes; each BatchItem is one action ``kmip:<Operation>``,
its enumerations named by ``queries/sources/kmip_enumerations.csv``.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from nhiaudit.sources import _sql
from nhiaudit.sources._read import RAW_EXCERPT, EvidenceFile, first_json_line, head, stage_json_records

NAME = "vault"
READS = "HashiCorp Vault audit device logs: JSON request/response lines (file, socket or syslog device)"
DETECTION = (
    'NDJSON whose first record has "type" request, response, kmip-request or kmip-response, a "time", '
    'and a "request" or "auth" object'
)

TYPES = ("request", "response", "kmip-request", "kmip-response")
# Auth-method metadata keys that only machine identities carry (Nomad tokens, the Kubernetes and
# AppRole auth methods, Nomad workload identity via JWT): the caller is a workload. OIDC/userpass
# metadata (email, role) says nothing reliable about the holder, which stays "unknown".
WORKLOAD_METADATA_KEYS = (
    "AllocationID",
    "nomad_allocation_id",
    "nomad_task",
    "service_account_name",
    "service_account_uid",
    "role_name",
)
# auth/approle/login, auth/userpass/login/bob, auth/oidc/oidc/callback
LOGIN_PATH = r"^auth/.+/(login(/.*)?|callback)$"
TOKEN_CREATE_PATH = r"^auth/token/create"  # create, create-orphan, create/<role>
# The AWS secrets engine at its default mount, or any mount whose type is aws.
CLOUD_CREDS_PATH = r"^aws/(creds|sts)/"
AWS_MOUNT_CREDS_PATH = r"^[^/]+(/.+)?/(creds|sts)/"
REVOKE_PATH = r"^(auth/token/revoke|sys/(leases/)?revoke(-prefix|-force)?(/|$))"

_STRUCT = '{"time": "JSON", "type": "JSON", "auth": "JSON", "request": "JSON", "response": "JSON", "error": "JSON"}'
# A first line longer than the head. HTTP lines start with "time" then "type"; KMIP lines put them
# last (`{"request":{…"data":{"kmip_request":{"tag":"RequestMessage"…}}…},…,"time":…,"type":…}`).
_FIRST = re.compile(
    r'^\s*\{\s*"time"\s*:\s*"[^"]*"\s*,\s*"type"\s*:\s*"(kmip-)?(request|response)"'
    r'|^\s*\{\s*"request"\s*:\s*\{.*?"kmip_request"\s*:\s*\{\s*"tag"\s*:\s*"RequestMessage"'
)
# The KMIP enumerations (Operation, ResultStatus, ResultReason) by code and name: data, not code.
KMIP_ENUMERATIONS = "kmip_enumerations.csv"
_KMIP_COLUMNS = (
    "{'enumeration': 'VARCHAR', 'code': 'BIGINT', 'name': 'VARCHAR', 'read_only': 'BOOLEAN', 'outcome': 'VARCHAR'}"
)
# A TTLV node's first child with a tag, the value of that child, and an Enumeration/Integer value
# as a number: a hex string ("0x0000000a", any case) or a JSON number. NULL when absent.
_KMIP_MACROS = """
CREATE OR REPLACE TEMP MACRO kmip_child(node, t) AS
    list_filter(CAST(json_extract(node, '$.value[*]') AS JSON[]), x -> json_extract_string(x, '$.tag') = t)[1];
CREATE OR REPLACE TEMP MACRO kmip_children(node, t) AS
    list_filter(CAST(json_extract(node, '$.value[*]') AS JSON[]), x -> json_extract_string(x, '$.tag') = t);
CREATE OR REPLACE TEMP MACRO kmip_code(node) AS CASE
    WHEN json_type(node, '$.value') IN ('BIGINT', 'UBIGINT') THEN try_cast(json_extract_string(node, '$.value') AS BIGINT)
    WHEN regexp_full_match(json_extract_string(node, '$.value'), '0[xX][0-9a-fA-F]{1,8}')
        THEN try_cast(lower(json_extract_string(node, '$.value')) AS BIGINT) END;
-- How an enumeration not in the table is shown: its code as hex, else the value as logged (a name).
CREATE OR REPLACE TEMP MACRO kmip_text(node) AS CASE
    WHEN kmip_code(node) IS NOT NULL THEN format('0x{:08x}', kmip_code(node))
    ELSE nullif(left(json_extract_string(node, '$.value'), 100), '') END;
"""

# Fields whose JSON type is checked before use: (path, allowed json_type values, what was expected).
# A missing field is never an error (Vault omits empty fields); a field of the wrong type is.
_CHECKS = (
    ("$.auth", ("OBJECT",), "an object"),
    ("$.response", ("OBJECT",), "an object"),
    ("$.error", ("VARCHAR",), "a string"),
    ("$.request.id", ("VARCHAR",), "a string"),
    ("$.request.path", ("VARCHAR",), "a string"),
    ("$.request.operation", ("VARCHAR",), "a string"),
    ("$.request.client_token_accessor", ("VARCHAR",), "a string"),
    ("$.auth.accessor", ("VARCHAR",), "a string"),
    ("$.auth.display_name", ("VARCHAR",), "a string"),
    ("$.auth.metadata", ("OBJECT",), "an object"),
    ("$.response.auth", ("OBJECT",), "an object"),
    ("$.response.auth.accessor", ("VARCHAR",), "a string"),
    ("$.response.auth.token_ttl", _sql.NUMBER, "a number of seconds"),
    ("$.response.auth.metadata", ("OBJECT",), "an object"),
    ("$.response.data", ("OBJECT",), "an object"),
    ("$.response.secret", ("OBJECT",), "an object"),
    ("$.request.remote_address", ("VARCHAR",), "a string"),
)
# The same on KMIP lines only (an HTTP request's data may hold any key): a serial of another type
# would be read as its JSON text, a message that is not an object has no batch items.
_KMIP_CHECKS = (
    ("$.request.client_certificate_serial_number", ("VARCHAR",), "a string"),
    ("$.request.data", ("OBJECT",), "an object"),
    ("$.request.data.kmip_request", ("OBJECT",), "an object"),
    ("$.response.data.kmip_response", ("OBJECT",), "an object"),
)

_EVENT_COLUMNS = (
    "event_id", "record_index", "line", "occurred_at", "category", "actor_id", "actor_type",
    "credential_id", "credential_type", "parent_credential_id", "action", "resource", "read_only",
    "outcome", "error_code", "src_ip", "user_agent", "task_id", "trace_id", "parent_span_id",
    "expires_at", "details", "raw", "dedupe_key",
)  # fmt: skip


def detect(path: Path) -> bool:
    text = head(path)
    first = first_json_line(text)
    if isinstance(first, dict):
        return (
            first.get("type") in TYPES
            and "time" in first
            and (isinstance(first.get("request"), dict) or isinstance(first.get("auth"), dict))
        )
    # A first line longer than the head (a big response): Vault writes "time" then "type" first.
    return first is None and _FIRST.search(text) is not None


def load(con: duckdb.DuckDBPyConnection, files: list[EvidenceFile]) -> None:
    _install_kmip(con)
    for file in files:
        stage_json_records(con, file)
        _check(con)
        _pair(con)
        _kmip_items(con)
        _normalize(con, file)
        con.execute(f"INSERT INTO staged BY NAME SELECT {', '.join(_EVENT_COLUMNS)} FROM vault_events")


def _install_kmip(con: duckdb.DuckDBPyConnection) -> None:
    """The KMIP macros and TEMP table ``kmip_enumerations`` (the rows of KMIP_ENUMERATIONS)."""
    con.execute(_KMIP_MACROS)
    _sql.install_data_table(con, "kmip_enumerations", KMIP_ENUMERATIONS, _KMIP_COLUMNS)


def _s(doc: str, path: str) -> str:
    """A string field, NULL when absent or empty (Vault writes "" for unset fields)."""
    return f"nullif(json_extract_string({doc}, '{path}'), '')"


def _object(doc: str, path: str) -> str:
    return f"CASE WHEN json_type({doc}, '{path}') = 'OBJECT' THEN json_extract({doc}, '{path}') END"


def _seconds(doc: str, path: str) -> str:
    return (
        f"CASE WHEN json_type({doc}, '{path}') IN ('BIGINT', 'UBIGINT', 'DOUBLE') "
        f"THEN json_extract_string({doc}, '{path}')::DOUBLE::BIGINT END"
    )


def _check(con: duckdb.DuckDBPyConnection) -> None:
    """Type every record once; reject the ones that are not usable Vault audit lines."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE vault_lines AS
        SELECT record_index, line, doc, r, json_extract_string(r.type, '$') AS type,
               json_extract_string(r.time, '$') AS time_text,
               try_cast(json_extract_string(r.time, '$') AS TIMESTAMPTZ) AS ts
        FROM (SELECT *, json_transform(doc, '{_STRUCT}') AS r FROM records)"""
    )
    s = _sql
    reason = s.first_problem(
        "CASE WHEN coalesce(json_type(r.type), 'NULL') = 'NULL' "
        "THEN 'no \"type\" (expected request or response): not a Vault audit record' END",
        s.wrong_type("json_type(r.type)", "type", s.STRING, "request or response"),
        f"CASE WHEN type NOT IN ({', '.join(repr(t) for t in TYPES)}) "
        "THEN 'type ''' || left(type, 60) || ''' is not request, response, kmip-request or kmip-response' "
        "WHEN coalesce(json_type(r.time), 'NULL') = 'NULL' THEN 'no \"time\"' END",
        s.wrong_time("r.time", "time"),
        "CASE WHEN coalesce(json_type(r.request), 'NULL') = 'NULL' "
        "THEN 'a ' || type || ' line without a \"request\" object' END",
        s.wrong_type("json_type(r.request)", "request", s.OBJECT, "an object"),
        *(
            s.wrong_type(f"json_type(doc, '{path}')", path[2:], allowed, expected)
            for path, allowed, expected in _CHECKS
        ),
        *(
            f"CASE WHEN type LIKE 'kmip-%' THEN {s.wrong_type(f'json_type(doc, {path!r})', path[2:], allowed, expected)} END"
            for path, allowed, expected in _KMIP_CHECKS
        ),
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE vault_checked AS SELECT *, {reason} AS reason FROM vault_lines")
    con.execute(
        """INSERT INTO staged_rejected SELECT record_index, line, reason, left(doc::VARCHAR, ?)
        FROM vault_checked WHERE reason IS NOT NULL""",
        [RAW_EXCERPT],
    )


def _pair(con: duckdb.DuckDBPyConnection) -> None:
    """One row per event: the request half (q_*) and the response half (s_*), either may be missing.

    The n-th request line with an id pairs with the n-th response line with that id, so a log that
    holds the same pair twice yields two identical events (deduplicated later), not a cross product.
    KMIP lines have no id: their key is the MD5 of the ``request`` object, which the response repeats
    (client certificate serial, remote address with its port, the whole TTLV request message).
    """
    con.execute(
        """CREATE OR REPLACE TEMP TABLE vault_halves AS
        SELECT *, row_number() OVER (PARTITION BY pair_key, type ORDER BY record_index) AS n
        FROM (SELECT record_index, line, doc, type, ts, time_text,
                     CASE WHEN type LIKE 'kmip-%' THEN 'kmip' ELSE 'vault' END AS kind,
                     nullif(json_extract_string(doc, '$.request.id'), '') AS rid,
                     CASE WHEN type LIKE 'kmip-%' THEN md5(json_extract(doc, '$.request')::VARCHAR)
                          ELSE nullif(json_extract_string(doc, '$.request.id'), '') END AS pair_key
              FROM vault_checked WHERE reason IS NULL)"""
    )
    half = ("record_index", "line", "doc", "ts", "time_text")
    names = ("index", "line", "doc", "at", "time")
    paired = ", ".join(f"{side}.{col} AS {side}_{name}" for side in "qs" for col, name in zip(half, names, strict=True))
    lone = ", ".join(
        f"CASE WHEN type LIKE '%{kind}' THEN {col} END AS {side}_{name}"
        for side, kind in (("q", "request"), ("s", "response"))
        for col, name in zip(half, names, strict=True)
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE vault_pairs AS
        -- KMIP lines pair the same way, a kmip-request with a kmip-response of the same request.
        WITH q AS (SELECT * FROM vault_halves WHERE type LIKE '%request' AND pair_key IS NOT NULL),
             s AS (SELECT * FROM vault_halves WHERE type LIKE '%response' AND pair_key IS NOT NULL)
        SELECT coalesce(q.kind, s.kind) AS kind, coalesce(q.rid, s.rid) AS rid, {paired}
        FROM q FULL OUTER JOIN s ON q.pair_key = s.pair_key AND q.kind = s.kind AND q.n = s.n
        UNION ALL
        -- HTTP lines without a request id cannot be paired.
        SELECT kind, rid, {lone}
        FROM vault_halves WHERE pair_key IS NULL"""
    )
    # The response half of a pair is part of the request's event, not an event of its own.
    con.execute(
        "INSERT INTO consumed SELECT s_index FROM vault_pairs WHERE q_index IS NOT NULL AND s_index IS NOT NULL"
    )


def _kmip_items(con: duckdb.DuckDBPyConnection) -> None:
    """One row per BatchItem of each KMIP pair's request message (``pair_index`` = the pair's first
    line), with the response's BatchItem for it: the one with the same UniqueBatchItemID, else the
    one at the same position (KMIP requires the id when a message has more than one item)."""
    con.execute(
        """CREATE OR REPLACE TEMP TABLE vault_kmip_items AS
        WITH msgs AS (
            SELECT coalesce(q_index, s_index) AS pair_index,
                   kmip_children(coalesce(json_extract(q_doc, '$.request.data.kmip_request'),
                                          json_extract(s_doc, '$.request.data.kmip_request')), 'BatchItem') AS q_items,
                   kmip_children(json_extract(s_doc, '$.response.data.kmip_response'), 'BatchItem') AS s_items
            FROM vault_pairs WHERE kind = 'kmip'
        ), q AS (
            SELECT pair_index, len(q_items) AS item_count, unnest(q_items) AS q_item,
                   unnest(range(1, len(q_items) + 1)) AS item_no
            FROM msgs
        ), s AS (
            SELECT pair_index, unnest(s_items) AS s_item, unnest(range(1, len(s_items) + 1)) AS item_no
            FROM msgs
        ), matched AS (
            SELECT q.*, s.s_item FROM q LEFT JOIN s ON s.pair_index = q.pair_index AND coalesce(
                json_extract_string(kmip_child(q.q_item, 'UniqueBatchItemID'), '$.value')
                    = json_extract_string(kmip_child(s.s_item, 'UniqueBatchItemID'), '$.value'),
                q.item_no = s.item_no)
            QUALIFY row_number() OVER (PARTITION BY q.pair_index, q.item_no ORDER BY s.item_no) = 1
        ), nodes AS (
            SELECT pair_index, item_count, item_no,
                   coalesce(kmip_child(q_item, 'Operation'), kmip_child(s_item, 'Operation')) AS op,
                   kmip_child(s_item, 'ResultStatus') AS status,
                   kmip_child(s_item, 'ResultReason') AS reason,
                   kmip_child(s_item, 'ResultMessage') AS message,
                   nullif(json_extract_string(kmip_child(q_item, 'UniqueBatchItemID'), '$.value'), '') AS batch_item_id,
                   -- The managed object: the request's (Get, Destroy, …), else the one the response
                   -- names (Create, Register, Locate). A TextString: 2.0 ID placeholders are not objects.
                   list_filter([kmip_child(kmip_child(q_item, 'RequestPayload'), 'UniqueIdentifier'),
                                kmip_child(kmip_child(s_item, 'ResponsePayload'), 'UniqueIdentifier')],
                               x -> coalesce(json_extract_string(x, '$.type'), 'TextString') = 'TextString'
                                    AND nullif(json_extract_string(x, '$.value'), '') IS NOT NULL)[1] AS object
            FROM matched
        )
        SELECT n.pair_index, n.item_count AS kmip_item_count, n.item_no AS kmip_item_no,
               n.batch_item_id AS kmip_batch_item_id,
               coalesce(o.name, kmip_text(n.op)) AS kmip_operation, o.read_only AS kmip_read_only,
               coalesce(st.name, kmip_text(n.status)) AS kmip_status, st.outcome AS kmip_status_outcome,
               coalesce(rr.name, kmip_text(n.reason)) AS kmip_reason, rr.outcome AS kmip_reason_outcome,
               nullif(left(json_extract_string(n.message, '$.value'), 500), '') AS kmip_message,
               json_extract_string(n.object, '$.value') AS kmip_object
        FROM nodes n
        LEFT JOIN kmip_enumerations o ON o.enumeration = 'Operation'
            AND (o.code = kmip_code(n.op) OR o.name = json_extract_string(n.op, '$.value'))
        LEFT JOIN kmip_enumerations st ON st.enumeration = 'ResultStatus'
            AND (st.code = kmip_code(n.status) OR st.name = json_extract_string(n.status, '$.value'))
        LEFT JOIN kmip_enumerations rr ON rr.enumeration = 'ResultReason'
            AND (rr.code = kmip_code(n.reason) OR rr.name = json_extract_string(n.reason, '$.value'))"""
    )


def _normalize(con: duckdb.DuckDBPyConnection, file: EvidenceFile) -> None:
    workload = " OR ".join(f"json_exists(meta, '$.{key}')" for key in WORKLOAD_METADATA_KEYS)
    headers = "json_extract(rq, '$.headers')"
    traceparent = _sql.header(headers, "traceparent")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE vault_events AS
        WITH halves AS (
            SELECT p.*, k.* EXCLUDE (pair_index),
                json_object('request', q_doc, 'response', s_doc) AS raw_doc,
                coalesce(json_extract(q_doc, '$.request'), json_extract(s_doc, '$.request')) AS rq,
                coalesce({_object("q_doc", "$.auth")}, {_object("s_doc", "$.auth")}) AS au,
                {_object("s_doc", "$.response")} AS rs,
                nullif(trim(json_extract_string(q_doc, '$.error')), '') AS q_err,
                nullif(trim(json_extract_string(s_doc, '$.error')), '') AS s_err,
                CASE WHEN q_index IS NOT NULL AND s_index IS NOT NULL THEN 'request+response'
                     WHEN q_index IS NOT NULL THEN 'request' ELSE 'response' END AS halves
            -- A KMIP pair is one row per batch item (one row, without operation, when it has none).
            FROM vault_pairs p
            LEFT JOIN vault_kmip_items k ON p.kind = 'kmip' AND k.pair_index = coalesce(p.q_index, p.s_index)
        ), fields AS (
            SELECT *,
                json_extract_string(rq, '$.path') AS path,
                coalesce(json_extract_string(rq, '$.path'), '') AS p,
                CASE WHEN kind = 'kmip' THEN kmip_operation ELSE json_extract_string(rq, '$.operation') END AS op,
                -- KMIP: the client certificate (its decimal serial) is the credential; a line
                -- without a serial has none.
                CASE WHEN kind = 'kmip' THEN {_s("rq", "$.client_certificate_serial_number")} END AS kmip_serial,
                coalesce({_s("rq", "$.mount_type")}, {_s("rs", "$.mount_type")}) AS mount_type,
                coalesce({_s("au", "$.accessor")}, {_s("rq", "$.client_token_accessor")}) AS caller_cred,
                coalesce(s_err, q_err) AS err,
                -- A denial is "permission denied", or wrapped: "1 error occurred:\\n\\t* permission denied"
                regexp_matches(concat_ws(' ', q_err, s_err), 'permission denied', 'i') AS denied,
                json_type(rs, '$.auth') = 'OBJECT' AS has_new_token,
                {_s("rs", "$.wrap_info.wrapped_accessor")} AS wrapped_accessor,
                coalesce({_seconds("rs", "$.auth.token_ttl")}, 0) AS token_ttl,
                -- Real audit devices log only secret.lease_id; some builds add the duration, and the
                -- STS credential types return their ttl in data.
                coalesce({_seconds("rs", "$.secret.lease_duration")}, {_seconds("rs", "$.lease_duration")},
                         {_seconds("rs", "$.data.ttl")}, {_seconds("rs", "$.data.lease_duration")})
                    AS lease_ttl,
                {_sql.header(headers, "user-agent")} AS header_user_agent,
                {_sql.trace_id(traceparent)} AS trace_id,
                {_sql.parent_span_id(traceparent)} AS parent_span_id
            FROM halves
        ), kinds AS (
            SELECT *,
                regexp_matches(p, '{LOGIN_PATH}') AS login,
                kind = 'vault' AND (has_new_token OR wrapped_accessor IS NOT NULL)
                    AND regexp_matches(p, '{LOGIN_PATH}|{TOKEN_CREATE_PATH}') AS token_issue,
                kind = 'vault' AND rs IS NOT NULL AND err IS NULL
                    AND (regexp_matches(p, '{CLOUD_CREDS_PATH}')
                         OR (mount_type = 'aws' AND regexp_matches(p, '{AWS_MOUNT_CREDS_PATH}'))
                         OR json_type(rs, '$.data.access_key') = 'VARCHAR') AS cloud_issue,
                kind = 'vault' AND err IS NULL AND regexp_matches(p, '{REVOKE_PATH}') AS revoke
            FROM fields
        ), classified AS (
            SELECT *,
                CASE WHEN kind = 'kmip' AND op IS NOT NULL THEN 'action'
                     WHEN kind = 'kmip' THEN 'other'
                     WHEN token_issue OR cloud_issue THEN 'credential_issue'
                     WHEN revoke THEN 'credential_revoke'
                     WHEN op IS NULL THEN 'other'
                     ELSE 'action' END AS category,
                -- The caller of a login has no token yet: the identity is the one the login produced.
                coalesce(CASE WHEN json_extract(au, '$.metadata') <> '{{}}'
                              THEN {_object("au", "$.metadata")} END,
                         CASE WHEN login THEN {_object("rs", "$.auth.metadata")} END) AS meta,
                coalesce({_s("au", "$.display_name")}, {_s("au", "$.entity_id")},
                         CASE WHEN login THEN coalesce({_s("rs", "$.auth.display_name")},
                                                       {_s("rs", "$.auth.entity_id")}) END) AS actor,
                CASE WHEN revoke AND NOT starts_with(path, 'auth/') THEN coalesce(
                    {_s("rq", "$.data.lease_id")},
                    nullif(regexp_extract(path, '^sys/(?:leases/)?revoke(?:-force)?/(.+)$', 1), '')) END
                    AS revoked_lease_id,
                CASE WHEN revoke THEN nullif(regexp_extract(p, '^sys/(?:leases/)?revoke-prefix/(.+)$', 1), '')
                     END AS revoked_lease_prefix
            FROM kinds
        )
        SELECT
            -- A KMIP message of several batch items: the framework's id of the record (ingest._merge)
            -- plus the item number; one item: the framework's id.
            CASE WHEN kind = 'kmip' AND kmip_item_count > 1
                 THEN 'rec-' || left(?, 12) || '-' || coalesce(q_index, s_index) || '.' || kmip_item_no
                 ELSE rid END AS event_id,
            coalesce(q_index, s_index) AS record_index,
            coalesce(q_line, s_line) AS line,
            coalesce(q_at, s_at) AS occurred_at,
            category,
            actor AS actor_id,
            CASE WHEN meta IS NOT NULL AND ({workload}) THEN 'workload'
                 WHEN kind = 'kmip' AND kmip_serial IS NOT NULL THEN 'unknown'
                 WHEN kind = 'kmip' THEN NULL
                 WHEN actor IS NOT NULL OR caller_cred IS NOT NULL THEN 'unknown' END AS actor_type,
            CASE WHEN token_issue THEN coalesce({_s("rs", "$.auth.accessor")}, wrapped_accessor)
                 WHEN cloud_issue THEN json_extract_string(rs, '$.data.access_key')
                 WHEN revoke AND starts_with(path, 'auth/token/revoke-self') THEN caller_cred
                 WHEN revoke THEN {_s("rq", "$.data.accessor")}
                 WHEN kind = 'kmip' THEN 'kmip-cert:' || kmip_serial
                 ELSE caller_cred END AS credential_id,
            CASE WHEN (token_issue AND NOT login) OR cloud_issue THEN caller_cred END AS parent_credential_id,
            CASE WHEN op IS NOT NULL THEN kind || ':' || op END AS action,
            CASE WHEN kind = 'kmip' THEN kmip_object ELSE path END AS resource,
            CASE WHEN kind = 'kmip' THEN kmip_read_only
                 WHEN category = 'action' THEN op IN ('read', 'list', 'help')
                 WHEN category LIKE 'credential_%' THEN false END AS read_only,
            -- KMIP: the batch item's ResultStatus (Success, OperationFailed/Undone: failure; Pending
            -- or a code not in the table: unknown), denied when the ResultReason is a refusal.
            CASE WHEN kind = 'kmip' AND kmip_reason_outcome = 'denied'
                      AND kmip_status_outcome IS DISTINCT FROM 'success' THEN 'denied'
                 WHEN kind = 'kmip' AND kmip_status IS NOT NULL THEN kmip_status_outcome
                 WHEN kind = 'kmip' AND err IS NOT NULL THEN 'failure'
                 WHEN kind = 'kmip' THEN NULL
                 WHEN denied THEN 'denied' WHEN err IS NOT NULL THEN 'failure' ELSE 'success' END AS outcome,
            CASE WHEN kind = 'kmip' AND (kmip_status IS NOT NULL OR kmip_reason IS NOT NULL OR err IS NOT NULL)
                     AND kmip_status_outcome IS DISTINCT FROM 'success'
                     THEN left(trim(regexp_replace(concat_ws(': ', kmip_status, coalesce(kmip_reason, err)),
                                                   '\\s+', ' ', 'g')), 200)
                 WHEN denied THEN 'permission denied'
                 WHEN err IS NOT NULL THEN left(trim(regexp_replace(err, '\\s+', ' ', 'g')), 200)
                 END AS error_code,
            {_sql.without_port(f"coalesce({_s('rq', '$.remote_address')}, {_s('rq', '$.src_ip')})")} AS src_ip,
            -- Headers are HMACed unless the device lists them in audit_non_hmac_request_keys.
            CASE WHEN NOT starts_with(header_user_agent, 'hmac-') THEN header_user_agent END AS user_agent,
            CASE WHEN token_issue THEN json_extract_string(rs, '$.auth.metadata.task_id')
                 ELSE json_extract_string(au, '$.metadata.task_id') END AS task_id,
            trace_id, parent_span_id,
            CASE WHEN token_issue AND has_new_token AND token_ttl > 0
                     THEN coalesce(try_cast({_s("rs", "$.auth.token_issue_time")} AS TIMESTAMPTZ), s_at, q_at)
                          + to_seconds(token_ttl)
                 WHEN cloud_issue AND lease_ttl > 0 THEN coalesce(s_at, q_at) + to_seconds(lease_ttl)
                 END AS expires_at,
            revoked_lease_id, revoked_lease_prefix, mount_type, token_issue, cloud_issue, revoke, login,
            caller_cred, has_new_token, token_ttl, lease_ttl, halves, kind,
            kmip_serial, kmip_status, kmip_reason, kmip_message, kmip_item_count, kmip_item_no,
            kmip_batch_item_id, rq, au, rs, meta, raw_doc AS raw,
            -- Without an id (KMIP, id-less HTTP lines) the framework's MD5 of raw; one per batch item.
            CASE WHEN rid IS NOT NULL THEN concat_ws('|', rid, halves, coalesce(q_time, s_time))
                 WHEN kind = 'kmip' AND kmip_item_count > 1 THEN md5(raw_doc::VARCHAR) || '|' || kmip_item_no
                 END AS dedupe_key
        FROM classified""",
        [file.sha256],
    )
    # A lease revocation names the lease; the credential is the key issued under that lease, when
    # the issuance is in the same file (across files, correlation can join on details.lease_id).
    con.execute(
        """UPDATE vault_events AS v SET credential_id = (
            SELECT min(i.credential_id) FROM vault_events i
            WHERE i.cloud_issue AND json_extract_string(i.rs, '$.secret.lease_id') = v.revoked_lease_id)
        WHERE v.revoke AND v.credential_id IS NULL AND v.revoked_lease_id IS NOT NULL"""
    )
    con.execute("ALTER TABLE vault_events ADD COLUMN credential_type VARCHAR")
    con.execute("ALTER TABLE vault_events ADD COLUMN details JSON")
    # json_merge_patch('{}', x) drops the keys whose value is null: details keys are absent when unknown.
    con.execute(
        f"""UPDATE vault_events SET
            credential_type = CASE WHEN kind = 'kmip' THEN CASE WHEN credential_id IS NOT NULL
                                                                THEN 'kmip_client_cert' END
                                   WHEN cloud_issue OR revoked_lease_id IS NOT NULL
                                   THEN coalesce(aws_key_type(credential_id), 'aws_access_key')
                                   ELSE 'vault_token' END,
            details = json_merge_patch('{{}}', json_object(
                'halves', halves,
                'mount_type', mount_type,
                'namespace', coalesce({_s("rq", "$.namespace.path")}, {_s("rq", "$.namespace.id")}),
                'entity_id', {_s("au", "$.entity_id")},
                'policies', coalesce(json_extract(au, '$.token_policies'), json_extract(au, '$.policies')),
                'token_type', {_s("au", "$.token_type")},
                'metadata', meta,
                'wrap_accessor', {_s("rs", "$.wrap_info.accessor")},
                'wrapped_accessor', {_s("rs", "$.wrap_info.wrapped_accessor")},
                'wrap_creation_path', {_s("rs", "$.wrap_info.creation_path")}
            ), CASE
                WHEN token_issue THEN json_object(
                    'holder', coalesce({_s("rs", "$.auth.display_name")}, {_s("rs", "$.auth.entity_id")}),
                    'issued_by', CASE WHEN login THEN 'login' ELSE 'token_create' END,
                    'ttl_seconds', CASE WHEN has_new_token THEN token_ttl END,
                    'long_term', CASE WHEN has_new_token THEN token_ttl = 0 END,
                    'policies', coalesce(json_extract(rs, '$.auth.token_policies'),
                                         json_extract(rs, '$.auth.policies')),
                    'metadata', json_extract(rs, '$.auth.metadata'),
                    'entity_id', {_s("rs", "$.auth.entity_id")},
                    'token_type', {_s("rs", "$.auth.token_type")},
                    'task_link', CASE WHEN task_id IS NOT NULL THEN 'vault_metadata' END)
                WHEN cloud_issue THEN json_object(
                    'holder', CASE WHEN NOT starts_with({_s("rs", "$.data.arn")}, 'hmac-')
                                   THEN {_s("rs", "$.data.arn")} END,
                    'role', regexp_extract(resource, '/(creds|sts)/(.+)$', 2),
                    'lease_id', {_s("rs", "$.secret.lease_id")},
                    'ttl_seconds', lease_ttl,
                    'long_term', CASE WHEN lease_ttl IS NOT NULL THEN lease_ttl = 0
                                      WHEN aws_key_type(credential_id) = 'aws_long_term_key' THEN true END,
                    'task_link', CASE WHEN task_id IS NOT NULL THEN 'vault_caller_metadata' END)
                WHEN revoke THEN json_object(
                    'lease_id', revoked_lease_id,
                    'lease_prefix', revoked_lease_prefix,
                    'revoked_accessor', CASE WHEN starts_with(resource, 'auth/') THEN credential_id END,
                    'by_credential_id', caller_cred)
                WHEN kind = 'kmip' THEN json_object(
                    'kmip_batch_count', kmip_item_count,
                    'kmip_batch_item', CASE WHEN kmip_item_count > 1 THEN kmip_item_no END,
                    'kmip_batch_item_id', kmip_batch_item_id,
                    'result_status', kmip_status,
                    'result_reason', kmip_reason,
                    'result_message', kmip_message)
                ELSE '{{}}'::JSON END)"""
    )
