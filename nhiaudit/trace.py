"""Authorization chains as values: one :class:`model.AuditedAction` per action, with its links.

``chains`` (built by correlation) holds one row per audited action; this module turns rows into
links with evidence pointers (file, record index, line, event id) for ``nhiaudit trace`` and the
reports. Actions that are not audited (a human's, or below ``audit.min_tier``) can still be traced:
their credential chain is shown and the verdict says why they are not audited.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import duckdb

from nhiaudit.errors import NhiauditError, NotFoundError
from nhiaudit.model import AuditedAction, Evidence, Link

# One row per (source, event_id) with where it lives: events may repeat an id across files
# (the first stored copy is the evidence; path and position break ties, so it is the same copy
# on every run).
_EVIDENCE_SQL = """
    SELECT e.source, e.event_id, ef.path, e.file_sha256, e.record_index, coalesce(e.line, 1) AS line
    FROM events e JOIN evidence_files ef ON ef.sha256 = e.file_sha256
    WHERE (e.source, e.event_id) IN (SELECT (s, i) FROM (SELECT unnest(?) AS s, unnest(?) AS i))
    QUALIFY row_number() OVER (PARTITION BY e.source, e.event_id
                               ORDER BY ef.ingested_at, ef.path, e.file_sha256, e.record_index) = 1
"""

# Actions in time order. An event id may repeat (two records of one source with the same id), so
# the columns that tell such rows apart follow: the order never depends on DuckDB's scan order.
_ACTION_ORDER = (
    "occurred_at NULLS LAST, source, event_id, action NULLS LAST, resource NULLS LAST, actor_id NULLS LAST, "
    "credential_id NULLS LAST, outcome NULLS LAST, task_id NULLS LAST, approval_id NULLS LAST"
)


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (
        value.strftime("%Y-%m-%dT%H:%M:%S")
        + (f".{value.microsecond // 1000:03d}" if value.microsecond else "")
        + "Z"
    )


def resolve_id(con: duckdb.DuckDBPyConnection, ident: str) -> tuple[str, str]:
    """``source:event_id`` or a bare event id -> (source, event_id). Raises NotFoundError with the
    closest ids, or NhiauditError when a bare id exists in several sources."""
    candidates: list[tuple[str, str]] = []
    if ":" in ident:
        source, _, event_id = ident.partition(":")
        candidates = con.execute(
            "SELECT DISTINCT source, event_id FROM events WHERE source = ? AND event_id = ?",
            [source, event_id],
        ).fetchall()
    if not candidates:
        candidates = con.execute(
            "SELECT DISTINCT source, event_id FROM events WHERE event_id = ? ORDER BY source", [ident]
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
            """SELECT source || ':' || event_id FROM (
                   SELECT DISTINCT source, event_id FROM events WHERE category IN ('action', 'credential_issue'))
               ORDER BY jaro_winkler_similarity(event_id, ?) DESC, source, event_id LIMIT 5""",
            [ident.rpartition(":")[2] if ":" in ident else ident],
        ).fetchall()
    ]
    raise NotFoundError(
        f"trace: no event '{ident}' in the store. Check the id (bare or source:event_id).", closest
    )


def evidence_map(
    con: duckdb.DuckDBPyConnection, keys: Iterable[tuple[str | None, str | None]]
) -> dict[tuple[str, str], Evidence]:
    wanted = sorted({(s, i) for s, i in keys if s and i})
    if not wanted:
        return {}
    rows = con.execute(_EVIDENCE_SQL, [[s for s, _ in wanted], [i for _, i in wanted]]).fetchall()
    return {(r[0], r[1]): Evidence(r[0], r[1], r[2], r[3], int(r[4]), int(r[5])) for r in rows}


def _parents(con: duckdb.DuckDBPyConnection, credential_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Ancestors (depth >= 1) of each credential with the ancestor's own issuance and holder."""
    if not credential_ids:
        return {}
    rows = con.execute(
        """SELECT a.credential_id, a.depth, c.credential_id, c.credential_type, c.holder, c.long_term,
                  c.temporary, c.issuance_source, c.issuance_event_id, c.issued_at, c.expires_at,
                  coalesce(pc.is_broker, false), coalesce(pc.is_human, false)
           FROM credential_ancestry a JOIN credentials c ON c.credential_id = a.ancestor_id
           LEFT JOIN principal_class pc ON pc.principal = c.holder
           WHERE a.depth >= 1 AND a.credential_id IN (SELECT unnest(?))
           ORDER BY a.credential_id, a.depth""",
        [credential_ids],
    ).fetchall()
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r[0], []).append(
            dict(
                depth=r[1],
                credential_id=r[2],
                credential_type=r[3],
                holder=r[4],
                long_term=r[5],
                temporary=r[6],
                issuance_source=r[7],
                issuance_event_id=r[8],
                issued_at=r[9],
                expires_at=r[10],
                is_broker=r[11],
                is_human=r[12],
            )
        )
    return out


def load_actions(
    con: duckdb.DuckDBPyConnection, where: str = "true", params: list[Any] | None = None
) -> list[AuditedAction]:
    """Audited actions (rows of ``chains`` matching ``where``) with their links, in time order."""
    cursor = con.execute(
        f"SELECT * FROM chains WHERE {where} ORDER BY {_ACTION_ORDER}", params or []
    )
    columns = [d[0] for d in cursor.description]
    rows = [dict(zip(columns, r, strict=False)) for r in cursor.fetchall()]
    parents = _parents(con, sorted({r["credential_id"] for r in rows if r["credential_id"]}))
    keys: list[tuple[str | None, str | None]] = []
    for r in rows:
        keys += [
            (r["source"], r["event_id"]),
            (r["issuance_source"], r["issuance_event_id"]),
            (r["task_source"], r["task_event_id"]),
            (r["approval_source"], r["approval_event_id"]),
            (r["grant_source"], r["grant_event_id"]),
            (r["span_source"], r["span_event_id"]),
        ]
        keys += [(p["issuance_source"], p["issuance_event_id"]) for p in parents.get(r["credential_id"], [])]
    evidence = evidence_map(con, keys)
    return [_action(r, parents.get(r["credential_id"], []), evidence) for r in rows]


def _ev(
    evidence: dict[tuple[str, str], Evidence], source: str | None, event_id: str | None
) -> Evidence | None:
    return evidence.get((source, event_id)) if source and event_id else None


def _action(
    r: dict[str, Any], parents: list[dict[str, Any]], ev: dict[tuple[str, str], Evidence]
) -> AuditedAction:
    links = [
        Link(
            "action",
            f"{r['source']}:{r['event_id']}",
            "found",
            " ".join(
                str(x)
                for x in (
                    iso(r["occurred_at"]),
                    r["actor_id"],
                    r["action"],
                    r["resource"] or "",
                    r["outcome"] or "",
                )
                if x
            ),
            _ev(ev, r["source"], r["event_id"]),
            {"tier": r["tier"], "actor_type": r["actor_type"], "outcome": r["outcome"]},
        ),
        Link(
            "credential",
            r["credential_id"],
            r["credential_status"],
            f"{r['credential_type'] or 'credential'} held by {r['credential_holder'] or '?'}"
            + (" (long-term)" if r["credential_long_term"] else ""),
            None,
            {
                "holder": r["credential_holder"],
                "long_term": r["credential_long_term"],
                "expires_at": iso(r["credential_expires_at"]),
                "revoked_at": iso(r["credential_revoked_at"]),
            },
        ),
        Link(
            "issuance",
            f"{r['issuance_source']}:{r['issuance_event_id']}" if r["issuance_event_id"] else None,
            r["issuance_status"],
            (
                f"issued {iso(r['issued_at'])}, expires {iso(r['credential_expires_at']) or '?'}"
                if r["issuance_event_id"]
                else "long-term credential: no issuance expected"
                if r["issuance_status"] == "not_required"
                else "no issuance of this credential in the evidence"
            ),
            _ev(ev, r["issuance_source"], r["issuance_event_id"]),
            {"parent_credential_id": r["parent_credential_id"]},
        ),
    ]
    for p in parents:
        rooted = p["long_term"] or p["is_broker"] or p["issuance_event_id"] or not p["temporary"]
        kind = (
            "long-term key"
            if p["long_term"]
            else "broker"
            if p["is_broker"]
            else (p["credential_type"] or "credential")
        )
        links.append(
            Link(
                "parent",
                p["credential_id"],
                "found" if rooted else "missing",
                f"{kind} held by {p['holder'] or '?'}"
                + (
                    f", issued {iso(p['issued_at'])}"
                    if p["issuance_event_id"]
                    else ""
                    if rooted
                    else ", no issuance in the evidence"
                ),
                _ev(ev, p["issuance_source"], p["issuance_event_id"]),
                {"holder": p["holder"], "human": p["is_human"], "broker": p["is_broker"]},
                depth=p["depth"],
            )
        )
    if r["span_event_id"]:
        # A gateway call joined to its agent through W3C trace context: show the hop.
        links.append(
            Link(
                "span",
                f"{r['span_source']}:{r['span_event_id']}",
                "found",
                (
                    f"traceparent of the call names trace {r['trace_id']} span {r['parent_span_id']}; "
                    f"the task comes from span {r['span_event_id']}"
                    if r["parent_span_id"]
                    # no caller span logged (a GCP LogEntry's trace): the task span covering the call
                    else f"the call is logged in trace {r['trace_id']}; the task comes from span "
                    f"{r['span_event_id']}, which covers the call's time"
                ),
                _ev(ev, r["span_source"], r["span_event_id"]),
                {"trace_id": r["trace_id"], "parent_span_id": r["parent_span_id"]},
            )
        )
    links.append(
        Link(
            "task",
            r["task_id"],
            r["task_status"],
            (
                f"agent {r['agent_id'] or '?'}: {r['intent'] or '(no intent)'}; requested by "
                f"{r['task_requested_by'] or '?'}; "
                f"{iso(r['task_started_at']) or '?'} .. {iso(r['task_ended_at']) or '?'}; "
                f"linked by {r['task_link']}; known from {r['task_known_from']}"
                if r["task_known"]
                else f"task {r['task_id']} (linked by {r['task_link']}) is in no task record or agent trace"
                if r["task_id"]
                else "no task id on the credential chain and no trace context"
            ),
            _ev(ev, r["task_source"], r["task_event_id"]),
            {"agent_id": r["agent_id"], "link": r["task_link"], "task_ids": list(r["task_ids"] or [])},
        )
    )
    approval_label = (
        f"{r['decision']} by {r['approver']} at {iso(r['decided_at'])}"
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
        if r["approval_id"]
        else f"{r['approval_records']} approval record(s), none approved"
        if r["approval_records"]
        else "not required for this tier"
        if r["approval_status"] == "not_required"
        else "no approval record"
        if r["task_known"]
        else "no task, so no approval can be found"
    )
    links.append(
        Link(
            "approval",
            r["approval_id"],
            r["approval_status"],
            approval_label,
            _ev(ev, r["approval_source"], r["approval_event_id"]),
            {
                "approver": r["approver"],
                "decision": r["decision"],
                "decided_at": iso(r["decided_at"]),
                "late": r["approval_late"],
                "expired": r["approval_expired"],
                "in_scope": r["in_approval_scope"],
                "self_approved": r["self_approved"],
            },
        )
    )
    links.append(
        Link(
            "authority",
            r["grant_role"],
            r["authority_status"],
            (
                f"{r['approver']} held {r['grant_role']} at decision time"
                if r["authorized"]
                else f"{r['approver']} held {', '.join(r['roles_held'] or []) or 'no role'} at decision time, "
                f"none listed for tier {r['tier']}"
                if r["approval_id"]
                else "no approver"
            ),
            _ev(ev, r["grant_source"], r["grant_event_id"]),
            {"roles_held": list(r["roles_held"] or [])},
        )
    )
    return AuditedAction(
        source=r["source"],
        event_id=r["event_id"],
        occurred_at=iso(r["occurred_at"]) or "",
        actor_id=r["actor_id"],
        action=r["action"],
        resource=r["resource"],
        tier=r["tier"],
        verdict=r["verdict"],
        links=tuple(links),
    )


def trace(con: duckdb.DuckDBPyConnection, ident: str) -> tuple[AuditedAction | None, dict[str, Any]]:
    """The chain of one event. Returns (audited action or None, a summary of the raw event)."""
    source, event_id = resolve_id(con, ident)
    actions = load_actions(con, "source = ? AND event_id = ?", [source, event_id])
    row = con.execute(
        """SELECT source, event_id, occurred_at, category, actor_id, action, resource, outcome, credential_id
           FROM events WHERE source = ? AND event_id = ? ORDER BY record_index LIMIT 1""",
        [source, event_id],
    ).fetchone()
    event = dict(
        zip(
            (
                "source",
                "event_id",
                "occurred_at",
                "category",
                "actor_id",
                "action",
                "resource",
                "outcome",
                "credential_id",
            ),
            row,
            strict=False,
        )
    )
    event["occurred_at"] = iso(event["occurred_at"])
    if not actions:
        event["not_audited_because"] = _why_not_audited(con, source, event_id, event)
    return (actions[0] if actions else None), event


def _why_not_audited(
    con: duckdb.DuckDBPyConnection, source: str, event_id: str, event: dict[str, Any]
) -> str:
    if event["category"] != "action":
        return f"it is a {event['category']} event, not an action"
    human = con.execute(
        "SELECT is_human FROM principal_class WHERE principal = ?", [event["actor_id"]]
    ).fetchone()
    if human and human[0]:
        return f"its actor {event['actor_id']} is a human ([identities] humans)"
    return "its tier is below [audit] min_tier"
