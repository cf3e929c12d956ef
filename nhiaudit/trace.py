"""Authorization chains as values: one :class:`model.AuditedAction` per action, with its links.

The links of a chain are defined once, in SQL: the ``chain_links`` view (queries/correlate/
90_chain_links.sql) says which links an action has, in which order, with which status and which
stored event is the evidence of each. This module only presents them: one small function per link
kind (``LINKS``) turns a link row and its chain row into a one-line label and the link's details.
Actions that are not audited (a human's, or below ``audit.min_tier``) can still be traced: the
event is shown and the verdict says why it is not audited.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import duckdb

from nhiaudit.errors import NhiauditError, NotFoundError
from nhiaudit.model import AuditedAction, Evidence, Link, Trace

# Actions in time order. An event id may repeat (two records of one source with the same id), so
# the columns that tell such rows apart follow: the order never depends on DuckDB's scan order.
ACTION_ORDER = (
    "occurred_at NULLS LAST, source, event_id, action NULLS LAST, resource NULLS LAST, actor_id NULLS LAST, "
    "credential_id NULLS LAST, outcome NULLS LAST, task_id NULLS LAST, approval_id NULLS LAST"
)
# One event: filtered on its event id alone, the source then picked in Python, because DuckDB answers
# a one-column equality from the event_id index (correlate.LOOKUP_INDEXES) and scans for two.
_BY_ID = "event_id = $event_id"

Row = dict[str, Any]


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (
        value.strftime("%Y-%m-%dT%H:%M:%S") + (f".{value.microsecond // 1000:03d}" if value.microsecond else "") + "Z"
    )


def _rows(cursor: duckdb.DuckDBPyConnection) -> list[Row]:
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, r, strict=True)) for r in cursor.fetchall()]


# --- one presenter per link kind: (chain row, link row) -> (label, details) -------------------


def action(r: Row, link: Row) -> tuple[str, dict[str, Any]]:
    label = " ".join(
        str(x)
        for x in (iso(r["occurred_at"]), r["actor_id"], r["action"], r["resource"] or "", r["outcome"] or "")
        if x
    )
    return label, {"tier": r["tier"], "actor_type": r["actor_type"], "outcome": r["outcome"]}


def credential(r: Row, link: Row) -> tuple[str, dict[str, Any]]:
    label = f"{link['credential_type'] or 'credential'} held by {link['holder'] or '?'}" + (
        " (long-term)" if link["long_term"] else ""
    )
    return label, {
        "holder": link["holder"],
        "long_term": link["long_term"],
        "expires_at": iso(r["credential_expires_at"]),
        "revoked_at": iso(r["credential_revoked_at"]),
    }


def issuance(r: Row, link: Row) -> tuple[str, dict[str, Any]]:
    if r["issuance_event_id"]:
        label = f"issued {iso(r['issued_at'])}, expires {iso(r['credential_expires_at']) or '?'}"
    elif link["status"] == "not_required":
        label = "long-term credential: no issuance expected"
    else:
        label = "no issuance of this credential in the evidence"
    return label, {"parent_credential_id": r["parent_credential_id"]}


def parent(r: Row, link: Row) -> tuple[str, dict[str, Any]]:
    kind = (
        "long-term key"
        if link["long_term"]
        else "broker"
        if link["broker"]
        else (link["credential_type"] or "credential")
    )
    if link["evidence_event_id"]:
        issued = f", issued {iso(link['issued_at'])}"
    else:
        issued = "" if link["status"] == "found" else ", no issuance in the evidence"
    return f"{kind} held by {link['holder'] or '?'}{issued}", {
        "holder": link["holder"],
        "human": link["human"],
        "broker": link["broker"],
    }


def span(r: Row, link: Row) -> tuple[str, dict[str, Any]]:
    # A gateway call joined to its agent through W3C trace context: show the hop.
    if r["parent_span_id"]:
        label = (
            f"traceparent of the call names trace {r['trace_id']} span {r['parent_span_id']}; "
            f"the task comes from span {r['span_event_id']}"
        )
    else:  # no caller span logged (a GCP LogEntry's trace): the task span covering the call
        label = (
            f"the call is logged in trace {r['trace_id']}; the task comes from span "
            f"{r['span_event_id']}, which covers the call's time"
        )
    return label, {"trace_id": r["trace_id"], "parent_span_id": r["parent_span_id"]}


def _as_logged(name: str | None, logged: str | None) -> str:
    """A person's name under [identities] aliases, with the name the record gave when it differs."""
    if name and logged and logged != name:
        return f"{name} (logged as {logged})"
    return name or "?"


def task(r: Row, link: Row) -> tuple[str, dict[str, Any]]:
    if r["task_known"]:
        label = (
            f"agent {r['agent_id'] or '?'}: {r['intent'] or '(no intent)'}; requested by "
            f"{_as_logged(r['task_requested_by'], r['task_requested_by_as_logged'])}; "
            f"{iso(r['task_started_at']) or '?'} .. {iso(r['task_ended_at']) or '?'}; "
            f"linked by {r['task_link']}; known from {r['task_known_from']}"
        )
    elif r["task_id"]:
        label = f"task {r['task_id']} (linked by {r['task_link']}) is in no task record or agent trace"
    else:
        label = "no task id on the credential chain and no trace context"
    return label, {"agent_id": r["agent_id"], "link": r["task_link"], "task_ids": list(r["task_ids"] or [])}


def approval(r: Row, link: Row) -> tuple[str, dict[str, Any]]:
    stages = (
        f"{r['pending_stages']} review(s) recorded while the request stayed pending"
        + (f" (approved by {', '.join(r['stage_approvers'])})" if r["stage_approvers"] else "")
        + ": its approval threshold was not met"
        if r["pending_stages"]
        else ""
    )
    approver = _as_logged(r["approver"], r["approver_as_logged"])
    if r["approval_id"] and r["decided_at"] is None:
        label = f"{r['decision']} by {approver}, decision time unknown ({r['decision_time_unknown']}): verdict unknown"
    elif r["approval_id"]:
        label = (
            f"{r['decision']} by {approver} at {iso(r['decided_at'])}"
            + (f", expires {iso(r['approval_expires_at'])}" if r["approval_expires_at"] else "")
            + (
                f"; scope actions {list(r['scope_actions'])} resources {list(r['scope_resources'])}"
                if r["has_scope"]
                else ""
            )
            + (
                f"; {r['approval_records']} record(s), effective decision {r['effective_decision']}"
                if r["approval_records"] > 1 or r["effective_decision"] == "denied"
                else ""
            )
        )
    elif r["approval_records"]:
        label = f"{r['approval_records']} approval record(s), none approved" + (
            f": denied by {_as_logged(r['denied_by'], r['denied_by_as_logged'])} at {iso(r['denied_at']) or '?'}"
            if r["denial_event_id"]
            else ""
        )
    elif r["approval_implied_by"]:
        label = f"approval implied, record missing: {r['approval_implied_by']}; verdict unknown"
    elif stages:
        label = f"no decision: {stages}"
    elif link["status"] == "not_required":
        label = "not required for this tier"
    elif r["task_known"]:
        label = "no approval record"
    else:
        label = "no task, so no approval can be found"
    label += _unverifiable_scope(r)
    details = {
        "approver": r["approver"],
        "decision": r["decision"],
        "decided_at": iso(r["decided_at"]),
        "late": r["approval_late"],
        "expired": r["approval_expired"],
        "in_scope": r["in_approval_scope"],
        "self_approved": r["self_approved"],
    }
    # Only where they say something, so that chains without them read as before.
    if r["decision_time_unknown"]:
        details["decision_time_unknown"] = r["decision_time_unknown"]
    if r["approval_implied_by"]:
        details["approval_implied_by"] = r["approval_implied_by"]
    if r["approver_as_logged"] and r["approver_as_logged"] != r["approver"]:
        details["approver_as_logged"] = r["approver_as_logged"]
    if r["approval_scope_unverifiable"] or r["agent_scope_unverifiable"]:
        details["scope_unverifiable"] = [
            name for name in ("approval", "agent") if r[f"{name}_scope_unverifiable"]
        ]
    if r["pending_stages"]:
        details["pending_stages"] = r["pending_stages"]
        details["stage_approvers"] = list(r["stage_approvers"] or [])
    return label, details


def denial(r: Row, link: Row) -> tuple[str, dict[str, Any]]:
    # The denial record that decides the verdict: its evidence is this link's.
    when = "before" if r["denied_at"] is not None and r["denied_at"] <= r["occurred_at"] else "after"
    label = (
        f"denied by {_as_logged(r['denied_by'], r['denied_by_as_logged'])} at {iso(r['denied_at']) or '?'} "
        f"({when} the action)" + (f": {r['denial_reason']}" if r["denial_reason"] else "")
    )
    return label, {
        "denied_by": r["denied_by"],
        "denied_at": iso(r["denied_at"]),
        "reason": r["denial_reason"],
        "withdrew_approval": r["approval_id"] is not None,
    }


def _unverifiable_scope(r: Row) -> str:
    """Why the verdict is unknown when a scope restricts resources the evidence does not name."""
    scopes = [
        text
        for flag, text in (
            ("approval_scope_unverifiable", f"approval {r['approval_id']}'s scope"),
            ("agent_scope_unverifiable", f"agent {r['agent_id']}'s standing scope"),
        )
        if r[flag]
    ]
    if not scopes:
        return ""
    return (
        f"; {' and '.join(scopes)} restrict{'s' if len(scopes) == 1 else ''} resources and the evidence "
        "names none for this action: in or out of scope is unknown (scope-unverifiable), verdict unknown"
    )


def authority(r: Row, link: Row) -> tuple[str, dict[str, Any]]:
    if r["authorized"]:
        label = f"{r['approver']} held {r['grant_role']} at decision time"
    elif r["approval_id"]:
        label = (
            f"{r['approver']} held {', '.join(r['roles_held'] or []) or 'no role'} at decision time, "
            f"none listed for tier {r['tier']}"
        )
    else:
        label = "no approver"
    return label, {"roles_held": list(r["roles_held"] or [])}


#: The presenters, one per ``kind`` the chain_links view emits (a test checks the two agree).
LINKS: tuple[Callable[[Row, Row], tuple[str, dict[str, Any]]], ...] = (
    action,
    credential,
    issuance,
    parent,
    span,
    task,
    approval,
    denial,
    authority,
)
_PRESENT = {present.__name__: present for present in LINKS}


def _evidence(link: Row) -> Evidence | None:
    if link["path"] is None:
        return None
    return Evidence(
        link["evidence_source"],
        link["evidence_event_id"],
        link["path"],
        link["file_sha256"],
        int(link["record_index"]),
        int(link["line"]),
    )


def _link(r: Row, link: Row) -> Link:
    label, details = _PRESENT[link["kind"]](r, link)
    return Link(link["kind"], link["link_id"], link["status"], label, _evidence(link), details, depth=link["depth"])


def _of_event(con: duckdb.DuckDBPyConnection, sql: str, source: str, event_id: str) -> list[Row]:
    """The rows ``sql`` (filtered by ``_BY_ID``) returns for one event of one source."""
    return [r for r in _rows(con.execute(sql, {"event_id": event_id})) if r["source"] == source]


def _links_of(con: duckdb.DuckDBPyConnection, source: str, event_id: str) -> list[Row]:
    """The ``chain_links`` rows of one event, as that view defines them, answered by index: the link
    rows of ``chain_link_rows`` first, then their few evidence rows by event id (the view's join
    would scan every stored event for them). A test checks both give the same rows."""
    rows = _of_event(con, f"SELECT * FROM chain_link_rows WHERE {_BY_ID} ORDER BY position", source, event_id)
    wanted = sorted({r["evidence_event_id"] for r in rows if r["evidence_event_id"] is not None})
    evidence: dict[tuple[str, str], Row] = {}
    if wanted:
        marks = ", ".join("?" * len(wanted))
        cursor = con.execute(
            f"""SELECT source, event_id, path, file_sha256, record_index, line FROM event_evidence
                WHERE event_id IN ({marks})""",
            wanted,
        )
        evidence = {(ev.pop("source"), ev.pop("event_id")): ev for ev in _rows(cursor)}
    none = dict.fromkeys(("path", "file_sha256", "record_index", "line"))
    return [{**r, **evidence.get((r["evidence_source"], r["evidence_event_id"]), none)} for r in rows]


_BATCH = 5_000  # rows fetched from DuckDB at a time


def load_actions(con: duckdb.DuckDBPyConnection, only: tuple[str, str] | None = None) -> list[AuditedAction]:
    """Audited actions with their links, in time order: all of them, or ``only`` (source, event_id).

    All of them are a list: a report streams them instead (:func:`iter_actions`)."""
    if only is not None:  # one action: by index (see _BY_ID)
        link_rows = _links_of(con, *only)
        one = f"SELECT * FROM chains WHERE {_BY_ID} ORDER BY {ACTION_ORDER}"
        return [_action(r, link_rows) for r in _of_event(con, one, *only)]
    return list(iter_actions(con))


def iter_actions(con: duckdb.DuckDBPyConnection, keys: list[tuple[str, str]] | None = None) -> Iterator[AuditedAction]:
    """Every audited action with its links (or those of ``keys``, (source, event_id) pairs), in time
    order, built one batch of rows at a time: DuckDB sorts (spilling to disk past its memory limit)
    and groups each action's links into one list, so only the batch being built is ever held in Python."""
    only = "" if keys is None else "WHERE list_contains($keys, [{t}.source, {t}.event_id])"
    cursor = con.cursor()
    try:
        # A streaming result read as Arrow batches: execute() + fetchmany would first materialize the
        # whole sorted result outside DuckDB's memory limit (gigabytes at a million actions).
        relation = cursor.sql(
            f"""SELECT c.*, l.links AS {_LINKS} FROM chains c
                LEFT JOIN (SELECT source, event_id, list(cl ORDER BY position) AS links FROM chain_links cl
                           {only.format(t="cl")} GROUP BY source, event_id) l USING (source, event_id)
                {only.format(t="c")}
                ORDER BY {", ".join("c." + part for part in ACTION_ORDER.split(", "))}""",
            params=None if keys is None else {"keys": [list(key) for key in keys]},
        )
        for batch in relation.to_arrow_reader(_BATCH):
            for r in batch.to_pylist():
                yield _action(r, r.pop(_LINKS) or [])
    finally:
        cursor.close()


_LINKS = "__nhiaudit_links"  # the column of iter_actions' query holding an action's link rows


def _action(r: Row, links: list[Row]) -> AuditedAction:
    """The action of one chains row, with its link rows (in position order)."""
    return AuditedAction(
        source=r["source"],
        event_id=r["event_id"],
        occurred_at=iso(r["occurred_at"]) or "",
        actor_id=r["actor_id"],
        action=r["action"],
        resource=r["resource"],
        tier=r["tier"],
        verdict=r["verdict"],
        links=tuple(_link(r, row) for row in links),
    )


def resolve_id(con: duckdb.DuckDBPyConnection, ident: str) -> tuple[str, str]:
    """``source:event_id`` or a bare event id -> (source, event_id). Raises NotFoundError with the
    closest ids, or NhiauditError when a bare id exists in several sources."""
    candidates: list[tuple[str, str]] = []
    if ":" in ident:
        source, _, event_id = ident.partition(":")
        candidates = [
            (s, i)
            for s, i in con.execute("SELECT source, event_id FROM event_evidence WHERE event_id = ?", [event_id])
            .fetchall()
            if s == source
        ]
    if not candidates:
        candidates = con.execute(
            "SELECT source, event_id FROM event_evidence WHERE event_id = ? ORDER BY source", [ident]
        ).fetchall()
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        names = ", ".join(f"{s}:{i}" for s, i in candidates)
        raise NhiauditError(
            f"trace: '{ident}' is an event id in several sources ({names}). Give it as source:event_id."
        )
    closest = [
        r[0]
        for r in con.execute(
            """SELECT source || ':' || event_id FROM event_evidence WHERE category IN ('action', 'credential_issue')
               ORDER BY jaro_winkler_similarity(event_id, ?) DESC, source, event_id LIMIT 5""",
            [ident.rpartition(":")[2] if ":" in ident else ident],
        ).fetchall()
    ]
    raise NotFoundError(f"trace: no event '{ident}' in the store. Check the id (bare or source:event_id).", closest)


def trace(con: duckdb.DuckDBPyConnection, ident: str) -> Trace:
    """The chain of one event (findings are the session's to add: they need the rules)."""
    source, event_id = resolve_id(con, ident)
    actions = load_actions(con, (source, event_id))
    (event,) = _of_event(
        con,
        f"""SELECT source, event_id, occurred_at, category, actor_id, action, resource, outcome, credential_id
            FROM event_evidence WHERE {_BY_ID}""",
        source,
        event_id,
    )
    event["occurred_at"] = iso(event["occurred_at"])
    if actions:
        return Trace(event=event, action=actions[0])
    return Trace(event=event, action=None, not_audited_because=_why_not_audited(con, event))


def _why_not_audited(con: duckdb.DuckDBPyConnection, event: Row) -> str:
    if event["category"] != "action":
        return f"it is a {event['category']} event, not an action"
    human = con.execute("SELECT is_human FROM principal_class WHERE principal = ?", [event["actor_id"]]).fetchone()
    if human and human[0]:
        return f"its actor {event['actor_id']} is a human ([identities] humans)"
    return "its tier is below [audit] min_tier"
