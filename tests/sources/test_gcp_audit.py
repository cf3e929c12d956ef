"""GCP Cloud Audit Logs: the shared samples load cleanly, spot checks against values read in the files,
service account impersonation (token minted, then used), the Pub/Sub and BigQuery export shapes,
and bad input."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from helpers import SAMPLES, build_world, event, load, rows, sample, sample_files, utc, write_lines

from nhiaudit import correlate, ingest
from nhiaudit import store as nhiaudit_store
from nhiaudit.policy import load_policy
from nhiaudit.sources import gcp_audit, k8s_audit

GCP_SAMPLES = SAMPLES / "gcp_audit"
SAMPLE_FILES = sample_files(GCP_SAMPLES)
AUDIT = "elastic__test-audit.lines-1-2-4-5-6-11.log"
IAMCREDENTIALS = "elastic__test-iamcredentials-googleapis-com.log"
PROJECT = "nhi-prod"
ORCHESTRATOR = f"orchestrator@{PROJECT}.iam.gserviceaccount.com"
AGENT = f"report-bot@{PROJECT}.iam.gserviceaccount.com"
KEY = f"projects/{PROJECT}/serviceAccounts/{ORCHESTRATOR}/keys/0a1b2c3d"


def log_entry(insert_id: str, timestamp: str, payload: dict[str, Any], **fields: Any) -> dict[str, Any]:
    entry = {
        "insertId": insert_id, "timestamp": timestamp,
        "logName": f"projects/{PROJECT}/logs/cloudaudit.googleapis.com%2Factivity",
        "resource": {"type": "project", "labels": {"project_id": PROJECT}},
        "protoPayload": {"@type": "type.googleapis.com/google.cloud.audit.AuditLog",
                         "requestMetadata": {"callerIp": "10.0.0.9", "callerSuppliedUserAgent": "agent/1.0"},
                         **payload},
    }
    entry.update(fields)
    return entry


# --- the shared samples -------------------------------------------------------------------------


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=[p.name for p in SAMPLE_FILES])
def test_every_sample_loads_without_rejections(store: duckdb.DuckDBPyConnection, path: Path) -> None:
    assert gcp_audit.detect(path)
    assert ingest.detect(path) == "gcp_audit"
    result = load(store, "gcp_audit", path)
    assert result.rejected == 0, rows(store, "SELECT reason FROM rejected")
    assert result.read == sum(1 for line in path.read_text().splitlines() if line.strip())
    assert result.read == result.loaded + result.duplicates


def test_spot_checks_against_the_audit_sample(store: duckdb.DuckDBPyConnection) -> None:
    load(store, "gcp_audit", sample(GCP_SAMPLES / AUDIT))
    billing = event(store, "gcp_audit", "-uihnmjctwo")
    assert billing["occurred_at"] == utc(2019, 12, 19, 0, 49, 36, 86000)
    assert billing["category"] == "action"
    assert billing["actor_id"] == "xxx@xxx.xxx"
    assert billing["credential_id"] == "gcp:xxx@xxx.xxx" and billing["credential_type"] == "gcp_principal"
    assert billing["action"] == "cloudbilling:GetResourceBillingInfo"
    assert billing["resource"] == "projects/elastic-beats"
    assert (billing["outcome"], billing["read_only"]) == ("success", True)
    assert billing["account"] == "elastic-beats"
    assert billing["src_ip"] == "192.168.1.1"

    denied = event(store, "gcp_audit", "yonau3dc2zi")
    assert (denied["outcome"], denied["error_code"]) == ("denied", "PERMISSION_DENIED")
    assert denied["action"] == "compute:beta.compute.instances.aggregatedList"

    granted_false = event(store, "gcp_audit", "-h6onuze1h7dg")  # granted:false but status OK: the call succeeded
    assert granted_false["outcome"] == "success"
    assert granted_false["details"]["denied_permissions"] == ["compute.machineTypes.list"]

    image = event(store, "gcp_audit", "v2spcwdzmc2")
    assert image["action"] == "compute:v1.compute.images.insert" and image["read_only"] is False
    assert (image["account"], image["region"]) == ("foo", "eu")
    assert image["user_agent"].startswith("google-cloud-sdk gcloud/290.0.1 command/gcloud.compute.images")


    # GKE entries are Kubernetes API calls, normalized like k8s_audit's (same action scheme).
    gke = event(store, "gcp_audit", "87efd529-6349-45d2-b905-fc607e6c5d3b")
    assert gke["occurred_at"] == utc(2020, 8, 5, 21, 7, 30, 974750)
    assert gke["actor_id"] == "system:serviceaccount:cert-manager:cert-manager-webhook"
    assert gke["credential_id"] == "k8s-sa:system:serviceaccount:cert-manager:cert-manager-webhook"
    assert gke["action"] == "k8s:create:subjectaccessreviews"
    assert gke["details"]["method_name"] == "io.k8s.authorization.v1beta1.subjectaccessreviews.create"
    assert (gke["account"], gke["region"]) == ("elastic-siem", "us-central1-a")


def test_generate_access_token_sample(store: duckdb.DuckDBPyConnection) -> None:
    load(store, "gcp_audit", sample(GCP_SAMPLES / IAMCREDENTIALS))
    e = event(store, "gcp_audit", "15djrryd6bap")
    assert e["occurred_at"] == utc(2024, 11, 19, 0, 49, 55, 293368)  # 9 fractional digits in the file
    assert e["category"] == "credential_issue"
    assert e["action"] == "iamcredentials:GenerateAccessToken"
    caller = "principal://iam.googleapis.com/projects/project-id/locations/global/workloadIdentityPools/..."
    assert (e["actor_id"], e["actor_type"]) == (caller, "workload")
    assert e["credential_id"] == "gcp-sa-token:made-up-ci-account@project-id.iam.gserviceaccount.com"
    assert e["parent_credential_id"] == "gcp:" + caller
    assert e["details"]["holder"] == "made-up-ci-account@project-id.iam.gserviceaccount.com"
    assert e["details"]["delegation_chain"] == [
        "projects/-/serviceAccounts/made-up-ci-account@project-id.iam.gserviceaccount.com"]
    assert e["src_ip"] == "175.16.199.45" and e["account"] == "project-id"


# --- issuance and use -----------------------------------------------------------------------------


def impersonation_world() -> list[dict[str, Any]]:
    create_key = log_entry("key-1", "2026-11-01T08:00:00.5Z", {
        "serviceName": "iam.googleapis.com", "methodName": "google.iam.admin.v1.CreateServiceAccountKey",
        "resourceName": f"projects/-/serviceAccounts/{ORCHESTRATOR}",
        "authenticationInfo": {"principalEmail": "admin@example.com"},
        "request": {"name": f"projects/-/serviceAccounts/{ORCHESTRATOR}"},
        "response": {"name": KEY, "validBeforeTime": "9999-12-31T23:59:59Z"}})
    mint = log_entry("mint-1", "2026-11-02T09:00:00.123456789Z", {
        "serviceName": "iamcredentials.googleapis.com", "methodName": "GenerateAccessToken",
        "resourceName": "projects/-/serviceAccounts/1234567890",
        "authenticationInfo": {"principalEmail": ORCHESTRATOR,
                               "serviceAccountKeyName": f"//iam.googleapis.com/{KEY}"},
        "request": {"name": f"projects/-/serviceAccounts/{AGENT}", "lifetime": "900s"},
        "metadata": {"identityDelegationChain": [f"projects/-/serviceAccounts/{AGENT}"]}, "status": {}},
        resource={"type": "service_account", "labels": {"project_id": PROJECT, "email_id": AGENT}})
    use = log_entry("use-1", "2026-11-02T09:01:00Z", {
        "serviceName": "storage.googleapis.com", "methodName": "storage.objects.create",
        "resourceName": "projects/_/buckets/reports-prod/objects/2026-11.csv",
        "authenticationInfo": {"principalEmail": AGENT, "serviceAccountDelegationInfo": [
            {"firstPartyPrincipal": {"principalEmail": ORCHESTRATOR}}]}})
    return [create_key, mint, use]


def test_impersonated_token_joins_its_use(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    load(store, "gcp_audit", write_lines(tmp_path / "audit.log", impersonation_world()))
    key = event(store, "gcp_audit", "key-1")
    assert key["category"] == "credential_issue" and key["credential_type"] == "gcp_sa_key"
    assert key["credential_id"] == f"//iam.googleapis.com/{KEY}"
    assert key["details"]["long_term"] is True and key["details"]["holder"] == ORCHESTRATOR

    mint = event(store, "gcp_audit", "mint-1")
    assert mint["credential_id"] == f"gcp-sa-token:{AGENT}" and mint["credential_type"] == "gcp_sa_token"
    assert mint["parent_credential_id"] == key["credential_id"]
    assert mint["details"]["ttl_seconds"] == 900 and mint["details"]["long_term"] is False

    use = event(store, "gcp_audit", "use-1")
    assert use["credential_id"] == mint["credential_id"]
    assert use["details"]["delegated_by"] == [ORCHESTRATOR]
    assert use["action"] == "storage:storage.objects.create" and use["actor_type"] == "workload"


def test_service_account_key_is_a_long_term_credential(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    # A call made with a user-managed key whose creation is not in the evidence (the shape of
    # authenticationInfo in the iamcredentials sample), and a key name without the service prefix.
    call = log_entry("call-1", "2026-11-02T09:00:00Z", {
        "serviceName": "storage.googleapis.com", "methodName": "storage.objects.delete",
        "resourceName": "projects/_/buckets/reports-prod/objects/a.csv",
        "authenticationInfo": {"principalEmail": ORCHESTRATOR, "serviceAccountKeyName": f"//iam.googleapis.com/{KEY}"}})
    bare = log_entry("call-2", "2026-11-02T09:01:00Z", {
        "serviceName": "storage.googleapis.com", "methodName": "storage.objects.delete",
        "resourceName": "projects/_/buckets/reports-prod/objects/b.csv",
        "authenticationInfo": {"principalEmail": ORCHESTRATOR, "serviceAccountKeyName": KEY}})
    load(store, "gcp_audit", write_lines(tmp_path / "audit.log", [call, bare]))
    assert [(r["credential_id"], r["credential_type"]) for r in rows(
        store, "SELECT credential_id, credential_type FROM events ORDER BY record_index")] == [
        (f"//iam.googleapis.com/{KEY}", "gcp_sa_key"), (KEY, "gcp_sa_key")]
    correlate.correlate(store, load_policy(None))
    assert store.execute("SELECT bool_and(long_term), bool_or(temporary) FROM credentials").fetchone() == (True, False)


# --- export shapes ---------------------------------------------------------------------------------


def test_pubsub_messages_give_the_same_events(tmp_path: Path) -> None:
    lines = sample(GCP_SAMPLES / AUDIT).read_text().splitlines()
    messages = [{"message": {"data": base64.b64encode(line.encode()).decode(), "messageId": str(i),
                             "publishTime": "2020-08-05T21:07:33Z"},
                 "subscription": "projects/p/subscriptions/audit"}
                for i, line in enumerate(lines)]
    pubsub = write_lines(tmp_path / "pubsub.json", messages)
    assert gcp_audit.detect(pubsub) and not k8s_audit.detect(pubsub)
    columns = ("event_id, occurred_at, category, actor_id, credential_id, action, resource, outcome, "
               "account, region, src_ip, user_agent, dedupe_key")
    results = []
    for path in (sample(GCP_SAMPLES / AUDIT), pubsub):
        con = nhiaudit_store.connect(":memory:")
        assert load(con, "gcp_audit", path).rejected == 0
        results.append(rows(con, f"SELECT {columns} FROM events ORDER BY record_index"))
        con.close()
    assert results[0] == results[1] and len(results[0]) == len(lines)


def test_bigquery_export_row(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    row = {
        "logName": f"projects/{PROJECT}/logs/cloudaudit.googleapis.com%2Fdata_access",
        "resource": {"type": "service_account", "labels": {"project_id": PROJECT, "email_id": AGENT}},
        "protopayload_auditlog": {
            "serviceName": "iamcredentials.googleapis.com", "methodName": "GenerateAccessToken",
            "resourceName": "projects/-/serviceAccounts/1234567890",
            "authenticationInfo": {"principalEmail": ORCHESTRATOR},
            "requestMetadata": {"callerIp": "10.0.0.9", "callerSuppliedUserAgent": "agent/1.0"},
            "requestJson": json.dumps({"name": f"projects/-/serviceAccounts/{AGENT}", "lifetime": "600s"}),
            "metadataJson": json.dumps({"identityDelegationChain": [f"projects/-/serviceAccounts/{AGENT}"]}),
        },
        "timestamp": "2026-11-02 09:00:00.25 UTC", "insertId": "bq-1", "severity": "INFO",
    }
    path = write_lines(tmp_path / "bq.json", [row])
    assert gcp_audit.detect(path)
    load(store, "gcp_audit", path)
    e = event(store, "gcp_audit", "bq-1")
    assert e["occurred_at"] == utc(2026, 11, 2, 9, 0, 0, 250000)
    assert e["credential_id"] == f"gcp-sa-token:{AGENT}"
    assert e["parent_credential_id"] == f"gcp:{ORCHESTRATOR}"
    assert e["details"]["ttl_seconds"] == 600
    assert e["details"]["delegation_chain"] == [f"projects/-/serviceAccounts/{AGENT}"]


# --- bad input --------------------------------------------------------------------------------------


def test_bad_records_are_rejected_with_a_reason(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    good, _, use = impersonation_world()
    path = write_lines(tmp_path / "audit.log", [
        good,
        '{"insertId":"x","protoPayload":{',
        log_entry("bad-time", 1604610450, {"serviceName": "compute.googleapis.com", "methodName": "x"}),
        log_entry("bad-method", "2026-11-02T09:00:00Z",
                  {"serviceName": "compute.googleapis.com", "methodName": []}),

        {"insertId": "text-1", "timestamp": "2026-11-02T09:00:00Z", "textPayload": "hello"},
        {"message": {"data": "not base64!", "messageId": "9"}},
        use,
    ])
    result = load(store, "gcp_audit", path)
    assert (result.loaded, result.rejected) == (2, 5)
    assert result.read == result.loaded + result.rejected + result.duplicates
    reasons = [r["reason"] for r in rows(store, "SELECT reason FROM rejected ORDER BY line")]
    assert reasons == [
        "line 2: not valid JSON (truncated or malformed record)",
        "timestamp is a JSON number, expected an RFC 3339 string",
        "protoPayload.methodName is a JSON array, expected a string",
        "LogEntry without protoPayload: not a Cloud Audit Log entry (jsonPayload and textPayload logs carry "
        "no audit fields)",
        "message.data is not valid base64 (a Pub/Sub message carries the LogEntry base64-encoded)",
    ]


def test_reingest_is_a_no_op(store: duckdb.DuckDBPyConnection) -> None:
    first = load(store, "gcp_audit", sample(GCP_SAMPLES / AUDIT))
    again = load(store, "gcp_audit", sample(GCP_SAMPLES / AUDIT))
    assert again.already_ingested and again.loaded == 0
    assert store.execute("SELECT count(*) FROM events").fetchone()[0] == first.loaded


# --- Privileged Access Manager (synthetic records in the documented shape) --------------------------
# https://cloud.google.com/iam/docs/audit-logging/audit-logging-pam; the Grant resource:
# https://cloud.google.com/iam/docs/reference/pam/rest/v1/folders.locations.entitlements.grants

PAM = "google.cloud.privilegedaccessmanager.v1.PrivilegedAccessManager"
ENTITLEMENT = f"projects/{PROJECT}/locations/global/entitlements/reports-admin"
GRANT = f"{ENTITLEMENT}/grants/5f3c2a1b-9d8e-4f70-a6b5-c4d3e2f1a0b9"
APPROVER = "alice@example.com"


def pam_grant(state: str, **extra: Any) -> dict[str, Any]:
    """The Grant resource a PAM response carries."""
    return {
        "@type": "type.googleapis.com/google.cloud.privilegedaccessmanager.v1.Grant",
        "name": GRANT,
        "requester": AGENT,
        "requestedDuration": "3600s",
        "justification": {"unstructuredJustification": "CHG0042: rotate the reports bucket"},
        "state": state,
        "privilegedAccess": {"gcpIamAccess": {
            "resourceType": "cloudresourcemanager.googleapis.com/Project",
            "resource": f"//cloudresourcemanager.googleapis.com/projects/{PROJECT}",
            "roleBindings": [{"role": "roles/storage.admin"}]}},
        **extra,
    }


def pam_entry(insert_id: str, timestamp: str, method: str, principal: str, **payload: Any) -> dict[str, Any]:
    return log_entry(insert_id, timestamp, {
        "serviceName": "privilegedaccessmanager.googleapis.com",
        "methodName": f"{PAM}.{method}",
        "authenticationInfo": {"principalEmail": principal},
        "status": {},
        **payload,
    }, resource={"type": "audited_resource", "labels": {
        "project_id": PROJECT, "service": "privilegedaccessmanager.googleapis.com", "method": f"{PAM}.{method}"}})


def pam_records(decision: str = "ApproveGrant", state_after: str = "ACTIVATING") -> list[dict[str, Any]]:
    return [
        pam_entry("pam-create", "2026-11-02T08:50:00.120Z", "CreateGrant", AGENT,
                  resourceName=ENTITLEMENT,
                  request={"@type": f"type.googleapis.com/{PAM.rsplit('.', 1)[0]}.CreateGrantRequest",
                           "parent": ENTITLEMENT,
                           "grant": {"requestedDuration": "3600s", "justification": {
                               "unstructuredJustification": "CHG0042: rotate the reports bucket"}}},
                  response=pam_grant("APPROVAL_AWAITED")),
        pam_entry("pam-decide", "2026-11-02T08:55:00.5Z", decision, APPROVER,
                  resourceName=GRANT,
                  request={"@type": f"type.googleapis.com/{PAM.rsplit('.', 1)[0]}.{decision}Request",
                           "name": GRANT, "reason": "approved for CHG0042"},
                  response=pam_grant(state_after)),
    ]


def test_pam_grant_is_a_task_and_its_approval_a_decision(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    result = load(store, "gcp_audit", write_lines(tmp_path / "pam.ndjson", pam_records()))
    assert (result.loaded, result.rejected) == (2, 0)
    create = event(store, "gcp_audit", "pam-create")
    assert (create["category"], create["task_id"], create["actor_id"]) == ("task", f"gcp-pam-grant:{GRANT}", AGENT)
    assert create["details"]["requested_by"] == AGENT
    assert create["details"]["intent"] == "CHG0042: rotate the reports bucket"
    assert (create["details"]["roles"], create["details"]["requested_duration_s"]) == (["roles/storage.admin"], 3600)
    assert create["details"]["pam_resource"] == f"//cloudresourcemanager.googleapis.com/projects/{PROJECT}"
    assert create["details"]["status"] == "approval_awaited"
    decide = event(store, "gcp_audit", "pam-decide")
    assert (decide["category"], decide["task_id"], decide["occurred_at"]) == (
        "approval", f"gcp-pam-grant:{GRANT}", utc(2026, 11, 2, 8, 55, 0, 500000))
    assert (decide["details"]["approver"], decide["details"]["decision"]) == (APPROVER, "approved")
    assert decide["details"]["justification"] == "approved for CHG0042"
    assert decide["expires_at"] == utc(2026, 11, 2, 9, 55, 0, 500000)  # the requested hour from the decision


@pytest.mark.parametrize(("method", "state", "decision"), [
    ("DenyGrant", "DENIED", "denied"),
    ("ApproveGrant", "APPROVAL_AWAITED", "pending"),  # a step of a multi-step workflow; more approvals needed
])
def test_pam_denial_and_partial_approval(
    store: duckdb.DuckDBPyConnection, tmp_path: Path, method: str, state: str, decision: str
) -> None:
    load(store, "gcp_audit", write_lines(tmp_path / "pam.ndjson", pam_records(method, state)))
    decide = event(store, "gcp_audit", "pam-decide")
    assert (decide["category"], decide["details"]["decision"], decide["details"]["grant_state"]) == (
        "approval", decision, state)


def test_a_failed_pam_call_is_an_action_not_a_decision(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    records = pam_records()
    records[1]["protoPayload"]["status"] = {"code": 7, "message": "PERMISSION_DENIED"}
    load(store, "gcp_audit", write_lines(tmp_path / "pam.ndjson", records))
    decide = event(store, "gcp_audit", "pam-decide")
    assert (decide["category"], decide["outcome"], decide["task_id"]) == ("action", "denied", None)


def storage_call(insert_id: str, timestamp: str, principal: str = AGENT) -> dict[str, Any]:
    return log_entry(insert_id, timestamp, {
        "serviceName": "storage.googleapis.com", "methodName": "storage.setIamPermissions",
        "resourceName": "projects/_/buckets/reports-prod",
        "authenticationInfo": {"principalEmail": principal}, "status": {},
    }, resource={"type": "gcs_bucket", "labels": {"project_id": PROJECT, "bucket_name": "reports-prod"}})


PAM_POLICY = """
[identities]
humans = ["*@example.com"]
"""


def pam_world(tmp_path: Path, records: list[dict[str, Any]]) -> duckdb.DuckDBPyConnection:
    calls = [storage_call("call-in-window", "2026-11-02T09:10:00Z"),
             storage_call("call-after-window", "2026-11-02T10:30:00Z")]
    return build_world(tmp_path, {"pam.ndjson": records + calls}, PAM_POLICY)[0]


def pam_chain(tmp_path: Path, records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    con = pam_world(tmp_path, records)
    return {r["event_id"]: r for r in rows(con, "SELECT * FROM chains WHERE source = 'gcp_audit'")}


def test_pam_grant_covers_the_requesters_calls_in_its_window(tmp_path: Path) -> None:
    chains = pam_chain(tmp_path, pam_records())
    inside = chains["call-in-window"]
    assert (inside["task_id"], inside["task_link"], inside["task_known_from"]) == (
        f"gcp-pam-grant:{GRANT}", "gcp_pam_grant_window", "gcp_pam")
    assert (inside["approver"], inside["decision"], inside["verdict"]) == (APPROVER, "approved", "approved")
    assert inside["intent"] == "CHG0042: rotate the reports bucket"
    # the grant ended at 09:55: a call at 10:30 is not made with its role
    assert chains["call-after-window"]["task_id"] is None


def test_a_denied_pam_grant_gives_no_window(tmp_path: Path) -> None:
    """PAM never activates a denied grant: the requester's calls are its own, not the grant's."""
    chains = pam_chain(tmp_path, pam_records("DenyGrant", "DENIED"))
    assert chains["call-in-window"]["task_id"] is None


def test_pam_grant_awaiting_a_second_approval_does_not_cover(tmp_path: Path) -> None:
    chains = pam_chain(tmp_path, pam_records("ApproveGrant", "APPROVAL_AWAITED"))
    inside = chains["call-in-window"]
    assert (inside["pending_stages"], inside["approved_stages"], inside["approval_id"]) == (1, 1, None)
    assert inside["verdict"] == "unapproved"


def test_a_revoked_pam_grant_ends_its_window(tmp_path: Path) -> None:
    revoke = pam_entry("pam-revoke", "2026-11-02T09:05:00Z", "RevokeGrant", APPROVER, resourceName=GRANT,
                       request={"name": GRANT, "reason": "incident over"}, response=pam_grant("REVOKED"))
    con = pam_world(tmp_path, [*pam_records(), revoke])
    (inside,) = rows(con, "SELECT task_id FROM chains WHERE event_id = 'call-in-window'")
    assert inside["task_id"] is None  # 09:10, after the 09:05 revocation
    assert rows(con, "SELECT status, ended_at FROM tasks") == [
        {"status": "revoked", "ended_at": utc(2026, 11, 2, 9, 5)}]
