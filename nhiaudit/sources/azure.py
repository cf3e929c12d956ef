"""Azure: Entra service principal / managed identity sign-ins and the Activity Log (FORMATS §3).

Each Entra sign-in *is* a token issuance: the token's id is ``uniqueTokenIdentifier``, and an ARM
call made with that token carries the same id as ``identity.claims.uti`` in the Activity Log. The
two spellings differ (base64 with ``+/=`` or base64url), so both are reduced to one canonical form,
base64url without padding (``+``->``-``, ``/``->``_``, trailing ``=`` dropped): credential ids are
``azure-token:<that>``. Real ``uti`` values are already in that form, so an id found in the store
can be searched for verbatim in the raw logs.

Shapes: diagnostic-settings records (Event Hub ``{"records": [...]}`` or one record a line, fields
under ``properties``) and the Log Analytics tables (PascalCase columns at the top level:
``AADServicePrincipalSignInLogs``, ``AADManagedIdentitySignInLogs``, ``SigninLogs``,
``AzureActivity`` with ``Claims`` as an object or a JSON string).
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from nhiaudit.sources import _sql
from nhiaudit.sources._read import RAW_EXCERPT, EvidenceFile, first_json_line, head, stage_json_records

NAME = "azure"
READS = (
    "Entra ServicePrincipal/ManagedIdentity (and user) sign-in logs and the Azure Activity Log, as "
    "diagnostic-settings records ({\"records\": [...]} or one a line) or Log Analytics rows"
)
DETECTION = (
    "JSON whose first record has an Entra sign-in category (ServicePrincipalSignInLogs, "
    "ManagedIdentitySignInLogs, …) or Log Analytics Type, or is an Activity Log record "
    "(operationName + resourceId with an Activity Log category or identity claims)"
)

# Sign-in categories, compared without case: exports spell them SignInLogs or SigninLogs, and the
# service-principal one is MicrosoftServicePrincipalSignInLogs in newer diagnostic settings.
SIGNIN_CATEGORIES = (
    "ServicePrincipalSignInLogs",
    "MicrosoftServicePrincipalSignInLogs",
    "ManagedIdentitySignInLogs",
    "SignInLogs",
    "NonInteractiveUserSignInLogs",
)
LA_SIGNIN_TYPES = (
    "AADServicePrincipalSignInLogs",
    "AADManagedIdentitySignInLogs",
    "SigninLogs",
    "AADNonInteractiveUserSignInLogs",
)
ACTIVITY_CATEGORIES = (
    "Administrative",
    "Action",
    "Security",
    "Policy",
    "ServiceHealth",
    "ResourceHealth",
    "Alert",
    "Autoscale",
    "Recommendation",
)
# Activity Log categories that record a caller acting; the others are platform notices.
_CALLER_CATEGORIES = ("administrative", "action", "security", "policy")

_RECORD = """{
    "time": "JSON", "TimeGenerated": "JSON", "eventTimestamp": "JSON", "category": "JSON",
    "CategoryValue": "VARCHAR", "Type": "VARCHAR", "operationName": "JSON", "OperationNameValue": "VARCHAR",
    "resultType": "JSON", "ActivityStatusValue": "VARCHAR", "status": "JSON", "resultSignature": "VARCHAR",
    "correlationId": "VARCHAR",
    "tenantId": "VARCHAR", "AADTenantId": "VARCHAR", "callerIpAddress": "VARCHAR", "IPAddress": "VARCHAR",
    "caller": "VARCHAR", "resourceId": "VARCHAR", "_ResourceId": "VARCHAR", "location": "VARCHAR",
    "eventDataId": "VARCHAR", "operationId": "VARCHAR", "SubscriptionId": "VARCHAR", "identity": "JSON",
    "Claims": "JSON", "Claims_d": "JSON", "Authorization": "JSON", "Authorization_d": "JSON",
    "properties": "JSON", "Properties_d": "JSON"
}"""
# Log Analytics columns whose names differ from a diagnostic field only by case. DuckDB struct
# fields are case-insensitive, so they get a struct of their own.
_LA = """{
    "Category": "VARCHAR", "ResultType": "VARCHAR", "CorrelationId": "VARCHAR", "TenantId": "VARCHAR",
    "CallerIpAddress": "VARCHAR", "Caller": "VARCHAR", "ResourceId": "VARCHAR", "EventDataId": "VARCHAR",
    "OperationId": "VARCHAR", "OperationName": "VARCHAR"
}"""

# Sign-in fields: diagnostic records nest them under properties (camelCase), Log Analytics rows
# have them at the top level (PascalCase).
_SIGNIN_FIELDS = {
    "signin_id": ("id", "Id"),
    "created": ("createdDateTime", "CreatedDateTime"),
    "sp_id": ("servicePrincipalId", "ServicePrincipalId"),
    "sp_name": ("servicePrincipalName", "ServicePrincipalName"),
    "app_id": ("appId", "AppId"),
    "app_name": ("appDisplayName", "AppDisplayName"),
    "uti": ("uniqueTokenIdentifier", "UniqueTokenIdentifier"),
    "key_id": ("servicePrincipalCredentialKeyId", "ServicePrincipalCredentialKeyId"),
    "thumbprint": ("servicePrincipalCredentialThumbprint", "ServicePrincipalCredentialThumbprint"),
    "client_credential_type": ("clientCredentialType", "ClientCredentialType"),
    "federated_credential_id": ("federatedCredentialId", "FederatedCredentialId"),
    "audience": ("resourceId", "ResourceIdentity"),
    "audience_name": ("resourceDisplayName", "ResourceDisplayName"),
    "upn": ("userPrincipalName", "UserPrincipalName"),
    "user_id": ("userId", "UserId"),
    "signin_ip": ("ipAddress", "IPAddress"),
    "signin_ua": ("userAgent", "UserAgent"),
    "signin_correlation": ("correlationId", "CorrelationId"),
    "error_number": ("status.errorCode", "ResultType"),
    "mi_resource": ("managedIdentityResourceId", "ManagedIdentityResourceId"),
}


def detect(path: Path) -> bool:
    text = head(path)
    record = first_json_line(text)
    if record is None:
        return _looks_like_azure_document(text)
    return _is_azure_record(record)


def _value(field: object) -> str:
    """Activity Log REST shapes put ``{"value": …, "localizedValue": …}`` where exports put a string."""
    return str(field.get("value", "")) if isinstance(field, dict) else str(field or "")


def _is_azure_record(record: object) -> bool:
    if isinstance(record, list):
        return bool(record) and _is_azure_record(record[0])
    if not isinstance(record, dict):
        return False
    for key in ("records", "value"):
        if isinstance(record.get(key), list) and record[key]:
            return _is_azure_record(record[key][0])
    category = _value(record.get("category"))
    if category.lower() in {c.lower() for c in SIGNIN_CATEGORIES} or record.get("Type") in (*LA_SIGNIN_TYPES, "AzureActivity"):
        return True
    if "operationName" not in record or "resourceId" not in record or category.startswith("kube-audit"):
        return False
    identity = record.get("identity")
    return category.lower() in {c.lower() for c in ACTIVITY_CATEGORIES} or (
        isinstance(identity, dict) and isinstance(identity.get("claims"), dict)
    )


def _looks_like_azure_document(text: str) -> bool:
    """A pretty-printed ``{"records": [...]}`` or array, or a first line too long for the head."""
    if text.lstrip()[:1] not in ("[", "{"):
        return False
    categories = "|".join(SIGNIN_CATEGORIES + LA_SIGNIN_TYPES)
    if re.search(rf'"(category|Type)"\s*:\s*"(?i:{categories}|AzureActivity)"', text):
        return True
    activity = "|".join(ACTIVITY_CATEGORIES)
    return bool(re.search(rf'"category"\s*:\s*"({activity})"', text)) and '"operationName"' in text


def load(con: duckdb.DuckDBPyConnection, files: list[EvidenceFile]) -> None:
    for file in files:
        stage_json_records(con, file, unwrap=("records", "value"))
        _classify(con)
        _load_signins(con)
        _load_activity(con)


def token_id_sql(expr: str) -> str:
    """SQL: ``azure-token:`` + the token id in canonical form (base64url, no padding)."""
    return f"'azure-token:' || rtrim(translate(trim({expr}), '+/', '-_'), '=')"


def _epoch_text(expr: str) -> str:
    """JWT times (iat, exp) are epoch seconds, as strings in the Activity Log claims: ISO-8601 text."""
    return f"strftime(to_timestamp(try_cast({expr} AS BIGINT)), '%Y-%m-%dT%H:%M:%SZ')"


def _text(expr: str) -> str:

    """A string field that may be ``{"value": …}`` in REST shapes."""
    return (
        f"CASE WHEN json_type({expr}) = 'OBJECT' THEN json_extract_string({expr}, '$.value') "
        f"ELSE json_extract_string({expr}, '$') END"
    )


def _object(expr: str) -> str:
    """A JSON object that Log Analytics exports may hold as a JSON string (``Claims``)."""
    return (
        f"CASE json_type({expr}) WHEN 'OBJECT' THEN {expr} "
        f"WHEN 'VARCHAR' THEN try(json(json_extract_string({expr}, '$'))) END"
    )


def _classify(con: duckdb.DuckDBPyConnection) -> None:
    signin_categories = ", ".join(f"'{c.lower()}'" for c in SIGNIN_CATEGORIES)
    la_types = ", ".join(f"'{t}'" for t in LA_SIGNIN_TYPES)
    activity = ", ".join(f"'{c.lower()}'" for c in ACTIVITY_CATEGORIES)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE az AS
        WITH t AS (
            SELECT record_index, line, doc,
                   json_transform(doc, '{_RECORD}') AS r, json_transform(doc, '{_LA}') AS la
            FROM records
        ), c AS (
            SELECT *, coalesce({_text('r.category')}, la.Category, r.CategoryValue) AS cat,
                   -- identity is an object, or that object serialized as a JSON string (Event Hub exports)
                   {_object('r.identity')} AS ident,
                   coalesce(json_extract_string(r.time, '$'), json_extract_string(r.eventTimestamp, '$'),
                            json_extract_string(r.TimeGenerated, '$')) AS time_text
            FROM t
        )
        SELECT *,
            CASE WHEN lower(cat) IN ({signin_categories}) OR r.Type IN ({la_types}) THEN 'signin'
                 WHEN r.Type = 'AzureActivity' OR ident IS NOT NULL OR r.Claims IS NOT NULL
                      OR (lower(cat) IN ({activity})
                          AND coalesce(r.operationName::VARCHAR, r.OperationNameValue) IS NOT NULL)
                     THEN 'activity'
            END AS kind,
            try_cast(time_text AS TIMESTAMPTZ) AS occurred_at
        FROM c"""
    )
    s = _sql
    signin_problem = s.first_problem(
        s.wrong_type("json_type(r.properties)", "properties", s.OBJECT, "an object"),
        s.wrong_type("json_type(r.properties, '$.uniqueTokenIdentifier')", "properties.uniqueTokenIdentifier", s.STRING,
                     "a string"),
    )
    activity_problem = s.first_problem(
        s.wrong_type("json_type(r.identity)", "identity", ("OBJECT", "VARCHAR"), "an object"),
        "CASE WHEN json_type(r.identity) = 'VARCHAR' AND ident IS NULL AND trim(r.identity ->> '$') <> '' "
        "THEN 'identity is a string that does not hold a JSON object' END",
        s.wrong_type("json_type(ident, '$.claims')", "identity.claims", s.OBJECT, "an object"),
        s.wrong_type("json_type(ident, '$.claims.uti')", "identity.claims.uti", s.STRING, "a string"),
    )
    con.execute(
        f"""INSERT INTO staged_rejected
        SELECT record_index, line, reason, left(doc::VARCHAR, ?) FROM (
            SELECT record_index, line, doc, coalesce(CASE
                WHEN kind IS NULL THEN 'not an Entra sign-in or Activity Log record (category '''
                    || left(coalesce(cat, '?'), 60) || '''): expected ServicePrincipalSignInLogs, '
                    || 'ManagedIdentitySignInLogs or an Activity Log category' END,
                {s.wrong_time("coalesce(r.time, r.eventTimestamp, r.TimeGenerated)", "time")},
                CASE kind WHEN 'signin' THEN {signin_problem} WHEN 'activity' THEN {activity_problem} END
            ) AS reason FROM az
        ) WHERE reason IS NOT NULL""",
        [RAW_EXCERPT],
    )
    con.execute(
        "DELETE FROM az WHERE record_index IN "
        "(SELECT record_index FROM staged_rejected WHERE record_index IS NOT NULL)"
    )


def _load_signins(con: duckdb.DuckDBPyConnection) -> None:
    fields = ",\n".join(
        f"coalesce(json_extract_string(p, '$.{camel}'), json_extract_string(doc, '$.{pascal}')) AS {name}"
        for name, (camel, pascal) in _SIGNIN_FIELDS.items()
    )
    con.execute(
        f"""INSERT INTO staged BY NAME
        WITH s AS (
            SELECT record_index, line, doc, r, la, cat, time_text, occurred_at,
                   CASE WHEN json_type(r.properties) = 'OBJECT' THEN r.properties END AS p,
                   CASE WHEN coalesce(r.Type, cat) ILIKE '%ManagedIdentity%' THEN 'managed_identity'
                        WHEN coalesce(r.Type, cat) ILIKE '%ServicePrincipal%' THEN 'service_principal'
                        ELSE 'user' END AS principal_kind
            FROM az WHERE kind = 'signin'
        ), f AS (SELECT *, {fields} FROM s),
        k AS (
            SELECT *,
                CASE WHEN principal_kind = 'user' THEN coalesce(upn, user_id) ELSE sp_id END AS holder,
                coalesce(json_extract_string(r.resultType, '$'), la.ResultType, error_number) AS result,
                CASE WHEN nullif(key_id, '') IS NOT NULL THEN 'azure-key:' || key_id
                     WHEN nullif(thumbprint, '') IS NOT NULL THEN 'azure-cert:' || thumbprint END AS parent
            FROM f
        )
        SELECT
            signin_id AS event_id,
            record_index, line,
            coalesce(occurred_at, try_cast(created AS TIMESTAMPTZ)) AS occurred_at,
            'credential_issue' AS category,
            holder AS actor_id,
            CASE WHEN principal_kind = 'managed_identity' THEN 'workload' ELSE 'unknown' END AS actor_type,
            CASE WHEN nullif(uti, '') IS NOT NULL THEN {token_id_sql('uti')} END AS credential_id,
            'azure_access_token' AS credential_type,
            parent AS parent_credential_id,
            CASE principal_kind WHEN 'managed_identity' THEN 'entra:ManagedIdentitySignIn'
                                WHEN 'service_principal' THEN 'entra:ServicePrincipalSignIn'
                                ELSE 'entra:UserSignIn' END AS action,
            audience AS resource,
            false AS read_only,
            -- no result field: the outcome is unknown, not a failure
            CASE WHEN result = '0' THEN 'success' WHEN result IS NOT NULL THEN 'failure' END AS outcome,
            CASE WHEN result <> '0' THEN result END AS error_code,
            coalesce(r.tenantId, la.TenantId, r.AADTenantId) AS account,
            nullif(coalesce(r.callerIpAddress, signin_ip), '') AS src_ip,
            nullif(signin_ua, '') AS user_agent,
            json_object(
                'holder', holder,
                'holder_name', coalesce(sp_name, upn),
                'app_id', app_id,
                'app_name', app_name,
                'principal_kind', principal_kind,
                'audience', audience,
                'audience_name', audience_name,
                'client_credential_type', client_credential_type,
                'credential_key_id', nullif(key_id, ''),
                -- the parent is the app's client secret or certificate, not an access token
                'parent_credential_type', CASE WHEN parent IS NOT NULL THEN 'azure_app_credential' END,
                'federated_credential_id', nullif(federated_credential_id, ''),
                'managed_identity_resource', mi_resource,
                'correlation_id', coalesce(r.correlationId, la.CorrelationId, signin_correlation),
                'signin_category', coalesce(cat, r.Type),
                'long_term', false) AS details,
            doc AS raw,
            CASE WHEN signin_id IS NOT NULL THEN signin_id || '|' || coalesce(time_text, created, '')
            END AS dedupe_key
        FROM k"""
    )


def _load_activity(con: duckdb.DuckDBPyConnection) -> None:
    claims = _object("coalesce(json_extract(ident, '$.claims'), r.Claims_d, r.Claims)")
    authorization = _object(
        "coalesce(json_extract(ident, '$.authorization'), r.Authorization_d, r.Authorization)"
    )
    callers = ", ".join(f"'{c}'" for c in _CALLER_CATEGORIES)
    con.execute(
        f"""INSERT INTO staged BY NAME
        WITH a AS (
            SELECT record_index, line, doc, r, la, cat, time_text, occurred_at,
                {claims} AS claims,
                {authorization} AS authz,
                {_object("coalesce(r.properties, r.Properties_d)")} AS props,
                coalesce({_text('r.operationName')}, r.OperationNameValue, la.OperationName) AS op,
                coalesce({_text('r.resultType')}, r.ActivityStatusValue,
                         json_extract_string(r.status, '$.value')) AS result,
                coalesce(r.resourceId, la.ResourceId, r._ResourceId) AS resource_id,
                coalesce(r.caller, la.Caller) AS caller,
                coalesce(r.correlationId, la.CorrelationId) AS correlation_id
            FROM az WHERE kind = 'activity'
        ), c AS (
            SELECT *,
                coalesce(json_extract_string(claims, '$."http://schemas.microsoft.com/identity/claims/objectidentifier"'),
                         json_extract_string(claims, '$.oid')) AS oid,
                coalesce(json_extract_string(claims, '$."http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"'),
                         json_extract_string(claims, '$.upn')) AS upn,
                coalesce(json_extract_string(claims, '$."http://schemas.microsoft.com/identity/claims/tenantid"'),
                         json_extract_string(claims, '$.tid')) AS tenant_id,
                json_extract_string(claims, '$.uti') AS uti,
                json_extract(authz, '$.evidence') AS evidence,
                json_extract_string(authz, '$.evidence.principalType') AS principal_type,
                json_extract_string(props, '$.statusCode') AS status_code,
                coalesce(r.eventDataId, la.EventDataId) AS event_data_id
            FROM a
        ), k AS (
            SELECT *,
                CASE WHEN principal_type = 'User' OR upn IS NOT NULL
                          OR json_extract_string(claims, '$.idtyp') = 'user'
                     THEN coalesce(upn, caller, oid, json_extract_string(evidence, '$.principalId'))
                     ELSE coalesce(oid, json_extract_string(evidence, '$.principalId'), caller) END AS actor,
                lower(result) IN ('failure', 'failed') AS failed,
                lower(coalesce(status_code, '')) IN ('forbidden', 'unauthorized')
                    OR regexp_matches(coalesce(r.resultSignature, ''), '^(Forbidden|Unauthorized)') AS refused
            FROM c
        )
        SELECT
            coalesce(event_data_id, correlation_id || ':' || coalesce(result, '') || ':'
                     || left(md5(coalesce(time_text, '') || '|' || lower(coalesce(op, '')) || '|'
                                 || lower(coalesce(resource_id, ''))), 8)) AS event_id,
            record_index, line, occurred_at,
            CASE WHEN claims IS NOT NULL OR caller IS NOT NULL OR lower(cat) IN ({callers}) THEN 'action'
                 ELSE 'other' END AS category,
            actor AS actor_id,
            CASE WHEN json_extract_string(claims, '$.xms_mirid') IS NOT NULL THEN 'workload'
                 ELSE 'unknown' END AS actor_type,
            CASE WHEN nullif(uti, '') IS NOT NULL THEN {token_id_sql('uti')} END AS credential_id,
            'azure_access_token' AS credential_type,
            -- RBAC operation names come in any case (MICROSOFT.EVENTHUB/... vs Microsoft.EventHub/...):
            -- lower-cased so policy globs and approval scopes match one spelling.
            CASE WHEN op IS NOT NULL THEN 'azure:' || lower(op) END AS action,
            lower(resource_id) AS resource,
            lower(op) LIKE '%/read' AS read_only,
            CASE WHEN failed AND refused THEN 'denied' WHEN failed THEN 'failure'
                 WHEN result IS NOT NULL OR status_code IS NOT NULL THEN 'success' END AS outcome,
            CASE WHEN failed THEN coalesce(status_code, r.resultSignature, result) END AS error_code,
            coalesce(lower(nullif(regexp_extract(resource_id, '(?i)/subscriptions/([^/]+)', 1), '')),
                     lower(r.SubscriptionId)) AS account,
            r.location AS region,
            nullif(coalesce(r.callerIpAddress, la.CallerIpAddress), '') AS src_ip,
            json_object(
                'correlation_id', correlation_id,
                'operation_id', coalesce(r.operationId, la.OperationId),
                'result_type', result,
                'result_signature', r.resultSignature,
                'activity_category', cat,
                'caller', caller,
                'app_id', coalesce(json_extract_string(claims, '$.appid'),
                                   json_extract_string(claims, '$.azp')),
                'app_auth_method', coalesce(json_extract_string(claims, '$.appidacr'),
                                            json_extract_string(claims, '$.azpacr')),
                'tenant_id', tenant_id,
                -- the caller's object id (oid) beside a UPN actor: the PIM activation join
                -- (70_action_tasks.sql grant_windows) matches the member by UPN or object id
                'object_id', coalesce(oid, json_extract_string(evidence, '$.principalId')),
                'managed_identity_resource', json_extract_string(claims, '$.xms_mirid'),
                'token_issued_at', {_epoch_text("json_extract_string(claims, '$.iat')")},
                'token_expires_at', {_epoch_text("json_extract_string(claims, '$.exp')")},
                'principal_type', principal_type,
                'role', json_extract_string(evidence, '$.role'),
                'role_assignment_id', json_extract_string(evidence, '$.roleAssignmentId'),
                'role_definition_id', json_extract_string(evidence, '$.roleDefinitionId'),
                'role_assignment_scope', json_extract_string(evidence, '$.roleAssignmentScope'),
                'authorization_action', json_extract_string(authz, '$.action'),
                'authorization_scope', json_extract_string(authz, '$.scope')) AS details,
            doc AS raw,
            coalesce(event_data_id,
                     correlation_id || '|' || coalesce(result, '') || '|' || coalesce(time_text, '') || '|'
                     || lower(coalesce(op, '')) || '|' || lower(coalesce(resource_id, ''))) AS dedupe_key
        FROM k"""
    )
