"""Keycloak user and admin events: the ``jboss-logging`` event listener's text lines (in the server
log, logger ``org.keycloak.events``), the same lines in Keycloak's JSON console log, and event
objects as the admin REST API and event-store exports give them. DESIGN §4, FORMATS §8.

Text events are ``key=value`` lists (``type=CODE_TO_TOKEN, realmId=…, clientId=…, userId=…``);
values are bare, ``'quoted'`` when they hold a space (older listeners), or ``"quoted"`` with ``\\"``
escapes (the newer listener's ``quotes``/``sanitize`` options). Token issuances become
``credential_issue`` events whose credential is the new access token's ``jti`` (detail
``token_id``), so a resource server or gateway that logs the ``jti`` links to them.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from nhiaudit.sources import _sql
from nhiaudit.sources._read import EvidenceFile, head, is_line_delimited, sql_str, stage_json_records

NAME = "keycloak"
READS = (
    "Keycloak events: jboss-logging text lines ([org.keycloak.events] type=…, realmId=…), JSON console "
    "log lines of that logger, and JSON event objects ({id, time, type, realmId, clientId, userId, details})"
)
DETECTION = (
    'a "[org.keycloak.events]" log line, a JSON log line with loggerName "org.keycloak.events", '
    'or JSON event objects with "realmId" and "type"/"operationType"'
)

# Event types that issue tokens (org.keycloak.events.EventType); each has a *_ERROR twin.
ISSUING = (
    "CODE_TO_TOKEN",
    "CLIENT_LOGIN",
    "TOKEN_EXCHANGE",
    "REFRESH_TOKEN",
    "OAUTH2_DEVICE_CODE_TO_TOKEN",
    "AUTHREQID_TO_TOKEN",
    "PERMISSION_TOKEN",
)
SIGNIN = ("LOGIN", "LOGIN_ERROR", "IDENTITY_PROVIDER_LOGIN", "IDENTITY_PROVIDER_LOGIN_ERROR")
REVOKING = ("REVOKE_GRANT",)
# OAuth errors that mean "refused" rather than "failed" (RFC 6749 §4.1.2.1, Keycloak Errors.java).
DENIED_ERRORS = ("access_denied", "not_allowed", "unauthorized_client", "consent_denied", "invalid_scope")

# JBoss log layout: [date ]time level [category] (thread) message. The sample has no date (the
# WildFly-based distribution's console layout); the Quarkus distribution prints yyyy-MM-dd HH:mm:ss,SSS.
LINE_PATTERN = (
    r"^(?:(?P<date>\d{4}-\d{2}-\d{2})[ T])?(?P<time>\d{2}:\d{2}:\d{2}(?:[,.]\d{1,9})?)\s+(?P<level>[A-Z]+)\s+"
    r"\[(?P<category>[^\]]+)\]\s+\((?P<thread>.*?)\)\s+(?P<message>.*)$"
)
# key=value pairs of an event message: "double-quoted" with \" escapes, 'single-quoted', or bare.
_PAIR = r"""([A-Za-z_][A-Za-z0-9_.-]*)=("(?:[^"\\]|\\.)*"|'[^']*'|[^,]*)"""
_GROUPS = re.findall(r"\?P<(\w+)>", LINE_PATTERN)
NOT_KEYCLOAK = (
    "not a Keycloak event line (expected 'HH:mm:ss,SSS LEVEL [org.keycloak.events] (thread) type=…', "
    "a JSON log line or a JSON event object)"
)
_ACT_PATHS = ("$.act", "$.claims.act", "$.token.act")


def detect(path: Path) -> bool:
    text = head(path)
    if "[org.keycloak.events]" in text:
        return True
    if '"loggerName"' in text and "org.keycloak.events" in text:
        return True
    return (
        text.lstrip()[:1] in ("{", "[")
        and '"realmId"' in text
        and ('"type"' in text or '"operationType"' in text)
    )


def load(con: duckdb.DuckDBPyConnection, files: list[EvidenceFile]) -> None:
    for file in files:
        text = head(file.read_path)
        if text.lstrip()[:1] in ("{", "[") and not is_line_delimited(text, file.size):
            # A JSON array or pretty-printed export (admin REST API /events): one document.
            stage_json_records(con, file, line_mode=False)
            con.execute(
                "CREATE OR REPLACE TEMP TABLE lines AS "
                "SELECT record_index, line, doc::VARCHAR AS text, doc FROM records"
            )
        else:
            _sql.stage_lines(con, file)
        _normalize(con)


def _kv_object(message: str) -> str:
    """SQL: a ``k=v, k=v`` event message as a JSON object of strings (quotes removed)."""
    pair = sql_str(_PAIR)
    keys = f"regexp_extract_all({message}, {pair}, 1)"
    values = f"regexp_extract_all({message}, {pair}, 2)"
    unquoted = (
        r"""CASE WHEN regexp_matches(p[2], '^".*"$')"""
        r""" THEN replace(replace(p[2][2:-2], '\"', '"'), '\\', '\')"""
        r""" WHEN regexp_matches(p[2], '^''.*''$') THEN p[2][2:-2] ELSE p[2] END"""
    )
    return (
        f"('{{' || array_to_string(list_transform(list_zip({keys}, {values}), "
        f"p -> to_json(p[1]) || ':' || to_json({unquoted})), ',') || '}}')::JSON"
    )


def _normalize(con: duckdb.DuckDBPyConnection) -> None:
    pattern = sql_str(LINE_PATTERN)
    groups = "[" + ", ".join(sql_str(g) for g in _GROUPS) + "]"
    # Every line becomes one shape: ev = the event's core fields, det = its details (string map).
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE kc_lines AS
        SELECT *, CASE WHEN m.message IS NOT NULL AND regexp_matches(m.message, '^(type|operationType)=')
                       THEN {_kv_object("m.message")} END AS kv
        FROM (
            SELECT record_index, line, text, doc,
                CASE WHEN doc IS NULL AND regexp_matches(text, {pattern})
                     THEN regexp_extract(text, {pattern}, {groups})
                     WHEN json_extract_string(doc, '$.loggerName') = 'org.keycloak.events'
                     THEN {{'date': NULL, 'time': NULL, 'level': json_extract_string(doc, '$.level'),
                           'category': 'org.keycloak.events',
                           'thread': json_extract_string(doc, '$.threadName'),
                           'message': json_extract_string(doc, '$.message')}} END AS m
            FROM lines
        )"""
    )
    # A line in the JBoss layout from another logger is a log line, not an event: skipped on purpose.
    con.execute(
        """INSERT INTO consumed SELECT record_index FROM kc_lines
        WHERE m IS NOT NULL AND m.category <> 'org.keycloak.events'
           OR (doc IS NOT NULL AND json_type(doc, '$.loggerName') = 'VARCHAR'
               AND json_extract_string(doc, '$.loggerName') <> 'org.keycloak.events')"""
    )
    s = _sql
    type_problem = s.first_problem(
        s.wrong_type("json_type(doc, '$.type')", "type", s.STRING, "a string"),
        s.wrong_type("json_type(doc, '$.time')", "time", s.NUMBER, "epoch milliseconds (a number)"),
        s.wrong_type("json_type(doc, '$.details')", "details", s.OBJECT, "an object"),
        s.wrong_type("json_type(doc, '$.realmId')", "realmId", s.STRING, "a string"),
        s.wrong_type("json_type(doc, '$.clientId')", "clientId", s.STRING, "a string"),
        s.wrong_type("json_type(doc, '$.userId')", "userId", s.STRING, "a string"),
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE kc AS
        SELECT record_index, line, text, doc, m, kv,
            CASE WHEN kv IS NOT NULL THEN kv ELSE doc END AS ev,
            CASE WHEN kv IS NOT NULL THEN kv
                 WHEN json_type(doc, '$.details') = 'OBJECT' THEN json_extract(doc, '$.details') END AS det,
            CASE
                WHEN m IS NOT NULL AND kv IS NULL
                    THEN 'line ' || line || ': an [org.keycloak.events] line whose message is not '
                         || '''type=…'' or ''operationType=…'' (not a Keycloak event)'
                WHEN m IS NULL AND doc IS NULL AND starts_with(text, '{{')
                    THEN 'line ' || line || ': not valid JSON (truncated or malformed record)'
                WHEN m IS NULL AND doc IS NULL THEN 'line ' || line || ': ' || {sql_str(NOT_KEYCLOAK)}
                WHEN m IS NULL AND json_type(doc, '$.type') IS NULL
                     AND json_type(doc, '$.operationType') IS NULL
                    THEN 'line ' || line
                         || ': a JSON object without "type" or "operationType": not a Keycloak event'
                WHEN m IS NULL THEN 'line ' || line || ': ' || coalesce({type_problem}, CASE
                    WHEN NOT coalesce(TRY_CAST(json_extract_string(doc, '$.time') AS DOUBLE)
                                      BETWEEN 0 AND 253402300799999, true)
                        THEN 'time ' || json_extract_string(doc, '$.time') || ' is not epoch milliseconds'
                    END)
                WHEN json_type(doc, '$.timestamp') = 'VARCHAR'
                     AND TRY_CAST(json_extract_string(doc, '$.timestamp') AS TIMESTAMPTZ) IS NULL
                    THEN 'line ' || line || ': timestamp '''
                         || left(json_extract_string(doc, '$.timestamp'), 60)
                         || ''' is not an ISO-8601 time'
            END AS reason
        FROM kc_lines
        WHERE record_index NOT IN (SELECT record_index FROM consumed)"""
    )
    _sql.reject_lines(con, "kc")
    issuing = ", ".join(sql_str(t) for t in ISSUING)
    signin = ", ".join(sql_str(t) for t in SIGNIN)
    revoking = ", ".join(sql_str(t) for t in REVOKING)
    denied = ", ".join(sql_str(e) for e in DENIED_ERRORS)
    act = "coalesce(" + ", ".join(s.json_object_at("det", p) for p in _ACT_PATHS) + ")"
    may_act = (
        "coalesce("
        + ", ".join(s.json_object_at("det", p.replace("act", "may_act")) for p in _ACT_PATHS)
        + ")"
    )

    def ev(key: str) -> str:
        # Java prints a missing value as "null"
        return f"nullif(nullif({s.json_string('ev', '$.' + key)}, 'null'), '')"

    def det(key: str) -> str:
        return f"nullif(nullif({s.json_string('det', '$.' + key)}, 'null'), '')"

    con.execute(
        f"""INSERT INTO staged BY NAME
        WITH base AS (
            SELECT *,
                coalesce({ev("type")}, 'ADMIN_' || {ev("operationType")}) AS type,
                coalesce({ev("realmId")}, {s.json_string("ev", "$.authDetails.realmId")}) AS realm,
                coalesce({ev("clientId")}, {s.json_string("ev", "$.authDetails.clientId")}) AS client,
                coalesce({ev("userId")}, nullif({s.json_string("ev", "$.authDetails.userId")}, 'null'))
                    AS user_id,
                {ev("sessionId")} AS session_id,
                coalesce({ev("ipAddress")}, {s.json_string("ev", "$.authDetails.ipAddress")}) AS ip,
                {ev("error")} AS error,
                {ev("id")} AS kc_id,
                {det("username")} AS username,
                {det("token_id")} AS token_id,
                {det("refresh_token_id")} AS refresh_token_id,
                {det("subject_token_client_id")} AS subject_client,
                {det("audience")} AS audience,
                TRY_CAST({det("access_token_expiration_time")} AS BIGINT) AS ttl_seconds,
                nullif(m.date, '') AS log_date,  -- an unmatched optional group is '', not NULL
                nullif(m.time, '') AS log_time,
                {act} AS act,
                {may_act} AS may_act,
                CASE WHEN nullif(m.date, '') IS NOT NULL
                     -- the JBoss layout prints the server's local time without a zone: taken as UTC
                     THEN timezone('UTC', TRY_CAST(m.date || ' ' || replace(m.time, ',', '.') AS TIMESTAMP))
                     WHEN json_type(doc, '$.timestamp') = 'VARCHAR'
                     THEN TRY_CAST(json_extract_string(doc, '$.timestamp') AS TIMESTAMPTZ)
                     WHEN m IS NULL AND json_type(doc, '$.time') NOT IN ('NULL')
                     THEN timezone('UTC', epoch_ms(
                         TRY_CAST(json_extract_string(doc, '$.time') AS DOUBLE)::BIGINT))
                END AS occurred_at
            FROM kc WHERE reason IS NULL
        ), typed AS (
            SELECT *,
                CASE WHEN type IN ({issuing}) AND error IS NULL THEN 'credential_issue'
                     WHEN type IN ({signin}) OR (type LIKE '%\\_ERROR' ESCAPE '\\'
                                                 AND left(type, length(type) - 6) IN ({issuing}))
                          OR (type IN ({issuing}) AND error IS NOT NULL) THEN 'signin'
                     WHEN type IN ({revoking}) THEN 'credential_revoke'
                     ELSE 'other' END AS category,
                coalesce(kc_id, md5(text)) AS event_key,
                type LIKE 'CLIENT_LOGIN%' OR username LIKE 'service-account-%' AS service_account
            FROM base
        )
        SELECT
            event_key AS event_id,
            record_index, line, occurred_at, category,
            -- a failed login without a user has no actor: the client only names the application
            CASE WHEN type LIKE 'CLIENT_LOGIN%' THEN coalesce(client, user_id)
                 WHEN category = 'signin' THEN coalesce(user_id, username)
                 ELSE coalesce(user_id, username, client) END AS actor_id,
            CASE WHEN service_account THEN 'service' ELSE 'unknown' END AS actor_type,
            CASE WHEN category = 'credential_issue'
                     -- no token_id logged: a stable name for the token this event issued
                     THEN coalesce(token_id, 'keycloak:' || coalesce(realm, '-') || ':'
                                             || coalesce(client, '-') || ':' || event_key)
                 WHEN category = 'credential_revoke' THEN token_id END AS credential_id,
            CASE WHEN category = 'credential_issue' THEN 'oauth_access_token'
                 WHEN category = 'credential_revoke' THEN 'oauth_token' END
                AS credential_type,
            CASE WHEN category = 'credential_issue' THEN CASE
                     -- RFC 8693 delegation: the current actor (act.sub) is the caller's credential
                     WHEN type = 'TOKEN_EXCHANGE' AND act IS NOT NULL THEN json_extract_string(act, '$.sub')
                     WHEN type = 'TOKEN_EXCHANGE' THEN subject_client
                     WHEN type = 'REFRESH_TOKEN' THEN refresh_token_id END
            END AS parent_credential_id,
            'keycloak:' || type AS action,
            coalesce(audience, 'keycloak:' || coalesce(realm, '-') || '/' || coalesce(client, '-'))
                AS resource,
            CASE WHEN error IS NULL THEN 'success' WHEN error IN ({denied}) THEN 'denied' ELSE 'failure' END
                AS outcome,
            error AS error_code,
            realm AS account,
            ip AS src_ip,
            CASE WHEN category = 'credential_issue' AND ttl_seconds IS NOT NULL
                 THEN occurred_at + to_seconds(ttl_seconds) END AS expires_at,
            json_merge_patch('{{}}', json_object(
                'holder', CASE WHEN category = 'credential_issue' THEN coalesce(user_id, client) END,
                'ttl_seconds', CASE WHEN category = 'credential_issue' THEN ttl_seconds END,
                'long_term', CASE WHEN category = 'credential_issue' THEN false END,
                -- the parent is a principal (act.sub, the subject token's client) or a refresh token
                'parent_credential_type', CASE WHEN category <> 'credential_issue' THEN NULL
                    WHEN type = 'TOKEN_EXCHANGE' AND act IS NOT NULL THEN 'oauth_actor'
                    WHEN type = 'TOKEN_EXCHANGE' AND subject_client IS NOT NULL THEN 'oauth_client'
                    WHEN type = 'REFRESH_TOKEN' AND refresh_token_id IS NOT NULL THEN 'oauth_refresh_token' END,
                'event_type', type, 'realm', realm, 'client_id', client, 'user_id', user_id,
                'username', username, 'session_id', session_id,
                'token_id', token_id, 'refresh_token_id', refresh_token_id,
                'grant_type', {det("grant_type")}, 'scope', {det("scope")}, 'audience', audience,
                'subject_token_client_id', subject_client,
                'requested_subject', {det("requested_subject")},
                'impersonator', {det("impersonator")},
                'act_chain', {s.act_chain("act")},
                'may_act', CASE WHEN may_act IS NOT NULL THEN json_extract_string(may_act, '$.sub') END,
                'time_of_day', CASE WHEN log_date IS NULL THEN log_time END,
                'level', m.level
            )) AS details,
            coalesce(doc, to_json(text)) AS raw,
            CASE WHEN kc_id IS NOT NULL THEN kc_id || '|' || coalesce(CAST(occurred_at AS VARCHAR), '') END
                AS dedupe_key
        FROM typed"""
    )
