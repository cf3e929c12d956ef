"""Entra AuditLogs: spot checks against the shared samples (a service principal certificate added,
PIM role assignment records, the Panther credential variant), the added key joining the sign-ins made
with it, a PIM activation (request, approval with ticket, completion, expiry) in the documented shape,
and bad records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
from helpers import SAMPLES, load, rows, sample, utc, write_lines

from nhiaudit import correlate, ingest
from nhiaudit.policy import load_policy
from nhiaudit.sources import entra_audit

ENTRA = SAMPLES / "entra"
ELASTIC = "elastic__azure-auditlogs_test-audit-logs-sample.log"
PIM = "panther__azure_role_changed_pim.tests.ndjson"
SP_CREDS = "panther__azure_service_principal_credentials_added.tests.ndjson"


def test_certificate_added_is_a_long_term_issuance(store: duckdb.DuckDBPyConnection) -> None:
    path = sample(ENTRA / ELASTIC)
    assert ingest.detect(path) == "entra_audit"
    assert load(store, "entra_audit", path).rejected == 0
    (issue,) = rows(store, "SELECT * FROM events WHERE category = 'credential_issue'")
    # the key in KeyDescription's new value and not in its old one (FORMATS §11(b))
    assert (issue["credential_id"], issue["credential_type"]) == (
        "azure-key:d747da7e-e11b-4af2-aede-0487c44067af", "azure_app_credential")
    assert issue["actor_id"] == "b9814691-9ca1-4e55-a1ac-8ef5dd010ec0" and issue["actor_type"] == "workload"
    details = json.loads(issue["details"])
    assert (details["holder"], details["long_term"], details["key_type"]) == (
        "a7d5dcbe-0627-4ddf-a2f4-86b6785bcc42", True, "AsymmetricX509Cert")
    assert issue["occurred_at"] == utc(2022, 1, 22, 18, 15, 2, 516809)
    assert rows(store, "SELECT count(*) AS n FROM events WHERE action = 'entra:update service principal'") == [{"n": 2}]


def test_panther_samples(store: duckdb.DuckDBPyConnection) -> None:
    load(store, "entra_audit", sample(ENTRA / SP_CREDS))
    load(store, "entra_audit", sample(ENTRA / PIM))
    got = rows(store, "SELECT event_id, category, actor_id, task_id, details->>'key_type' AS key_type, "
                      "details->>'approver' AS holder, details->>'role' AS role FROM events ORDER BY file_sha256, line")
    by_category = {(r["event_id"], r["category"]): r for r in got}
    creds = by_category[("sp-creds-001", "credential_issue")]
    assert (creds["actor_id"], creds["key_type"]) == ("frodo@lotr.com", "Password")
    assert by_category[("sp-create-001", "action")]["actor_id"] == "cloudadmin@company.com"
    task = by_category[("PIM_123415", "task")]
    assert task["task_id"] == "pim-request:111111111111"
    grants = [r for r in got if r["category"] == "grant"]
    assert [(g["holder"], g["role"]) for g in grants] == [("Malenia", "Application Administrator")] * 2


def audit(op: str, audit_id: str, time: str, details: dict[str, str], targets: list[dict[str, Any]],
          service: str = "PIM", initiator: dict[str, Any] | None = None, result: str = "success") -> dict[str, Any]:
    """A directory audit record in the diagnostic-settings shape (Elastic sample)."""
    return {
        "time": time, "resourceId": "/tenants/t-1/providers/Microsoft.aadiam", "operationName": op,
        "category": "AuditLogs", "tenantId": "t-1", "resultSignature": "None", "correlationId": f"c-{audit_id}",
        "identity": "someone", "Level": 4,
        "properties": {"id": audit_id, "category": "RoleManagement", "result": result, "resultReason": "",
                       "activityDisplayName": op, "activityDateTime": time, "loggedByService": service,
                       "operationType": "Update",
                       "initiatedBy": initiator or {"user": {"id": "u-alice",
                                                             "userPrincipalName": "alice@example.com"}},
                       "targetResources": targets,
                       "additionalDetails": [{"key": k, "value": v} for k, v in details.items()]},
    }


ROLE = {"id": "r-1", "displayName": "Privileged Role Administrator", "type": "Role"}
MEMBER = {"id": "sp-bot", "displayName": "deploy-bot", "type": "ServicePrincipal"}


def test_pim_activation_is_task_approval_grant(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    req = {"RequestId": "req-9", "Justification": "rotate prod keys", "TicketNumber": "CHG-77"}
    path = write_lines(tmp_path / "audit.json", [
        audit("Add member to role requested (PIM activation)", "PIM_1", "2026-11-02T09:00:00Z", req, [ROLE, MEMBER],
              initiator={"app": {"servicePrincipalId": "sp-bot", "displayName": "deploy-bot"}}),
        audit("Add member to role request approved (PIM activation)", "PIM_2", "2026-11-02T09:02:00Z", req,
              [ROLE, MEMBER]),
        audit("Add member to role completed (PIM activation)", "PIM_3", "2026-11-02T09:03:00Z",
              {**req, "StartTime": "2026-11-02T09:03:00Z", "ExpirationTime": "2026-11-02T10:03:00Z"}, [ROLE, MEMBER]),
        audit("Remove member from role (PIM activation expired)", "PIM_4", "2026-11-02T10:03:00Z", req,
              [ROLE, MEMBER]),
    ])
    assert entra_audit.detect(path)
    load(store, "entra_audit", path)
    got = rows(store, "SELECT category, task_id, actor_id, expires_at, ended_at, details FROM events ORDER BY line")
    assert [(r["category"], r["task_id"]) for r in got] == [
        ("task", "pim-request:req-9"), ("approval", "pim-request:req-9"), ("grant", "pim-request:req-9"),
        ("task", "pim-request:req-9")]
    request, approval, grant, expiry = (json.loads(r["details"]) for r in got)
    assert (request["agent_id"], request["requested_by"], request["intent"]) == ("deploy-bot", "sp-bot",
                                                                                 "rotate prod keys")
    assert (approval["decision"], approval["approver"], approval["ticket"], approval["justification"]) == (
        "approved", "alice@example.com", "CHG-77", "rotate prod keys")
    assert (grant["approver"], grant["role"]) == ("deploy-bot", "Privileged Role Administrator")
    # the activation is a record of its request too, with what joins it to the member's Azure calls
    assert (grant["member_id"], grant["role_kind"], grant["role_definition_id"], grant["status"]) == (
        "sp-bot", "directory", "r-1", "activated")
    assert got[2]["expires_at"] == utc(2026, 11, 2, 10, 3) and got[3]["ended_at"] == utc(2026, 11, 2, 10, 3)
    correlate.correlate(store, load_policy(None))
    assert rows(store, "SELECT approver, role, valid_to FROM grants") == [
        {"approver": "deploy-bot", "role": "Privileged Role Administrator", "valid_to": utc(2026, 11, 2, 10, 3)}]
    assert rows(store, "SELECT task_id, decision, ticket FROM approvals") == [
        {"task_id": "pim-request:req-9", "decision": "approved", "ticket": "CHG-77"}]


def test_added_key_is_the_parent_of_the_signins_made_with_it(
    store: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    key = "0f3c1a52-9d7e-4a40-8d44-6f5b3c2a1e90"
    added = audit("Add service principal credentials", "Directory_1", "2026-11-02T08:00:00Z", {}, [{
        "id": "sp-bot", "displayName": "deploy-bot", "type": "ServicePrincipal",
        "modifiedProperties": [{"displayName": "KeyDescription", "oldValue": "[]",
                                "newValue": json.dumps([f"[KeyIdentifier={key},KeyType=Password,KeyUsage=Verify,"
                                                        "DisplayName=ci]"])}]}], service="Core Directory")
    signin = {
        "time": "2026-11-02T09:00:00Z", "operationName": "Sign-in activity", "category": "ServicePrincipalSignInLogs",
        "tenantId": "t-1", "resultType": "0", "correlationId": "c-9",
        "properties": {"id": "signin-1", "appId": "app-1", "servicePrincipalId": "sp-bot",
                       "servicePrincipalName": "deploy-bot", "servicePrincipalCredentialKeyId": key,
                       "uniqueTokenIdentifier": "TTTT", "resourceId": "797f4846-ba00-4fd7-ba43-dac1f8f63013"},
    }
    files = [write_lines(tmp_path / "audit.json", [added]), write_lines(tmp_path / "signin.json", [signin])]
    ingest.ingest(store, files)
    sources = rows(store, "SELECT source FROM events ORDER BY source")
    assert sources == [{"source": "azure"}, {"source": "entra_audit"}]
    correlate.correlate(store, load_policy(None))
    (cred,) = rows(store, "SELECT issuance_source, long_term, holder FROM credentials WHERE credential_id = ?",
                   [f"azure-key:{key}"])
    assert cred == {"issuance_source": "entra_audit", "long_term": True, "holder": "sp-bot"}
    (token,) = rows(store, "SELECT parent_credential_id FROM credentials WHERE credential_id = 'azure-token:TTTT'")
    assert token["parent_credential_id"] == f"azure-key:{key}"


def test_bad_records_are_rejected_with_a_reason(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    good = audit("Update user", "Directory_9", "2026-11-02T08:00:00Z", {}, [MEMBER], service="Core Directory")
    bad_time = {**good, "time": "soon"}
    bad_targets = json.loads(json.dumps(good))
    bad_targets["properties"]["targetResources"] = {"id": "x"}
    no_outcome = json.loads(json.dumps(good))
    del no_outcome["properties"]["result"]
    no_outcome["properties"]["id"] = "Directory_10"
    result = load(store, "entra_audit", write_lines(tmp_path / "audit.json", [good, bad_time, bad_targets, no_outcome]))
    assert (result.loaded, result.rejected) == (2, 2)
    assert [r["reason"] for r in rows(store, "SELECT reason FROM rejected ORDER BY line")] == [
        "time 'soon' is not an RFC 3339 time", "properties.targetResources is a JSON object, expected an array"]
    assert rows(store, "SELECT outcome FROM events ORDER BY line") == [{"outcome": "success"}, {"outcome": None}]
