"""Microsoft Entra directory audits (AuditLogs): diagnostic-settings records (one a line, or Event Hub
``{"records": [...]}``), with the event in ``properties``. FORMATS §11.

- A credential added to a service principal or application ("Add service principal credentials",
  "Update application – Certificates and secrets management") is a long-term credential issuance:
  the added key is the ``KeyIdentifier`` in ``KeyDescription``'s new value and not in its old one,
  named ``azure-key:<KeyIdentifier>`` like the ``servicePrincipalCredentialKeyId`` of the sign-ins
  that use it (nhiaudit/sources/azure.py), so those sign-ins' parent is this issuance.
- PIM (``loggedByService`` PIM): a role request is a task (``pim-request:<RequestId>``), its approval
  or denial an approval of that task, the completed assignment or activation a grant of the role to
  the member, and an expiry or removal the end of the task. Justification and ticket are kept. An
  activation also names its request (task id) and what joins it to the member's Azure Activity Log
  calls (member object id and UPN, role kind, ARM scope: 70_action_tasks.sql grant_windows). An
  approval after which the request is still PendingApproval is one stage of several (pending).
- Any other directory change is an action ``entra:<operation>`` by its initiator.
PIM operation names: https://learn.microsoft.com/entra/id-governance/privileged-identity-management/pim-how-to-use-audit-log
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from nhiaudit.sources import _sql
from nhiaudit.sources._read import EvidenceFile, head, stage_json_records

NAME = "entra_audit"
READS = 'Entra ID AuditLogs (directory audits) in the diagnostic-settings shape, NDJSON or {"records": [...]}'
DETECTION = 'JSON whose first record has "targetResources" with "activityDisplayName" or "loggedByService"'

_CREDENTIAL_OPS = ("add service principal credentials", "update application – certificates and secrets management",
                   "update application - certificates and secrets management")


def detect(path: Path) -> bool:
    text = head(path)
    return (
        text.lstrip()[:1] in ("{", "[")
        and '"targetResources"' in text
        and ('"activityDisplayName"' in text or '"loggedByService"' in text)
    )


def load(con: duckdb.DuckDBPyConnection, files: list[EvidenceFile]) -> None:
    for file in files:
        stage_json_records(con, file, unwrap=("records",))
        _normalize(con)


def _detail(key: str) -> str:
    """A value of ``properties.additionalDetails[]`` (a key/value list) by key."""
    return f"nullif(json_extract_string(list_filter(ad, x -> json_extract_string(x, '$.key') = '{key}')[1], '$.value'), '')"


def _ops(names: tuple[str, ...]) -> str:
    return "(" + ", ".join("'" + n.replace("'", "''") + "'" for n in names) + ")"


def _normalize(con: duckdb.DuckDBPyConnection) -> None:
    s = _sql
    con.execute(
        """CREATE OR REPLACE TEMP TABLE ea AS
        SELECT record_index, line, doc, json_extract(doc, '$.properties') AS p FROM records"""
    )
    problem = s.first_problem(
        s.wrong_type("json_type(doc, '$.properties')", "properties", s.OBJECT, "an object"),
        "CASE WHEN json_type(doc, '$.properties') IS NULL THEN 'no \"properties\": not an Entra audit record' END",
        s.wrong_time("json_extract(doc, '$.time')", "time"),
        s.wrong_type("json_type(p, '$.targetResources')", "properties.targetResources", s.ARRAY, "an array"),
        s.wrong_type("json_type(p, '$.initiatedBy')", "properties.initiatedBy", s.OBJECT, "an object"),
        s.wrong_type("json_type(p, '$.additionalDetails')", "properties.additionalDetails", s.ARRAY, "an array"),
    )
    s.reject_records(con, "ea", problem)
    con.execute(
        f"""INSERT INTO staged BY NAME
        WITH base AS (
            SELECT record_index, line, doc, p,
                coalesce(nullif(json_extract_string(doc, '$.operationName'), ''),
                         json_extract_string(p, '$.activityDisplayName')) AS op,
                coalesce(try_cast(json_extract_string(doc, '$.time') AS TIMESTAMPTZ),
                         try_cast(json_extract_string(p, '$.activityDateTime') AS TIMESTAMPTZ)) AS occurred_at,
                coalesce(json_extract(p, '$.targetResources[*]'), []) AS targets,
                coalesce(json_extract(p, '$.additionalDetails[*]'), []) AS ad,
                json_extract(p, '$.initiatedBy.user') AS by_user,
                json_extract(p, '$.initiatedBy.app') AS by_app,
                lower(json_extract_string(p, '$.result')) AS result,
                json_extract_string(p, '$.loggedByService') AS service
            FROM ea
            WHERE {s.not_rejected()}
        ), t AS (
            SELECT *, lower(op) AS lop,
                list_filter(targets, x -> json_extract_string(x, '$.type') IN ('ServicePrincipal', 'Application'))[1] AS sp,
                list_filter(targets, x -> json_extract_string(x, '$.type') = 'Role')[1] AS role_t,
                list_filter(targets, x -> json_extract_string(x, '$.type') IN ('User', 'ServicePrincipal', 'Group'))[1]
                    AS member_t,
                -- Azure resource roles: the ARM scope of the assignment, a target whose id is an ARM path
                lower(json_extract_string(list_filter(targets, x -> starts_with(coalesce(json_extract_string(x, '$.id'), ''),
                                                                               '/'))[1], '$.id')) AS arm_scope,
                coalesce(nullif(json_extract_string(by_user, '$.userPrincipalName'), ''),
                         nullif(json_extract_string(by_user, '$.id'), ''),
                         nullif(json_extract_string(by_app, '$.servicePrincipalId'), ''),
                         nullif(json_extract_string(by_app, '$.appId'), ''),
                         nullif(json_extract_string(by_app, '$.displayName'), '')) AS initiator,
                {_detail("RequestId")} AS request_id, {_detail("Justification")} AS justification,
                coalesce({_detail("TicketNumber")}, {_detail("Ticket")}) AS ticket,
                try_cast({_detail("StartTime")} AS TIMESTAMPTZ) AS start_time,
                try_cast({_detail("ExpirationTime")} AS TIMESTAMPTZ) AS expiration_time,
                -- the request's status after this record (Graph's vocabulary: PendingApproval while a
                -- further approval stage is awaited)
                coalesce({_detail("RequestStatus")}, {_detail("Status")}) AS request_status
            FROM base
        ), keys AS (
            SELECT *,
                -- KeyDescription values are JSON strings holding a list of "[KeyIdentifier=<guid>,KeyType=…]"
                json_extract_string(list_filter(json_extract(sp, '$.modifiedProperties[*]'),
                    x -> json_extract_string(x, '$.displayName') = 'KeyDescription')[1], '$.newValue') AS key_new,
                json_extract_string(list_filter(json_extract(sp, '$.modifiedProperties[*]'),
                    x -> json_extract_string(x, '$.displayName') = 'KeyDescription')[1], '$.oldValue') AS key_old,
                json_extract_string(list_filter(json_extract(sp, '$.modifiedProperties[*]'),
                    x -> json_extract_string(x, '$.displayName') = 'KeyType')[1], '$.newValue') AS key_type_prop
            FROM t
        ), k AS (
            SELECT *,
                list_filter(regexp_extract_all(coalesce(key_new, ''), 'KeyIdentifier=([0-9A-Fa-f-]+)', 1),
                            x -> NOT list_contains(regexp_extract_all(coalesce(key_old, ''),
                                                                      'KeyIdentifier=([0-9A-Fa-f-]+)', 1), x)) AS added,
                CASE WHEN lop IN {_ops(_CREDENTIAL_OPS)} THEN 'credential_issue'
                     WHEN service = 'PIM' AND (lop LIKE '%request approved%' OR lop LIKE '%request denied%'
                                               OR lop LIKE '%request rejected%') THEN 'approval'
                     WHEN service = 'PIM' AND lop LIKE '%requested%' THEN 'task'
                     WHEN service = 'PIM' AND (lop LIKE '%expired%' OR lop LIKE 'remove member from role%')
                         THEN 'task'
                     WHEN service = 'PIM' AND lop LIKE 'add %member to role%' THEN 'grant'
                     ELSE 'action' END AS category,
                -- the member's one name: UPN, else display name, else object id (task agent, grant holder)
                coalesce(json_extract_string(member_t, '$.userPrincipalName'), json_extract_string(member_t, '$.displayName'),
                         json_extract_string(member_t, '$.id')) AS member,
                service = 'PIM' AND lop LIKE '%completed (pim activation)%' AS activation
            FROM keys
        )
        SELECT
            coalesce(nullif(json_extract_string(p, '$.id'), ''), json_extract_string(doc, '$.correlationId')) AS event_id,
            record_index, line, occurred_at, category,
            initiator AS actor_id,
            CASE WHEN by_app IS NOT NULL AND json_extract_string(by_app, '$.displayName') = 'Managed Service Identity'
                     THEN 'workload'
                 WHEN by_app IS NOT NULL THEN 'service' ELSE 'unknown' END AS actor_type,
            CASE WHEN category = 'credential_issue' AND len(added) > 0 THEN 'azure-key:' || added[1] END AS credential_id,
            CASE WHEN category = 'credential_issue' AND len(added) > 0 THEN 'azure_app_credential' END AS credential_type,
            'entra:' || lower(op) AS action,
            CASE WHEN sp IS NOT NULL THEN 'entra:' || lower(json_extract_string(sp, '$.type')) || '/'
                                          || json_extract_string(sp, '$.id')
                 WHEN role_t IS NOT NULL THEN 'entra:role/' || json_extract_string(role_t, '$.id')
                 WHEN len(targets) > 0 THEN 'entra:' || lower(json_extract_string(targets[1], '$.type')) || '/'
                                            || json_extract_string(targets[1], '$.id') END AS resource,
            false AS read_only,
            CASE result WHEN 'success' THEN 'success' WHEN 'failure' THEN 'failure' WHEN 'timeout' THEN 'failure' END
                AS outcome,
            CASE WHEN result IN ('failure', 'timeout') THEN nullif(json_extract_string(p, '$.resultReason'), '') END
                AS error_code,
            nullif(json_extract_string(doc, '$.tenantId'), '') AS account,
            coalesce(nullif(json_extract_string(doc, '$.callerIpAddress'), ''),
                     nullif(json_extract_string(by_user, '$.ipAddress'), '')) AS src_ip,
            {_detail("User-Agent")} AS user_agent,
            -- an activation's grant record is a record of its request too (40_tasks.sql, 70_action_tasks.sql)
            CASE WHEN service = 'PIM' AND (category IN ('task', 'approval') OR activation) AND request_id IS NOT NULL
                 THEN 'pim-request:' || request_id END AS task_id,
            CASE WHEN category = 'grant' THEN expiration_time END AS expires_at,
            CASE WHEN category = 'task' AND (lop LIKE '%expired%' OR lop LIKE 'remove member from role%')
                 THEN occurred_at END AS ended_at,
            json_merge_patch('{{}}', json_object(
                'audit_id', json_extract_string(p, '$.id'),
                'correlation_id', coalesce(json_extract_string(doc, '$.correlationId'),
                                           json_extract_string(p, '$.correlationId')),
                'audit_category', json_extract_string(p, '$.category'),
                'operation_type', json_extract_string(p, '$.operationType'),
                'logged_by_service', service,
                'initiator_name', coalesce(json_extract_string(by_user, '$.displayName'),
                                           json_extract_string(by_app, '$.displayName')),
                -- credential issuance: the service principal that holds the new key, for good
                'holder', CASE WHEN category = 'credential_issue' THEN json_extract_string(sp, '$.id') END,
                'holder_name', CASE WHEN category = 'credential_issue' THEN json_extract_string(sp, '$.displayName') END,
                'long_term', CASE WHEN category = 'credential_issue' THEN true END,
                'key_ids', CASE WHEN category = 'credential_issue' AND len(added) > 0 THEN added END,
                'key_type', CASE WHEN category = 'credential_issue'
                                 THEN coalesce(nullif(regexp_extract(coalesce(key_new, ''), 'KeyType=([A-Za-z0-9]+)', 1), ''),
                                               nullif(trim(key_type_prop, '"'), '')) END,
                -- PIM
                'request_id', request_id,
                'justification', justification, 'ticket', ticket,
                'agent_id', CASE WHEN category = 'task' OR activation THEN member END,
                -- an activation is requested by the member itself (PIM activation is self-service)
                'requested_by', CASE WHEN category = 'task' THEN initiator WHEN activation THEN member END,
                'intent', CASE WHEN category = 'task' OR activation THEN coalesce(justification, op) END,
                'status', CASE WHEN activation THEN 'activated'
                               WHEN category = 'task' THEN CASE WHEN lop LIKE '%requested%' THEN 'requested'
                                                               ELSE 'ended' END END,
                'known_from', CASE WHEN service = 'PIM' AND (category = 'task' OR activation) THEN 'entra_pim' END,
                'approval_id', CASE WHEN category = 'approval' THEN coalesce(request_id, json_extract_string(p, '$.id')) END,
                -- an approval after which the request is still PendingApproval approved one stage of
                -- several: a pending stage (decision pending, stage_decision approved) that covers nothing
                'decision', CASE WHEN category = 'approval' THEN CASE
                                     WHEN lop LIKE '%approved%' AND lower(request_status) = 'pendingapproval' THEN 'pending'
                                     WHEN lop LIKE '%approved%' THEN 'approved' ELSE 'denied' END END,
                'stage', CASE WHEN category = 'approval' AND lower(request_status) = 'pendingapproval' THEN initiator END,
                'stage_decision', CASE WHEN category = 'approval' AND lower(request_status) = 'pendingapproval'
                                       THEN 'approved' END,
                'approver', CASE WHEN category = 'approval' THEN initiator WHEN category = 'grant' THEN member END,
                'role', CASE WHEN category IN ('grant', 'task', 'approval') AND role_t IS NOT NULL
                             THEN json_extract_string(role_t, '$.displayName') END,
                'role_start', CASE WHEN category = 'grant' THEN strftime(start_time, '%Y-%m-%dT%H:%M:%SZ') END,
                -- a PIM activation: who holds the role where, the join to Azure Activity Log actions
                -- (70_action_tasks.sql grant_windows): the member's object id and UPN, the role
                -- definition, and the assignment's scope (directory roles: the tenant; Azure resource
                -- roles: arm_scope, the ARM path of the target that names one)
                'member_id', CASE WHEN activation THEN json_extract_string(member_t, '$.id') END,
                'member_upn', CASE WHEN activation THEN json_extract_string(member_t, '$.userPrincipalName') END,
                'role_definition_id', CASE WHEN activation THEN coalesce({_detail("RoleDefinitionOriginId")},
                                                                        json_extract_string(role_t, '$.id')) END,
                'role_kind', CASE WHEN activation THEN CASE lower(json_extract_string(p, '$.category'))
                                                           WHEN 'resourcemanagement' THEN 'azure_resource'
                                                           WHEN 'groupmanagement' THEN 'group'
                                                           ELSE 'directory' END END,
                'arm_scope', CASE WHEN activation THEN arm_scope END,
                'request_status', request_status
            )) AS details,
            doc AS raw,
            -- one audit id is reused by the records of one PIM operation (requested, completed …)
            coalesce(json_extract_string(p, '$.id'), '') || '|' || md5(doc::VARCHAR) AS dedupe_key
        FROM k"""
    )
