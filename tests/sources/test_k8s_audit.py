"""Kubernetes audit: every shared sample loads cleanly in its envelope (native, AKS, GKE), spot checks
against values read in the files, stage selection, TokenRequest issuance joining a later request,
impersonation, and bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from helpers import SAMPLES, event, load, rows, sample, sample_files, utc, write_lines

from nhiaudit import ingest
from nhiaudit.sources import k8s_audit

K8S_SAMPLES = SAMPLES / "k8s_audit"
SAMPLE_FILES = sample_files(K8S_SAMPLES)
MIXED = "elastic__test-audit.mixed-native-gke-aks.log"
AKS_STRING = "elastic__test-kube-audit.aks-diagnostic-wrapped.log"


def events(con: duckdb.DuckDBPyConnection, where: str = "true", params: list[Any] | None = None) -> list:

    sql = f"SELECT * FROM events WHERE source = 'k8s_audit' AND {where} ORDER BY record_index"
    found = rows(con, sql, params)
    for row in found:
        row["details"] = json.loads(row["details"]) if row["details"] else {}
    return found


def audit_event(audit_id: str, **fields: Any) -> dict[str, Any]:
    """A native audit.k8s.io/v1 Event; ``fields`` override the defaults."""
    base: dict[str, Any] = {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": audit_id,
        "stage": "ResponseComplete", "requestURI": "/api/v1/namespaces/prod/secrets/db", "verb": "get",
        "user": {"username": "system:serviceaccount:prod:report-bot", "groups": ["system:serviceaccounts"]},
        "sourceIPs": ["10.0.0.7"], "userAgent": "kubectl/v1.30.0",
        "objectRef": {"resource": "secrets", "namespace": "prod", "name": "db", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": "2026-11-02T09:10:00.000001Z",
        "stageTimestamp": "2026-11-02T09:10:00.004Z",
        "annotations": {"authorization.k8s.io/decision": "allow"},
    }
    base.update(fields)
    return base


# --- the shared samples -------------------------------------------------------------------------


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=[p.name for p in SAMPLE_FILES])
def test_every_sample_loads_without_rejections(store: duckdb.DuckDBPyConnection, path: Path) -> None:
    assert k8s_audit.detect(path)
    assert ingest.detect(path) == "k8s_audit"
    result = load(store, "k8s_audit", path)
    assert result.rejected == 0, rows(store, "SELECT reason FROM rejected")
    lines = sum(1 for line in path.read_text().splitlines() if line.strip())
    assert result.read == lines  # one record a line in every sample; none consumed
    assert result.read == result.loaded + result.duplicates
    assert all(e["occurred_at"] is not None and e["action"].startswith("k8s:") for e in events(store))


def test_mixed_file_reads_all_three_envelopes(store: duckdb.DuckDBPyConnection) -> None:
    result = load(store, "k8s_audit", sample(K8S_SAMPLES / MIXED))
    # Lines 2 and 3 are the same event twice; Elastic reuses auditID abcde12345 for 3 other events.
    assert (result.read, result.loaded, result.duplicates, result.rejected) == (5, 4, 1, 0)
    found = events(store)
    assert [e["details"]["envelope"] for e in found] == ["native", "native", "gke", "aks"]

    native = found[1]
    assert native["event_id"] == "abcde12345"
    assert native["occurred_at"] == utc(2025, 7, 16, 10, 12, 56, 525137)
    assert native["actor_id"] == "system:serviceaccount:kube-system:elastic-agent"
    assert native["actor_type"] == "workload"
    # No credential-id in user.extra: the service account's token, not individually identified.
    assert native["credential_id"] == "k8s-sa:system:serviceaccount:kube-system:elastic-agent"
    assert native["action"] == "k8s:get:leases"
    assert native["resource"] == "namespaces/kube-system/leases/elastic-agent-cluster-test"
    assert native["read_only"] is True and native["outcome"] == "success"
    assert native["src_ip"] == "67.43.156.1"

    gke = found[2]
    assert gke["event_id"] == "1234abcd"  # the LogEntry insertId
    assert gke["occurred_at"] == utc(2025, 7, 13, 8, 38, 39, 127266)
    assert gke["actor_id"] == "system:gke-master-healthcheck" and gke["actor_type"] == "service"
    assert (gke["action"], gke["resource"]) == ("k8s:get", "/readyz")  # non-resource request
    assert (gke["account"], gke["region"]) == ("elastic-siem", "us-central1")
    assert gke["details"]["cluster"] == "test-cluster" and gke["details"]["method_name"] == "io.k8s.get"

    aks = found[3]
    assert aks["occurred_at"] == utc(2025, 9, 30, 6, 23, 35, 91134)
    assert aks["actor_id"] == "aksService" and aks["credential_id"] is None
    assert aks["action"] == "k8s:update:leases" and aks["read_only"] is False
    assert aks["account"] == "1234567890"
    assert aks["details"]["cluster"].endswith("/managedclusters/test-aks")
    assert json.loads(aks["raw"])["category"] == "kube-audit-admin"  # the wrapper is the evidence


def test_aks_log_as_json_string(store: duckdb.DuckDBPyConnection) -> None:
    load(store, "k8s_audit", sample(K8S_SAMPLES / AKS_STRING))
    e = event(store, "k8s_audit", "ad26f7bc-f1c6-4097-90f1-e0924e12f257")
    assert e["occurred_at"] == utc(2025, 10, 7, 16, 19, 19, 643609)
    assert e["actor_id"] == "aksService" and e["actor_type"] == "service"
    assert e["action"] == "k8s:update:leases"
    assert e["resource"] == "namespaces/kube-system/leases/kubelet-serving-csr-approver"
    assert e["src_ip"] == "172.31.51.172" and e["account"] == "ae2861b3-e901-49bd-99f3-660eb5747107"


def test_falco_captures(store: duckdb.DuckDBPyConnection) -> None:
    for name in ("falco__exec_pod.json", "falco__anonymous_creates_namespace_foo.json",
                 "falco__create_nginx_pod_privileged.json", "falco__attach_cluster_admin_role.json"):
        load(store, "k8s_audit", sample(K8S_SAMPLES / name))
    # exec: the capture stops at ResponseStarted (101 upgrade); no apiVersion at all.
    exec_ = event(store, "k8s_audit", "ca1ed9f4-7bf4-4c85-81a8-1b11253d1ba6")
    assert exec_["action"] == "k8s:create:pods/exec" and exec_["outcome"] == "success"
    assert exec_["resource"] == "namespaces/default/pods/nginx-deployment-7998647bdf-phvq7/exec"
    assert exec_["details"]["stage"] == "ResponseStarted"
    assert exec_["occurred_at"] == utc(2018, 10, 26, 13, 38, 34, 867116)

    anonymous = event(store, "k8s_audit", "841d3e6d-90d2-43df-8da4-684738bee3d5")  # v1beta1
    assert anonymous["actor_id"] == "system:anonymous" and anonymous["actor_type"] == "unknown"
    assert (anonymous["action"], anonymous["resource"]) == ("k8s:create:namespaces", "namespaces/foo")

    pod = event(store, "k8s_audit", "a362d22b-db3c-4590-9505-23782f12925f")
    assert pod["credential_id"] == "k8s-sa:system:serviceaccount:kube-system:replicaset-controller"
    assert pod["credential_type"] == "k8s_sa_token"
    # generateName: the object's name is only in the response.
    assert pod["resource"] == "namespaces/default/pods/nginx-deployment-5cdcc99dbf-rgw6z"

    binding = event(store, "k8s_audit", "c97244c7-4aec-4714-946a-8204d00ecdca")
    assert (binding["action"], binding["resource"]) == (
        "k8s:create:clusterrolebindings", "clusterrolebindings/some-reader-binding")


# --- issuance and use -----------------------------------------------------------------------------


def test_token_request_then_use_of_the_issued_token(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    jti = "JTI=7d0b3a52-1f4e-4c59-9f7e-1c2d3e4f5a6b"
    kubelet_cert = "X509SHA256=3f1c9a"
    issue = audit_event(
        "tok-1", verb="create", requestURI="/api/v1/namespaces/prod/serviceaccounts/report-bot/token",
        user={"username": "system:node:node-1", "groups": ["system:nodes"],
              "extra": {"authentication.kubernetes.io/credential-id": [kubelet_cert]}},
        objectRef={"resource": "serviceaccounts", "namespace": "prod", "name": "report-bot",
                   "subresource": "token", "apiVersion": "v1"},
        responseStatus={"metadata": {}, "code": 201},
        requestObject={"kind": "TokenRequest", "spec": {"audiences": ["https://kubernetes.default.svc"],
                       "expirationSeconds": 3600, "boundObjectRef": {"kind": "Pod", "name": "report-bot-0"}}},
        responseObject={"kind": "TokenRequest", "status": {"expirationTimestamp": "2026-11-02T10:00:00Z"}},
        annotations={"authorization.k8s.io/decision": "allow",
                     "authentication.kubernetes.io/issued-credential-id": jti},
        requestReceivedTimestamp="2026-11-02T09:00:00.000001Z", stageTimestamp="2026-11-02T09:00:00.002Z",
    )
    received = {**issue, "stage": "RequestReceived", "stageTimestamp": "2026-11-02T09:00:00.000001Z"}
    del received["responseStatus"]
    use = audit_event("use-1", user={"username": "system:serviceaccount:prod:report-bot",
                                     "extra": {"authentication.kubernetes.io/credential-id": [jti],
                                               "authentication.kubernetes.io/pod-name": ["report-bot-0"]}})
    path = write_lines(tmp_path / "audit.log", [received, issue, use])
    result = load(store, "k8s_audit", path)
    # RequestReceived is the same request as its ResponseComplete: consumed, not an event.
    assert (result.read, result.loaded, result.rejected) == (2, 2, 0)

    issued = event(store, "k8s_audit", "tok-1")
    assert issued["category"] == "credential_issue"
    assert issued["credential_id"] == jti and issued["credential_type"] == "k8s_bound_sa_token"
    assert issued["parent_credential_id"] == kubelet_cert
    assert issued["actor_id"] == "system:node:node-1"
    assert issued["details"]["holder"] == "system:serviceaccount:prod:report-bot"
    assert issued["details"]["ttl_seconds"] == 3600
    assert issued["expires_at"] == utc(2026, 11, 2, 10, 0, 0)

    used = event(store, "k8s_audit", "use-1")
    assert used["category"] == "action"
    assert used["credential_id"] == issued["credential_id"]
    assert used["details"]["pod_name"] == "report-bot-0"
    assert (used["action"], used["resource"]) == ("k8s:get:secrets", "namespaces/prod/secrets/db")


def test_kep_spelling_and_missing_issued_id(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    token_ref = {"resource": "serviceaccounts", "namespace": "ci", "name": "builder", "subresource": "token"}
    kep = audit_event("tok-kep", verb="create", objectRef=token_ref, responseStatus={"code": 201},
                      annotations={"authentication.k8s.io/issued-credential-id": "JTI=abc"})
    legacy = audit_event("tok-old", verb="create", objectRef=token_ref, responseStatus={"code": 201},
                         annotations={}, requestReceivedTimestamp="2026-11-02T09:20:00Z")
    later = audit_event("use-old", user={"username": "system:serviceaccount:ci:builder",
                                         "extra": {"authentication.k8s.io/credential-id": ["JTI=abc"]}})
    load(store, "k8s_audit", write_lines(tmp_path / "audit.log", [kep, legacy, later]))
    assert event(store, "k8s_audit", "tok-kep")["credential_id"] == "JTI=abc"
    assert event(store, "k8s_audit", "use-old")["credential_id"] == "JTI=abc"
    # A cluster older than v1.30 logs no JTI: the issuance is keyed like an unidentified SA token.
    old = event(store, "k8s_audit", "tok-old")
    assert old["credential_id"] == "k8s-sa:system:serviceaccount:ci:builder"
    assert old["details"]["issued_credential_logged"] is False


def test_impersonation_and_eks_access_key(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    impersonated = audit_event(
        "imp-1", user={"username": "alice@example.com",
                       "extra": {"authentication.kubernetes.io/credential-id": ["X509SHA256=aa"]}},
        impersonatedUser={"username": "system:serviceaccount:prod:deployer"})
    eks = audit_event(
        "eks-1", user={"username": "arn:aws:sts::111111111111:assumed-role/agent/session",
                       "uid": "aws-iam-authenticator:111111111111:AROAEXAMPLE",
                       "extra": {"accessKeyId": ["ASIAEXAMPLEKEY"], "sessionName": ["session"]}},
        requestReceivedTimestamp="2026-11-02T09:30:00Z")
    load(store, "k8s_audit", write_lines(tmp_path / "audit.log", [impersonated, eks]))
    imp = event(store, "k8s_audit", "imp-1")
    assert imp["actor_id"] == "system:serviceaccount:prod:deployer" and imp["actor_type"] == "workload"
    assert imp["details"]["impersonated_by"] == "alice@example.com"
    assert imp["credential_id"] == "X509SHA256=aa"  # the credential presented is the impersonator's
    eks_event = event(store, "k8s_audit", "eks-1")
    assert eks_event["credential_id"] == "ASIAEXAMPLEKEY"  # joins CloudTrail userIdentity.accessKeyId
    assert eks_event["credential_type"] == "aws_temporary_key"


def test_outcomes(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    forbidden = audit_event("deny-1", responseStatus={"code": 403, "reason": "Forbidden"},
                            annotations={"authorization.k8s.io/decision": "forbid"})
    missing = audit_event("miss-1", responseStatus={"code": 404, "reason": "NotFound"},
                          requestReceivedTimestamp="2026-11-02T09:11:00Z")
    load(store, "k8s_audit", write_lines(tmp_path / "audit.log", [forbidden, missing]))
    denied, failed = event(store, "k8s_audit", "deny-1"), event(store, "k8s_audit", "miss-1")
    assert (denied["outcome"], denied["error_code"]) == ("denied", "Forbidden")
    assert (failed["outcome"], failed["error_code"]) == ("failure", "NotFound")


# --- other layouts ----------------------------------------------------------------------------------


def test_event_list_and_event_hub_records(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    event_list = tmp_path / "webhook.json"
    event_list.write_text(json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [
        audit_event("list-1"), audit_event("list-2", verb="delete")]}, indent=2))
    assert k8s_audit.detect(event_list)
    assert load(store, "k8s_audit", event_list).loaded == 2
    assert event(store, "k8s_audit", "list-2")["action"] == "k8s:delete:secrets"

    hub = tmp_path / "eventhub.json"
    wrapped = {"category": "kube-audit", "resourceId": "/SUBSCRIPTIONS/S1/RESOURCEGROUPS/RG/PROVIDERS/"
               "MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/C1",
               "properties": {"log": json.dumps(audit_event("hub-1")), "pod": "kube-apiserver-0"}}
    hub.write_text(json.dumps({"records": [wrapped]}))
    assert k8s_audit.detect(hub)
    assert load(store, "k8s_audit", hub).loaded == 1
    assert event(store, "k8s_audit", "hub-1")["account"] == "s1"


def test_eks_audit_through_cloudwatch_logs(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    """The CloudWatch Logs subscription payload (DATA_MESSAGE, as Firehose or a Lambda delivers it),
    a filter-log-events export and its events one a line: the Event is the JSON string in message."""
    def cw_event(n: int, audit_id: str, **fields: Any) -> dict[str, Any]:
        return {"id": f"3719{n:052d}", "timestamp": 1793610600000 + n,
                "message": json.dumps(audit_event(audit_id, **fields))}

    payload = tmp_path / "eks-subscription.json"
    payload.write_text(json.dumps({
        "messageType": "DATA_MESSAGE", "owner": "111122223333", "logGroup": "/aws/eks/prod/cluster",
        "logStream": "kube-apiserver-audit-0a1b2c3d", "subscriptionFilters": ["to-firehose"],
        "logEvents": [cw_event(1, "eks-1"), cw_event(2, "eks-2", verb="delete")]}))
    assert k8s_audit.detect(payload) and ingest.detect(payload) == "k8s_audit"
    assert load(store, "k8s_audit", payload).loaded == 2
    deleted = event(store, "k8s_audit", "eks-2")
    assert (deleted["action"], deleted["resource"]) == ("k8s:delete:secrets", "namespaces/prod/secrets/db")
    assert deleted["details"]["envelope"] == "eks"

    export = tmp_path / "filter-log-events.json"
    export.write_text(json.dumps({"events": [{**cw_event(3, "eks-3"), "logStreamName": "kube-apiserver-audit-0a1b",
                                              "ingestionTime": 1793610601000, "eventId": "3719"}]}, indent=2))
    assert k8s_audit.detect(export)
    assert load(store, "k8s_audit", export).loaded == 1
    lines = write_lines(tmp_path / "firehose.ndjson", [cw_event(4, "eks-4"), {**cw_event(5, "x"), "message": "oops"}])
    assert k8s_audit.detect(lines)
    result = load(store, "k8s_audit", lines)
    assert (result.loaded, result.rejected) == (1, 1)
    assert rows(store, "SELECT reason FROM rejected")[0]["reason"] == (
        "message is a string that is not JSON ('oops'): expected an audit Event serialized as JSON")


def test_gke_entry_is_the_same_event_in_a_gcp_file(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    mixed = sample(K8S_SAMPLES / MIXED).read_text().splitlines()
    gke_line = next(line for line in mixed if "protoPayload" in line)
    path = write_lines(tmp_path / "gke-only.log", [gke_line])
    assert ingest.detect(path) == "gcp_audit"  # a GKE export on its own is a Cloud Audit Log file
    ingest.ingest(store, [path])
    load(store, "k8s_audit", sample(K8S_SAMPLES / MIXED))
    columns = "event_id, occurred_at, actor_id, credential_id, action, resource, outcome, account, region"
    by_source = rows(store, f"SELECT source, {columns} FROM events WHERE event_id = '1234abcd' ORDER BY 1")

    assert [r.pop("source") for r in by_source] == ["gcp_audit", "k8s_audit"]
    assert by_source[0] == by_source[1]


# --- bad input --------------------------------------------------------------------------------------


def test_bad_records_are_rejected_with_a_reason(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    aks_text = {"category": "kube-audit", "properties": {"log": "I1102 09:00:00 apiserver started"}}
    path = write_lines(tmp_path / "audit.log", [
        audit_event("good-1"),
        '{"kind":"Event","auditID":"trunc',
        audit_event("bad-verb", verb=7),
        audit_event("bad-time", requestReceivedTimestamp="yesterday"),
        audit_event("bad-code", responseStatus={"code": "OK"}),
        aks_text,
        {"hello": "world"},
        audit_event("good-2", requestReceivedTimestamp="2026-11-02T09:12:00Z"),
    ])
    result = load(store, "k8s_audit", path)
    assert (result.loaded, result.rejected) == (2, 6)
    assert result.read == result.loaded + result.rejected + result.duplicates
    reasons = [r["reason"] for r in rows(store, "SELECT reason FROM rejected ORDER BY line")]
    assert reasons[0] == "line 2: not valid JSON (truncated or malformed record)"
    assert reasons[1] == "verb is a JSON number, expected a string"
    assert reasons[2] == "requestReceivedTimestamp 'yesterday' is not an RFC 3339 time"
    assert reasons[3] == "responseStatus.code is a JSON string, expected a number"
    assert reasons[4].startswith("properties.log is a string that is not JSON ('I1102 09:00:00")
    assert reasons[5] == "not a Kubernetes audit Event: no auditID and no verb"
    assert {e["event_id"] for e in events(store)} == {"good-1", "good-2"}


def test_reingest_is_a_no_op(store: duckdb.DuckDBPyConnection) -> None:
    path = sample(K8S_SAMPLES / MIXED)
    first = load(store, "k8s_audit", path)
    again = load(store, "k8s_audit", path)
    assert again.already_ingested and again.loaded == 0
    assert store.execute("SELECT count(*) FROM events").fetchone()[0] == first.loaded
