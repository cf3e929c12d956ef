"""Kubernetes audit logs in their three envelopes (DESIGN §4, FORMATS §4).

- native ``audit.k8s.io/v1`` and ``v1beta1`` Events, one a line or in an ``EventList`` (the audit
  webhook posts ``{"kind": "EventList", "items": [...]}``); old Falco captures have no apiVersion;
- AKS diagnostic records ``{"category": "kube-audit…", "properties": {"log": …}}`` where ``log`` is
  the Event as an object or as a JSON string (one a line, or Event Hub's ``{"records": [...]}``);
- GKE Cloud Audit Log entries (``protoPayload`` with ``serviceName`` ``k8s.io`` and ``methodName``
  ``io.k8s.<group>.<version>.<resource>[.<subresource>].<verb>``);
- EKS control-plane audit logs through CloudWatch Logs: a subscription payload
  (``{"messageType": "DATA_MESSAGE", "logGroup": "/aws/eks/<cluster>/cluster", "logEvents": [{"id",
  "timestamp", "message"}]}``, as Firehose or a Lambda writes it), an export of ``filter-log-events``
  (``{"events": [...]}``) or its events one a line: ``message`` is the Event as a JSON string.

One file can mix all three (Elastic's test file does), so every record is first reduced to the same
columns (``k8s_u``), then normalized once. ``gcp_audit`` hands its GKE entries to ``normalize`` so
a GKE call gets the same action and resource whichever file it came in.

An API request is logged once per stage (RequestReceived, ResponseStarted, ResponseComplete, Panic).
Per auditID the most advanced stage in the file is the event; earlier stages are ``consumed``. That
keeps an exec/attach whose capture ends at ResponseStarted (Falco's samples) as an event.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from nhiaudit.sources import _gcp_logentry as logentry
from nhiaudit.sources import _sql
from nhiaudit.sources._read import RAW_EXCERPT, EvidenceFile, first_json_line, head, stage_json_records

NAME = "k8s_audit"
READS = (
    "Kubernetes audit Events (audit.k8s.io v1/v1beta1) one a line or as an EventList, AKS kube-audit "
    "diagnostic records (properties.log as object or JSON string) and GKE k8s.io LogEntry lines, mixed or not"
)
DETECTION = (
    "JSON whose first record is an audit Event (apiVersion audit.k8s.io/*, or auditID+stage+verb), "
    "an audit EventList, or an AKS kube-audit diagnostic record"
)

# The issued token's id (TokenRequest) and the presented token's id (every request). The shipped key
# is kubernetes.io (serviceaccount/util.go, v1.30 release note); KEP-4193 spells it k8s.io.
ISSUED_ID_KEYS = (
    "authentication.kubernetes.io/issued-credential-id",
    "authentication.k8s.io/issued-credential-id",
)
CREDENTIAL_ID_KEYS = ("authentication.kubernetes.io/credential-id", "authentication.k8s.io/credential-id")
_STAGE_RANK = {"RequestReceived": 1, "ResponseStarted": 2, "ResponseComplete": 3, "Panic": 4}

_EVENT = """{
    "auditID": "JSON", "stage": "JSON", "verb": "JSON", "requestURI": "VARCHAR", "user": "JSON",
    "impersonatedUser": "JSON", "sourceIPs": "JSON", "userAgent": "VARCHAR", "objectRef": "JSON",
    "responseStatus": "JSON", "annotations": "JSON", "requestReceivedTimestamp": "JSON",
    "stageTimestamp": "JSON", "timestamp": "JSON", "requestObject": "JSON", "responseObject": "JSON"
}"""
# io.k8s.core.v1.pods.exec.create -> group, version, resource, subresource, verb (GKE methodName).
_GKE_METHOD = r"^(.+)\.(v[0-9]+(?:(?:alpha|beta)[0-9]+)?)\.([^.]+)(?:\.([^.]+))?\.([^.]+)$"
# core/v1/namespaces/default/pods/foo/exec (GKE resourceName).
_GKE_RESOURCE = r"^(?:([^/]+)/)?(v[0-9][a-z0-9]*)/(?:namespaces/([^/]+)/)?([^/]+)(?:/([^/]+))?(?:/([^/]+))?$"


def detect(path: Path) -> bool:
    text = head(path)
    record = first_json_line(text)
    if record is None:
        return _looks_like_k8s_document(text)
    return _is_k8s_record(record)


def _is_k8s_record(record: object) -> bool:
    if isinstance(record, list):
        return bool(record) and _is_k8s_record(record[0])
    if not isinstance(record, dict):
        return False
    for key in ("records", "logEvents", "events"):
        if isinstance(record.get(key), list) and record[key]:
            return _is_k8s_record(record[key][0])
    if isinstance(record.get("message"), str) and '"auditID"' in record["message"]:
        return _is_k8s_record(first_json_line(record["message"]) or {})  # a CloudWatch Logs event
    api_version = str(record.get("apiVersion", ""))
    if api_version.startswith("audit.k8s.io/") or {"auditID", "stage", "verb"} <= record.keys():
        return True
    properties = record.get("properties")
    return str(record.get("category", "")).startswith("kube-audit") and isinstance(properties, dict) and (
        "log" in properties
    )


def _looks_like_k8s_document(text: str) -> bool:
    """A pretty-printed EventList or array, or a first line too long for the head."""
    if text.lstrip()[:1] not in ("[", "{"):
        return False
    payload = text.find('"protoPayload"')
    audit = re.search(r'"apiVersion"\s*:\s*"audit\.k8s\.io/|"auditID"\s*:', text)
    if audit and (payload < 0 or audit.start() < payload):
        return True
    if re.search(r'"category"\s*:\s*"kube-audit', text) is not None and '"properties"' in text:
        return True
    # CloudWatch Logs (EKS): the Event is an escaped string in "message"
    return '"message"' in text and '\\"auditID\\"' in text and ('"logEvents"' in text or '"events"' in text)


def load(con: duckdb.DuckDBPyConnection, files: list[EvidenceFile]) -> None:
    for file in files:
        stage_json_records(con, file, unwrap=("items", "records", "logEvents", "events"))
        _unwrap(con)
        normalize(con)


def _unwrap(con: duckdb.DuckDBPyConnection) -> None:
    """``k8s_in``: each record's envelope and the Event (or LogEntry) inside it."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE k8s_in AS
        WITH w AS (
            SELECT record_index, line, doc,
                CASE WHEN {logentry.has_audit_payload("doc")} THEN 'gke'
                     WHEN json_type(doc, '$.properties.log') IS NOT NULL THEN 'aks'
                     -- a CloudWatch Logs event: id/timestamp beside the Event as a JSON string
                     WHEN json_type(doc, '$.message') IS NOT NULL AND json_type(doc, '$.auditID') IS NULL
                         THEN 'eks' ELSE 'native' END AS envelope,
                coalesce(json_type(doc, '$.properties.log'), json_type(doc, '$.message')) AS log_type,
                coalesce(json_extract_string(doc, '$.properties.log'), json_extract_string(doc, '$.message'))
                    AS log_text
            FROM records
        )
        SELECT record_index, line, envelope,
            -- NULL: the Event is the record itself (read back from ``records``, not copied).
            CASE WHEN envelope NOT IN ('aks', 'eks') THEN NULL
                 WHEN log_type = 'OBJECT'
                     THEN coalesce(json_extract(doc, '$.properties.log'), json_extract(doc, '$.message'))
                 WHEN log_type = 'VARCHAR' THEN try(json(log_text)) END AS body,
            -- AKS writes the Event as a JSON string in some pipelines (FORMATS §4 quirks).
            CASE WHEN envelope = 'aks' AND log_type = 'VARCHAR' AND try(json(log_text)) IS NULL
                     THEN 'properties.log is a string that is not JSON (''' || left(log_text, 60)
                          || '''): expected an audit Event serialized as JSON'
                 WHEN envelope = 'aks' THEN json_type_problem(log_type, 'properties.log', ['OBJECT', 'VARCHAR'],
                                                              'an audit Event (an object or a JSON string)')
                 WHEN envelope = 'eks' AND log_type = 'VARCHAR' AND try(json(log_text)) IS NULL
                     THEN 'message is a string that is not JSON (''' || left(log_text, 60)
                          || '''): expected an audit Event serialized as JSON'
                 WHEN envelope = 'eks' THEN json_type_problem(log_type, 'message', ['OBJECT', 'VARCHAR'],
                                                              'an audit Event (a JSON string)')
            END AS reason,
            CASE WHEN envelope = 'aks' THEN json_extract_string(doc, '$.resourceId') END AS aks_resource_id
        FROM w"""
    )


def _time(expr: str) -> str:
    return f"try_cast(json_extract_string({expr}, '$') AS TIMESTAMPTZ)"


def _user_extra(key: str) -> str:
    """The first value of ``user.extra[key]`` (a list of strings in the API; tolerate a string)."""
    path = f'$."{key}"'
    return (
        f"coalesce(json_extract_string(extra, '{path}[0]'), "
        f"CASE WHEN json_type(extra, '{path}') = 'VARCHAR' THEN json_extract_string(extra, '{path}') END)"
    )


def _annotation(keys: tuple[str, ...]) -> str:
    return "coalesce(" + ", ".join(f"json_extract_string(annotations, '$.\"{k}\"')" for k in keys) + ")"


def _credential_type_sql(cred: str) -> str:
    """SQL typing a credential id of this source (column ``cred``) by its spelling."""
    return f"""CASE WHEN {cred} LIKE 'JTI=%' THEN 'k8s_bound_sa_token'
                 WHEN {cred} LIKE 'X509SHA256=%' THEN 'x509_client_cert'
                 WHEN {cred} LIKE 'k8s-sa:%' THEN 'k8s_sa_token'
                 ELSE coalesce(aws_key_type({cred}), {logentry.credential_type_sql(cred)}) END"""


def _project_native(con: duckdb.DuckDBPyConnection) -> None:
    s = _sql
    problem = s.first_problem(
        "reason",
        s.wrong_type("json_type(event)", "properties.log holds", s.OBJECT, "an audit Event object"),
        "CASE WHEN v.auditID IS NULL AND v.verb IS NULL THEN 'not a Kubernetes audit Event: no auditID and no verb' END",
        s.wrong_type("json_type(v.auditID)", "auditID", s.STRING, "a string"),
        s.wrong_type("json_type(v.verb)", "verb", s.STRING, "a string"),
        s.wrong_type("json_type(v.stage)", "stage", s.STRING, "a string"),
        s.wrong_time("v.requestReceivedTimestamp", "requestReceivedTimestamp"),
        s.wrong_time("v.stageTimestamp", "stageTimestamp"),
        s.wrong_time("v.timestamp", "timestamp"),
        s.wrong_type("json_type(v.user)", "user", s.OBJECT, "an object"),
        s.wrong_type("json_type(v.impersonatedUser)", "impersonatedUser", s.OBJECT, "an object"),
        s.wrong_type("json_type(v.objectRef)", "objectRef", s.OBJECT, "an object"),
        s.wrong_type("json_type(v.responseStatus)", "responseStatus", s.OBJECT, "an object"),
        s.wrong_type("json_type(v.responseStatus, '$.code')", "responseStatus.code", s.INTEGER, "a number"),
        s.wrong_type("json_type(v.annotations)", "annotations", s.OBJECT, "an object"),
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE k8s_u AS
        WITH b AS (
            SELECT i.*, coalesce(i.body, r.doc) AS event
            FROM k8s_in i JOIN records r USING (record_index) WHERE envelope <> 'gke'
        ), n AS (
            SELECT *, CASE WHEN reason IS NULL AND json_type(event) = 'OBJECT'
                           THEN json_transform(event, '{_EVENT}') END AS v
            FROM b
        )
        SELECT record_index, line, envelope,
            {problem} AS reason,
            json_extract_string(v.auditID, '$') AS event_id,
            json_extract_string(v.auditID, '$') AS audit_id,
            json_extract_string(v.stage, '$') AS stage,
            json_extract_string(v.verb, '$') AS verb,
            json_extract_string(v.user, '$.username') AS username,
            json_extract(v.user, '$.extra') AS extra,
            json_extract(v.user, '$.groups') AS groups,
            json_extract_string(v.impersonatedUser, '$.username') AS imp_username,
            json_extract_string(v.sourceIPs, '$[0]') AS src_ip,
            v.userAgent AS user_agent,
            nullif(json_extract_string(v.objectRef, '$.apiGroup'), '') AS api_group,
            json_extract_string(v.objectRef, '$.apiVersion') AS api_version,
            nullif(json_extract_string(v.objectRef, '$.namespace'), '') AS ns,
            nullif(json_extract_string(v.objectRef, '$.resource'), '') AS res,
            -- create with generateName: the name exists only in the response.
            coalesce(nullif(json_extract_string(v.objectRef, '$.name'), ''),
                     CASE WHEN json_extract_string(v.verb, '$') = 'create'
                               AND json_extract_string(v.objectRef, '$.subresource') IS NULL
                          THEN json_extract_string(v.responseObject, '$.metadata.name') END) AS name,
            nullif(json_extract_string(v.objectRef, '$.subresource'), '') AS sub,
            split_part(v.requestURI, '?', 1) AS path,
            try_cast(json_extract_string(v.responseStatus, '$.code') AS BIGINT) AS code,
            json_extract_string(v.responseStatus, '$.reason') AS status_reason,
            coalesce({_time('v.requestReceivedTimestamp')}, {_time('v.timestamp')},
                     {_time('v.stageTimestamp')}) AS occurred_at,
            coalesce(json_extract_string(v.requestReceivedTimestamp, '$'),
                     json_extract_string(v.timestamp, '$'),
                     json_extract_string(v.stageTimestamp, '$')) AS time_key,
            v.annotations AS annotations,
            v.requestObject AS request_object,
            v.responseObject AS response_object,
            lower(nullif(regexp_extract(aks_resource_id, '(?i)/subscriptions/([^/]+)', 1), '')) AS account,
            NULL::VARCHAR AS region,
            lower(aks_resource_id) AS cluster,
            NULL::VARCHAR AS method_name,
            NULL::VARCHAR AS logged_cred,
            NULL::VARCHAR[] AS delegated_by,
            v.requestURI AS request_uri,
            NULL::VARCHAR AS log_name
        FROM n"""
    )


def _project_gke(con: duckdb.DuckDBPyConnection) -> None:
    """GKE LogEntry -> the same columns. verb/resource/subresource come from methodName, namespace
    and name from resourceName; the status is a gRPC code, not HTTP."""
    s = _sql
    type_problem = s.first_problem(
        s.wrong_type("json_type(pp)", "protoPayload", s.OBJECT, "an AuditLog object"),
        s.wrong_type("json_type(pp, '$.methodName')", "protoPayload.methodName", s.STRING, "a string"),
        s.wrong_time("e.timestamp", "timestamp"),
        s.wrong_type("json_type(pp, '$.authenticationInfo')", "protoPayload.authenticationInfo", s.OBJECT, "an object"),
        s.wrong_type("json_type(pp, '$.status.code')", "protoPayload.status.code", s.INTEGER, "an integer"),
    )
    credential = logentry.caller_credential_sql("key_name", "username", "NULL", "delegated_by")
    con.execute(
        f"""INSERT INTO k8s_u BY NAME
        WITH b AS (
            SELECT i.*, coalesce(i.body, r.doc) AS entry
            FROM k8s_in i JOIN records r USING (record_index) WHERE envelope = 'gke'
        ), g AS (
            SELECT record_index, line, envelope, reason, json_transform(entry, '{logentry.ENTRY}') AS e,
                   {logentry.audit_payload("entry")} AS pp
            FROM b
        ), f AS (
            SELECT *,
                json_extract_string(pp, '$.methodName') AS method,
                json_extract_string(pp, '$.resourceName') AS resource_name,
                regexp_extract(json_extract_string(pp, '$.methodName'), '{_GKE_METHOD}',
                               ['grp', 'ver', 'res', 'sub', 'verb']) AS m,
                regexp_extract(json_extract_string(pp, '$.resourceName'), '{_GKE_RESOURCE}',
                               ['grp', 'ver', 'ns', 'res', 'name', 'sub']) AS r,
                coalesce(json_extract_string(pp, '$.authenticationInfo.principalEmail'),
                         json_extract_string(pp, '$.authenticationInfo.principalSubject')) AS username,
                json_extract_string(pp, '$.authenticationInfo.serviceAccountKeyName') AS key_name,
                {logentry.delegated_by_sql("json_extract(pp, '$.authenticationInfo')")} AS delegated_by,
                try_cast(json_extract_string(pp, '$.status.code') AS BIGINT) AS grpc_code
            FROM g
        )
        SELECT record_index, line, envelope,
            coalesce(reason, {type_problem}, CASE
                WHEN json_extract_string(pp, '$.serviceName') IS DISTINCT FROM 'k8s.io'
                    THEN 'GCP audit entry for service '''
                         || coalesce(json_extract_string(pp, '$.serviceName'), '?')
                         || ''' among Kubernetes audit records: ingest this file with --source gcp_audit'
            END) AS reason,
            e.insertId AS event_id,
            json_extract_string(e.operation, '$.id') AS audit_id,
            NULL::VARCHAR AS stage,
            coalesce(nullif(m.verb, ''), regexp_extract(method, '[^.]+$')) AS verb,
            username,
            NULL::JSON AS extra,
            NULL::JSON AS groups,
            NULL::VARCHAR AS imp_username,
            json_extract_string(pp, '$.requestMetadata.callerIp') AS src_ip,
            json_extract_string(pp, '$.requestMetadata.callerSuppliedUserAgent') AS user_agent,
            nullif(r.grp, '') AS api_group,
            nullif(m.ver, '') AS api_version,
            nullif(r.ns, '') AS ns,
            coalesce(nullif(m.res, ''), nullif(r.res, '')) AS res,
            nullif(r.name, '') AS name,
            coalesce(nullif(m.sub, ''), nullif(r.sub, '')) AS sub,
            CASE WHEN nullif(m.res, '') IS NULL THEN '/' || ltrim(resource_name, '/') END AS path,
            -- gRPC: 7 PERMISSION_DENIED and 16 UNAUTHENTICATED refuse the caller (HTTP 403/401).
            CASE WHEN grpc_code = 7 THEN 403 WHEN grpc_code = 16 THEN 401
                 WHEN coalesce(grpc_code, 0) = 0 THEN 200 ELSE 500 END AS code,
            json_extract_string(pp, '$.status.message') AS status_reason,
            {_time('e.timestamp')} AS occurred_at,
            json_extract_string(e.timestamp, '$') AS time_key,
            e.labels AS annotations,
            coalesce(json_extract(pp, '$.request'), try(json(json_extract_string(pp, '$.requestJson'))))
                AS request_object,
            coalesce(json_extract(pp, '$.response'), try(json(json_extract_string(pp, '$.responseJson'))))
                AS response_object,
            json_extract_string(e.resource, '$.labels.project_id') AS account,
            json_extract_string(e.resource, '$.labels.location') AS region,
            json_extract_string(e.resource, '$.labels.cluster_name') AS cluster,
            method AS method_name,
            CASE WHEN key_name IS NOT NULL OR username NOT LIKE 'system:%' THEN {credential}
            END AS logged_cred,
            delegated_by,
            NULL::VARCHAR AS request_uri,
            e.logName AS log_name
        FROM f"""
    )


def normalize(con: duckdb.DuckDBPyConnection) -> None:
    """Stage the records listed in the temp table ``k8s_in`` (record_index, line, envelope, body,
    reason, aks_resource_id; ``body`` NULL when the record of ``records`` is itself the Event or
    LogEntry) as events. Used by ``load`` and by gcp_audit for GKE entries."""
    _project_native(con)
    _project_gke(con)
    con.execute(
        """INSERT INTO staged_rejected
        SELECT record_index, u.line, reason, left(r.doc::VARCHAR, ?)
        FROM k8s_u u JOIN records r USING (record_index) WHERE reason IS NOT NULL""",
        [RAW_EXCERPT],
    )
    ranks = " ".join(f"WHEN '{stage}' THEN {rank}" for stage, rank in _STAGE_RANK.items())
    # An earlier stage of a request whose later stage is in the file: the same request, logged twice.
    con.execute(
        f"""INSERT INTO consumed
        SELECT record_index FROM (
            SELECT record_index, rank, max(rank) OVER (PARTITION BY audit_id) AS final_rank
            FROM (SELECT record_index, audit_id, CASE stage {ranks} ELSE 0 END AS rank FROM k8s_u
                  WHERE reason IS NULL AND envelope <> 'gke' AND audit_id IS NOT NULL)
        ) WHERE rank < final_rank"""
    )
    extra_keys = ", ".join(_user_extra(k) for k in CREDENTIAL_ID_KEYS)
    con.execute(
        f"""INSERT INTO staged BY NAME
        WITH base AS (
            SELECT u.*,
                coalesce(imp_username, username) AS actor,
                verb = 'create' AND res = 'serviceaccounts' AND sub = 'token' AS token_issue,
                coalesce({extra_keys}, {_user_extra('accessKeyId')}, logged_cred,
                         CASE WHEN username LIKE 'system:serviceaccount:%' THEN 'k8s-sa:' || username END)
                    AS caller_cred,
                json_extract_string(annotations, '$."authorization.k8s.io/decision"') AS decision,
                r.doc AS raw
            FROM k8s_u u JOIN records r USING (record_index)
            WHERE reason IS NULL AND record_index NOT IN (SELECT record_index FROM consumed)

        ), creds AS (
            SELECT *,
                CASE WHEN token_issue THEN coalesce({_annotation(ISSUED_ID_KEYS)},
                     'k8s-sa:system:serviceaccount:' || ns || ':' || name)
                     ELSE caller_cred END AS cred
            FROM base
        )
        SELECT
            event_id, record_index, line, occurred_at,
            CASE WHEN token_issue THEN 'credential_issue' ELSE 'action' END AS category,
            actor AS actor_id,
            CASE WHEN actor LIKE 'system:serviceaccount:%' OR actor LIKE 'system:node:%' THEN 'workload'
                 WHEN actor IN ('aksService', 'system:apiserver') OR actor LIKE 'system:kube-%'
                      OR actor LIKE 'system:gke-%' OR actor LIKE 'eks:%' THEN 'service'
                 WHEN actor LIKE '%.gserviceaccount.com' THEN 'workload'
                 ELSE 'unknown' END AS actor_type,
            cred AS credential_id,
            {_credential_type_sql('cred')} AS credential_type,
            CASE WHEN token_issue THEN caller_cred END AS parent_credential_id,
            'k8s:' || coalesce(verb, 'unknown') || coalesce(':' || res || coalesce('/' || sub, ''), '')
                AS action,
            CASE WHEN res IS NULL THEN path
                 WHEN res = 'namespaces' THEN 'namespaces' || coalesce('/' || coalesce(name, ns), '')
                                               || coalesce('/' || sub, '')
                 ELSE coalesce('namespaces/' || ns || '/', '') || res || coalesce('/' || name, '')
                      || coalesce('/' || sub, '') END AS resource,
            verb IN ('get', 'list', 'watch') AS read_only,
            CASE WHEN stage = 'Panic' THEN 'failure'
                 WHEN code IN (401, 403) OR decision = 'forbid' THEN 'denied'
                 WHEN code >= 400 THEN 'failure'
                 WHEN code IS NOT NULL THEN 'success' END AS outcome,
            CASE WHEN stage = 'Panic' THEN 'Panic'
                 WHEN code >= 400 OR decision = 'forbid' THEN coalesce(status_reason, code::VARCHAR)
            END AS error_code,
            account, region, src_ip, user_agent,
            CASE WHEN token_issue
                 THEN try_cast(json_extract_string(response_object, '$.status.expirationTimestamp')
                               AS TIMESTAMPTZ)
            END AS expires_at,
            CASE WHEN token_issue THEN json_object(
                'holder', 'system:serviceaccount:' || ns || ':' || name,
                'ttl_seconds',
                    try_cast(json_extract_string(request_object, '$.spec.expirationSeconds') AS BIGINT),
                'audiences', json_extract(request_object, '$.spec.audiences'),
                'bound_object_kind', json_extract_string(request_object, '$.spec.boundObjectRef.kind'),
                'bound_object_name', json_extract_string(request_object, '$.spec.boundObjectRef.name'),
                'issued_credential_logged', {_annotation(ISSUED_ID_KEYS)} IS NOT NULL,
                'long_term', false,
                -- the caller's credential (a kubelet certificate, a pod's token), not the issued kind
                'parent_credential_type', {_credential_type_sql('caller_cred')},
                'audit_id', audit_id, 'envelope', envelope, 'cluster', cluster,
                'impersonated_by', CASE WHEN imp_username IS NOT NULL THEN username END)
            ELSE json_object(
                'audit_id', audit_id, 'stage', stage, 'envelope', envelope, 'cluster', cluster,
                'api_group', api_group, 'method_name', method_name,
                'impersonated_by', CASE WHEN imp_username IS NOT NULL THEN username END,
                'delegated_by', CASE WHEN len(delegated_by) > 0 THEN to_json(delegated_by) END,
                'authz_decision', decision,
                'authz_reason',
                    nullif(json_extract_string(annotations, '$."authorization.k8s.io/reason"'), ''),

                'pod_name', {_user_extra('authentication.kubernetes.io/pod-name')},
                'node_name', {_user_extra('authentication.kubernetes.io/node-name')},
                'groups', groups)
            END AS details,
            raw,
            CASE WHEN envelope = 'gke' THEN {logentry.dedupe_key("event_id", "time_key", "log_name")}
                 WHEN envelope <> 'gke' AND audit_id IS NOT NULL
                     -- stage left out: the same request logged at another stage in another file is
                     -- the same event (auditID alone is not enough: test data reuses it).
                     THEN audit_id || '|' || coalesce(time_key, '') || '|' || coalesce(verb, '') || '|'
                          || coalesce(request_uri, '') END AS dedupe_key
        FROM creds"""
    )
