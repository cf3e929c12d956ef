"""The GCP LogEntry wrapper, shared by ``gcp_audit`` and ``k8s_audit`` (a GKE API call is a LogEntry
whose AuditLog payload names ``k8s.io``; either source may be handed one).

Each function returns DuckDB SQL over column expressions, like ``_sql``. LogEntry fields:
https://cloud.google.com/logging/docs/reference/v2/rest/v2/LogEntry; AuditLog payload:
https://cloud.google.com/logging/docs/reference/audit/auditlog/rest/Shared.Types/AuditLog.

GCP logs no id for the access tokens it mints, so credential ids are built (docs/sources.md):
``serviceAccountKeyName`` for a user-managed key; ``gcp-sa-token:<sa-email>`` for a token minted
for a service account; ``gcp:<principal>`` otherwise (the caller's own credential, not individually
identified).
"""

from __future__ import annotations

# The LogEntry fields either source reads, typed in one parse (json_transform).
ENTRY = """{
    "insertId": "VARCHAR", "timestamp": "JSON", "logName": "VARCHAR", "resource": "JSON",
    "operation": "JSON", "labels": "JSON", "trace": "VARCHAR", "spanId": "VARCHAR", "severity": "VARCHAR"
}"""


def has_audit_payload(doc: str) -> str:
    """SQL: the record is a LogEntry with an AuditLog payload (BigQuery exports name it
    ``protopayload_auditlog``)."""
    return f"(json_type({doc}, '$.protoPayload') IS NOT NULL OR json_type({doc}, '$.protopayload_auditlog') IS NOT NULL)"


def audit_payload(entry: str) -> str:
    """SQL: the AuditLog payload of a LogEntry, in either spelling."""
    return f"coalesce(json_extract({entry}, '$.protoPayload'), json_extract({entry}, '$.protopayload_auditlog'))"


def dedupe_key(insert_id: str, time_text: str, log_name: str) -> str:
    """SQL: the same entry delivered twice (two sinks, a re-export) has the same insertId, timestamp
    and logName; insertId alone is unique only within one log."""
    return (
        f"CASE WHEN {insert_id} IS NOT NULL THEN "
        f"{insert_id} || '|' || coalesce({time_text}, '') || '|' || coalesce({log_name}, '') END"
    )


def delegated_by_sql(auth: str) -> str:
    """SQL list of the principals that delegated to the caller (impersonation: the original caller
    of a service account token), from ``authenticationInfo.serviceAccountDelegationInfo[]``.
    Empty entries (``[{}]`` in the iamcredentials sample) give an empty list."""
    return (
        f"list_filter(list_transform(json_extract({auth}, '$.serviceAccountDelegationInfo[*]'), "
        "d -> coalesce(json_extract_string(d, '$.firstPartyPrincipal.principalEmail'), "
        "json_extract_string(d, '$.principalSubject'))), p -> p IS NOT NULL)"
    )


def caller_credential_sql(key_name: str, email: str, subject: str, delegated_by: str) -> str:
    """SQL for the credential a caller used (columns of the given names): its user-managed key, else
    the token minted for the impersonated service account, else the principal's own credential."""
    return f"""CASE WHEN {key_name} IS NOT NULL THEN {key_name}
        WHEN len({delegated_by}) > 0 AND {email} IS NOT NULL THEN 'gcp-sa-token:' || {email}
        WHEN coalesce({email}, {subject}) IS NOT NULL THEN 'gcp:' || coalesce({email}, {subject}) END"""


def credential_type_sql(credential: str) -> str:
    """SQL typing a credential id built by ``caller_credential_sql`` (or an issued key or token)."""
    # serviceAccountKeyName is //iam.googleapis.com/projects/P/serviceAccounts/SA/keys/K; some exports
    # drop the service prefix: the key is long-term either way (15_credential_types.sql).
    return f"""CASE WHEN {credential} LIKE '%serviceAccounts/%/keys/%' THEN 'gcp_sa_key'
        WHEN {credential} LIKE 'gcp-sa-token:%' THEN 'gcp_sa_token'
        WHEN {credential} LIKE 'gcp:%' THEN 'gcp_principal' END"""
