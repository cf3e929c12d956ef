"""Okta System Log: spot checks against the shared samples (API token create/revoke, admin privilege
grant, SSO to AWS, the lower-cased stored shape), an OAuth client-credentials grant of a service app
and an API-token call in the documented LogEvent shape, outcomes and bad records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
from helpers import SAMPLES, load, rows, sample, utc, write_lines

from nhiaudit import correlate
from nhiaudit.policy import load_policy
from nhiaudit.sources import okta

OKTA = SAMPLES / "okta"


def by_action(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    return {r["action"]: r for r in rows(con, "SELECT * FROM events ORDER BY record_index")}


def test_api_token_created_then_revoked(store: duckdb.DuckDBPyConnection) -> None:
    load(store, "okta", sample(OKTA / "panther__okta_api_key_created.tests.ndjson"))
    load(store, "okta", sample(OKTA / "panther__okta_api_key_revoked.tests.ndjson"))
    got = by_action(store)
    create, revoke = got["okta:system.api_token.create"], got["okta:system.api_token.revoke"]
    assert (create["category"], create["credential_id"], create["credential_type"]) == (
        "credential_issue", "okta-token:00Tpki36zlWjhjQ1u2p4", "okta_api_token")
    assert (create["actor_id"], create["occurred_at"]) == ("user@example.com", utc(2021, 1, 8, 21, 28, 34, 875000))
    assert (revoke["category"], revoke["credential_id"]) == ("credential_revoke", "okta-token:00Tpki36zlWjhjQ1u2p4")
    correlate.correlate(store, load_policy(None))
    cred = rows(store, "SELECT holder, long_term, revoked_at FROM credentials WHERE credential_id LIKE 'okta-token:%'")
    revoked = utc(2021, 1, 8, 21, 28, 34, 875000)
    assert cred == [{"holder": "user@example.com", "long_term": True, "revoked_at": revoked}]


def test_admin_privilege_grant_is_authority(store: duckdb.DuckDBPyConnection) -> None:
    load(store, "okta", sample(OKTA / "panther__okta_admin_role_assigned.tests.ndjson"))
    grants = rows(store, "SELECT category, actor_id, details->>'approver' AS holder, details->>'role' AS role, "
                         "details->'roles' AS roles FROM events ORDER BY record_index")
    assert grants[0] == {"category": "grant", "actor_id": "jack@acme.io", "holder": "alice@acme.io",
                         "role": "Organization administrator, Application administrator (all)",
                         "roles": '["Organization administrator","Application administrator (all)"]'}
    assert len(grants) == 2  # same uuid, other roles granted: both kept


def test_sso_to_a_saml_app_issues_an_assertion_and_without_the_app_is_a_signin(
    store: duckdb.DuckDBPyConnection,
) -> None:
    load(store, "okta", sample(OKTA / "panther__okta_sso_to_aws.tests.ndjson"))
    got = rows(store, "SELECT category, actor_id, occurred_at, credential_id, credential_type, details->>'app' AS app, "
                      "details->>'sign_on_mode' AS mode, details->>'transaction_id' AS tx, "
                      "details->>'holder' AS holder FROM events ORDER BY record_index")
    # the SAML assertion Okta issued to the AWS app for aardvark (the parent of an AssumeRoleWithSAML)
    assert got[0] == {"category": "credential_issue", "actor_id": "aardvark", "occurred_at": None,  # no "published"
                      "credential_id": "okta-saml:35cae732-21bd-11ef-a011-dd05aa53a11a",
                      "credential_type": "saml_assertion", "app": "AWS IAM Identity Center", "mode": "SAML_2_0",
                      "tx": "1a3852fc0d172ecdad0e2447e47fbc98", "holder": "aardvark"}
    # the same SSO logged without its app: the sign-on mode is unknown, so it stays a sign-in
    assert (got[1]["category"], got[1]["actor_id"], got[1]["credential_id"]) == ("signin", "aardvark", None)


def test_lower_cased_stored_shape(store: duckdb.DuckDBPyConnection) -> None:
    path = sample(OKTA / "panther__okta_app_refresh_access_token_reuse.tests.ndjson")
    assert okta.detect(path)
    assert load(store, "okta", path).rejected == 0
    got = rows(store, "SELECT action, actor_type, credential_id, details->>'grant_type' AS grant_type FROM events "
                      "ORDER BY record_index")
    assert got == [
        {"action": "okta:app.oauth2.authorize.code", "actor_type": "service",
         "credential_id": "okta-session:123456789", "grant_type": "authorization_code"},
        {"action": "okta:app.oauth2.token.detect_reuse", "actor_type": "service",
         "credential_id": "okta-session:123456789", "grant_type": "authorization_code"},
    ]


def log_event(uuid: str, event_type: str, **fields: Any) -> dict[str, Any]:
    """A LogEvent as /api/v1/logs returns it (developer.okta.com, System Log API)."""
    event = {
        "uuid": uuid, "published": "2026-11-02T09:00:00.123Z", "eventType": event_type, "version": "0",
        "severity": "INFO", "displayMessage": "OAuth2 access token is granted",
        "actor": {"id": "0oa1svcapp", "type": "PublicClientApp", "alternateId": "0oa1svcapp",
                  "displayName": "report-bot"},
        "client": {"id": "0oa1svcapp", "ipAddress": "203.0.113.9", "userAgent": {"rawUserAgent": "okta-sdk-python/2"}},
        "outcome": {"result": "SUCCESS"},
        "target": [{"id": "aus1authz", "type": "AuthorizationServer", "alternateId": "default"}],
        "transaction": {"type": "WEB", "id": "Yb1tx", "detail": {}},
        "debugContext": {"debugData": {"grantType": "client_credentials", "grantedScopes": "reports.write",
                                       "requestId": "Yb1tx"}},
        "authenticationContext": {"authenticationStep": 0, "externalSessionId": "unknown"},
    }
    event.update(fields)
    return event


def test_client_credentials_grant_and_api_token_use(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    use = log_event("u-3", "user.lifecycle.deactivate", displayMessage="Deactivate Okta user",
                    actor={"id": "00u1admin", "type": "User", "alternateId": "ops@example.com"},
                    transaction={"type": "WEB", "id": "tx3", "detail": {"requestApiTokenId": "00T1token"}},
                    target=[{"id": "00u9alice", "type": "User", "alternateId": "alice@example.com"}],
                    outcome={"result": "FAILURE", "reason": "INSUFFICIENT_PERMISSIONS"})
    no_outcome = log_event("u-4", "user.lifecycle.suspend")
    del no_outcome["outcome"]
    path = write_lines(tmp_path / "okta.ndjson", [
        log_event("u-1", "app.oauth2.as.token.grant.access_token"),
        log_event("u-2", "app.oauth2.as.token.grant.refresh_token"), use, no_outcome])
    assert okta.detect(path)
    load(store, "okta", path)
    got = rows(store, "SELECT * FROM events ORDER BY record_index")
    assert [(r["category"], r["credential_id"], r["credential_type"], r["actor_type"]) for r in got[:2]] == [
        ("credential_issue", "okta-grant:0oa1svcapp:u-1", "oauth_access_token", "service"),
        ("credential_issue", "okta-grant:0oa1svcapp:u-2", "oauth_refresh_token", "service")]
    assert (got[2]["category"], got[2]["credential_id"], got[2]["credential_type"]) == (
        "action", "okta-token:00T1token", "okta_api_token")
    assert (got[2]["outcome"], got[2]["error_code"], got[2]["resource"]) == (
        "failure", "INSUFFICIENT_PERMISSIONS", "okta:user/00u9alice")
    assert (got[0]["src_ip"], got[0]["user_agent"]) == ("203.0.113.9", "okta-sdk-python/2")
    assert got[3]["outcome"] is None  # no outcome field: unknown, not a failure


def test_bad_records_are_rejected_with_a_reason(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "okta.ndjson", [
        log_event("ok-1", "user.session.start"),
        log_event("bad-1", "user.session.start", published="yesterday"),
        log_event("bad-2", "user.session.start", target={"id": "x"}),
        {**log_event("bad-3", "x"), "eventType": 7},
    ])
    result = load(store, "okta", path)
    assert (result.loaded, result.rejected) == (1, 3)
    assert [r["reason"] for r in rows(store, "SELECT reason FROM rejected ORDER BY line")] == [
        "published 'yesterday' is not an RFC 3339 time",
        "target is a JSON object, expected an array",
        "eventType is a JSON number, expected a string",
    ]
