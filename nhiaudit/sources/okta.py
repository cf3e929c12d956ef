"""Okta System Log: ``LogEvent`` objects (``/api/v1/logs`` exports, log streams, one a line or a JSON
array), also in the lower-cased stored shape (Panther keeps ``eventtype``, ``debugcontext``,
``authenticationcontext``, ``displaymessage`` … in lower case). FORMATS §8 and §12.

API tokens (``system.api_token.create`` / ``.revoke``) are long-term credentials issued and revoked;
OAuth token grants (``app.oauth2.as.token.grant.*``, ``app.oauth2.token.grant.*``) are issuances to
the client (service apps: client credentials); ``user.account.privilege.grant`` is an authority grant
of the admin roles in ``debugData.privilegeGranted`` to the target user; ``user.authentication.sso``
and ``user.session.start`` are sign-ins (the SSO's app in ``details``), except that a successful SSO to
a SAML app issues that app a SAML assertion for the user (``okta-saml:<uuid>``, parent the Okta session):
correlation joins it to the CloudTrail ``AssumeRoleWithSAML`` that presented it (20_credentials.sql). Okta logs no token id for OAuth
grants: the issued credential is ``okta-grant:<client>:<uuid>``.
Event types: https://developer.okta.com/docs/reference/api/event-types/
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from nhiaudit.sources import _sql
from nhiaudit.sources._read import EvidenceFile, head, stage_json_records

NAME = "okta"
READS = "Okta System Log LogEvent records (API export or log stream, NDJSON or array), also with lower-cased keys"
DETECTION = (
    'JSON whose first record has "uuid" with "eventType" (or "eventtype") and "displayMessage", '
    '"legacyEventType" or "actor"'
)

# Keys the lower-cased stored shape spells in lower case (only the top level: nested keys keep their case).
_CASED = ("eventType", "legacyEventType", "displayMessage", "debugContext", "authenticationContext")

GRANTING = ("user.account.privilege.grant",)
SIGNIN = ("user.authentication.sso", "user.session.start", "user.authentication.auth_via_mfa")
# Okta events about tokens and security signals: recorded, not actions of the actor.
_OTHER_PREFIXES = ("app.oauth2.", "security.", "policy.evaluate_sign_on", "system.org.rate_limit")


def detect(path: Path) -> bool:
    text = head(path)
    if text.lstrip()[:1] not in ("{", "[") or '"uuid"' not in text:
        return False
    return ('"eventType"' in text or '"eventtype"' in text) and any(
        k in text for k in ('"displayMessage"', '"displaymessage"', '"legacyEventType"', '"legacyeventtype"', '"actor"')
    )


def load(con: duckdb.DuckDBPyConnection, files: list[EvidenceFile]) -> None:
    for file in files:
        stage_json_records(con, file)
        _normalize(con)


def _field(key: str) -> str:
    """A top-level field in either spelling (camelCase, or lower case as Panther stores it)."""
    if key in _CASED:
        return f"coalesce(json_extract(doc, '$.{key}'), json_extract(doc, '$.{key.lower()}'))"
    return f"json_extract(doc, '$.{key}')"


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def _normalize(con: duckdb.DuckDBPyConnection) -> None:
    s = _sql
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE ok AS
        SELECT record_index, line, doc,
               {_field("eventType")} AS event_type_j, {_field("debugContext")} AS debug,
               {_field("authenticationContext")} AS authn,
               json_extract(doc, '$.published') AS published_j
        FROM records"""
    )
    problem = s.first_problem(
        s.wrong_type("json_type(doc, '$.uuid')", "uuid", s.STRING, "a string"),
        s.wrong_type("json_type(event_type_j)", "eventType", s.STRING, "a string"),
        "CASE WHEN event_type_j IS NULL THEN 'no \"eventType\": not an Okta LogEvent' END",
        s.wrong_time("published_j", "published"),
        s.wrong_type("json_type(doc, '$.actor')", "actor", s.OBJECT, "an object"),
        s.wrong_type("json_type(doc, '$.target')", "target", s.ARRAY, "an array"),
        s.wrong_type("json_type(doc, '$.outcome')", "outcome", s.OBJECT, "an object"),
    )
    s.reject_records(con, "ok", problem)
    other = " OR ".join(f"starts_with(event_type, '{p}')" for p in _OTHER_PREFIXES)
    con.execute(
        f"""INSERT INTO staged BY NAME
        WITH base AS (
            SELECT record_index, line, doc, debug, authn,
                json_extract_string(doc, '$.uuid') AS uuid,
                json_extract_string(event_type_j, '$') AS event_type,
                -- ISO 8601 with Z, or the Panther form '2020-11-25 21:27:03.496000000' (UTC)
                try_cast(json_extract_string(published_j, '$') AS TIMESTAMPTZ) AS occurred_at,
                json_extract_string(doc, '$.actor.id') AS actor_oid,
                nullif(json_extract_string(doc, '$.actor.alternateId'), 'unknown') AS actor_alt,
                json_extract_string(doc, '$.actor.type') AS actor_kind,
                upper(json_extract_string(doc, '$.outcome.result')) AS result,
                json_extract_string(doc, '$.outcome.reason') AS result_reason,
                coalesce(json_extract(doc, '$.target[*]'), []) AS targets,
                json_extract(debug, '$.debugData') AS dd,
                json_extract_string(doc, '$.transaction.id') AS transaction_id,
                json_extract_string(doc, '$.transaction.detail.requestApiTokenId') AS api_token_used,
                json_extract_string(authn, '$.externalSessionId') AS session_id
            FROM ok
            WHERE {s.not_rejected()}
        ), t AS (
            SELECT *,
                list_filter(targets, x -> json_extract_string(x, '$.type') = 'Token')[1] AS token,
                list_filter(targets, x -> json_extract_string(x, '$.type') = 'AppInstance')[1] AS app,
                list_filter(targets, x -> json_extract_string(x, '$.type') = 'AppUser')[1] AS app_user,
                list_filter(targets, x -> json_extract_string(x, '$.type') = 'User')[1] AS target_user,
                -- an SSO to a SAML app issues the app a SAML assertion for the user (the parent of a
                -- downstream AssumeRoleWithSAML: 20_credentials.sql joins them)
                event_type = 'user.authentication.sso' AND result = 'SUCCESS'
                    AND json_extract_string(app, '$.detailEntry.signOnModeType') LIKE 'SAML%' AS saml_sso,
                CASE WHEN event_type = 'system.api_token.create' THEN 'credential_issue'
                     WHEN event_type = 'system.api_token.revoke' THEN 'credential_revoke'
                     WHEN regexp_matches(event_type, '^app\\.oauth2\\.(as\\.)?token\\.grant\\.') THEN 'credential_issue'
                     WHEN saml_sso THEN 'credential_issue'
                     WHEN event_type IN {_in(GRANTING)} THEN 'grant'
                     WHEN event_type IN {_in(SIGNIN)} THEN 'signin'
                     WHEN {other} THEN 'other'
                     ELSE 'action' END AS category,
                coalesce(actor_alt, actor_oid) AS actor
            FROM base
        ), k AS (
            SELECT *,
                json_extract_string(token, '$.id') AS token_id,
                regexp_matches(event_type, '^app\\.oauth2\\.(as\\.)?token\\.grant\\.') AS oauth_grant,
                json_extract_string(dd, '$.grantType') AS grant_type
            FROM t
        )
        SELECT
            uuid AS event_id, record_index, line, occurred_at, category,
            CASE WHEN (category = 'signin' OR saml_sso) AND actor IS NULL THEN json_extract_string(app_user, '$.alternateId')
                 ELSE actor END AS actor_id,
            CASE actor_kind WHEN 'PublicClientApp' THEN 'service' WHEN 'WorkloadIdentityPrincipal' THEN 'agent'
                            WHEN 'SystemPrincipal' THEN 'service' ELSE 'unknown' END AS actor_type,
            CASE WHEN event_type LIKE 'system.api_token.%' AND token_id IS NOT NULL THEN 'okta-token:' || token_id
                 -- Okta logs no assertion id: the event names the assertion it issued
                 WHEN saml_sso THEN 'okta-saml:' || uuid
                 WHEN oauth_grant THEN 'okta-grant:' || coalesce(json_extract_string(doc, '$.client.id'), actor_oid, '-')
                                       || ':' || uuid
                 WHEN api_token_used IS NOT NULL THEN 'okta-token:' || api_token_used
                 WHEN session_id IS NOT NULL THEN 'okta-session:' || session_id END AS credential_id,
            CASE WHEN event_type LIKE 'system.api_token.%' AND token_id IS NOT NULL THEN 'okta_api_token'
                 WHEN saml_sso THEN 'saml_assertion'
                 WHEN oauth_grant AND event_type LIKE '%refresh_token' THEN 'oauth_refresh_token'
                 WHEN oauth_grant THEN 'oauth_access_token'
                 WHEN api_token_used IS NOT NULL THEN 'okta_api_token'
                 WHEN session_id IS NOT NULL THEN 'okta_session' END AS credential_type,
            -- the user's Okta session signed the assertion in
            CASE WHEN saml_sso AND session_id IS NOT NULL THEN 'okta-session:' || session_id END AS parent_credential_id,
            'okta:' || event_type AS action,
            coalesce(
                CASE WHEN token IS NOT NULL THEN 'okta:token/' || token_id END,
                CASE WHEN app IS NOT NULL THEN 'okta:app/' || json_extract_string(app, '$.id') END,
                'okta:' || lower(json_extract_string(targets[1], '$.type')) || '/' || json_extract_string(targets[1], '$.id')
            ) AS resource,
            CASE result WHEN 'SUCCESS' THEN 'success' WHEN 'ALLOW' THEN 'success' WHEN 'FAILURE' THEN 'failure'
                        WHEN 'DENY' THEN 'denied' END AS outcome,
            CASE WHEN result IN ('FAILURE', 'DENY') THEN coalesce(result_reason, result) END AS error_code,
            json_extract_string(doc, '$.client.ipAddress') AS src_ip,
            json_extract_string(doc, '$.client.userAgent.rawUserAgent') AS user_agent,
            json_merge_patch('{{}}', json_object(
                'event_type', event_type,
                'legacy_event_type', json_extract_string({_field("legacyEventType")}, '$'),
                'display_message', json_extract_string({_field("displayMessage")}, '$'),
                'actor_okta_id', actor_oid, 'actor_kind', actor_kind,
                'transaction_id', transaction_id, 'request_id', json_extract_string(dd, '$.requestId'),
                'external_session_id', session_id,
                'grant_type', grant_type,
                'requested_scopes', json_extract_string(dd, '$.requestedScopes'),
                'granted_scopes', json_extract_string(dd, '$.grantedScopes'),
                -- issuance: an API token acts as the admin who created it, with no expiry
                'holder', CASE WHEN saml_sso THEN coalesce(json_extract_string(app_user, '$.alternateId'), actor)
                               WHEN category = 'credential_issue' THEN actor END,
                'parent_credential_type', CASE WHEN saml_sso AND session_id IS NOT NULL THEN 'okta_session' END,
                'long_term', CASE WHEN category = 'credential_issue' THEN event_type = 'system.api_token.create' END,
                'issued_by', CASE WHEN saml_sso THEN 'sso' END,
                'token_name', json_extract_string(token, '$.displayName'),
                -- grant: the target user holds the admin roles granted
                'approver', CASE WHEN category = 'grant'
                                 THEN coalesce(json_extract_string(target_user, '$.alternateId'),
                                               json_extract_string(target_user, '$.id')) END,
                'role', CASE WHEN category = 'grant' THEN json_extract_string(dd, '$.privilegeGranted') END,
                'roles', CASE WHEN category = 'grant'
                              THEN list_filter(list_transform(string_split(json_extract_string(dd, '$.privilegeGranted'), ','),
                                                              x -> trim(x)), x -> x <> '') END,
                'granted_by', CASE WHEN category = 'grant' THEN actor END,
                -- SSO: the app signed in to (AWS IAM Identity Center …) and the user name it gets
                'app', json_extract_string(app, '$.displayName'), 'app_instance', json_extract_string(app, '$.alternateId'),
                'app_user', json_extract_string(app_user, '$.alternateId'),
                'sign_on_mode', json_extract_string(app, '$.detailEntry.signOnModeType')
            )) AS details,
            doc AS raw,
            -- the same uuid is reused with other content (Panther test events): only an identical
            -- record is the same event
            coalesce(uuid, '') || '|' || md5(doc::VARCHAR) AS dedupe_key
        FROM k"""
    )
