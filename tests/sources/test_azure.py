"""Azure: the Entra sign-in and Activity Log samples load cleanly, spot checks against values read in
the files, a sign-in joining the ARM call made with its token (uti normalized), the Log Analytics
and Event Hub shapes, and bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from helpers import SAMPLES, event, load, rows, sample, sample_files, utc, write_lines

from nhiaudit import ingest
from nhiaudit.sources import azure

AZ_SAMPLES = SAMPLES / "azure"
SAMPLE_FILES = sample_files(AZ_SAMPLES)
SP_SIGNINS = "elastic__test-service-principal-signinlogs-sample.log"
MI_SIGNINS = "elastic__test-managed-identity-sample.first5lines.log"
ACTIVITY = "elastic__test-activitylogs-raw.log"
SP_ID = "5f0e8a8c-3c1d-4c5e-9a51-2f8b2b1e9d10"
SUB = "11111111-2222-3333-4444-555555555555"


def signin(signin_id: str, token_id: str, **properties: Any) -> dict[str, Any]:
    """A ServicePrincipalSignInLogs record in the diagnostic-settings shape."""
    return {
        "time": "2026-11-02T09:00:00.1234567Z", "operationName": "Sign-in activity",
        "category": "ServicePrincipalSignInLogs", "tenantId": "tenant-1", "resultType": "0",
        "callerIpAddress": "20.1.2.3", "correlationId": "corr-1",
        "properties": {"id": signin_id, "createdDateTime": "2026-11-02T09:00:00.12+00:00",
                       "appId": "app-1", "servicePrincipalId": SP_ID, "servicePrincipalName": "report-bot",
                       "servicePrincipalCredentialKeyId": "key-1",
                       "resourceId": "797f4846-ba00-4fd7-ba43-dac1f8f63013",
                       "resourceDisplayName": "Windows Azure Service Management API",
                       "uniqueTokenIdentifier": token_id, "ipAddress": "20.1.2.3", **properties},
    }


def activity(uti: str, result: str = "Success", **fields: Any) -> dict[str, Any]:
    """An Activity Log record (diagnostic-settings shape) made with the token whose uti is given."""
    record = {
        "time": "2026-11-02T09:05:00.7654321Z", "category": "Administrative",
        "operationName": "MICROSOFT.STORAGE/STORAGEACCOUNTS/LISTKEYS/ACTION",
        "resourceId": f"/SUBSCRIPTIONS/{SUB}/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.STORAGE/"
                      "STORAGEACCOUNTS/REPORTS",
        "resultType": result, "resultSignature": "Succeeded.", "correlationId": "op-1",
        "callerIpAddress": "20.1.2.3",
        "identity": {"claims": {"uti": uti, "appid": "app-1", "appidacr": "1", "iat": "1793610000",
                                "http://schemas.microsoft.com/identity/claims/objectidentifier": SP_ID},
                     "authorization": {"evidence": {"principalId": SP_ID, "principalType": "ServicePrincipal",
                                                    "role": "Storage Account Contributor"}}},
        "location": "westeurope",
    }
    record.update(fields)
    return record


# --- the shared samples -------------------------------------------------------------------------


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=[p.name for p in SAMPLE_FILES])
def test_every_sample_loads_without_rejections(store: duckdb.DuckDBPyConnection, path: Path) -> None:
    assert azure.detect(path)
    assert ingest.detect(path) == "azure"
    result = load(store, "azure", path)
    assert result.rejected == 0, rows(store, "SELECT reason FROM rejected")
    assert result.read == sum(1 for line in path.read_text().splitlines() if line.strip())
    assert result.read == result.loaded + result.duplicates


def test_service_principal_signin(store: duckdb.DuckDBPyConnection) -> None:
    load(store, "azure", sample(AZ_SAMPLES / SP_SIGNINS))
    e = event(store, "azure", "d5935dca-86f2-4ac9-a42c-3593b00af801")
    assert e["occurred_at"] == utc(2022, 2, 8, 6, 22, 28, 351840)  # 7 fractional digits in the file
    assert e["category"] == "credential_issue" and e["action"] == "entra:ServicePrincipalSignIn"
    assert e["actor_id"] == "b029d485-a308-4311-8720-fb3192e5284e"
    assert e["credential_id"] == "azure-token:ZDU5MzVkY2EtODZmMi00YWM5LWE0MmMtMzU5M2IwMGFmODAx"
    assert e["parent_credential_id"] == "azure-key:dbcd79c0-c3ea-46b9-9604-ff40d43b8618"
    assert e["resource"] == "797f4846-ba00-4fd7-ba43-dac1f8f63013"
    assert (e["outcome"], e["src_ip"]) == ("success", "1.128.3.4")
    assert e["account"] == "4bbb79f7-5724-4c9e-95f3-de075f6ec090"  # the tenant
    assert e["details"]["holder"] == e["actor_id"]
    assert e["details"]["holder_name"] == "Terraform-Datadog-CLI"
    assert e["details"]["app_id"] == "6131d760-7fda-4db5-8bb1-b771898e9f15"
    assert e["details"]["audience_name"] == "Windows Azure Service Management API"


def test_managed_identity_signin(store: duckdb.DuckDBPyConnection) -> None:
    load(store, "azure", sample(AZ_SAMPLES / MI_SIGNINS))
    e = event(store, "azure", "a08869a8-3b15-46e4-8de3-273849e60100")
    assert e["action"] == "entra:ManagedIdentitySignIn" and e["actor_type"] == "workload"
    assert e["actor_id"] == "9d370547-cb61-4753-be23-68534909af90"
    assert e["credential_id"] == "azure-token:YTA4ODY5YTgtM2IxNS00NmU0LThkZTMtMjczODQ5ZTYwMTAw"
    assert e["parent_credential_id"] is None  # a managed identity has no customer-held secret
    assert e["src_ip"] is None  # "" in the record
    assert e["details"]["holder_name"] == "testplatformlogslube"


def test_activity_log_sample(store: duckdb.DuckDBPyConnection) -> None:
    result = load(store, "azure", sample(AZ_SAMPLES / ACTIVITY))
    assert (result.loaded, result.duplicates) == (2, 1)  # lines 2 and 3: one event, two body encodings
    found = rows(store, "SELECT * FROM events ORDER BY record_index")
    listkeys = found[0]
    assert listkeys["occurred_at"] == utc(2019, 10, 24, 0, 13, 46, 355425)
    assert listkeys["category"] == "action"
    assert listkeys["action"] == "azure:microsoft.eventhub/namespaces/authorizationrules/listkeys/action"
    assert listkeys["resource"] == (
        "/subscriptions/8a4de8b5-095c-47d0-a96f-a75130c61d53/resourcegroups/sa-hema/providers/"
        "microsoft.eventhub/namespaces/azurelsevents/authorizationrules/rootmanagesharedaccesskey")
    assert listkeys["actor_id"] == "8a4de8b5-095c-47d0-a96f-a75130c61d53"
    assert listkeys["credential_id"] == "azure-token:8a4de8b5-095c-47d0-a96f-a75130c61d53"
    assert (listkeys["outcome"], listkeys["read_only"]) == ("success", False)
    assert listkeys["src_ip"] == "81.2.69.144"
    details = json.loads(listkeys["details"])
    assert details["role"] == "Azure EventGrid Service BuiltIn Role"
    assert details["correlation_id"] == "8a4de8b5-095c-47d0-a96f-a75130c61d53"
    assert details["result_type"] == "Start" and details["app_auth_method"] == "2"
    health = found[1]
    assert health["category"] == "other" and health["actor_id"] is None  # a platform notice, no caller
    assert health["action"] == "azure:microsoft.resourcehealth/healthevent/updated/action"


# --- issuance and use -----------------------------------------------------------------------------


def test_signin_token_joins_the_arm_call(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    # The same 16 bytes, base64 with padding in the sign-in, base64url without in the token's uti.
    path = write_lines(tmp_path / "azure.json", [
        signin("signin-1", "q+7/AbCdEfGhIjKlMnOpQA=="), activity("q-7_AbCdEfGhIjKlMnOpQA")])
    load(store, "azure", path)
    issued = event(store, "azure", "signin-1")
    (used,) = rows(store, "SELECT * FROM events WHERE category = 'action'")
    assert issued["credential_id"] == "azure-token:q-7_AbCdEfGhIjKlMnOpQA"
    assert used["credential_id"] == issued["credential_id"]
    assert used["actor_id"] == issued["actor_id"] == SP_ID
    assert used["account"] == SUB.lower()
    assert used["action"] == "azure:microsoft.storage/storageaccounts/listkeys/action"


def test_log_analytics_rows_join_the_same_way(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    la_signin = {"TimeGenerated": "2026-11-02T09:00:00.1234567Z", "Type": "AADServicePrincipalSignInLogs",
                 "Category": "ServicePrincipalSignInLogs", "Id": "la-signin-1", "ServicePrincipalId": SP_ID,
                 "ServicePrincipalName": "report-bot", "AppId": "app-1", "ResultType": "0",
                 "UniqueTokenIdentifier": "q+7/AbCdEfGhIjKlMnOpQA==",
                 "ServicePrincipalCredentialKeyId": "key-1",
                 "ResourceIdentity": "797f4846-ba00-4fd7-ba43-dac1f8f63013", "IPAddress": "20.1.2.3",
                 "TenantId": "tenant-1"}
    claims = {"uti": "q-7_AbCdEfGhIjKlMnOpQA",
              "http://schemas.microsoft.com/identity/claims/objectidentifier": SP_ID}
    la_activity = {"TimeGenerated": "2026-11-02T09:05:00Z", "Type": "AzureActivity",
                   "EventDataId": "la-act-1",
                   "CorrelationId": "op-1", "OperationNameValue": "MICROSOFT.STORAGE/STORAGEACCOUNTS/READ",
                   "ActivityStatusValue": "Failure", "CategoryValue": "Administrative", "Caller": SP_ID,
                   "CallerIpAddress": "20.1.2.3", "Claims": json.dumps(claims),
                   "Properties_d": {"statusCode": "Forbidden"},
                   "ResourceId": f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Storage/"
                                 "storageAccounts/reports"}
    path = write_lines(tmp_path / "la.json", [la_signin, la_activity])
    assert azure.detect(path)
    load(store, "azure", path)
    issued, used = event(store, "azure", "la-signin-1"), event(store, "azure", "la-act-1")
    assert issued["credential_id"] == used["credential_id"] == "azure-token:q-7_AbCdEfGhIjKlMnOpQA"
    assert issued["parent_credential_id"] == "azure-key:key-1" and issued["account"] == "tenant-1"
    assert (used["outcome"], used["error_code"], used["read_only"]) == ("denied", "Forbidden", True)
    assert used["actor_id"] == SP_ID


def test_event_hub_wrapper_and_failed_signin(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    failed = signin("signin-2", "AAAA", status={"errorCode": 7000215})
    failed["resultType"] = "7000215"
    path = tmp_path / "eventhub.json"
    records = [signin("signin-1", "q+7/AbCdEfGhIjKlMnOpQA=="), failed]
    path.write_text(json.dumps({"records": records}, indent=2))
    assert azure.detect(path)
    assert load(store, "azure", path).loaded == 2
    rejected_signin = event(store, "azure", "signin-2")
    assert (rejected_signin["outcome"], rejected_signin["error_code"]) == ("failure", "7000215")


def test_signin_category_spellings_and_identity_as_a_string(
    store: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    newer = {**signin("signin-ms", "MMMM"), "category": "MicrosoftServicePrincipalSignInLogs"}
    lower = {**signin("signin-lc", "LLLL"), "category": "servicePrincipalSignInLogs"}
    stringly = activity("MMMM")
    stringly["identity"] = json.dumps(stringly["identity"])  # Event Hub exports serialize it
    path = write_lines(tmp_path / "azure.json", [newer, lower, stringly])
    assert azure.detect(path) and ingest.detect(path) == "azure"
    assert load(store, "azure", path).rejected == 0
    got = rows(store, "SELECT event_id, category, action, credential_id, actor_id FROM events ORDER BY record_index")
    assert [(r["category"], r["action"]) for r in got[:2]] == [("credential_issue", "entra:ServicePrincipalSignIn")] * 2
    assert got[2]["category"] == "action"
    assert got[2]["credential_id"] == got[0]["credential_id"] == "azure-token:MMMM"
    assert got[2]["actor_id"] == SP_ID


def test_no_result_field_means_outcome_unknown(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    no_result_signin = signin("signin-nr", "NNNN")
    del no_result_signin["resultType"]
    no_result_activity = activity("OOOO")
    del no_result_activity["resultType"]
    path = write_lines(tmp_path / "azure.json", [no_result_signin, no_result_activity, activity("PPPP")])
    load(store, "azure", path)
    outcomes = [r[0] for r in store.execute("SELECT outcome FROM events ORDER BY record_index").fetchall()]
    assert outcomes == [None, None, "success"]


# --- bad input --------------------------------------------------------------------------------------


def test_bad_records_are_rejected_with_a_reason(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "azure.json", [
        signin("good-1", "AAAA"),
        '{"time": "2026-11-02T09:00:00Z", "category": "ServicePrincipalSignInLogs", "properties": {',
        {**signin("bad-time", "BBBB"), "time": "last tuesday"},
        {**signin("bad-props", "CCCC"), "properties": "oops"},
        activity("DDDD", identity="someone"),
        {"category": "Something", "time": "2026-11-02T09:00:00Z"},
        signin("good-2", "EEEE"),
    ])
    result = load(store, "azure", path)
    assert (result.loaded, result.rejected) == (2, 5)
    assert result.read == result.loaded + result.rejected + result.duplicates
    reasons = [r["reason"] for r in rows(store, "SELECT reason FROM rejected ORDER BY line")]
    assert reasons == [
        "line 2: not valid JSON (truncated or malformed record)",
        "time 'last tuesday' is not an RFC 3339 time",
        "properties is a JSON string, expected an object",
        "identity is a string that does not hold a JSON object",
        "not an Entra sign-in or Activity Log record (category 'Something'): "
        "expected ServicePrincipalSignInLogs, ManagedIdentitySignInLogs or an Activity Log category",

    ]


def test_reingest_is_a_no_op(store: duckdb.DuckDBPyConnection) -> None:
    first = load(store, "azure", sample(AZ_SAMPLES / SP_SIGNINS))
    again = load(store, "azure", sample(AZ_SAMPLES / SP_SIGNINS))
    assert again.already_ingested and again.loaded == 0
    assert store.execute("SELECT count(*) FROM events").fetchone()[0] == first.loaded
