"""Cross-source chains (issue #5): every new source joins at least one other source end to end.

Each test writes a tiny world with records in each source's native format (the fields the source
module reads, as in ``tests/sources``), ingests it into an in-memory store, correlates under a small
policy and reads the ``chains`` row of the action (and ``nhiaudit.trace``). Joins covered elsewhere
are not repeated: Vault -> CloudTrail is in test_correlate.py, Kong -> OTLP in tests/rules.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pytest
from helpers import build_world, rows
from test_correlate import (
    ACCOUNT,
    ORCHESTRATOR,
    ORCHESTRATOR_KEY,
    approval,
    at,
    chain,
    ct_assume_role,
    ct_call,
    findings,
    task,
)

from nhiaudit import trace as tracing
from nhiaudit.policy import Policy

POLICY = """
[identities]
humans = ["*@example.com"]
"""

# 2026-11-02T09:00:00Z in epoch seconds (the day of test_correlate's worlds).
T0 = 1793610000


def ns(hms: str) -> str:
    """OTLP nanosecond string for a time of day on the test day."""
    h, m, s = (int(x) for x in hms.split(":"))
    return str((T0 + (h - 9) * 3600 + m * 60 + s) * 1_000_000_000)


def ms(hms: str) -> int:
    return int(ns(hms)) // 1_000_000


def build(
    folder: Path, files: dict[str, list[Any] | dict[str, Any]], policy_text: str = POLICY
) -> tuple[duckdb.DuckDBPyConnection, Policy]:
    return build_world(folder, files, policy_text)


def sources(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """file name -> the source that loaded it."""
    return {Path(p).name: s for p, s in con.execute("SELECT path, source FROM evidence_files").fetchall()}


def links(con: duckdb.DuckDBPyConnection, ident: str) -> dict[str, Any]:
    """``trace`` of one action: its links by kind (parents excluded), the verdict under ``verdict``."""
    action = tracing.trace(con, ident).action
    assert action is not None, f"{ident} is not an audited action"
    found: dict[str, Any] = {link.kind: link for link in action.links if link.kind != "parent"}
    found["verdict"] = action.verdict
    return found


# --- OTLP: one agent task span and its tool span -----------------------------------------------


def _attrs(**values: str) -> list[dict[str, Any]]:
    return [{"key": k.replace("__", "."), "value": {"stringValue": v}} for k, v in values.items()]


def agent_trace(
    trace_id: str, task_id: str, *, agent: str, task_span: str, tool_span: str, tool: str = "publish_report"
) -> dict[str, Any]:
    """An ``invoke_agent`` span (the task, 09:00-09:40) with an ``execute_tool`` child (09:04-09:06)."""
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _attrs(service__name=f"{agent}-svc")},
                "scopeSpans": [
                    {
                        "scope": {"name": "openai-agents"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": task_span,
                                "name": f"invoke_agent {agent}",
                                "kind": 1,
                                "startTimeUnixNano": ns("09:00:00"),
                                "endTimeUnixNano": ns("09:40:00"),
                                "attributes": _attrs(
                                    gen_ai__operation__name="invoke_agent",
                                    gen_ai__agent__id=agent,
                                    nhiaudit__task__id=task_id,
                                ),
                                "status": {"code": 1},
                            },
                            {
                                "traceId": trace_id,
                                "spanId": tool_span,
                                "parentSpanId": task_span,
                                "name": f"execute_tool {tool}",
                                "kind": 3,
                                "startTimeUnixNano": ns("09:04:00"),
                                "endTimeUnixNano": ns("09:06:00"),
                                "attributes": _attrs(
                                    gen_ai__operation__name="execute_tool",
                                    gen_ai__tool__name=tool,
                                    gen_ai__tool__call__id=f"call-{tool_span[:6]}",
                                ),
                                "status": {"code": 1},
                            },
                        ],
                    }
                ],
            }
        ]
    }


# --------------------------------------------------------------------------------------------------
# 1. k8s_audit (EKS) -> CloudTrail
# --------------------------------------------------------------------------------------------------


def test_eks_audit_event_joins_the_cloudtrail_issuance_of_its_access_key(tmp_path: Path) -> None:
    """EKS logs the caller's AWS access key in ``user.extra.accessKeyId``: the key CloudTrail's
    AssumeRole issued, whose ``sourceIdentity`` is the task id."""
    key = "ASIADEPLOYBOT0000001"
    role_session = f"arn:aws:sts::{ACCOUNT}:assumed-role/deploy-bot/t-k8s"
    issue_id = "55555555-0000-4000-8000-000000000001"
    delete = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": "eks-del-1",
        "stage": "ResponseComplete",
        "requestURI": "/apis/apps/v1/namespaces/prod/deployments/web",
        "verb": "delete",
        "user": {
            "username": role_session,
            "uid": f"aws-iam-authenticator:{ACCOUNT}:AROADEPLOYBOT0000001",
            "groups": ["system:authenticated"],
            "extra": {
                "accessKeyId": [key],
                "arn": [role_session],
                "canonicalArn": [f"arn:aws:iam::{ACCOUNT}:role/deploy-bot"],
                "sessionName": ["t-k8s"],
            },
        },
        "sourceIPs": ["10.0.4.50"],
        "userAgent": "kubectl/v1.30.0",
        "objectRef": {
            "resource": "deployments",
            "namespace": "prod",
            "name": "web",
            "apiGroup": "apps",
            "apiVersion": "v1",
        },
        "responseStatus": {"metadata": {}, "status": "Success", "code": 200},
        "requestReceivedTimestamp": at("09:05:00.000001"),
        "stageTimestamp": at("09:05:00.020000"),
        "annotations": {"authorization.k8s.io/decision": "allow"},
    }
    con, policy = build(
        tmp_path,
        {
            "cloudtrail.json": [
                ct_assume_role(
                    issue_id,
                    at("09:01:00"),
                    caller=ORCHESTRATOR,
                    caller_key=ORCHESTRATOR_KEY,
                    role="deploy-bot",
                    session="t-k8s",
                    new_key=key,
                    source_identity="t-k8s",
                )
            ],
            "audit.log": [delete],
            "provenance.ndjson": [
                task("t-k8s", agent="deploy-bot", intent="Remove the retired web deployment"),
                approval("APR-K8S", "t-k8s"),
            ],
        },
    )
    assert sources(con) == {
        "cloudtrail.json": "cloudtrail",
        "audit.log": "k8s_audit",
        "provenance.ndjson": "provenance",
    }
    row = chain(con, "eks-del-1")
    assert (row["source"], row["action"], row["resource"]) == (
        "k8s_audit",
        "k8s:delete:deployments",
        "namespaces/prod/deployments/web",
    )
    assert (row["credential_id"], row["credential_type"]) == (key, "aws_temporary_key")
    assert (row["issuance_source"], row["issuance_event_id"], row["issuance_status"]) == (
        "cloudtrail",
        issue_id,
        "found",
    )
    assert (row["root_credential_id"], row["root_kind"]) == (ORCHESTRATOR_KEY, "long_term")
    assert (row["task_id"], row["task_link"], row["task_status"]) == ("t-k8s", "sourceIdentity", "found")
    assert (row["approval_id"], row["approval_status"], row["verdict"]) == ("APR-K8S", "found", "approved")
    assert findings(con, policy, "eks-del-1") == set()

    link = links(con, "k8s_audit:eks-del-1")
    assert (link["issuance"].id, link["issuance"].status) == (f"cloudtrail:{issue_id}", "found")
    assert link["issuance"].evidence.file.endswith("cloudtrail.json")
    assert (link["task"].id, link["approval"].id, link["verdict"]) == ("t-k8s", "APR-K8S", "approved")


# --------------------------------------------------------------------------------------------------
# 2. API Gateway -> CloudTrail
# --------------------------------------------------------------------------------------------------


def test_api_gateway_access_key_joins_the_cloudtrail_issuance_and_its_session_tag(tmp_path: Path) -> None:
    """The access log's ``$context.identity.accessKey`` is CloudTrail's issued key; the task comes
    from the AssumeRole's ``TaskId`` session tag."""
    key = "ASIAAPIGWBOT00000001"
    issue_id = "66666666-0000-4000-8000-000000000001"
    call = {
        "requestId": "apigw-req-1",
        "ip": "10.0.5.60",
        "caller": "AROAAPIGWBOT00000001:t-apigw",
        "user": "AROAAPIGWBOT00000001:t-apigw",
        "requestTime": "02/Nov/2026:10:05:00 +0100",
        "httpMethod": "PUT",
        "resourcePath": "/reports/{id}",
        "status": "201",
        "protocol": "HTTP/1.1",
        "responseLength": "40",
        "stage": "prod",
        "apiId": "a1b2c3d4e5",
        "domainName": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
        "accountId": ACCOUNT,
        "userArn": f"arn:aws:sts::{ACCOUNT}:assumed-role/report-bot/t-apigw",
        "accessKey": key,
        "userAgent": "report-bot/1.0",
    }
    con, policy = build(
        tmp_path,
        {
            "cloudtrail.json": [
                ct_assume_role(
                    issue_id,
                    at("09:01:00"),
                    caller=ORCHESTRATOR,
                    caller_key=ORCHESTRATOR_KEY,
                    role="report-bot",
                    session="t-apigw",
                    new_key=key,
                    tags={"Project": "reports", "TaskId": "t-apigw"},
                )
            ],
            "access.log": [call],
            "provenance.ndjson": [task("t-apigw"), approval("APR-APIGW", "t-apigw")],
        },
    )
    assert sources(con)["access.log"] == "apigateway"
    row = chain(con, "apigw-req-1")
    assert (row["source"], row["action"], row["resource"]) == (
        "apigateway",
        "http:PUT",
        "apigateway:a1b2c3d4e5/prod/reports/{id}",
    )
    assert row["credential_id"] == key
    assert (row["issuance_source"], row["issuance_event_id"]) == ("cloudtrail", issue_id)
    assert (row["task_id"], row["task_link"], row["task_status"]) == ("t-apigw", "session_tag", "found")
    assert (row["approval_id"], row["verdict"]) == ("APR-APIGW", "approved")
    assert findings(con, policy, "apigw-req-1") == set()

    link = links(con, "apigateway:apigw-req-1")
    assert link["issuance"].id == f"cloudtrail:{issue_id}"
    assert (link["task"].id, link["task"].details["link"]) == ("t-apigw", "session_tag")


# --------------------------------------------------------------------------------------------------
# 3. GCP Cloud Audit Logs -> OTLP agent trace
# --------------------------------------------------------------------------------------------------


def test_gcp_audit_entry_trace_joins_the_agent_task_span(tmp_path: Path) -> None:
    """A LogEntry's ``trace`` (``projects/P/traces/<id>``) is the agent's W3C trace id. Its ``spanId``
    is the span Google logged the request under, not one the agent exported, so the join is the
    fallback of 70_action_tasks.sql: the task span of the same trace that covers the call."""
    trace_id, task_span, tool_span = "5cf92f3577b34da6a3ce929d0e0e4737", "10f067aa0ba902b7", "20f067aa0ba902b7"
    agent = "report-bot@nhi-prod.iam.gserviceaccount.com"
    entry = {
        "insertId": "gcp-put-1",
        "timestamp": at("09:05:00.250"),
        "logName": "projects/nhi-prod/logs/cloudaudit.googleapis.com%2Fdata_access",
        "resource": {
            "type": "gcs_bucket",
            "labels": {"project_id": "nhi-prod", "bucket_name": "reports-prod", "location": "europe-west1"},
        },
        "trace": f"projects/nhi-prod/traces/{trace_id.upper()}",
        "spanId": "3AF067AA0BA902B7",
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "serviceName": "storage.googleapis.com",
            "methodName": "storage.objects.create",
            "resourceName": "projects/_/buckets/reports-prod/objects/2026/11/sales.csv",
            "authenticationInfo": {"principalEmail": agent},
            "requestMetadata": {"callerIp": "10.0.6.70", "callerSuppliedUserAgent": "report-bot/1.0"},
            "status": {},
        },
    }
    con, policy = build(
        tmp_path,
        {
            "gcp_audit.json": [entry],
            "trace.json": agent_trace(trace_id, "t-gcp", agent="report-bot", task_span=task_span, tool_span=tool_span),
            "provenance.ndjson": [approval("APR-GCP", "t-gcp")],
        },
    )
    assert sources(con) == {"gcp_audit.json": "gcp_audit", "trace.json": "otel", "provenance.ndjson": "provenance"}
    row = chain(con, "gcp-put-1")
    assert (row["source"], row["action"], row["actor_id"]) == ("gcp_audit", "storage:storage.objects.create", agent)
    assert (row["trace_id"], row["parent_span_id"]) == (trace_id, None)
    assert (row["task_id"], row["task_link"], row["task_status"]) == ("t-gcp", "trace", "found")
    assert (row["span_source"], row["span_event_id"]) == ("otel", task_span)
    assert (row["task_known_from"], row["agent_id"]) == ("trace", "report-bot")
    assert (row["approval_id"], row["approval_status"], row["verdict"]) == ("APR-GCP", "found", "approved")
    assert "credential-without-task" not in findings(con, policy, "gcp-put-1")

    assert row["self_approved"] is False  # the trace names no requester: not a NULL verdict check

    link = links(con, "gcp_audit:gcp-put-1")
    assert (link["span"].id, link["span"].status) == (f"otel:{task_span}", "found")
    assert "covers the call's time" in link["span"].label
    assert link["span"].evidence.file.endswith("trace.json")
    assert (link["task"].id, link["task"].details["link"]) == ("t-gcp", "trace")


def test_gcp_audit_entry_outside_the_task_span_has_no_task(tmp_path: Path) -> None:
    """The fallback is bounded by the task span's time (plus clock skew): the same trace id an hour
    after the agent's task ended joins nothing."""
    trace_id = "5cf92f3577b34da6a3ce929d0e0e4737"
    entry = {
        "insertId": "gcp-late-1",
        "timestamp": at("10:41:00"),
        "logName": "projects/nhi-prod/logs/cloudaudit.googleapis.com%2Factivity",
        "resource": {"type": "gcs_bucket", "labels": {"project_id": "nhi-prod"}},
        "trace": f"projects/nhi-prod/traces/{trace_id}",
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "serviceName": "storage.googleapis.com",
            "methodName": "storage.buckets.delete",
            "resourceName": "projects/_/buckets/reports-prod",
            "authenticationInfo": {"principalEmail": "report-bot@nhi-prod.iam.gserviceaccount.com"},
        },
    }
    con, policy = build(
        tmp_path,
        {
            "gcp_audit.json": [entry],
            "trace.json": agent_trace(
                trace_id, "t-gcp", agent="report-bot", task_span="10f067aa0ba902b7", tool_span="20f067aa0ba902b7"
            ),
        },
    )
    row = chain(con, "gcp-late-1")
    assert (row["task_id"], row["task_status"], row["verdict"]) == (None, "missing", "unknown")
    assert "credential-without-task" in findings(con, policy, "gcp-late-1")


# --------------------------------------------------------------------------------------------------
# 4. Keycloak -> Envoy (-> OTLP)
# --------------------------------------------------------------------------------------------------


def test_keycloak_token_exchange_joins_the_envoy_call_and_its_trace(tmp_path: Path) -> None:
    """Keycloak's TOKEN_EXCHANGE ``token_id`` is the jti Envoy's jwt_authn filter logs as
    ``jwt_jti``: the call's issuance is the exchange. The call's ``traceparent`` names the agent's
    ``execute_tool`` span, whose ``invoke_agent`` parent carries the task."""
    trace_id, task_span, tool_span = "6df92f3577b34da6a3ce929d0e0e4738", "11f067aa0ba902b7", "21f067aa0ba902b7"
    exchange = {
        "id": "kc-exchange-1",
        "time": ms("09:04:30"),
        "type": "TOKEN_EXCHANGE",
        "realmId": "agents",
        "clientId": "report-bot",
        "userId": "u-bob",
        "sessionId": "s-1",
        "ipAddress": "10.0.7.80",
        "details": {
            "token_id": "jti-exchange-1",
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token_client_id": "web-app",
            "audience": "reports-api",
            "act": {"sub": "report-bot"},
        },
    }
    call = {
        "start_time": at("09:05:00.123"),
        "method": "PUT",
        "path": "/v1/reports/2026-11",
        "protocol": "HTTP/1.1",
        "response_code": 201,
        "response_flags": "-",
        "x_request_id": "gw-exchange-1",
        "authority": "reports.internal",
        "upstream_host": "10.0.8.9:8080",
        "user_agent": "report-bot/1.0",
        "downstream_remote_address": "10.0.7.80:51234",
        "jwt_jti": "jti-exchange-1",
        "jwt_sub": "u-bob",
        "traceparent": f"00-{trace_id}-{tool_span}-01",
    }
    con, policy = build(
        tmp_path,
        {
            "keycloak-events.json": [exchange],
            "envoy-access.log": [call],
            "trace.json": agent_trace(trace_id, "t-kc", agent="report-bot", task_span=task_span, tool_span=tool_span),
            "provenance.ndjson": [task("t-kc"), approval("APR-KC", "t-kc")],
        },
    )
    assert sources(con)["keycloak-events.json"] == "keycloak"
    assert sources(con)["envoy-access.log"] == "envoy"
    row = chain(con, "gw-exchange-1")
    assert (row["source"], row["action"], row["resource"]) == (
        "envoy",
        "http:PUT",
        "reports.internal/v1/reports/2026-11",
    )
    assert (row["credential_id"], row["credential_holder"]) == ("jti-exchange-1", "u-bob")
    assert (row["issuance_source"], row["issuance_event_id"], row["issuance_status"]) == (
        "keycloak",
        "kc-exchange-1",
        "found",
    )
    assert row["parent_credential_id"] == "report-bot"  # act.sub: the agent acting for bob
    assert (row["task_id"], row["task_link"], row["task_status"]) == ("t-kc", "trace", "found")
    assert (row["span_source"], row["span_event_id"]) == ("otel", tool_span)
    assert (row["approval_id"], row["approval_status"]) == ("APR-KC", "found")
    assert row["broken_credential_id"] is None
    assert row["verdict"] == "approved"
    assert findings(con, policy, "gw-exchange-1") == set()

    link = links(con, "envoy:gw-exchange-1")
    assert (link["issuance"].id, link["issuance"].status) == ("keycloak:kc-exchange-1", "found")
    assert link["issuance"].evidence.file.endswith("keycloak-events.json")
    assert (link["span"].id, link["task"].id, link["approval"].id) == (f"otel:{tool_span}", "t-kc", "APR-KC")


def test_unknown_actor_in_an_act_chain_breaks_the_delegation(tmp_path: Path) -> None:
    """RFC 8693: the exchange says ``ghost-agent`` acted for bob, and nothing else in the evidence
    knows ``ghost-agent`` (no span, no client login, no other event): the delegation chain is
    broken at that actor, while the known actor of the test above leaves it whole."""
    exchange = {
        "id": "kc-exchange-2",
        "time": ms("09:04:30"),
        "type": "TOKEN_EXCHANGE",
        "realmId": "agents",
        "clientId": "web-app",
        "userId": "u-bob",
        "sessionId": "s-2",
        "ipAddress": "10.0.7.81",
        "details": {
            "token_id": "jti-exchange-2",
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token_client_id": "web-app",
            "audience": "reports-api",
            "act": {"sub": "ghost-agent"},
        },
    }
    call = {
        "start_time": at("09:05:00.123"),
        "method": "DELETE",
        "path": "/v1/reports/2026-11",
        "protocol": "HTTP/1.1",
        "response_code": 204,
        "response_flags": "-",
        "x_request_id": "gw-exchange-2",
        "authority": "reports.internal",
        "upstream_host": "10.0.8.9:8080",
        "user_agent": "curl/8.5",
        "downstream_remote_address": "10.0.7.81:51234",
        "jwt_jti": "jti-exchange-2",
        "jwt_sub": "u-bob",
    }
    con, policy = build(tmp_path, {"keycloak-events.json": [exchange], "envoy-access.log": [call]})
    row = chain(con, "gw-exchange-2")
    assert (row["issuance_source"], row["parent_credential_id"]) == ("keycloak", "ghost-agent")
    assert row["broken_credential_id"] == "ghost-agent"
    assert row["verdict"] == "unknown"
    assert "broken-delegation-chain" in findings(con, policy, "gw-exchange-2")


# --------------------------------------------------------------------------------------------------
# 6. Azure: Entra sign-in -> Activity Log
# --------------------------------------------------------------------------------------------------

SP_ID = "5f0e8a8c-3c1d-4c5e-9a51-2f8b2b1e9d10"
SUB = "11111111-2222-3333-4444-555555555555"


def test_entra_signin_is_the_issuance_of_the_activity_log_call(tmp_path: Path) -> None:
    """Sign-in log and Activity Log are two Azure log types; the token's ``uti`` joins them (the
    sign-in writes it in base64, the ARM claim in base64url: both normalize to one id).

    Azure carries no task id, so the action has no task: credential-without-task fires. No genuine
    cross-source join exists for Azure in nhiaudit today: the Activity Log and sign-ins carry no W3C
    trace context (``correlationId`` is ARM's own operation id), the otel source maps no span
    attribute to a credential id (so an agent span naming its Entra token cannot join), and the
    vault source reads only AWS dynamic keys (``response.data.access_key``), not the Azure secrets
    engine's ``client_id``/``client_secret``.
    """
    signin = {
        "time": "2026-11-02T09:00:00.1234567Z",
        "operationName": "Sign-in activity",
        "category": "ServicePrincipalSignInLogs",
        "tenantId": "tenant-1",
        "resultType": "0",
        "callerIpAddress": "20.1.2.3",
        "correlationId": "corr-1",
        "properties": {
            "id": "signin-1",
            "createdDateTime": "2026-11-02T09:00:00.12+00:00",
            "appId": "app-1",
            "servicePrincipalId": SP_ID,
            "servicePrincipalName": "report-bot",
            "servicePrincipalCredentialKeyId": "key-1",
            "clientCredentialType": "clientSecret",
            "resourceId": "797f4846-ba00-4fd7-ba43-dac1f8f63013",
            "resourceDisplayName": "Windows Azure Service Management API",
            "uniqueTokenIdentifier": "q+7/AbCdEfGhIjKlMnOpQA==",
            "ipAddress": "20.1.2.3",
        },
    }
    activity = {
        "time": "2026-11-02T09:05:00.7654321Z",
        "eventDataId": "act-listkeys-1",
        "category": "Administrative",
        "operationName": "MICROSOFT.STORAGE/STORAGEACCOUNTS/LISTKEYS/ACTION",
        "resourceId": f"/SUBSCRIPTIONS/{SUB}/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.STORAGE/STORAGEACCOUNTS/REPORTS",
        "resultType": "Success",
        "resultSignature": "Succeeded.",
        "correlationId": "op-1",
        "callerIpAddress": "20.1.2.3",
        "identity": {
            "claims": {
                "uti": "q-7_AbCdEfGhIjKlMnOpQA",
                "appid": "app-1",
                "appidacr": "1",
                "iat": "1793610000",
                "http://schemas.microsoft.com/identity/claims/objectidentifier": SP_ID,
            },
            "authorization": {
                "evidence": {
                    "principalId": SP_ID,
                    "principalType": "ServicePrincipal",
                    "role": "Storage Account Contributor",
                }
            },
        },
        "location": "westeurope",
    }
    con, policy = build(tmp_path, {"signinlogs.json": [signin], "activitylog.json": [activity]})
    assert set(sources(con).values()) == {"azure"}
    token = "azure-token:q-7_AbCdEfGhIjKlMnOpQA"
    row = chain(con, "act-listkeys-1")
    assert (row["action"], row["actor_id"]) == ("azure:microsoft.storage/storageaccounts/listkeys/action", SP_ID)
    assert (row["credential_id"], row["credential_holder"]) == (token, SP_ID)
    assert (row["issuance_source"], row["issuance_event_id"], row["issuance_status"]) == ("azure", "signin-1", "found")
    assert row["parent_credential_id"] == "azure-key:key-1"  # the client secret that signed in
    assert row["broken_credential_id"] is None  # a client secret is not a temporary credential
    assert (row["task_id"], row["task_status"], row["verdict"]) == (None, "missing", "unknown")
    assert "credential-without-task" in findings(con, policy, "act-listkeys-1")

    link = links(con, "azure:act-listkeys-1")
    assert (link["issuance"].id, link["issuance"].status) == ("azure:signin-1", "found")
    assert link["issuance"].evidence.file.endswith("signinlogs.json")
    assert link["task"].status == "missing"


# --------------------------------------------------------------------------------------------------
# 7. Auth0: the issuance loads, nothing downstream can join it
# --------------------------------------------------------------------------------------------------


def test_auth0_m2m_issuance_loads_but_cannot_join_a_downstream_call(tmp_path: Path) -> None:
    """Auth0 logs no token id (no jti): the credential is ``auth0:<client_id>:<log_id>``, a name no
    gateway or API log can carry. A downstream call can only be matched to it by holder and time, a
    heuristic nhiaudit does not make, so no cross-source chain exists from the log alone. The
    issuance still loads as ``credential_issue`` with the client as holder, and correlation keeps
    it as a known credential."""
    record = {
        "log_id": "90020261102090000000000000000000000000000000000000000001",
        "data": {
            "date": "2026-11-02T09:00:00.000Z",
            "type": "seccft",
            "description": "Client Credentials for Access Token",
            "client_id": "bot-client",
            "client_name": "report-bot",
            "ip": "10.1.1.1",
            "user_agent": "python-requests/2.31",
            "hostname": "acme.eu.auth0.com",
            "user_id": "",
            "audience": "https://reports.example.com/api",
            "scope": "reports:write",
            "log_id": "90020261102090000000000000000000000000000000000000000001",
        },
    }
    con, _ = build(tmp_path, {"auth0.ndjson": [record]})
    assert sources(con) == {"auth0.ndjson": "auth0"}
    credential_id = f"auth0:bot-client:{record['log_id']}"
    (issue,) = con.execute(
        "SELECT category, credential_id, credential_type, actor_id, details->>'holder' FROM events"
    ).fetchall()
    assert issue == ("credential_issue", credential_id, "oauth_access_token", "bot-client", "bot-client")
    credential = con.execute(
        """SELECT holder, issuance_source, issuance_event_id, long_term, first_used_at
           FROM credentials WHERE credential_id = ?""",
        [credential_id],
    ).fetchone()
    assert credential == ("bot-client", "auth0", record["log_id"], False, None)
    assert con.execute("SELECT count(*) FROM chains").fetchone() == (0,)


# --------------------------------------------------------------------------------------------------
# The parent of an issuance is typed as what the caller held, not as what was issued
# --------------------------------------------------------------------------------------------------


def _kubelet_world() -> dict[str, list[Any]]:
    """A kubelet (client certificate) requests a bound token for a pod's service account, which the
    pod then uses."""
    jti = "JTI=7d0b3a52-1f4e-4c59-9f7e-1c2d3e4f5a6b"

    def event(audit_id: str, **fields: Any) -> dict[str, Any]:
        return {
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "auditID": audit_id,
            "stage": "ResponseComplete",
            "sourceIPs": ["10.0.0.7"],
            "userAgent": "kubelet/v1.30.0",
            "responseStatus": {"metadata": {}, "code": 201},
            "annotations": {"authorization.k8s.io/decision": "allow"},
            **fields,
        }

    issue = event(
        "tok-1",
        verb="create",
        requestURI="/api/v1/namespaces/prod/serviceaccounts/report-bot/token",
        user={
            "username": "system:node:node-1",
            "groups": ["system:nodes"],
            "extra": {"authentication.kubernetes.io/credential-id": ["X509SHA256=3f1c9a"]},
        },
        objectRef={
            "resource": "serviceaccounts",
            "namespace": "prod",
            "name": "report-bot",
            "subresource": "token",
            "apiVersion": "v1",
        },
        annotations={
            "authorization.k8s.io/decision": "allow",
            "authentication.kubernetes.io/issued-credential-id": jti,
        },
        requestReceivedTimestamp=at("09:00:00"),
        stageTimestamp=at("09:00:00.002"),
    )
    use = event(
        "use-1",
        verb="delete",
        requestURI="/apis/apps/v1/namespaces/prod/deployments/web",
        user={
            "username": "system:serviceaccount:prod:report-bot",
            "extra": {"authentication.kubernetes.io/credential-id": [jti]},
        },
        objectRef={"resource": "deployments", "namespace": "prod", "name": "web", "apiGroup": "apps"},
        responseStatus={"metadata": {}, "code": 200},
        requestReceivedTimestamp=at("09:05:00"),
        stageTimestamp=at("09:05:00.010"),
    )
    return {"audit.log": [issue, use]}


def _gcp_principal_world() -> dict[str, list[Any]]:
    """An orchestrator service account, signed in without a user-managed key, mints a token for the
    agent's service account, which the agent uses."""
    orchestrator = "orchestrator@nhi-prod.iam.gserviceaccount.com"
    agent = "report-bot@nhi-prod.iam.gserviceaccount.com"

    def entry(insert_id: str, time: str, payload: dict[str, Any], **fields: Any) -> dict[str, Any]:
        return {
            "insertId": insert_id,
            "timestamp": at(time),
            "logName": "projects/nhi-prod/logs/cloudaudit.googleapis.com%2Factivity",
            "resource": {"type": "project", "labels": {"project_id": "nhi-prod"}},
            "protoPayload": {"@type": "type.googleapis.com/google.cloud.audit.AuditLog", **payload},
            **fields,
        }

    mint = entry(
        "use-0",
        "09:00:00",
        {
            "serviceName": "iamcredentials.googleapis.com",
            "methodName": "GenerateAccessToken",
            "resourceName": "projects/-/serviceAccounts/1234567890",
            "authenticationInfo": {"principalEmail": orchestrator},
            "request": {"name": f"projects/-/serviceAccounts/{agent}", "lifetime": "900s"},
            "status": {},
        },
        resource={"type": "service_account", "labels": {"project_id": "nhi-prod", "email_id": agent}},
    )
    use = entry(
        "use-1",
        "09:05:00",
        {
            "serviceName": "storage.googleapis.com",
            "methodName": "storage.objects.create",
            "resourceName": "projects/_/buckets/reports-prod/objects/2026-11.csv",
            "authenticationInfo": {
                "principalEmail": agent,
                "serviceAccountDelegationInfo": [{"firstPartyPrincipal": {"principalEmail": orchestrator}}],
            },
        },
    )
    return {"gcp_audit.json": [mint, use]}


@pytest.mark.parametrize(
    ("world", "parent", "parent_type"),
    [
        (_kubelet_world, "X509SHA256=3f1c9a", "x509_client_cert"),
        (_gcp_principal_world, "gcp:orchestrator@nhi-prod.iam.gserviceaccount.com", "gcp_principal"),
    ],
    ids=["k8s-kubelet-certificate", "gcp-principal"],
)
def test_a_parent_of_another_kind_is_not_a_broken_chain(
    tmp_path: Path, world: Any, parent: str, parent_type: str
) -> None:
    """Before the fix, a parent known only as the caller of an issuance took the issued credential's
    type (a kubelet's certificate became a ``k8s_bound_sa_token``), so it counted as a temporary
    credential without issuance and broke the chain (as Entra app secrets and Keycloak act
    subjects did in the tests above)."""
    con, policy = build(tmp_path, world())
    row = chain(con, "use-1")
    assert row["issuance_event_id"] in ("tok-1", "use-0") and row["parent_credential_id"] == parent
    assert con.execute(
        "SELECT credential_type, temporary FROM credentials WHERE credential_id = ?", [parent]
    ).fetchone() == (parent_type, False)
    assert row["broken_credential_id"] is None
    assert "broken-delegation-chain" not in findings(con, policy, "use-1")


# --------------------------------------------------------------------------------------------------
# GitHub Actions run -> OIDC -> CloudTrail AssumeRoleWithWebIdentity -> AWS calls (issue 9)
# --------------------------------------------------------------------------------------------------

GH_POLICY = """
[identities]
humans = ["alice", "bob", "carol"]
"""
GH_REPO = "acme/reports"
GH_ROLE = "gha-deploy"
GH_KEY = "ASIAGHADEPLOY0000001"
GH_PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
GH_CALL = "66666666-0000-4000-8000-000000000002"


def gh_run(run_id: int = 7001, attempt: int = 1, triggered_by: str = "bob") -> dict[str, Any]:
    return {
        "id": run_id,
        "run_attempt": attempt,
        "path": ".github/workflows/deploy.yml",
        "display_title": "Deploy reports",
        "event": "workflow_dispatch",
        "head_branch": "main",
        "status": "completed",
        "conclusion": "success",
        "run_started_at": "2026-11-02T09:00:00Z",
        "updated_at": "2026-11-02T09:20:00Z",
        "actor": {"login": triggered_by},
        "triggering_actor": {"login": triggered_by},
    }


def gh_workflow_run(run_id: int = 7001, attempt: int = 1) -> dict[str, Any]:
    return {
        "action": "completed",
        "workflow_run": gh_run(run_id, attempt),
        "repository": {"full_name": GH_REPO},
        "workflow": {"path": ".github/workflows/deploy.yml"},
        "sender": {"login": "bob"},
    }


def gh_job(run_id: int = 7001, job_id: int = 8001, environment: str = "prod", attempt: int = 1) -> dict[str, Any]:
    """workflow_job completed, with the deployment (environment) it ran for."""
    return {
        "action": "completed",
        "workflow_job": {
            "id": job_id,
            "run_id": run_id,
            "run_attempt": attempt,
            "name": "deploy",
            "workflow_name": "Deploy",
            "head_branch": "main",
            "status": "completed",
            "conclusion": "success",
            "created_at": "2026-11-02T09:00:30Z",
            "started_at": "2026-11-02T09:01:00Z",
            "completed_at": "2026-11-02T09:15:00Z",
        },
        "deployment": {"id": 9001, "environment": environment, "task": "deploy", "creator": {"login": "bob"}},
        "repository": {"full_name": GH_REPO},
        "sender": {"login": "bob"},
    }


def gh_review(action: str, approver: str = "alice", environment: str = "prod") -> dict[str, Any]:
    """deployment_review as documented: on approved/rejected the payload names the approver, not the time."""
    body: dict[str, Any] = {
        "action": action,
        "environment": environment,
        "since": "2026-11-02T08:58:00Z",
        "workflow_run": gh_run(),
        "repository": {"full_name": GH_REPO},
        "organization": {"login": "acme"},
        "reviewers": [{"type": "User", "reviewer": {"login": "alice"}}],
        "sender": {"login": approver},
    }
    if action == "requested":
        body.update(requestor={"login": "bob"}, workflow_job_run={"id": 8001, "environment": environment})
    else:
        body.update(approver={"login": approver}, comment="ok", workflow_job_runs=[{"id": 8001}])
    return body


def gh_audit_decision(
    verb: str, hms: str, actor: str = "alice", run_id: int = 7001, environment: str = "prod"
) -> dict[str, Any]:
    """workflows.approve_workflow_job / reject_workflow_job, streamed audit-log shape."""
    return {
        "@timestamp": ms(hms),
        "created_at": ms(hms),
        "_document_id": f"doc-{verb}-{hms}",
        "action": f"workflows.{verb}_workflow_job",
        "actor": actor,
        "actor_is_bot": False,
        "org": "acme",
        "repo": GH_REPO,
        "workflow_run_id": run_id,
        "run_attempt": 1,
        "environment_name": environment,
    }


def ct_web_identity(
    event_id: str,
    hms: str,
    sub: str,
    *,
    key: str = GH_KEY,
    session: str = "GitHubActions",
    user_agent: str = "aws-sdk-nodejs/2.1112.0 configure-aws-credentials-for-github-actions",
) -> dict:
    """AssumeRoleWithWebIdentity as in the cloud-snitch sample (../shared/samples/github): test_correlate's
    AssumeRole record with the web identity caller (no access key) and the OIDC response fields."""
    record = ct_assume_role(
        event_id, at(hms), caller=ORCHESTRATOR, caller_key=ORCHESTRATOR_KEY, role=GH_ROLE, session=session, new_key=key
    )
    record["userIdentity"] = {
        "type": "WebIdentityUser",
        "principalId": f"{GH_PROVIDER}:sts.amazonaws.com:{sub}",
        "userName": sub,
        "identityProvider": GH_PROVIDER,
    }
    record["requestParameters"]["durationSeconds"] = 3600
    record["responseElements"].update(
        subjectFromWebIdentityToken=sub, provider=GH_PROVIDER, audience="sts.amazonaws.com"
    )
    record["responseElements"]["credentials"]["sessionToken"] = ""
    record.update(eventName="AssumeRoleWithWebIdentity", sourceIPAddress="52.154.133.36", userAgent=user_agent)
    return record


def gh_world(
    tmp_path: Path, github: list[dict[str, Any]], issuance: dict, call_at: str = "09:06:00"
) -> tuple[duckdb.DuckDBPyConnection, Policy]:
    session_arn = issuance["responseElements"]["assumedRoleUser"]["arn"]
    key = issuance["responseElements"]["credentials"]["accessKeyId"]
    call = ct_call(GH_CALL, at(call_at), actor=session_arn, key=key, action="s3:PutObject")
    return build(tmp_path, {"github.ndjson": github, "cloudtrail.ndjson": [issuance, call]}, GH_POLICY)


PROD_SUB = f"repo:{GH_REPO}:environment:prod"


def test_github_run_joins_its_oidc_issuance_by_environment_and_job_window(tmp_path: Path) -> None:
    con, policy = gh_world(
        tmp_path,
        [gh_workflow_run(), gh_job(), gh_review("requested"), gh_audit_decision("approve", "08:59:00")],
        ct_web_identity("66666666-0000-4000-8000-000000000001", "09:05:00", PROD_SUB),
    )
    assert sources(con)["github.ndjson"] == "github_actions"
    row = chain(con, GH_CALL)
    assert (row["task_id"], row["task_link"], row["task_known_from"]) == (
        "github-run:7001:1",
        "github_oidc_environment_window",
        "github_actions",
    )
    assert (row["agent_id"], row["task_requested_by"]) == (f"{GH_REPO}:.github/workflows/deploy.yml", "bob")
    assert (row["approver"], row["decision"], row["approval_environment"]) == ("alice", "approved", "prod")
    assert row["verdict"] == "approved"
    found = links(con, GH_CALL)
    assert found["task"].evidence.source == "github_actions"
    assert found["approval"].evidence.event_id == "doc-approve-08:59:00"
    assert findings(con, policy, GH_CALL) == set()


def test_the_environment_window_gives_no_run_when_two_runs_could_have_issued(tmp_path: Path) -> None:
    """Two runs deploying to prod at once: the window cannot say which one assumed the role; the user
    agent's run id (configure-aws-credentials >= v6.2.0) can."""
    github = [
        gh_workflow_run(),
        gh_job(),
        gh_workflow_run(7002),
        gh_job(7002, 8002),
        gh_audit_decision("approve", "08:59:00"),
        gh_audit_decision("approve", "08:59:30", run_id=7002),
    ]
    con, policy = gh_world(
        tmp_path, github, ct_web_identity("66666666-0000-4000-8000-000000000001", "09:05:00", PROD_SUB)
    )
    assert chain(con, GH_CALL)["task_id"] is None
    assert "credential-without-task" in findings(con, policy, GH_CALL)
    ua = "aws-sdk-js/3.0 md/gha-run-id#7002 md/gha-run-attempt#1 configure-aws-credentials-for-github-actions"
    con, _ = gh_world(
        tmp_path, github, ct_web_identity("66666666-0000-4000-8000-000000000001", "09:05:00", PROD_SUB, user_agent=ua)
    )
    row = chain(con, GH_CALL)
    assert (row["task_id"], row["task_link"], row["verdict"]) == (
        "github-run:7002:1",
        "github_oidc_user_agent",
        "approved",
    )


def test_an_issuance_outside_every_job_window_has_no_run(tmp_path: Path) -> None:
    con, _ = gh_world(
        tmp_path,
        [gh_workflow_run(), gh_job(), gh_audit_decision("approve", "08:59:00")],
        ct_web_identity("66666666-0000-4000-8000-000000000001", "09:30:00", PROD_SUB),
        call_at="09:31:00",
    )
    assert chain(con, GH_CALL)["task_id"] is None


def test_a_webhook_approval_without_decision_time_is_unknown_with_the_reason(tmp_path: Path) -> None:
    con, policy = gh_world(
        tmp_path,
        [gh_workflow_run(), gh_job(), gh_review("approved")],
        ct_web_identity("66666666-0000-4000-8000-000000000001", "09:05:00", PROD_SUB),
    )
    row = chain(con, GH_CALL)
    assert (row["approval_status"], row["decided_at"], row["verdict"]) == ("found", None, "unknown")
    approval_link = links(con, GH_CALL)["approval"]
    assert approval_link.label.startswith("approved by alice, decision time unknown (not in the evidence")
    assert approval_link.details["decision_time_unknown"].startswith("not in the evidence")
    assert not {"approval-after-action", "missing-approval", "approval-expired"} & findings(con, policy, GH_CALL)


def test_a_later_rejection_withdraws_the_approval(tmp_path: Path) -> None:
    github = [
        gh_workflow_run(),
        gh_job(),
        gh_audit_decision("approve", "08:59:00"),
        gh_audit_decision("reject", "09:02:00", actor="carol"),
    ]
    con, policy = gh_world(
        tmp_path, github, ct_web_identity("66666666-0000-4000-8000-000000000001", "09:05:00", PROD_SUB)
    )
    row = chain(con, GH_CALL)
    assert (row["effective_decision"], row["verdict"]) == ("denied", "unapproved")
    assert "approval-denied" in findings(con, policy, GH_CALL)


def test_an_approval_for_another_environment_does_not_cover_the_prod_credential(tmp_path: Path) -> None:
    """The run's staging deployment was approved; its prod OIDC credential was not."""
    github = [
        gh_workflow_run(),
        gh_job(),
        gh_job(job_id=8002, environment="staging"),
        gh_audit_decision("approve", "08:59:00", environment="staging"),
    ]
    con, policy = gh_world(
        tmp_path, github, ct_web_identity("66666666-0000-4000-8000-000000000001", "09:05:00", PROD_SUB)
    )
    row = chain(con, GH_CALL)
    assert (row["task_id"], row["task_environment"], row["approval_records"]) == ("github-run:7001:1", "prod", 0)
    assert row["verdict"] == "unapproved"
    assert "missing-approval" in findings(con, policy, GH_CALL)


def test_the_reviewer_who_triggered_the_run_self_approved(tmp_path: Path) -> None:
    """prevent_self_review off: bob triggered the run and approved its deployment himself."""
    con, policy = gh_world(
        tmp_path,
        [gh_workflow_run(), gh_job(), gh_audit_decision("approve", "08:59:00", actor="bob")],
        ct_web_identity("66666666-0000-4000-8000-000000000001", "09:05:00", PROD_SUB),
    )
    assert chain(con, GH_CALL)["self_approved"]
    assert "self-approval" in findings(con, policy, GH_CALL)


def test_a_denial_that_decides_the_verdict_is_traced_with_its_record(tmp_path: Path) -> None:
    """trace shows the denial itself, with its evidence: the one that withdrew an approval, and the
    only record of a task that was denied outright."""
    github = [
        gh_workflow_run(),
        gh_job(),
        gh_audit_decision("approve", "08:59:00"),
        gh_audit_decision("reject", "09:02:00", actor="carol"),
    ]
    con, _ = gh_world(tmp_path, github, ct_web_identity("66666666-0000-4000-8000-000000000001", "09:05:00", PROD_SUB))
    found = links(con, GH_CALL)
    assert found["denial"].evidence.event_id == "doc-reject-09:02:00"
    assert found["denial"].evidence.line == 4
    assert found["denial"].label == "denied by carol at 2026-11-02T09:02:00Z (before the action)"
    assert found["denial"].details["withdrew_approval"] is True
    con, _ = gh_world(
        tmp_path,
        [gh_workflow_run(), gh_job(), gh_audit_decision("reject", "08:59:00", actor="carol")],
        ct_web_identity("66666666-0000-4000-8000-000000000001", "09:05:00", PROD_SUB),
    )
    found = links(con, GH_CALL)
    assert found["approval"].label == "1 approval record(s), none approved: denied by carol at 2026-11-02T08:59:00Z"
    assert (found["denial"].evidence.event_id, found["denial"].details["withdrew_approval"]) == (
        "doc-reject-08:59:00",
        False,
    )
    # an approved chain has no denial link
    con, _ = gh_world(
        tmp_path,
        [gh_workflow_run(), gh_job(), gh_audit_decision("approve", "08:59:00")],
        ct_web_identity("66666666-0000-4000-8000-000000000001", "09:05:00", PROD_SUB),
    )
    assert "denial" not in links(con, GH_CALL)


def test_a_protected_environment_token_without_its_review_record_is_implied(tmp_path: Path) -> None:
    """The OIDC subject names prod, whose required reviewers the evidence shows (the review request),
    but no decision is loaded: approval implied, record missing (unknown), not missing-approval."""
    con, policy = gh_world(
        tmp_path,
        [gh_workflow_run(), gh_job(), gh_review("requested")],
        ct_web_identity("66666666-0000-4000-8000-000000000001", "09:05:00", PROD_SUB),
    )
    row = chain(con, GH_CALL)
    assert (row["task_id"], row["approval_records"], row["verdict"]) == ("github-run:7001:1", 0, "unknown")
    assert row["approval_implied_by"].startswith(f"the OIDC token's subject {PROD_SUB} names protected environment")
    assert "missing-approval" not in findings(con, policy, GH_CALL)
    approval_link = links(con, GH_CALL)["approval"]
    assert approval_link.label.startswith("approval implied, record missing: the OIDC token's subject")
    assert approval_link.details["approval_implied_by"] == row["approval_implied_by"]
    # a branch token proves no gate: the same run without a decision is missing-approval
    branch = ct_web_identity("66666666-0000-4000-8000-000000000001", "09:05:00", f"repo:{GH_REPO}:ref:refs/heads/main")
    con, policy = gh_world(tmp_path, [gh_workflow_run(), gh_job(), gh_review("requested")], branch)
    row = chain(con, GH_CALL)
    assert (row["task_id"], row["approval_implied_by"], row["verdict"]) == ("github-run:7001:1", None, "unapproved")
    assert "missing-approval" in findings(con, policy, GH_CALL)


def test_policy_protected_roles_make_an_environment_protected_and_catch_a_bypass(tmp_path: Path) -> None:
    policy_text = GH_POLICY + f'''
[approval]
protected_roles = {{ "arn:aws:iam::*:role/{GH_ROLE}" = "prod" }}
'''
    issuance = ct_web_identity("66666666-0000-4000-8000-000000000001", "09:05:00", PROD_SUB)
    session_arn = issuance["responseElements"]["assumedRoleUser"]["arn"]
    call = ct_call(GH_CALL, at("09:06:00"), actor=session_arn, key=GH_KEY)
    world = {"github.ndjson": [gh_workflow_run(), gh_job()], "cloudtrail.ndjson": [issuance, call]}
    con, policy = build(tmp_path, world, policy_text)
    row = chain(con, GH_CALL)
    assert (row["verdict"], row["protected_environment"]) == ("unknown", None)
    assert row["approval_implied_by"].endswith("GitHub issued it only after the environment's protection rules passed")
    # a job of staging assumed the prod-only role
    staging = ct_web_identity("66666666-0000-4000-8000-000000000001", "09:05:00", f"repo:{GH_REPO}:environment:staging")
    world = {"github.ndjson": [gh_workflow_run(), gh_job(environment="staging")], "cloudtrail.ndjson": [staging, call]}
    con, policy = build(tmp_path, world, policy_text)
    row = chain(con, GH_CALL)
    assert (row["protected_environment"], row["protected_role"], row["verdict"]) == (
        "prod",
        f"arn:aws:iam::{ACCOUNT}:role/{GH_ROLE}",
        "unapproved",
    )
    assert "unprotected-role-path" in findings(con, policy, GH_CALL)


def test_aliases_make_a_self_approval_under_another_name_visible(tmp_path: Path) -> None:
    """bob triggered the run (GitHub login) and approved it as bob@example.com: only the alias says
    these are one person."""
    policy_text = """
[identities]
humans = ["alice", "bob", "carol", "*@example.com"]
"""
    aliased = policy_text + """
[identities.aliases]
bob = ["Bob@Example.com", "Bob.Smith"]
"""
    issuance = ct_web_identity("66666666-0000-4000-8000-000000000001", "09:05:00", PROD_SUB)
    session_arn = issuance["responseElements"]["assumedRoleUser"]["arn"]
    call = ct_call(GH_CALL, at("09:06:00"), actor=session_arn, key=GH_KEY)
    github = [gh_workflow_run(), gh_job(), gh_audit_decision("approve", "08:59:00", actor="bob@example.com")]
    world = {"github.ndjson": github, "cloudtrail.ndjson": [issuance, call]}
    con, policy = build(tmp_path, world, policy_text)
    assert (chain(con, GH_CALL)["self_approved"], chain(con, GH_CALL)["verdict"]) == (False, "approved")
    con, policy = build(tmp_path, world, aliased)
    row = chain(con, GH_CALL)
    assert (row["approver"], row["approver_as_logged"], row["task_requested_by"]) == ("bob", "bob@example.com", "bob")
    assert (row["self_approved"], row["approver_is_human"], row["verdict"]) == (True, True, "unapproved")
    assert "self-approval" in findings(con, policy, GH_CALL)
    assert links(con, GH_CALL)["approval"].label.startswith("approved by bob (logged as bob@example.com) at")


# --------------------------------------------------------------------------------------------------
# Teleport access request -> review -> AWS app session -> CloudTrail AssumeRole -> AWS calls (issue 9)
# --------------------------------------------------------------------------------------------------

TP_REQUEST = "7c1e2d3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
TP_BOT = "report-bot"  # a Machine ID bot: the non-human identity the request is for
TP_ROLE = "prod-reports-writer"
TP_KEY = "ASIATELEPORTAPP00001"
TP_CALL = "77777777-0000-4000-8000-000000000002"
TP_POLICY = """
[identities]
humans = ["alice", "carol", "bob"]
"""


def tp(event_: str, code: str, uid: str, hms: str, **extra: Any) -> dict[str, Any]:
    return {"event": event_, "code": code, "uid": uid, "time": at(hms), "cluster_name": "acme", **extra}


def tp_request(*reviews: tuple[str, str, str], access_expiry: str = "10:00:00") -> list[dict[str, Any]]:
    """access_request.create by the bot, then each (reviewer, time, resulting state) review."""
    records = [
        tp(
            "access_request.create",
            "T5000I",
            "tp-1",
            "08:55:00",
            id=TP_REQUEST,
            user=TP_BOT,
            roles=["reports-writer"],
            state="PENDING",
            reason="Publish the November report",
            access_expiry=at(access_expiry),
        )
    ]
    for n, (reviewer, hms, state) in enumerate(reviews):
        records.append(
            tp(
                "access_request.review",
                "T5002I",
                f"tp-r{n}",
                hms,
                id=TP_REQUEST,
                reviewer=reviewer,
                proposed_state="APPROVED",
                state=state,
                access_expiry=at(access_expiry),
            )
        )
    return records


def tp_world(
    tmp_path: Path, teleport_records: list[dict[str, Any]], call_at: str = "09:06:00"
) -> tuple[duckdb.DuckDBPyConnection, Policy]:
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/{TP_ROLE}"
    app = tp(
        "app.session.start",
        "T2007I",
        "tp-app",
        "09:04:00",
        user=TP_BOT,
        sid="sess-1",
        app_name="aws-console",
        aws_role_arn=role_arn,
        access_requests=[TP_REQUEST],
    )
    # Teleport's app service (an IAM user here, so that the chain is rooted) assumes the role for the
    # bot, with the Teleport user as the session name.
    issue = ct_assume_role(
        "77777777-0000-4000-8000-000000000001",
        at("09:04:01"),
        caller=ORCHESTRATOR,
        caller_key=ORCHESTRATOR_KEY,
        role=TP_ROLE,
        session=TP_BOT,
        new_key=TP_KEY,
    )
    call = ct_call(TP_CALL, at(call_at), actor=f"arn:aws:sts::{ACCOUNT}:assumed-role/{TP_ROLE}/{TP_BOT}", key=TP_KEY)
    return build(tmp_path, {"teleport.log": [*teleport_records, app], "cloudtrail.ndjson": [issue, call]}, TP_POLICY)


def test_teleport_app_session_joins_the_assume_role_of_its_role_and_user(tmp_path: Path) -> None:
    con, policy = tp_world(tmp_path, tp_request(("alice", "09:00:00", "APPROVED")))
    assert sources(con)["teleport.log"] == "teleport"
    row = chain(con, TP_CALL)
    assert (row["task_id"], row["task_link"], row["task_known_from"]) == (
        f"teleport-request:{TP_REQUEST}",
        "teleport_app_session",
        "teleport",
    )
    assert (row["task_requested_by"], row["approver"], row["decision"]) == (TP_BOT, "alice", "approved")
    assert row["verdict"] == "approved"
    assert findings(con, policy, TP_CALL) == set()
    # the app session itself carries the request (access_requests) and is audited with that task
    assert chain(con, "tp-app")["task_id"] == f"teleport-request:{TP_REQUEST}"


def test_teleport_threshold_of_two_with_one_review_does_not_approve(tmp_path: Path) -> None:
    con, policy = tp_world(tmp_path, tp_request(("alice", "09:00:00", "PENDING")))
    row = chain(con, TP_CALL)
    assert (row["approval_records"], row["pending_stages"], row["approved_stages"]) == (0, 1, 1)
    assert (row["approval_id"], row["verdict"]) == (None, "unapproved")
    assert "missing-approval" in findings(con, policy, TP_CALL)
    label = links(con, TP_CALL)["approval"].label
    assert label == (
        "no decision: 1 review(s) recorded while the request stayed pending (approved by alice): "
        "its approval threshold was not met"
    )
    # the second review meets the threshold: Teleport logs the request APPROVED
    con, policy = tp_world(tmp_path, tp_request(("alice", "09:00:00", "PENDING"), ("carol", "09:01:00", "APPROVED")))
    row = chain(con, TP_CALL)
    assert (row["approver"], row["verdict"]) == ("carol", "approved")
    assert "missing-approval" not in findings(con, policy, TP_CALL)


def test_teleport_call_after_the_request_expired(tmp_path: Path) -> None:
    con, policy = tp_world(
        tmp_path, tp_request(("alice", "09:00:00", "APPROVED"), access_expiry="09:30:00"), call_at="09:45:00"
    )
    row = chain(con, TP_CALL)
    assert (row["task_id"], row["approval_expired"], row["verdict"]) == (
        f"teleport-request:{TP_REQUEST}",
        True,
        "unapproved",
    )
    assert {"approval-expired", "credential-outlived-task"} <= findings(con, policy, TP_CALL)


def test_a_teleport_session_carrying_a_request_with_no_review_loaded_is_implied(tmp_path: Path) -> None:
    con, policy = tp_world(tmp_path, tp_request())
    row = chain(con, TP_CALL)
    assert (row["task_id"], row["approval_records"], row["pending_stages"]) == (f"teleport-request:{TP_REQUEST}", 0, 0)
    assert row["approval_implied_by"] == (
        f"the Teleport app session carries access request {TP_REQUEST}, which Teleport honours only once approved"
    )
    assert row["verdict"] == "unknown"
    assert "missing-approval" not in findings(con, policy, TP_CALL)


# --------------------------------------------------------------------------------------------------
# AWS Systems Manager just-in-time node access, and IAM Identity Center account assignments (issue 9)
# Synthetic CloudTrail records in the documented API shapes (StartAccessRequest, SendAutomationSignal,
# GetAccessToken: https://docs.aws.amazon.com/systems-manager/latest/APIReference/), camelCase as
# CloudTrail writes request and response fields.
# --------------------------------------------------------------------------------------------------

JIT_REQUEST = "oi-0a1b2c3d4e5f"
JIT_EXECUTION = "9231944f-61c6-40be-8bce-8ee2b0000001"
JIT_RUNNER = f"arn:aws:iam::{ACCOUNT}:user/ops-runner"
JIT_RUNNER_KEY = "AKIAOPSRUNNER0000001"
JIT_KEY = "ASIAJITNODEACCESS001"
JIT_APPROVER = f"arn:aws:iam::{ACCOUNT}:user/alice@example.com"
JIT_CALL = "88888888-0000-4000-8000-000000000005"
JIT_POLICY = """
[identities]
humans = ["arn:aws:iam::*:user/*@*"]
[risk]
high = ["ssm:StartSession"]
"""


def ssm_record(event_id: str, hms: str, name: str, actor: str, key: str | None, request: dict[str, Any],
               response: dict[str, Any] | None = None) -> dict[str, Any]:
    record = ct_call(event_id, at(hms), actor=JIT_RUNNER if key is None else actor, key=key or "",
                     action=f"ssm:{name}", resource=None)
    record.update(requestParameters=request, responseElements=response)
    if key is None:
        record["userIdentity"] = {"type": "AWSService", "invokedBy": "ssm.amazonaws.com"}
    return record


def jit_world(tmp_path: Path, *, signal: str | None = "Approve", automation: bool = True,
              status: str = "Approved", reads: tuple[str, ...] = (),
              extra: list[dict[str, Any]] | None = None) -> tuple[duckdb.DuckDBPyConnection, Policy]:
    """``reads``: the OpsItems (access request ids) the approver reads before signalling, as AWS's
    approval procedure does (GetOpsItem)."""
    records = [
        *(extra or []),
        ssm_record("88888888-0000-4000-8000-000000000001", "09:00:00", "StartAccessRequest", JIT_RUNNER,
                   JIT_RUNNER_KEY, {"reason": "Patch web-01 (CHG0051)",
                                    "targets": [{"key": "InstanceIds", "values": ["i-0123456789abcdef0"]}]},
                   {"accessRequestId": JIT_REQUEST}),
    ]
    if automation:  # the request's approval workflow (OperationalData /aws/accessrequest names it)
        records.append(ssm_record("88888888-0000-4000-8000-000000000002", "09:00:01", "StartAutomationExecution",
                                  "ssm.amazonaws.com", None,
                                  {"documentName": "AWS-JITNodeAccessApproval",
                                   "parameters": {"AccessRequestId": [JIT_REQUEST]}},
                                  {"automationExecutionId": JIT_EXECUTION}))
    for i, ops_item in enumerate(reads):
        records.append(ssm_record(f"88888888-0000-4000-8000-00000000010{i}", f"09:01:3{i}", "GetOpsItem",
                                  JIT_APPROVER, "AKIAALICE00000000001", {"opsItemId": ops_item}))
    if signal:
        records.append(ssm_record("88888888-0000-4000-8000-000000000003", "09:02:00", "SendAutomationSignal",
                                  JIT_APPROVER, "AKIAALICE00000000001",
                                  {"automationExecutionId": JIT_EXECUTION, "signalType": signal}))
    records += [
        ssm_record("88888888-0000-4000-8000-000000000004", "09:03:00", "GetAccessToken", JIT_RUNNER, JIT_RUNNER_KEY,
                   {"accessRequestId": JIT_REQUEST},
                   {"accessRequestStatus": status,
                    "credentials": {"accessKeyId": JIT_KEY, "secretAccessKey": "HIDDEN_DUE_TO_SECURITY_REASONS",
                                    "sessionToken": "HIDDEN_DUE_TO_SECURITY_REASONS", "expirationTime": T0 + 7200}}),
        ssm_record(JIT_CALL, "09:04:00", "StartSession", JIT_RUNNER, JIT_KEY, {"target": "i-0123456789abcdef0"}),
    ]
    return build(tmp_path, {"cloudtrail.ndjson": records}, JIT_POLICY)


def test_ssm_jit_request_approval_and_token_cover_the_session(tmp_path: Path) -> None:
    con, policy = jit_world(tmp_path)
    row = chain(con, JIT_CALL)
    assert (row["task_id"], row["task_link"], row["task_known_from"]) == (
        f"ssm-access-request:{JIT_REQUEST}", "ssm_access_request_id", "ssm_jit")
    assert (row["credential_id"], row["issuance_status"], row["credential_expires_at"]) == (
        JIT_KEY, "found", datetime(2026, 11, 2, 11, 0, tzinfo=timezone.utc))
    assert (row["intent"], row["task_requested_by"]) == ("Patch web-01 (CHG0051)", JIT_RUNNER)
    assert (row["approver"], row["decision"], row["verdict"]) == (JIT_APPROVER, "approved", "approved")
    assert links(con, JIT_CALL)["approval"].evidence.line == 3
    assert findings(con, policy, JIT_CALL) == set()


def test_ssm_jit_denied_request(tmp_path: Path) -> None:
    con, policy = jit_world(tmp_path, signal="Deny", status="Rejected")
    row = chain(con, JIT_CALL)
    assert (row["denied_records"], row["denied_by"], row["verdict"]) == (1, JIT_APPROVER, "unapproved")
    assert "approval-denied" in findings(con, policy, JIT_CALL)


def test_ssm_jit_token_issued_approved_without_the_signal_record_is_implied(tmp_path: Path) -> None:
    """The signal names only its Automation execution: without the record tying the execution to the
    request, the decision cannot be placed, but the token's Approved status proves the gate."""
    con, policy = jit_world(tmp_path, automation=False)
    row = chain(con, JIT_CALL)
    assert (row["approval_records"], row["verdict"]) == (0, "unknown")
    assert row["approval_implied_by"] == (
        f"SSM just-in-time credentials of access request {JIT_REQUEST} were issued with the request Approved "
        "(GetAccessToken)"
    )
    assert "missing-approval" not in findings(con, policy, JIT_CALL)


def test_ssm_jit_signal_joins_the_request_its_approver_read_before_signalling(tmp_path: Path) -> None:
    """No record names both the execution and the request; the approver's GetOpsItem of the
    request (the documented approval procedure) just before the signal ties them."""
    con, policy = jit_world(tmp_path, automation=False, reads=(JIT_REQUEST,))
    row = chain(con, JIT_CALL)
    assert (row["approver"], row["decision"], row["verdict"]) == (JIT_APPROVER, "approved", "approved")
    assert row["approval_implied_by"] is None
    assert findings(con, policy, JIT_CALL) == set()


def test_ssm_jit_signal_after_reading_two_access_requests_has_no_task(tmp_path: Path) -> None:
    """An approver who read two access requests before signalling: either could be the one. An
    OpsItem that no access request record names is not one (any OpsItem has an oi- id)."""
    other = "oi-0f0f0f0f0f0f"
    con, _ = jit_world(tmp_path, automation=False, reads=(JIT_REQUEST, other))
    assert rows(con, "SELECT task_id FROM approvals") == [{"task_id": f"ssm-access-request:{JIT_REQUEST}"}]
    other_request = ssm_record("88888888-0000-4000-8000-000000000201", "08:50:00", "StartAccessRequest", JIT_RUNNER,
                               JIT_RUNNER_KEY, {"reason": "other"}, {"accessRequestId": other})
    con, _ = jit_world(tmp_path, automation=False, reads=(JIT_REQUEST, other), extra=[other_request])
    assert rows(con, "SELECT task_id FROM approvals") == [{"task_id": None}]


def test_identity_center_account_assignment_is_a_grant_until_deleted(tmp_path: Path) -> None:
    permission_set = "arn:aws:sso:::permissionSet/ssoins-7223a0a1b2c3d4e5/ps-0a1b2c3d4e5f6a7b"
    assignment = {"instanceArn": "arn:aws:sso:::instance/ssoins-7223a0a1b2c3d4e5", "targetId": ACCOUNT,
                  "targetType": "AWS_ACCOUNT", "permissionSetArn": permission_set, "principalType": "USER",
                  "principalId": "94482488-3041-7026-18f3-be45837cd0e4"}
    records = []
    for n, (name, hms) in enumerate((("CreateAccountAssignment", "08:00:00"), ("DeleteAccountAssignment", "12:00:00"))):
        record = ct_call(f"99999999-0000-4000-8000-00000000000{n}", at(hms), actor=ORCHESTRATOR,
                         key=ORCHESTRATOR_KEY, action=f"sso:{name}", resource=None)
        record.update(requestParameters=assignment,
                      responseElements={"accountAssignmentCreationStatus": {"status": "IN_PROGRESS"}})
        records.append(record)
    policy_text = """
[identities.aliases]
"alice@example.com" = ["94482488-3041-7026-18f3-be45837cd0e4"]
"""
    con, _ = build(tmp_path, {"cloudtrail.ndjson": records}, policy_text)
    (grant,) = rows(con, "SELECT * FROM grants")
    assert (grant["approver"], grant["role"]) == ("alice@example.com", f"aws-sso:{permission_set}@{ACCOUNT}")
    assert (grant["valid_from"], grant["valid_to"]) == (
        datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc), datetime(2026, 11, 2, 12, 0, tzinfo=timezone.utc))
    # the assignment itself stays an audited action of the orchestrator
    assert chain(con, "99999999-0000-4000-8000-000000000000")["action"] == "sso:CreateAccountAssignment"


# --------------------------------------------------------------------------------------------------
# The sample world's GitHub and Teleport chains trace end to end (sample_logs/README.md, chains 15, 16)
# --------------------------------------------------------------------------------------------------

SAMPLE_WORLD = Path(__file__).resolve().parents[1] / "sample_logs"


@pytest.fixture(scope="module")
def sample_world() -> duckdb.DuckDBPyConnection:
    from nhiaudit import correlate, ingest, store
    from nhiaudit.policy import load_policy

    con = store.connect(":memory:")
    result = ingest.ingest(con, [SAMPLE_WORLD])
    assert not result.unrecognized
    correlate.correlate(con, load_policy(SAMPLE_WORLD / "nhiaudit.toml"))
    return con


@pytest.mark.parametrize(
    ("action_id", "folder", "task_evidence", "approval_evidence", "authority"),
    [
        (
            "cloudtrail:e9000000-0000-4000-8000-000000160003",
            "github",
            "github/",
            "github/audit-log.ndjson",
            "github:example-corp/reports-site:environment:prod:reviewer",
        ),
        (
            "cloudtrail:e9000000-0000-4000-8000-000000180003",
            "teleport",
            "teleport/audit.log",
            "teleport/audit.log",
            "teleport:reviewer",
        ),
    ],
)
def test_sample_world_chain_traces_end_to_end_with_every_links_evidence(
    sample_world: duckdb.DuckDBPyConnection,
    action_id: str,
    folder: str,
    task_evidence: str,
    approval_evidence: str,
    authority: str,
) -> None:
    found = links(sample_world, action_id)
    for kind in ("action", "credential", "issuance", "task", "approval", "authority"):
        assert found[kind].status == "found", (kind, found[kind].label)
    evidence = {
        kind: Path(found[kind].evidence.file).relative_to(SAMPLE_WORLD).as_posix()
        for kind in ("action", "issuance", "task", "approval", "authority")
    }
    assert evidence["action"] == evidence["issuance"] == f"{folder}/aws-cloudtrail.ndjson"
    assert evidence["task"].startswith(task_evidence) and evidence["approval"] == approval_evidence
    assert found["authority"].id == authority
    assert found["verdict"] == "unapproved"


# --- scope-unverifiable actions are never approved (issue 10, DESIGN §6) -------------------------

SCOPED_POLICY = POLICY + """
[authority]
medium = []

[[agents]]
id = "web-bot"
actions = ["ec2:*"]
resources = ["arn:aws:ec2:eu-west-1:111122223333:instance/i-0aaa"]
"""


def scoped_world(agent: str, scope: dict | None) -> dict[str, list[Any]]:
    """A task of ``agent`` approved with ``scope``, whose role session reboots an instance that the
    record does not name (a CloudTrail call without resources or request parameters)."""
    return {
        "cloudtrail.ndjson": [
            ct_assume_role("5c0be000-0000-4000-8000-00000000a001", at("09:01:00"), caller=ORCHESTRATOR,
                           caller_key=ORCHESTRATOR_KEY, role=agent, session="t-scope", new_key="ASIASCOPE00000000001",
                           source_identity="t-scope"),
            ct_call("5c0be000-0000-4000-8000-00000000a002", at("09:05:00"),
                    actor=f"arn:aws:sts::{ACCOUNT}:assumed-role/{agent}/t-scope", key="ASIASCOPE00000000001",
                    action="ec2:RebootInstances", resource=None),
        ],
        "provenance.ndjson": [task("t-scope", agent=agent), approval("APR-S", "t-scope", scope=scope)],
    }


@pytest.mark.parametrize(
    ("agent", "scope", "which", "flags"),
    [
        ("ops-bot", {"actions": ["ec2:RebootInstances"], "resources": ["arn:aws:ec2:*:*:instance/i-0aaa"]},
         "approval APR-S's scope", ["approval"]),
        ("web-bot", None, "agent web-bot's standing scope", ["agent"]),
        ("web-bot", {"actions": ["ec2:*"], "resources": ["arn:aws:ec2:*:*:instance/*"]},
         "approval APR-S's scope and agent web-bot's standing scope", ["approval", "agent"]),
    ],
    ids=["approval-scope", "standing-scope", "both"],
)
def test_an_action_whose_resource_a_scope_cannot_check_is_unknown_not_approved(
    tmp_path: Path, agent: str, scope: dict | None, which: str, flags: list[str]
) -> None:
    con, policy = build(tmp_path, scoped_world(agent, scope), SCOPED_POLICY)
    row = chain(con, "5c0be000-0000-4000-8000-00000000a002")
    assert row["resource"] is None and row["approval_id"] == "APR-S"
    assert row["verdict"] == "unknown"
    assert findings(con, policy, "5c0be000-0000-4000-8000-00000000a002") == {"scope-unverifiable"}
    links = tracing.trace(con, "5c0be000-0000-4000-8000-00000000a002").action.links
    approval_link = {link.kind: link for link in links}["approval"]
    assert f"{which} restrict" in approval_link.label and approval_link.label.endswith("verdict unknown")
    assert approval_link.details["scope_unverifiable"] == flags


def test_a_scope_of_actions_only_still_approves_an_action_without_a_resource(tmp_path: Path) -> None:
    con, policy = build(tmp_path, scoped_world("ops-bot", {"actions": ["ec2:RebootInstances"]}), SCOPED_POLICY)
    row = chain(con, "5c0be000-0000-4000-8000-00000000a002")
    assert (row["verdict"], row["approval_scope_unverifiable"], row["agent_scope_unverifiable"]) == (
        "approved", False, False)
    assert "scope-unverifiable" not in findings(con, policy)


# --- MCP gateway -> OTLP agent span (issue 10) ----------------------------------------------------


def mcp_message(kind: str, rpc_id: int, hms: str, session: str, **payload: Any) -> dict[str, Any]:
    """A message line of an MCP gateway log (MCPG rpc-messages.jsonl with the gateway's auth)."""
    return {
        "timestamp": at(hms),
        "direction": "IN" if kind == "REQUEST" else "OUT",
        "type": kind,
        "server_id": "github",
        "method": "tools/call",
        "session_id": session,
        "auth": {"subject": "report-bot", "token_id": f"jti-{session}"},
        "payload": {"jsonrpc": "2.0", "id": rpc_id, **payload},
    }


def mcp_world(trace_id: str, task_span: str, tool_span: str) -> dict[str, Any]:
    arguments = {"owner": "example-corp", "repo": "reports-site", "path": "2026/11/index.html"}
    return {
        "mcp.jsonl": [
            mcp_message("REQUEST", 7, "09:05:00", "s-1", method="tools/call", params={
                "name": "create_or_update_file", "arguments": arguments,
                "_meta": {"traceparent": f"00-{trace_id}-{tool_span}-01"}}),
            mcp_message("RESPONSE", 7, "09:05:01", "s-1", result={"content": [], "isError": False}),
            # the same session later, without trace context of its own: the session's trace
            mcp_message("REQUEST", 8, "09:20:00", "s-1", method="tools/call", params={
                "name": "create_pull_request", "arguments": {"owner": "example-corp", "repo": "reports-site"}}),
        ],
        "trace.json": agent_trace(trace_id, "t-mcp", agent="report-bot", task_span=task_span, tool_span=tool_span,
                                  tool="create_or_update_file"),
        "provenance.ndjson": [approval("APR-MCP", "t-mcp", scope={
            "actions": ["mcp:github:create_or_update_file", "mcp:github:create_pull_request"],
            "resources": ["github:example-corp/reports-site*"]})],
    }


def test_an_mcp_tool_call_joins_the_agent_span_of_its_task(tmp_path: Path) -> None:
    trace_id, task_span, tool_span = "6df92f3577b34da6a3ce929d0e0e4738", "30f067aa0ba902b7", "40f067aa0ba902b7"
    con, policy = build(tmp_path, mcp_world(trace_id, task_span, tool_span))
    assert sources(con) == {"mcp.jsonl": "mcp_gateway", "trace.json": "otel", "provenance.ndjson": "provenance"}
    row = chain(con, "s-1/github/7")
    assert (row["action"], row["resource"]) == (
        "mcp:github:create_or_update_file", "github:example-corp/reports-site/2026/11/index.html")
    assert (row["credential_id"], row["credential_type"], row["credential_status"]) == ("jti-s-1", "jwt", "found")
    assert (row["task_id"], row["task_link"], row["span_event_id"], row["agent_id"]) == (
        "t-mcp", "trace", tool_span, "report-bot")
    assert (row["approval_id"], row["in_approval_scope"], row["verdict"]) == ("APR-MCP", True, "approved")
    assert findings(con, policy, "s-1/github/7") == set()
    link = links(con, "mcp_gateway:s-1/github/7")
    assert link["span"].id == f"otel:{tool_span}" and link["span"].evidence.file.endswith("trace.json")
    assert link["action"].evidence.file.endswith("mcp.jsonl") and link["action"].evidence.line == 1

    # no traceparent: the session's trace, and the task span of that trace covering the call
    later = chain(con, "s-1/github/8")
    assert (later["trace_id"], later["parent_span_id"], later["task_id"], later["span_event_id"]) == (
        trace_id, None, "t-mcp", task_span)
    assert (later["resource"], later["verdict"]) == ("github:example-corp/reports-site", "approved")


# --- Okta SSO -> CloudTrail AssumeRoleWithSAML (issue 10, DESIGN §4) -----------------------------

OKTA_USER = "alice@example.com"


def okta_sso(
    uuid: str, hms: str, *, user: str = OKTA_USER, app: str = "AWS Account Federation", label: str = "AWS Production"
) -> dict[str, Any]:
    """user.authentication.sso to the AWS app, in the shape of the shared Okta sample (with a time)."""
    return {
        "actor": {"id": "00u1alice", "type": "User", "alternateId": user, "displayName": "Alice"},
        "authenticationContext": {"externalSessionId": "102sessALICE"},
        "client": {"ipAddress": "198.51.100.7", "userAgent": {"rawUserAgent": "Mozilla/5.0"}},
        "displayMessage": "User single sign on to app",
        "eventType": "user.authentication.sso",
        "legacyEventType": "app.auth.sso",
        "outcome": {"result": "SUCCESS"},
        "published": at(hms),
        "severity": "INFO",
        "target": [
            {"alternateId": label, "detailEntry": {"signOnModeType": "SAML_2_0"}, "displayName": app,
             "id": "0oaawsprod", "type": "AppInstance"},
            {"alternateId": user, "displayName": user, "id": "0uaalice", "type": "AppUser"},
        ],
        "transaction": {"detail": {}, "id": f"tx-{uuid}", "type": "WEB"},
        "uuid": uuid,
        "version": "0",
    }


def ct_saml(event_id: str, hms: str, *, session: str = OKTA_USER, new_key: str = "ASIASAMLALICE0000001") -> dict:
    """sts:AssumeRoleWithSAML in the shape of the AWS documentation's example (awsdocs sample)."""
    return {
        "eventVersion": "1.08",
        "userIdentity": {"type": "SAMLUser", "principalId": f"Mm9rdGFQcm92aWRlcg==:{OKTA_USER}", "userName": OKTA_USER,
                         "identityProvider": "Mm9rdGFQcm92aWRlcg=="},
        "eventTime": at(hms), "eventSource": "sts.amazonaws.com", "eventName": "AssumeRoleWithSAML",
        "awsRegion": "us-east-1", "sourceIPAddress": "198.51.100.7", "userAgent": "aws-internal/3",
        "requestParameters": {"sAMLAssertionID": "_9c1b7aEXAMPLE", "roleSessionName": session, "durationSeconds": 3600,
                              "roleArn": f"arn:aws:iam::{ACCOUNT}:role/OktaOps",
                              "principalArn": f"arn:aws:iam::{ACCOUNT}:saml-provider/Okta"},
        "responseElements": {
            "subjectType": "persistent", "issuer": "http://www.okta.com/exkawsprod",
            "credentials": {"accessKeyId": new_key, "expiration": "Nov 2, 2026, 10:10:00 AM",
                            "sessionToken": "<session token>"},
            "assumedRoleUser": {"assumedRoleId": f"AROAOKTAOPS:{session}",
                                "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/OktaOps/{session}"},
            "subject": OKTA_USER, "audience": "https://signin.aws.amazon.com/saml",
        },
        "eventID": event_id, "eventType": "AwsApiCall", "recipientAccountId": ACCOUNT,
    }


def okta_world(sso: list[dict[str, Any]], saml_at: str = "09:10:03") -> dict[str, Any]:
    return {
        "okta.ndjson": sso,
        "cloudtrail.ndjson": [
            ct_saml("5a3e0000-0000-4000-8000-000000000001", saml_at),
            ct_call("5a3e0000-0000-4000-8000-000000000002", at("09:12:00"),
                    actor=f"arn:aws:sts::{ACCOUNT}:assumed-role/OktaOps/{OKTA_USER}", key="ASIASAMLALICE0000001",
                    action="iam:CreateAccessKey", resource=f"arn:aws:iam::{ACCOUNT}:user/ci"),
        ],
    }


# alice is a person; the assumed-role session acting in AWS is audited (its ARN is not on the list)
OKTA_POLICY = f"""
[identities]
humans = ["{OKTA_USER}"]
"""


def test_okta_sso_to_the_aws_app_is_the_parent_of_the_saml_assumption(tmp_path: Path) -> None:
    con, policy = build(tmp_path, okta_world([okta_sso("7b0e0000-0000-4000-8000-00000000aaaa", "09:10:00")]),
                        OKTA_POLICY)
    assert sources(con) == {"okta.ndjson": "okta", "cloudtrail.ndjson": "cloudtrail"}
    row = chain(con, "5a3e0000-0000-4000-8000-000000000002")
    saml = "okta-saml:7b0e0000-0000-4000-8000-00000000aaaa"
    assert row["chain_credential_ids"] == ["ASIASAMLALICE0000001", saml, "okta-session:102sessALICE"]
    assert (row["parent_credential_id"], row["broken_credential_id"], row["human_holder"]) == (saml, None, OKTA_USER)
    assert "broken-delegation-chain" not in findings(con, policy, "5a3e0000-0000-4000-8000-000000000002")
    parents = [link for link in tracing.trace(con, "5a3e0000-0000-4000-8000-000000000002").action.links
               if link.kind == "parent"]
    assert [(p.id, p.status) for p in parents] == [(saml, "found"), ("okta-session:102sessALICE", "found")]
    assert parents[0].evidence.file.endswith("okta.ndjson") and parents[0].evidence.source == "okta"
    assert parents[0].label.startswith(f"saml_assertion held by {OKTA_USER}, issued 2026-11-02T09:10:00Z")


@pytest.mark.parametrize(
    ("sso", "saml_at"),
    [
        ([okta_sso("7b0e0000-0000-4000-8000-00000000aaaa", "09:10:00")], "09:20:00"),  # beyond clock skew
        ([okta_sso("7b0e0000-0000-4000-8000-00000000aaaa", "09:10:00", user="bob@example.com")], "09:10:03"),
        ([okta_sso("7b0e0000-0000-4000-8000-00000000aaaa", "09:10:00", app="Salesforce", label="Salesforce")],
         "09:10:03"),
        ([okta_sso("7b0e0000-0000-4000-8000-00000000aaaa", "09:10:00"),
          okta_sso("7b0e0000-0000-4000-8000-00000000bbbb", "09:10:30")], "09:10:03"),  # two candidates
    ],
    ids=["too-late", "another-user", "another-app", "ambiguous"],
)
def test_no_okta_parent_without_one_sso_of_that_user_to_aws_in_the_window(
    tmp_path: Path, sso: list[dict[str, Any]], saml_at: str
) -> None:
    con, _ = build(tmp_path, okta_world(sso, saml_at), OKTA_POLICY)
    row = chain(con, "5a3e0000-0000-4000-8000-000000000002")
    assert (row["chain_credential_ids"], row["parent_credential_id"]) == (["ASIASAMLALICE0000001"], None)


# --------------------------------------------------------------------------------------------------
# Entra PIM activation -> Azure Activity Log actions (issue 9): the activation window and its scope
# give the member's calls the request's task and approval (70_action_tasks.sql grant_windows)
# --------------------------------------------------------------------------------------------------

PIM_TENANT = "t-contoso"
PIM_SUB = "22222222-3333-4444-5555-666666666666"
PIM_REQUEST = "b7c9e2f4-pim-0001"
PIM_MEMBER_ID = "0b7d6f4e-aaaa-4bbb-8ccc-1d2e3f4a5b6c"
PIM_MEMBER = "deploy-bot@contoso.com"  # a service account: not one of [identities] humans
PIM_APPROVER = "alice@example.com"
PIM_SCOPE = f"/subscriptions/{PIM_SUB}/resourceGroups/rg-prod"
PIM_POLICY = """
[identities]
humans = ["*@example.com"]
[risk]
high = ["azure:microsoft.storage/*"]
"""


def pim_entry(op: str, audit_id: str, hms: str, details: dict[str, str], *, category: str = "ResourceManagement",
              initiator: str = PIM_MEMBER, scope: str | None = PIM_SCOPE) -> dict[str, Any]:
    """A PIM directory audit entry (diagnostic-settings shape, FORMATS §11); the Azure resource
    role's scope is a target whose id is the ARM path (an assumption: no public record shows one)."""
    targets: list[dict[str, Any]] = [
        {"id": "b24988ac-6180-42a0-ab88-20f7382dd24c", "displayName": "Contributor", "type": "Role"},
        {"id": PIM_REQUEST, "displayName": None, "type": "Request"},
        {"id": PIM_MEMBER_ID, "displayName": "deploy-bot", "type": "User", "userPrincipalName": PIM_MEMBER},
    ]
    if scope:
        targets.append({"id": scope, "displayName": scope.rsplit("/", 1)[-1], "type": "ResourceGroup"})
    time = f"2026-11-02T{hms}Z"
    return {
        "time": time, "resourceId": "/tenants/t/providers/Microsoft.aadiam", "operationName": op,
        "category": "AuditLogs", "tenantId": PIM_TENANT, "correlationId": f"c-{audit_id}", "Level": 4,
        "properties": {
            "id": audit_id, "category": category, "result": "success", "activityDisplayName": op,
            "activityDateTime": time, "loggedByService": "PIM", "operationType": "Update",
            "initiatedBy": {"user": {"id": "u-" + initiator.split("@")[0], "userPrincipalName": initiator}},
            "targetResources": targets,
            "additionalDetails": [{"key": k, "value": v} for k, v in
                                  {"RequestId": PIM_REQUEST, "Justification": "Rotate the prod storage keys",
                                   "TicketNumber": "CHG0061", **details}.items()],
        },
    }


def pim_activation(*, requested: bool = True, approvals: tuple[dict[str, str], ...] = ({},),
                   category: str = "ResourceManagement", scope: str | None = PIM_SCOPE) -> list[dict[str, Any]]:
    """Request 09:00 -> approval(s) by alice 09:02 -> activation 09:03 for an hour -> expiry 10:03."""
    entries = []
    if requested:
        entries.append(pim_entry("Add member to role requested (PIM activation)", "PIM_r", "09:00:00", {},
                                 category=category, scope=scope))
    for i, extra in enumerate(approvals):
        entries.append(pim_entry("Add member to role request approved (PIM activation)", f"PIM_a{i}",
                                 f"09:02:0{i}", extra, category=category, initiator=PIM_APPROVER, scope=scope))
    entries.append(pim_entry("Add member to role completed (PIM activation)", "PIM_c", "09:03:00",
                             {"StartTime": "2026-11-02T09:03:00Z", "ExpirationTime": "2026-11-02T10:03:00Z"},
                             category=category, scope=scope))
    entries.append(pim_entry("Remove member from role (PIM activation expired)", "PIM_x", "10:03:00", {},
                             category=category, scope=scope))
    return entries


def azure_call(event_id: str, hms: str, resource: str, *, upn: str | None = "Deploy-Bot@contoso.com",
               tenant: str = PIM_TENANT) -> dict[str, Any]:
    """An Activity Log record by the member (claims upn when a user token, always oid and tid)."""
    claims = {"uti": f"uti-{event_id}", "http://schemas.microsoft.com/identity/claims/objectidentifier": PIM_MEMBER_ID,
              "http://schemas.microsoft.com/identity/claims/tenantid": tenant}
    if upn:
        claims["http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"] = upn
    return {
        "time": f"2026-11-02T{hms}.1234567Z", "eventDataId": event_id, "category": "Administrative",
        "operationName": "MICROSOFT.STORAGE/STORAGEACCOUNTS/LISTKEYS/ACTION", "resourceId": resource.upper(),
        "resultType": "Success", "correlationId": f"op-{event_id}",
        "identity": {"claims": claims, "authorization": {
            "scope": resource, "action": "Microsoft.Storage/storageAccounts/listKeys/action",
            "evidence": {"role": "Contributor", "principalId": PIM_MEMBER_ID,
                         "principalType": "User" if upn else "ServicePrincipal"}}},
    }


def azure_signin(call: dict[str, Any]) -> dict[str, Any]:
    """The member's Entra sign-in that issued the call's token (the chain's issuance)."""
    claims = call["identity"]["claims"]
    return {
        "time": "2026-11-02T09:01:00.0000000Z", "operationName": "Sign-in activity", "category": "SignInLogs",
        "tenantId": PIM_TENANT, "resultType": "0", "correlationId": f"si-{call['eventDataId']}",
        "properties": {"id": f"si-{call['eventDataId']}", "userPrincipalName": PIM_MEMBER, "userId": PIM_MEMBER_ID,
                       "uniqueTokenIdentifier": claims["uti"], "resourceId": "797f4846-ba00-4fd7-ba43-dac1f8f63013"},
    }


PIM_STORAGE = f"{PIM_SCOPE}/providers/Microsoft.Storage/storageAccounts/reports"


def pim_world(tmp_path: Path, entries: list[dict[str, Any]], calls: list[dict[str, Any]] | None = None,
              policy: str = PIM_POLICY) -> tuple[duckdb.DuckDBPyConnection, Policy]:
    calls = calls if calls is not None else [
        azure_call("az-in-window", "09:10:00", PIM_STORAGE),
        azure_call("az-after-expiry", "10:30:00", PIM_STORAGE),
        azure_call("az-other-scope", "09:20:00",
                   f"/subscriptions/{PIM_SUB}/resourceGroups/rg-dev/providers/Microsoft.Storage/storageAccounts/x"),
        # a resource group whose name only starts like the scope's: not under it
        azure_call("az-prefix-only", "09:21:00", f"{PIM_SCOPE}2/providers/Microsoft.Storage/storageAccounts/y"),
    ]
    return build(tmp_path, {"entra.json": entries, "activity.json": calls,
                            "signins.json": [azure_signin(c) for c in calls]}, policy)


def test_pim_activation_covers_the_members_azure_calls_under_its_scope_in_its_window(tmp_path: Path) -> None:
    con, policy = pim_world(tmp_path, pim_activation())
    inside = chain(con, "az-in-window")
    assert (inside["task_id"], inside["task_link"], inside["task_known_from"]) == (
        f"pim-request:{PIM_REQUEST}", "entra_pim_activation_window", "entra_pim")
    assert (inside["approver"], inside["decision"], inside["ticket"], inside["verdict"]) == (
        PIM_APPROVER, "approved", "CHG0061", "approved")
    assert inside["intent"] == "Rotate the prod storage keys"
    assert inside["approval_implied_by"] is None
    assert links(con, "az-in-window")["approval"].evidence.line == 2
    # after the activation expired, and outside its ARM scope: the member's calls are its own
    for other in ("az-after-expiry", "az-other-scope", "az-prefix-only"):
        assert chain(con, other)["task_id"] is None, other
    assert "credential-without-task" in findings(con, policy, "az-after-expiry")
    assert findings(con, policy, "az-in-window") == set()


def test_pim_directory_role_activation_is_tenant_wide_and_joins_by_object_id(tmp_path: Path) -> None:
    """A directory role has no ARM scope: it covers the member's calls in its tenant; a caller known
    only by its object id (no upn claim) is the member by the activation's User target id."""
    calls = [azure_call("az-oid", "09:10:00", PIM_STORAGE, upn=None),
             azure_call("az-other-tenant", "09:11:00", PIM_STORAGE, upn=None, tenant="t-elsewhere")]
    con, _ = pim_world(tmp_path, pim_activation(category="RoleManagement", scope=None), calls)
    row = chain(con, "az-oid")
    assert (row["actor_id"], row["task_id"], row["verdict"]) == (PIM_MEMBER_ID, f"pim-request:{PIM_REQUEST}",
                                                                 "approved")
    assert chain(con, "az-other-tenant")["task_id"] is None


@pytest.mark.parametrize("scope", [None, "/", "/subscriptions/"])
def test_pim_resource_role_without_an_arm_scope_in_its_record_covers_nothing(tmp_path: Path, scope: str | None) -> None:
    """No scope, or one that is no subscription or management group path (a bare "/" would make
    every resource "under" it)."""
    con, _ = pim_world(tmp_path, pim_activation(scope=scope))
    assert chain(con, "az-in-window")["task_id"] is None


def test_pim_activation_whose_approval_is_not_loaded_implies_it(tmp_path: Path) -> None:
    """Activation present, request and approval entries absent: PIM activated the role only once
    its policy passed, so the verdict is unknown ("approval implied"), not missing-approval."""
    con, policy = pim_world(tmp_path, pim_activation(requested=False, approvals=()))
    row = chain(con, "az-in-window")
    assert (row["task_id"], row["task_status"], row["approval_records"], row["verdict"]) == (
        f"pim-request:{PIM_REQUEST}", "found", 0, "unknown")
    assert row["approval_implied_by"].startswith(
        f"the action ran inside the PIM activation of role Contributor for {PIM_MEMBER} (request {PIM_REQUEST}")
    assert "missing-approval" not in findings(con, policy, "az-in-window")
    traced = links(con, "az-in-window")
    assert traced["approval"].label.startswith("approval implied, record missing: the action ran inside the PIM")
    assert traced["task"].evidence.line == 1  # the activation entry: the only record of the request


def test_pim_request_with_one_stage_approved_and_one_pending_does_not_cover(tmp_path: Path) -> None:
    """The first stage's approval leaves the request PendingApproval: a stage, not the approval."""
    con, _ = pim_world(tmp_path, pim_activation(approvals=({"RequestStatus": "PendingApproval"},)))
    row = chain(con, "az-in-window")
    assert (row["pending_stages"], row["approved_stages"], row["approval_id"]) == (1, 1, None)
    assert row["approval_implied_by"] is None  # a stage record is loaded: nothing is implied
    assert row["verdict"] == "unapproved"
    # both stages approved: the second approval ends the PendingApproval state and covers
    con, _ = pim_world(tmp_path, pim_activation(approvals=({"RequestStatus": "PendingApproval"}, {})))
    assert chain(con, "az-in-window")["verdict"] == "approved"


def test_pim_member_under_an_alias_is_the_azure_caller(tmp_path: Path) -> None:
    """The Azure caller's UPN differs from the member's; [identities] aliases make them one."""
    policy = PIM_POLICY + '[identities.aliases]\n"deploy-bot@contoso.com" = ["svc-deploy@contoso.onmicrosoft.com"]\n'
    calls = [azure_call("az-alias", "09:10:00", PIM_STORAGE, upn="svc-deploy@contoso.onmicrosoft.com")]
    entries = pim_activation()
    for entry in entries:  # the member known by its UPN only
        for target in entry["properties"]["targetResources"]:
            if target["type"] == "User":
                target["id"] = "another-object-id"
    assert chain(pim_world(tmp_path, entries, calls)[0], "az-alias")["task_id"] is None
    assert chain(pim_world(tmp_path, entries, calls, policy)[0], "az-alias")["task_id"] == f"pim-request:{PIM_REQUEST}"
