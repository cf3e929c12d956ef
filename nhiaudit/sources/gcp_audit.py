"""GCP Cloud Audit Logs: LogEntry records whose protoPayload is an AuditLog (DESIGN §4, FORMATS §2).

Three export shapes reach nhiaudit: NDJSON or a JSON array of LogEntry (GCS sink, ``gcloud logging
read --format=json``, the Logging API's ``{"entries": [...]}``), Pub/Sub messages whose
``message.data`` is the LogEntry base64-encoded, and BigQuery exports where the payload is
``protopayload_auditlog`` (with ``requestJson``/``metadataJson`` strings). Each is reduced to one
LogEntry per record in SQL, then normalized once. GKE entries (``serviceName`` ``k8s.io``) are
Kubernetes API calls: they are normalized by ``k8s_audit`` so that one API call gets the same
action and resource whichever way its log arrived.

Credential ids are built as ``_gcp_logentry`` describes: a token minted for a service account is
the issued credential of ``iamcredentials`` ``GenerateAccessToken`` and the credential of a later
call that carries ``serviceAccountDelegationInfo``.

Privileged Access Manager entries are the task and approval evidence of a grant (``PAM_TASK``);
correlation joins the grant to the requester's calls in its window (70_action_tasks.sql).
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

import duckdb

from nhiaudit.sources import _gcp_logentry as logentry
from nhiaudit.sources import _sql, k8s_audit
from nhiaudit.sources._read import RAW_EXCERPT, EvidenceFile, first_json_line, head, stage_json_records

NAME = "gcp_audit"
READS = (
    "GCP Cloud Audit Logs (LogEntry with protoPayload AuditLog) as NDJSON or JSON arrays, "
    "Pub/Sub messages (base64 message.data) and BigQuery exports (protopayload_auditlog); Privileged Access "
    "Manager grants in them are tasks and approvals"
)
DETECTION = (
    "JSON whose first record is a LogEntry with a protoPayload of @type google.cloud.audit.AuditLog "
    "(or BigQuery's protopayload_auditlog), or a Pub/Sub message whose base64 data decodes to one"
)

ISSUING = ("GenerateAccessToken", "GenerateIdToken", "SignJwt", "SignBlob")
# Privileged Access Manager (https://cloud.google.com/iam/docs/audit-logging/audit-logging-pam): a
# grant (projects|folders|organizations/…/entitlements/E/grants/G) is a task, gcp-pam-grant:<name>;
# ApproveGrant / DenyGrant are its approval decisions (an approval the grant still awaits more of,
# state APPROVAL_AWAITED after it, is one approved stage); RevokeGrant / WithdrawGrant end it.
PAM_SERVICE = "privilegedaccessmanager.googleapis.com"
PAM_TASK = "gcp-pam-grant:"
_AUDIT_LOG = "google.cloud.audit.AuditLog"
# Methods whose name says they only read (last dotted segment of methodName, case-insensitive).
_READ_METHOD = r"^(get|list|aggregatedlist|search|lookup|read|query|describe|batchget|testiampermissions)"
# Google-managed service agents act for the platform itself, not for a customer workload.
_SERVICE_AGENT = (
    r"@(gcp-sa-[a-z0-9-]+\.iam|cloudservices|system|container-engine-robot|compute-system)\.gserviceaccount\.com$"
)

_PAYLOAD = """{
    "@type": "VARCHAR", "serviceName": "JSON", "methodName": "JSON", "resourceName": "VARCHAR",
    "authenticationInfo": "JSON", "requestMetadata": "JSON", "status": "JSON", "authorizationInfo": "JSON",
    "resourceLocation": "JSON",
    "request": "JSON", "response": "JSON", "metadata": "JSON",
    "requestJson": "VARCHAR", "responseJson": "VARCHAR", "metadataJson": "VARCHAR"
}"""


def detect(path: Path) -> bool:
    text = head(path)
    record = first_json_line(text)
    if record is None:
        return _looks_like_audit_document(text)
    return _is_audit_record(_first_of(record))


def _first_of(record: object) -> object:
    if isinstance(record, list):
        return record[0] if record else None
    if isinstance(record, dict):
        for key in ("entries", "receivedMessages"):
            if isinstance(record.get(key), list) and record[key]:
                return record[key][0]
    return record


def _is_audit_record(record: object) -> bool:
    if not isinstance(record, dict):
        return False
    if isinstance(record.get("protopayload_auditlog"), dict):
        return True
    payload = record.get("protoPayload")
    if isinstance(payload, dict):
        return str(payload.get("@type", "")).endswith(_AUDIT_LOG)
    message = record.get("message") if isinstance(record.get("message"), dict) else record
    data = message.get("data")
    pubsub = "messageId" in message or "publishTime" in message or message is not record
    if not isinstance(data, str) or not pubsub:
        return False
    try:
        padded = data + "=" * (-len(data) % 4)
        entry = json.loads(base64.b64decode(padded, altchars=b"-_" if "-" in data else None))
    except (ValueError, binascii.Error):
        return False
    return isinstance(entry, dict) and "protoPayload" in entry and _is_audit_record(entry)


def _looks_like_audit_document(text: str) -> bool:
    """A pretty-printed array or document (``gcloud logging read --format=json``): the first record
    holds an AuditLog payload and is not a Kubernetes Event (which k8s_audit reads)."""
    start = text.lstrip()[:1]
    payload = text.find('"protoPayload"')
    if start not in ("[", "{") or payload < 0 or _AUDIT_LOG not in text:
        return '"protopayload_auditlog"' in text and start in ("[", "{")
    return '"auditID"' not in text[:payload]


def load(con: duckdb.DuckDBPyConnection, files: list[EvidenceFile]) -> None:
    for file in files:
        stage_json_records(con, file, unwrap=("entries", "receivedMessages"))
        _stage_entries(con)
        con.execute(
            """CREATE OR REPLACE TEMP TABLE k8s_in AS
            SELECT record_index, line, 'gke' AS envelope,
                   CASE WHEN entry IS DISTINCT FROM raw THEN entry END AS body,
                   NULL::VARCHAR AS reason, NULL::VARCHAR AS aks_resource_id


            FROM gcp_in WHERE reason IS NULL AND is_gke"""
        )
        k8s_audit.normalize(con)
        con.execute("DELETE FROM gcp_in WHERE reason IS NULL AND is_gke")
        _normalize(con)


def _stage_entries(con: duckdb.DuckDBPyConnection) -> None:
    """``gcp_in``: one LogEntry per record (Pub/Sub data decoded), with a reason when it is not one."""
    not_audit = (
        "LogEntry without protoPayload: not a Cloud Audit Log entry "
        "(jsonPayload and textPayload logs carry no audit fields)"
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE gcp_in AS
        WITH m AS (
            SELECT record_index, line, doc,
                CASE WHEN {logentry.has_audit_payload("doc")} THEN NULL
                     WHEN json_type(doc, '$.message.data') IS NOT NULL
                         THEN json_extract(doc, '$.message.data')
                     WHEN json_type(doc, '$.data') IS NOT NULL AND (json_type(doc, '$.messageId') IS NOT NULL
                          OR json_type(doc, '$.publishTime') IS NOT NULL) THEN json_extract(doc, '$.data')
                END AS data
            FROM records
        ), d AS (
            SELECT *, translate(json_extract_string(data, '$'), '-_', '+/') AS b64 FROM m
        ), e AS (
            SELECT *, try(from_base64(b64 || repeat('=', (4 - length(b64) % 4) % 4))) AS bytes FROM d
        ), t AS (
            SELECT *, try(decode(bytes)) AS text FROM e
        ), j AS (
            SELECT record_index, line, doc, data, text,
                   CASE WHEN data IS NULL THEN doc ELSE try(json(text)) END AS entry,
                   CASE WHEN data IS NOT NULL THEN coalesce(
                        {_sql.wrong_type("json_type(data)", "message.data", _sql.STRING, "a base64 string")}, CASE
                        WHEN bytes IS NULL THEN 'message.data is not valid base64 (a Pub/Sub message carries '
                                                || 'the LogEntry base64-encoded)'
                        WHEN text IS NULL THEN 'message.data decodes to bytes that are not UTF-8 text'
                        WHEN try(json(text)) IS NULL
                            THEN 'message.data decodes to text that is not JSON: ''' || left(text, 60) || ''''
                   END) END AS data_reason
            FROM t
        ), p AS (
            SELECT *, {logentry.audit_payload("entry")} AS pp
            FROM j
        )
        SELECT record_index, line, doc AS raw, entry, pp,
            coalesce(json_extract_string(pp, '$.serviceName') = 'k8s.io', false) AS is_gke,
            coalesce(data_reason,
                {_sql.wrong_type("json_type(entry)", "message.data holds", _sql.OBJECT, "a LogEntry object")},
                CASE WHEN pp IS NULL THEN '{not_audit}' END,
                {_sql.wrong_type("json_type(pp)", "protoPayload", _sql.OBJECT, "an AuditLog object")}, CASE
                WHEN NOT ends_with(json_extract_string(pp, '$."@type"'), '{_AUDIT_LOG}')
                    THEN 'protoPayload @type ''' || left(json_extract_string(pp, '$."@type"'), 80)
                         || ''' is not {_AUDIT_LOG}'
            END) AS reason
        FROM p"""
    )


def _normalize(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE gcp_e AS
        SELECT record_index, line, raw, reason, json_transform(entry, '{logentry.ENTRY}') AS e,
               CASE WHEN reason IS NULL THEN json_transform(pp, '{_PAYLOAD}') END AS p
        FROM gcp_in"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE gcp_f AS
        SELECT *,
            json_extract_string(e.timestamp, '$') AS time_text,
            try_cast(json_extract_string(e.timestamp, '$') AS TIMESTAMPTZ) AS occurred_at,
            json_extract_string(p.serviceName, '$') AS service,
            json_extract_string(p.methodName, '$') AS method,
            json_extract_string(p.authenticationInfo, '$.principalEmail') AS email,
            json_extract_string(p.authenticationInfo, '$.principalSubject') AS subject,
            json_extract_string(p.authenticationInfo, '$.serviceAccountKeyName') AS key_name,
            coalesce(p.request, try(json(p.requestJson))) AS req,
            coalesce(p.response, try(json(p.responseJson))) AS resp,
            coalesce(p.metadata, try(json(p.metadataJson))) AS meta
        FROM gcp_e"""
    )
    s = _sql
    problem = s.first_problem(
        "reason",
        s.wrong_time("e.timestamp", "timestamp"),
        s.wrong_type("json_type(p.methodName)", "protoPayload.methodName", s.STRING, "a string"),
        s.wrong_type("json_type(p.serviceName)", "protoPayload.serviceName", s.STRING, "a string"),
        s.wrong_type("json_type(p.authenticationInfo)", "protoPayload.authenticationInfo", s.OBJECT, "an object"),
        s.wrong_type("json_type(p.status)", "protoPayload.status", s.OBJECT, "an object"),
        s.wrong_type("json_type(p.status, '$.code')", "protoPayload.status.code", s.INTEGER, "an integer"),
    )
    con.execute("ALTER TABLE gcp_f ADD COLUMN bad VARCHAR")
    con.execute(f"UPDATE gcp_f SET bad = {problem}")
    con.execute(
        "INSERT INTO staged_rejected SELECT record_index, line, bad, left(raw::VARCHAR, ?) "
        "FROM gcp_f WHERE bad IS NOT NULL",
        [RAW_EXCERPT],
    )
    con.execute("DELETE FROM gcp_f WHERE bad IS NOT NULL")
    issuing = ", ".join(ISSUING)
    con.execute(
        f"""INSERT INTO staged BY NAME
        WITH base AS (
            SELECT *,
                regexp_extract(method, '[^.]+$') AS method_leaf,
                {logentry.delegated_by_sql('p.authenticationInfo')} AS delegated_by,
                coalesce(email, subject) AS principal,
                json_extract_string(e.resource, '$.labels.email_id') AS label_email,
                regexp_extract(coalesce(json_extract_string(req, '$.name'), ''),
                               'serviceAccounts/([^/]+)$', 1) AS request_sa,
                regexp_extract(coalesce(p.resourceName, ''), 'serviceAccounts/([^/]+)$', 1) AS resource_sa,
                try_cast(json_extract_string(p.status, '$.code') AS BIGINT) AS status_code
            FROM gcp_f
        ), kinds AS (
            SELECT *,
                service = 'iamcredentials.googleapis.com'
                    AND regexp_matches(method_leaf, '^({issuing.replace(", ", "|")})$') AS token_issue,
                service = 'iam.googleapis.com' AND method_leaf = 'CreateServiceAccountKey' AS key_issue,
                service = 'iam.googleapis.com' AND method_leaf = 'DeleteServiceAccountKey' AS key_revoke,
                CASE WHEN service = '{PAM_SERVICE}' AND coalesce(status_code, 0) = 0 THEN CASE method_leaf
                    WHEN 'CreateGrant' THEN 'request' WHEN 'ApproveGrant' THEN 'approve' WHEN 'DenyGrant' THEN 'deny'
                    WHEN 'RevokeGrant' THEN 'end' WHEN 'WithdrawGrant' THEN 'end' END END AS pam_kind,
                -- the grant: the response names a created one, the request and resourceName the others
                list_filter([json_extract_string(resp, '$.name'), json_extract_string(req, '$.name'), p.resourceName],
                            x -> x LIKE '%/entitlements/%/grants/%')[1] AS pam_grant,
                {logentry.caller_credential_sql('key_name', 'email', 'subject', 'delegated_by')} AS caller_cred
            FROM base
        ), keyed AS (
            SELECT *,
                CASE WHEN token_issue THEN coalesce(
                         label_email, nullif(request_sa, ''),
                         CASE WHEN resource_sa LIKE '%@%' THEN resource_sa END, nullif(resource_sa, ''))
                     WHEN key_issue OR key_revoke THEN nullif(regexp_extract(coalesce(
                         json_extract_string(resp, '$.name'), json_extract_string(req, '$.name'),
                         p.resourceName, ''), 'serviceAccounts/([^/]+)', 1), '') END AS holder,
                CASE WHEN key_issue AND json_extract_string(resp, '$.name') IS NOT NULL
                         THEN '//iam.googleapis.com/' || json_extract_string(resp, '$.name')
                     WHEN key_revoke AND json_extract_string(req, '$.name') LIKE 'projects/%/keys/%'
                         THEN '//iam.googleapis.com/' || json_extract_string(req, '$.name') END AS key_id
            FROM kinds
        ), pam AS (
            SELECT *,
                coalesce(json_extract_string(resp, '$.justification.unstructuredJustification'),
                         json_extract_string(req, '$.grant.justification.unstructuredJustification')) AS pam_justification,
                from_json(json_extract(resp, '$.privilegedAccess.gcpIamAccess.roleBindings[*].role'), '["VARCHAR"]')
                    AS pam_roles,
                json_extract_string(resp, '$.privilegedAccess.gcpIamAccess.resource') AS pam_resource,
                try_cast(rtrim(coalesce(json_extract_string(resp, '$.requestedDuration'),
                                        json_extract_string(req, '$.grant.requestedDuration')), 's') AS DOUBLE)::BIGINT
                    AS pam_duration_s
            FROM keyed
        ), creds AS (
            SELECT *,
                CASE WHEN token_issue THEN 'gcp-sa-token:' || holder
                     WHEN key_issue OR key_revoke THEN key_id
                     ELSE caller_cred END AS cred
            FROM pam
        )
        SELECT
            e.insertId AS event_id,
            record_index, line, occurred_at,
            CASE WHEN token_issue OR key_issue THEN 'credential_issue'
                 WHEN key_revoke THEN 'credential_revoke'
                 WHEN pam_grant IS NOT NULL AND pam_kind IN ('request', 'end') THEN 'task'
                 WHEN pam_grant IS NOT NULL AND pam_kind IN ('approve', 'deny') THEN 'approval'
                 WHEN method IS NULL THEN 'other'
                 ELSE 'action' END AS category,
            principal AS actor_id,
            CASE WHEN regexp_matches(principal, '{_SERVICE_AGENT}') THEN 'service'
                 WHEN principal LIKE '%.gserviceaccount.com' OR principal LIKE 'serviceAccount:%'
                      OR principal LIKE '%/workloadIdentityPools/%' THEN 'workload'
                 ELSE 'unknown' END AS actor_type,
            cred AS credential_id,
            {logentry.credential_type_sql('cred')} AS credential_type,
            CASE WHEN token_issue OR key_issue THEN caller_cred END AS parent_credential_id,
            CASE WHEN method IS NOT NULL THEN
                coalesce(regexp_replace(service, '\\.googleapis\\.com$', ''), 'unknown') || ':' || method
            END AS action,
            p.resourceName AS resource,
            regexp_matches(lower(method_leaf), '{_READ_METHOD}') AS read_only,
            CASE WHEN coalesce(status_code, 0) = 0 THEN 'success'
                 WHEN status_code IN (7, 16) THEN 'denied'
                 ELSE 'failure' END AS outcome,
            CASE WHEN coalesce(status_code, 0) <> 0 THEN
                coalesce(json_extract_string(p.status, '$.message'), status_code::VARCHAR) END AS error_code,
            coalesce(json_extract_string(e.resource, '$.labels.project_id'),
                     regexp_extract(e.logName, '^projects/([^/]+)/', 1)) AS account,
            coalesce(json_extract_string(e.resource, '$.labels.location'),
                     json_extract_string(e.resource, '$.labels.region'),
                     json_extract_string(e.resource, '$.labels.zone'),
                     json_extract_string(p.resourceLocation, '$.currentLocations[0]')) AS region,
            json_extract_string(p.requestMetadata, '$.callerIp') AS src_ip,
            json_extract_string(p.requestMetadata, '$.callerSuppliedUserAgent') AS user_agent,
            lower(nullif(regexp_extract(coalesce(e.trace, ''), '([0-9a-fA-F]{{32}})$', 1), '')) AS trace_id,
            lower(e.spanId) AS span_id,
            CASE WHEN pam_grant IS NOT NULL AND pam_kind IS NOT NULL THEN '{PAM_TASK}' || pam_grant END AS task_id,
            CASE WHEN key_issue THEN try_cast(json_extract_string(resp, '$.validBeforeTime') AS TIMESTAMPTZ)
                 WHEN token_issue THEN try_cast(json_extract_string(resp, '$.expireTime') AS TIMESTAMPTZ)
                 -- an approval holds for the grant's requested duration from the decision
                 WHEN pam_grant IS NOT NULL AND pam_kind = 'approve' THEN coalesce(
                     try_cast(json_extract_string(resp, '$.auditTrail.accessRemoveTime') AS TIMESTAMPTZ),
                     occurred_at + to_seconds(pam_duration_s))
            END AS expires_at,
            CASE WHEN pam_grant IS NOT NULL AND pam_kind = 'end' THEN occurred_at END AS ended_at,
            CASE WHEN pam_grant IS NOT NULL AND pam_kind IN ('request', 'end') THEN json_object(
                'known_from', 'gcp_pam', 'grant', pam_grant,
                'requested_by', CASE WHEN pam_kind = 'request'
                                     THEN coalesce(json_extract_string(resp, '$.requester'), principal) END,
                'agent_id', CASE WHEN pam_kind = 'request'
                                 THEN coalesce(json_extract_string(resp, '$.requester'), principal) END,
                'intent', CASE WHEN pam_kind = 'request' THEN coalesce(pam_justification,
                    'Privileged Access Manager grant of ' || coalesce(array_to_string(pam_roles, ', '), '?')) END,
                'justification', pam_justification,
                'status', CASE WHEN pam_kind = 'request'
                               THEN lower(coalesce(json_extract_string(resp, '$.state'), 'requested'))
                               WHEN method_leaf = 'RevokeGrant' THEN 'revoked' ELSE 'withdrawn' END,
                'entitlement', regexp_extract(pam_grant, '^(.*)/grants/[^/]+$', 1),
                'roles', pam_roles, 'pam_resource', pam_resource, 'requested_duration_s', pam_duration_s,
                'log_name', e.logName)
            WHEN pam_grant IS NOT NULL AND pam_kind IN ('approve', 'deny') THEN json_object(
                'approval_id', pam_grant, 'approver', principal,
                'decision', CASE WHEN pam_kind = 'deny' THEN 'denied'
                                 WHEN json_extract_string(resp, '$.state') = 'APPROVAL_AWAITED' THEN 'pending'
                                 ELSE 'approved' END,
                'stage', principal, 'stage_decision', CASE WHEN pam_kind = 'deny' THEN 'denied' ELSE 'approved' END,
                'justification', json_extract_string(req, '$.reason'),
                'grant_state', json_extract_string(resp, '$.state'),
                'roles', pam_roles, 'pam_resource', pam_resource, 'requested_duration_s', pam_duration_s,
                'log_name', e.logName)
            WHEN token_issue OR key_issue THEN json_object(
                'holder', holder,
                'long_term', key_issue,
                'parent_credential_type', {logentry.credential_type_sql('caller_cred')},
                'ttl_seconds', try_cast(rtrim(json_extract_string(req, '$.lifetime'), 's') AS DOUBLE)::BIGINT,
                'delegation_chain', json_extract(meta, '$.identityDelegationChain'),
                'delegates', json_extract(req, '$.delegates'),
                'scopes', json_extract(req, '$.scope'),
                'audience', json_extract_string(req, '$.audience'),
                'principal_subject', subject,
                'log_name', e.logName)
            ELSE json_object(
                'delegated_by', CASE WHEN len(delegated_by) > 0 THEN to_json(delegated_by) END,
                'principal_subject', subject,
                'service_account_key', key_name,
                'operation_id', json_extract_string(e.operation, '$.id'),
                'log_name', e.logName,
                'resource_type', json_extract_string(e.resource, '$.type'),
                'denied_permissions', to_json(nullif(list_filter(list_transform(
                    json_extract(p.authorizationInfo, '$[*]'),
                    a -> CASE WHEN json_extract_string(a, '$.granted') = 'false'
                              THEN json_extract_string(a, '$.permission') END), x -> x IS NOT NULL), [])))
            END AS details,
            raw,
            {logentry.dedupe_key("e.insertId", "time_text", "e.logName")} AS dedupe_key

        FROM creds"""
    )
