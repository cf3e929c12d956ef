"""What each table and column of the store means: the one place these descriptions are written.

``nhiaudit schema [TABLE]`` joins them with the store's catalog (the columns and types DuckDB has),
and docs/internals.md's "Store tables" section is :func:`reference` of the sample world's store
(``pytest --update-golden`` rewrites it; a test fails when it is stale, and another when a table or
column of a correlated store has no description here, or a description names a column that no
longer exists).

A column name means the same in every table (``COLUMNS``) unless ``TABLE_COLUMNS`` says otherwise
for one table, the way OCSF keeps one attribute dictionary.
"""

from __future__ import annotations

from typing import Any

import duckdb

from nhiaudit.errors import NotFoundError, did_you_mean

#: Each table (and view) of the store: what one row is.
TABLES: dict[str, str] = {
    "meta": "Store settings: schema version, evidence generation, what the derived tables were built from.",
    "evidence_files": "One ingested file: its bytes' hash, path, source and record counts (the chain of custody).",
    "events": "One source record of any source, normalized; the original record in raw.",
    "rejected": "One record that could not be loaded, with the reason and the raw text (bounded).",
    "audit_runs": "One audit (report or trace) that rebuilt the derived tables: the policy it used.",
    "event_evidence": "The stored copy of each event that is its evidence: file, line, record (derived).",
    "principal_class": "One principal seen (actor, holder, approver): human, broker (derived).",
    "credentials": "One credential: type, holder, issuance, lifetime, parent, task (derived).",
    "credential_ancestry": "One (credential, ancestor) pair up the issuance chain to its root (derived).",
    "credential_chain": "One credential's chain summary: root, broken link, human holder, nearest task (derived).",
    "tasks": "One task: from provenance records and agent traces merged (derived).",
    "approvals": "One approval record (or approval stage) of a task (derived).",
    "grants": "One role grant of an approver with its validity window (derived).",
    "chains": "One audited action with every link of its chain, the checks rules read and its verdict (derived).",
    "chain_link_rows": "View: chain_links before its evidence is located (trace reads it by event id).",
    "chain_links": "View: one link of one audited action's chain, in order, with its evidence (what trace shows).",
    "findings": "One rule firing on one audited action, with its evidence and waiver (derived by correlate).",
    "event_keys": "One (event, join key) pair: what incremental correlation follows from new events (derived).",
    "correlated_files": "One evidence file the derived tables were built from (incremental correlation).",
}

#: What a column means, by name, in every table that has it.
COLUMNS: dict[str, str] = {
    # identity of an event and where it is stored
    "source": "source name (cloudtrail, vault, otel, …)",
    "event_id": "the source's own id of the record; source:event_id is unique",
    "file_sha256": "SHA-256 of the evidence file (evidence_files.sha256)",
    "sha256": "SHA-256 of the file's bytes",
    "path": "evidence file path as it was ingested",
    "record_index": "0-based position of the record in the file",
    "line": "1-based line where the record starts (1 for a one-line document)",
    "raw": "the original record as JSON, untouched",
    "details": "category extras as JSON (see docs/internals.md, details by category)",
    "dedupe_key": "same key in the same source = same event, stored once",
    # normalized event fields
    "occurred_at": "when it happened (UTC)",
    "category": "action, credential_issue, credential_revoke, task, approval, grant, tool_call, signin, other",
    "actor_id": "who acted (ARN, user, service account, token accessor, …)",
    "actor_type": "human, agent, workload, service, unknown",
    "credential_id": "the credential used",
    "credential_type": "the credential's type (access_key, sts_session, vault_token, …)",
    "parent_credential_id": "the credential that issued this one",
    "action": "service:Operation",
    "resource": "what the action was on",
    "read_only": "the action only reads",
    "outcome": "success, failure, denied",
    "error_code": "the source's error code",
    "account": "cloud account or project",
    "region": "cloud region",
    "src_ip": "caller IP address",
    "user_agent": "caller user agent",
    "task_id": "the task the record or chain belongs to",
    "trace_id": "trace id (lower-case hex)",
    "span_id": "span id (lower-case hex)",
    "parent_span_id": "parent span id (lower-case hex)",
    "expires_at": "expiry: of a credential (issuance), an approval, a grant (valid_to)",
    "ended_at": "when the task or span ended",
    # files and runs
    "size": "file size in bytes",
    "ingested_at": "when the file was ingested (UTC)",
    "records_read": "records read from the file",
    "records_loaded": "records stored in events",
    "records_rejected": "records stored in rejected",
    "records_duplicate": "records already stored (same dedupe key), skipped",
    "reason": "why the record was rejected",
    "key": "setting name",
    "eid": "hash of the event's source and event_id",
    "k": "hash of a value correlation joins events on (a credential, task, trace, approver …)",
    "value": "setting value",
    "run": "run number, in order",
    "recorded_at": "when the run was recorded (UTC)",
    "nhiaudit_version": "nhiaudit version of the run",
    "evidence_generation": "the evidence generation the run audited (bumped by every ingest)",
    "policy_path": "the policy file used (NULL: the built-in defaults)",
    "policy_text": "the policy file's text as used",
    "policy_fingerprint": "hash of the policy as used",
    # principals and credentials
    "principal": "a principal id (actor, holder or approver)",
    "is_human": "the policy or the evidence says it is a human",
    "is_broker": "the policy names it a credential broker (an orchestrator that issues credentials)",
    "holder": "the principal the credential acts as",
    "issued_at": "when the credential was issued",
    "revoked_at": "when the credential was revoked",
    "issuance_source": "source of the issuance event",
    "issuance_event_id": "the issuance event (event_id)",
    "issuance_conflict": "more than one issuance record disagrees about the credential",
    "task_link": "how the task was linked: sourceIdentity, session_tag, vault_metadata, event, trace, …",
    "first_used_at": "first action with the credential",
    "last_used_at": "last action with the credential",
    "long_term": "a long-lived credential (access key, static token): needs no issuance",
    "temporary": "a temporary credential: must have an issuance",
    "depth": "steps from the credential (0 = itself, 1 = its parent, …)",
    "ancestor_id": "a credential on the chain at that depth",
    "root_credential_id": "the credential at the top of the chain",
    "chain_depth": "number of issuance steps to the root",
    "chain_credential_ids": "every credential on the chain, from the action's to the root",
    "root_kind": "what the chain starts from: broker, long_term, vault, issuer:SOURCE or unrooted",
    "broken_credential_id": "the temporary credential whose issuance is missing (the chain breaks there)",
    "human_holder": "a human identity the chain passes through",
    "human_credential_id": "the credential that human holds",
    "task_credential_id": "the credential on the chain that carries the task id",
    "task_ids": "every task id found on the chain",
    # tasks
    "agent_id": "the agent acting for the task",
    "intent": "what the task was for, as requested",
    "requested_by": "who requested the task",
    "status": "task status as recorded",
    "started_at": "when the task started",
    "known_from": "where the task is known from: provenance, trace or both",
    "agent_conflict": "provenance and trace name different agents",
    "evidence_source": "source of the record this row is built from",
    "evidence_event_id": "the record this row is built from (event_id)",
    "trace_source": "source of the agent trace span of the task",
    "trace_event_id": "the agent trace span of the task (event_id)",
    # approvals and grants
    "approval_id": "the approval's id (ticket system, provenance)",
    "approver": "who decided",
    "decision": "approved, denied, pending",
    "decided_at": "when it was decided",
    "scope_actions": "actions the approval covers (globs)",
    "scope_resources": "resources the approval covers (globs)",
    "has_scope": "the approval states a scope",
    "ticket": "change ticket",
    "justification": "why, as written by the requester or approver",
    "environment": "environment the approval is for",
    "stage": "approval stage (multi-stage approvals)",
    "stage_decision": "the stage's decision",
    "decision_time_unknown": "why the decision time is unknown (NULL when known)",
    "approval_key": "internal key of the approval record (source:event_id)",
    "role": "the role granted",
    "valid_from": "start of the grant",
    "valid_to": "end of the grant",
    # chains
    "tier_rank": "risk tier as a number (0 low … 3 critical)",
    "tier": "risk tier of the action: low, medium, high, critical",
    "credential_holder": "the principal the credential acts as",
    "credential_long_term": "the credential is long-lived",
    "credential_status": "credential link: found, missing",
    "credential_expires_at": "when the credential expires",
    "credential_revoked_at": "when the credential was revoked",
    "issuance_status": "issuance link: found, missing, conflict, not_required (long-lived)",
    "span_source": "source of the agent span that links the action to its task",
    "span_event_id": "the agent span that links the action to its task (event_id)",
    "task_environment": "environment of the task",
    "task_status": "task status",
    "task_known": "a task record or agent trace has the task id",
    "task_requested_by": "who requested the task",
    "task_started_at": "when the task started",
    "task_ended_at": "when the task ended",
    "task_known_from": "where the task is known from: provenance, trace or both",
    "task_source": "source of the task record",
    "task_event_id": "the task record (event_id)",
    "approval_records": "approval records of the task",
    "approved_records": "of which approvals",
    "denied_records": "of which denials",
    "effective_decision": "the last decision made before the action",
    "effective_approval_id": "the approval that decision belongs to",
    "approval_expires_at": "when the approval expires",
    "approval_source": "source of the approval record",
    "approval_event_id": "the approval record (event_id)",
    "pending_stages": "approval stages still pending",
    "approved_stages": "approval stages approved",
    "stage_approvers": "who approved the stages",
    "approval_environment": "environment of the approval",
    "approval_required": "the action's tier needs an approval (policy)",
    "approval_status": "approval link: found, missing, conflict (denied or unusable), not_required",
    "approval_late": "the approval was decided after the action",
    "approval_expired": "the action ran after the approval expired or grew too old",
    "roles_held": "the approver's roles at decision time",
    "authorized": "the approver held a role allowed to approve the action's tier",
    "grant_source": "source of the approver's grant",
    "grant_event_id": "the approver's grant (event_id)",
    "grant_role": "the role that authorized the approver",
    "authority_status": "authority link: found, missing, conflict (roles held, none allowed)",
    "approver_is_human": "the approver is a human",
    "self_approved": "the approver is the requester, the agent or a non-human identity",
    "in_approval_scope": "the action and resource are within the approval's scope",
    "in_agent_scope": "the action and resource are within the agent's standing scope (policy)",
    "outlived_task": "the action ran after its task ended",
    "credential_task_count": "tasks the credential acts for",
    "credential_agent_count": "agents the credential acts for",
    "tasks_of_credential": "the tasks the credential acts for",
    "agents_of_credential": "the agents the credential acts for",
    "verdict": "approved, unapproved, unknown (evidence missing)",
    # chain_links
    "position": "the link's place in the chain (0 = the action)",
    "kind": "action, credential, issuance, parent, span, task, approval, authority",
    "link_id": "the link's id (credential, task, approval, …)",
    "broker": "the holder is a credential broker",
    "human": "the holder is a human",
    # approval systems (issue 9) and scope checks (issue 10)
    "approver_as_logged": "the approver's name as the record logged it, before [identities] aliases",
    "requested_by_as_logged": "the requester's name as the record logged it, before [identities] aliases",
    "task_requested_by_as_logged": "the task requester's name as logged, before [identities] aliases",
    "approval_implied_by": "approval implied, record missing: the gate a credential on the chain proves was passed",
    "denial_id": "the denial that decides the verdict (the denial link)",
    "denied_by": "who denied (aliased)",
    "denied_by_as_logged": "who denied, as logged",
    "denied_at": "when the deciding denial was made",
    "denial_reason": "the deciding denial's justification",
    "denial_source": "source of the deciding denial record",
    "denial_event_id": "the deciding denial record (event_id)",
    "protected_environment": "the environment [approval] protected_roles requires for the assumed role",
    "protected_role": "the protected role assumed by a token whose subject lacks its environment",
    "protected_issuance_source": "source of that role assumption",
    "protected_issuance_event_id": "that role assumption (event_id)",
    "approval_scope_unverifiable": "the approval's scope restricts resources and the action names none",
    "agent_scope_unverifiable": "the agent's standing scope restricts resources and the action names none",
    # findings
    "rule": "rule id (nhiaudit rules)",
    "severity": "info, low, medium, high, critical",
    "title": "the rule's title",
    "message": "what the rule found on this action",
    "frameworks": "framework controls the rule maps to (NHI5:2025, ASI03, 800-53:AC-6, …)",
    "fingerprint": "stable id of the finding across runs (rule, source, event_id)",
    "waived": "a policy waiver suppresses the finding",
    "waiver": "which waiver (its position in the policy)",
    "waiver_reason": "the waiver's reason",
    "waiver_owner": "the waiver's owner",
    "waiver_expires": "the waiver's expiry date",
}

#: A column whose meaning in one table differs from ``COLUMNS``.
TABLE_COLUMNS: dict[tuple[str, str], str] = {
    ("events", "credential_id"): "the credential used (credential_issue: the credential issued)",
    ("events", "parent_credential_id"): "credential_issue: the caller's credential",
    ("events", "task_id"): "task id stamped on the record (issuance tag, Vault metadata, span attribute, provenance)",
    ("evidence_files", "source"): "the source that claimed the file",
    ("rejected", "source"): "the source that read the file",
    ("rejected", "raw"): "the record's text, cut to a bound",
    ("credentials", "source"): "source of the credential's first record",
    ("credential_ancestry", "credential_id"): "the credential whose ancestry this is",
    ("approvals", "task_id"): "the task approved",
    ("approvals", "expires_at"): "when the approval expires",
    ("approvals", "source"): "source of the approval record",
    ("approvals", "event_id"): "the approval record (event_id)",
    ("grants", "source"): "source of the grant record",
    ("grants", "event_id"): "the grant record (event_id)",
    ("tasks", "ended_at"): "when the task ended",
    ("chains", "source"): "source of the audited action",
    ("chains", "event_id"): "the audited action (event_id)",
    ("chains", "credential_id"): "the credential the action used",
    ("chains", "issued_at"): "when the action's credential was issued",
    ("chains", "parent_credential_id"): "the credential that issued the action's credential",
    ("chains", "task_id"): "the action's task",
    ("chain_links", "source"): "source of the audited action",
    ("chain_links", "event_id"): "the audited action (event_id)",
    ("chain_links", "status"): "found, missing, conflict, not_required",
    ("chain_links", "depth"): "nesting of parent credentials (1 = first parent)",
    ("chain_links", "issued_at"): "when the link's credential was issued",
    ("chain_links", "holder"): "the link's credential holder",
    ("chain_links", "credential_type"): "the link's credential type",
    ("chain_links", "long_term"): "the link's credential is long-lived",
    ("chain_links", "path"): "evidence file of the link",
    ("chain_links", "evidence_source"): "source of the link's evidence record",
    ("chain_links", "evidence_event_id"): "the link's evidence record (event_id)",
    ("findings", "source"): "source of the audited action",
    ("findings", "event_id"): "the audited action (event_id)",
    ("findings", "path"): "evidence file of the action",
    ("event_evidence", "path"): "the file of the stored copy that is the evidence",
}


# chain_link_rows holds chain_links' columns but the evidence location: each means the same there.
TABLE_COLUMNS.update(
    {("chain_link_rows", c): text for (t, c), text in list(TABLE_COLUMNS.items()) if t == "chain_links" and c != "path"}
)


def describe_column(table: str, column: str) -> str | None:
    return TABLE_COLUMNS.get((table, column), COLUMNS.get(column))


def catalog(con: duckdb.DuckDBPyConnection, table: str | None = None) -> list[dict[str, Any]]:
    """The store's tables (and views) with their columns, types and descriptions, in table-name
    order then column order. Only the store's own tables: not a connection's TEMP policy tables.
    A ``table`` the store does not have is a :class:`NotFoundError` naming the closest."""
    rows = con.execute(
        """SELECT c.table_name, c.column_name, c.data_type, c.column_index
           FROM duckdb_columns() c
           WHERE c.database_name = current_database() AND c.schema_name = 'main' AND NOT c.internal
           ORDER BY c.table_name, c.column_index"""
    ).fetchall()
    known = sorted({name for name, *_ in rows})
    if table is not None and table not in known:
        raise NotFoundError(
            f"schema: no table or view '{table}' in the store.{did_you_mean(table, known)} "
            "`nhiaudit schema` lists them."
        )
    rows = [row for row in rows if table is None or row[0] == table]
    tables: dict[str, dict[str, Any]] = {}
    for name, column, kind, _ in rows:
        entry = tables.setdefault(name, {"table": name, "description": TABLES.get(name), "columns": []})
        entry["columns"].append({"column": column, "type": kind, "description": describe_column(name, column)})
    return list(tables.values())


def reference(tables: list[dict[str, Any]]) -> str:
    """docs/internals.md's "Store tables" section: :func:`catalog` of a correlated store as Markdown,
    one table of columns per store table."""
    out: list[str] = []
    for entry in tables:
        out += [f"### `{entry['table']}`", "", entry["description"] or "", ""]
        out += ["| column | type | meaning |", "|---|---|---|"]
        out += [f"| {c['column']} | {c['type']} | {c['description'] or ''} |" for c in entry["columns"]]
        out.append("")
    return "\n".join(out)
