"""Auth0 tenant logs: log-stream records (``{"log_id": …, "data": {…}}``, one a line, or the arrays a
custom webhook stream posts) and Management API ``/api/v2/logs`` exports (the same fields, flat).
DESIGN §4, FORMATS §8.

Token issuances (the ``se*`` "Success Exchange" codes) become ``credential_issue`` events. Auth0
logs no token id, so the issued credential is named ``auth0:<client_id>:<log_id>``; a gateway that
sees the token links to it through the holder (``user_id`` or the client) and the time.
Event codes: https://auth0.com/docs/deploy-monitor/logs/log-event-type-codes
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from nhiaudit.sources import _sql
from nhiaudit.sources._read import RAW_EXCERPT, EvidenceFile, head, sql_str, stage_json_records

NAME = "auth0"
READS = (
    "Auth0 log-stream records ({log_id, data:{date, type, client_id, user_id, …}}) "
    "and Management API log exports"
)
DETECTION = 'JSON whose first record has "log_id" with "type" and "date" (in "data" or at the top level)'

# Success Exchange codes: a token was issued (authorization code, client credentials, refresh
# token, password, OOB/OTP/recovery MFA, device code, native social, custom token exchange, delegation).
ISSUING = (
    "seacft",
    "seccft",
    "sertft",
    "sepft",
    "seoobft",
    "seotpft",
    "sercft",
    "sede",
    "sens",
    "secte",
    "sd",
)
# client credentials: the token is the application's own (machine to machine)
M2M = ("seccft",)
TOKEN_EXCHANGE = ("secte", "sens")
SIGNIN_SUCCESS = ("s", "ssa", "scoa")
SIGNIN_FAILURE = (
    "f",
    "fp",
    "fu",
    "fc",
    "fco",
    "fcoa",
    "fens",
    "fsa",
    "fd",
    "feacft",
    "feccft",
    "fede",
    "feoobft",
    "feotpft",
    "fepft",
    "fepotpft",
    "fercft",
    "fertft",
    "ferrt",
    "fecte",
)
SIGNIN_DENIED = ("limit_wc", "limit_sul", "limit_mu")  # blocked by attack protection
REVOKING = ("srrt",)
# Management API operations (success, failure): the call's bearer token is the credential, its path
# the resource; creating a client that may use client_credentials issues a long-term credential.
MGMT_API = ("sapi", "fapi")
_ACT_PATHS = ("$.details.act", "$.details.actor", "$.details.claims.act")


def detect(path: Path) -> bool:
    text = head(path)
    return text.lstrip()[:1] in ("{", "[") and '"log_id"' in text and '"type"' in text and '"date"' in text


def load(con: duckdb.DuckDBPyConnection, files: list[EvidenceFile]) -> None:
    for file in files:
        stage_json_records(con, file)
        _normalize(con)


def _codes(codes: tuple[str, ...]) -> str:
    return ", ".join(sql_str(c) for c in codes)


def _normalize(con: duckdb.DuckDBPyConnection) -> None:
    s = _sql
    event_problem = s.first_problem(
        s.wrong_type("json_type(d, '$.date')", "date", s.STRING, "an ISO-8601 string"),
        s.wrong_type("json_type(d, '$.type')", "type", s.STRING, "a string"),
        s.wrong_type("json_type(d, '$.client_id')", "client_id", s.STRING, "a string"),
        s.wrong_type("json_type(d, '$.user_id')", "user_id", s.STRING, "a string"),
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE a0 AS
        SELECT record_index, line, doc, d, coalesce(
            {s.wrong_type("json_type(doc, '$.data')", "data", s.OBJECT, "an object")},
            CASE WHEN d IS NOT NULL THEN coalesce({event_problem}, CASE
                WHEN json_type(d, '$.date') = 'VARCHAR'
                     AND TRY_CAST(json_extract_string(d, '$.date') AS TIMESTAMPTZ) IS NULL
                    THEN 'date ''' || left(json_extract_string(d, '$.date'), 60) || ''' is not an ISO-8601 time'
                WHEN json_type(d, '$.type') IS NULL THEN 'no "type": not an Auth0 log event'
            END) END
        ) AS reason
        FROM (
            SELECT record_index, line, doc,
                   -- a log stream wraps the event in "data"; the Management API returns it flat
                   CASE WHEN json_type(doc, '$.data') = 'OBJECT' THEN json_extract(doc, '$.data')
                        WHEN json_type(doc, '$.data') IS NULL THEN doc END AS d
            FROM records
        )"""
    )
    con.execute(
        """INSERT INTO staged_rejected SELECT record_index, line, reason, left(doc::VARCHAR, ?)
        FROM a0 WHERE reason IS NOT NULL""",
        [RAW_EXCERPT],
    )
    act = "coalesce(" + ", ".join(s.json_object_at("d", p) for p in _ACT_PATHS) + ")"

    def field(key: str) -> str:
        return f"nullif({s.json_string('d', '$.' + key)}, '')"

    con.execute(
        f"""INSERT INTO staged BY NAME
        WITH base AS (
            SELECT *,
                coalesce({s.json_string("doc", "$.log_id")}, {field("log_id")}, {field("_id")}) AS log_id,
                {field("type")} AS type,
                TRY_CAST(json_extract_string(d, '$.date') AS TIMESTAMPTZ) AS occurred_at,
                {field("client_id")} AS client_id,
                {field("client_name")} AS client_name,
                {field("user_id")} AS user_id,
                {field("user_name")} AS user_name,
                {field("audience")} AS audience,
                coalesce({field("tenant_name")}, {field("hostname")}) AS tenant,
                {act} AS act,
                json_extract(d, '$.details.request') AS mreq,
                json_extract(d, '$.details.response') AS mresp
            FROM a0 WHERE reason IS NULL
        ), mgmt AS (
            SELECT *,
                nullif(json_extract_string(mreq, '$.auth.credentials.jti'), '') AS jti,
                upper(json_extract_string(mreq, '$.method')) AS method,
                {s.without_query("json_extract_string(mreq, '$.path')")} AS api_path,
                type = 'sapi' AND upper(json_extract_string(mreq, '$.method')) = 'POST'
                    AND regexp_full_match(coalesce(json_extract_string(mreq, '$.path'), ''), '/api/v2/clients/?')
                    AND list_contains(coalesce(json_extract_string(mreq, '$.body.grant_types[*]'), []),
                                      'client_credentials') AS creates_m2m,
                nullif(json_extract_string(mresp, '$.body.client_id'), '') AS new_client
            FROM base
        ), typed AS (
            SELECT *,
                CASE WHEN creates_m2m AND new_client IS NOT NULL THEN 'credential_issue'
                     WHEN type IN ({_codes(MGMT_API)}) THEN 'action'
                     WHEN type IN ({_codes(ISSUING)}) THEN 'credential_issue'
                     WHEN type IN ({_codes(SIGNIN_SUCCESS + SIGNIN_FAILURE + SIGNIN_DENIED)}) THEN 'signin'
                     WHEN type IN ({_codes(REVOKING)}) THEN 'credential_revoke'
                     ELSE 'other' END AS category,
                CASE WHEN type IN ({_codes(SIGNIN_FAILURE)}) THEN 'failure'
                     WHEN type IN ({_codes(SIGNIN_DENIED)}) THEN 'denied'
                     -- other codes: f… is a failure, s… a success (Auth0's naming), else unknown
                     WHEN type LIKE 'f%' THEN 'failure'
                     WHEN type LIKE 's%' THEN 'success' END AS outcome
            FROM mgmt
        )
        SELECT
            log_id AS event_id,
            record_index, line, occurred_at, category,
            coalesce(user_id, CASE WHEN category <> 'signin' THEN client_id END,
                     CASE WHEN category = 'signin' THEN user_name END) AS actor_id,
            CASE WHEN type IN ({_codes(M2M)}) OR (category = 'credential_issue' AND user_id IS NULL)
                 THEN 'service'
                 ELSE 'unknown' END AS actor_type,
            CASE WHEN creates_m2m AND new_client IS NOT NULL THEN 'oauth-client:' || new_client
                 WHEN type IN ({_codes(MGMT_API)}) AND jti IS NOT NULL THEN jti
                 WHEN category = 'credential_issue'
                 THEN 'auth0:' || coalesce(client_id, '-') || ':' || log_id END
                AS credential_id,
            CASE WHEN creates_m2m AND new_client IS NOT NULL THEN 'oauth_client'
                 WHEN type IN ({_codes(MGMT_API)}) AND jti IS NOT NULL THEN 'jwt'
                 WHEN category = 'credential_issue' THEN 'oauth_access_token'
                 WHEN category = 'credential_revoke' THEN 'oauth_refresh_token' END AS credential_type,
            -- RFC 8693 delegation, when an actor claim is logged: the current actor is the parent
            CASE WHEN creates_m2m AND new_client IS NOT NULL THEN jti
                 WHEN category = 'credential_issue' AND act IS NOT NULL
                 THEN json_extract_string(act, '$.sub') END
                AS parent_credential_id,
            CASE WHEN type IN ({_codes(MGMT_API)}) AND method IS NOT NULL
                 THEN 'auth0-mgmt:' || method || ' ' || regexp_replace(coalesce(api_path, ''), '^/api/v2/', '')
                 ELSE 'auth0:' || type END AS action,
            coalesce(CASE WHEN type IN ({_codes(MGMT_API)}) THEN 'auth0:' || coalesce(tenant, '-') || api_path END,
                     audience, 'auth0:' || coalesce(tenant, '-') || '/' || coalesce(client_id, '-'))
                AS resource,
            CASE WHEN type IN ({_codes(MGMT_API)}) AND method IS NOT NULL THEN method IN ('GET', 'HEAD') END
                AS read_only,
            outcome,
            CASE WHEN outcome IN ('failure', 'denied')
                 THEN coalesce({s.json_string("d", "$.details.error.oauthError")}, type) END AS error_code,
            tenant AS account,
            {field("ip")} AS src_ip,
            {field("user_agent")} AS user_agent,
            json_merge_patch('{{}}', json_object(
                'holder', CASE WHEN creates_m2m AND new_client IS NOT NULL THEN new_client
                               WHEN category = 'credential_issue' THEN coalesce(user_id, client_id) END,
                'long_term', CASE WHEN category = 'credential_issue' THEN coalesce(creates_m2m, false) END,
                'api_status', TRY_CAST(json_extract_string(mresp, '$.statusCode') AS INTEGER),
                'api_scopes', json_extract(mreq, '$.auth.credentials.scopes'),
                -- the parent is the actor claim's subject, a principal rather than a token
                'parent_credential_type', CASE WHEN creates_m2m AND new_client IS NOT NULL AND jti IS NOT NULL
                                               THEN 'jwt'
                                               WHEN category = 'credential_issue' AND act IS NOT NULL
                                               THEN 'oauth_actor' END,
                'token_exchange', CASE WHEN type IN ({_codes(TOKEN_EXCHANGE)}) THEN true END,
                'event_type', type, 'description', {field("description")},
                'client_id', client_id, 'client_name', client_name,
                'user_id', user_id, 'user_name', user_name,
                'audience', audience, 'scope', json_extract(d, '$.scope'),
                'connection', {field("connection")}, 'tenant', tenant,
                'act_chain', {s.act_chain("act")}
            )) AS details,
            doc AS raw,
            log_id AS dedupe_key
        FROM typed"""
    )
