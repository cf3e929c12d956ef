"""OCSF 1.3 Detection Finding (class 2004) as JSON lines, one finding per line, for SIEM ingestion.

``time`` is when the audited action occurred (epoch ms), not when the report ran: each line stays
byte-identical across runs, so the report's ``generated_at`` is not repeated on every line. A waived
finding is ``status_id`` 3 (Suppressed) with the waiver in ``status_detail``. The evidence pointer
(source, event id, file, line, record, sha256) is ``evidences[0].data``; ids OCSF has no place for
(credential, task, agent, framework tags, baseline state) are in ``unmapped.nhiaudit``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from nhiaudit.model import Finding, Report, RuleInfo
from nhiaudit.reports.json_ import TOOL_NAME, dumps, evidence_to_dict

OCSF_VERSION = "1.3.0"
CLASS_UID = 2004
CATEGORY_UID = 2
ACTIVITY_CREATE = 1
SEVERITY_IDS = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
SEVERITY_NAMES = {1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical", 0: "Unknown"}
STATUS_NEW, STATUS_SUPPRESSED = 1, 3


def render(report: Report) -> str:
    rules = {rule.id: rule for rule in report.rules}
    return "".join(dumps(_event(f, rules.get(f.rule), report.tool_version)) + "\n" for f in report.findings)


def epoch_ms(timestamp: str) -> int | None:
    """ISO-8601 (``Z`` or an offset; naive means UTC) as epoch milliseconds, or None if unparseable."""
    try:
        parsed = datetime.fromisoformat(timestamp.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp() * 1000)


def _event(f: Finding, rule: RuleInfo | None, version: str) -> dict[str, Any]:
    severity_id = SEVERITY_IDS.get(f.severity, 0)
    occurred = epoch_ms(f.occurred_at)
    event: dict[str, Any] = {
        "activity_id": ACTIVITY_CREATE,
        "activity_name": "Create",
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "class_uid": CLASS_UID,
        "class_name": "Detection Finding",
        "type_uid": CLASS_UID * 100 + ACTIVITY_CREATE,
        "type_name": "Detection Finding: Create",
        "metadata": {
            "version": OCSF_VERSION,
            "product": {"name": TOOL_NAME, "vendor_name": TOOL_NAME, "version": version},
            "uid": f.fingerprint,
        },
        # OCSF requires time; an unparseable occurred_at keeps 0 and the original text in unmapped.
        "time": occurred if occurred is not None else 0,
        "severity_id": severity_id,
        "severity": SEVERITY_NAMES[severity_id],
        "message": f.message,
        "finding_info": {
            "uid": f.fingerprint,
            "title": f.title,
            "desc": rule.description if rule and rule.description else f.title,
            "types": [f.rule],
            "analytic": {"name": f.rule, "type_id": 1, "type": "Rule", "uid": f.rule},
        },
        "evidences": [
            {
                "uid": f"{f.source}:{f.event_id}",
                "name": "source record",
                "data": evidence_to_dict(f.evidence),
                **({"actor": {"user": {"uid": f.actor_id}}} if f.actor_id else {}),
                **({"api": {"operation": f.action}} if f.action else {}),
            }
        ],
        "unmapped": {
            "nhiaudit": {
                "occurred_at": f.occurred_at,
                "credential_id": f.credential_id,
                "task_id": f.task_id,
                "agent_id": f.agent_id,
                "frameworks": list(f.frameworks),
                "baseline": f.baseline,
            }
        },
    }
    if occurred is not None:
        event["finding_info"]["first_seen_time"] = occurred
        event["finding_info"]["last_seen_time"] = occurred
    if f.actor_id:
        event["actor"] = {"user": {"uid": f.actor_id}}
    if f.resource:
        event["resources"] = [{"uid": f.resource, "name": f.resource}]
    if rule and rule.remediation:
        event["remediation"] = {"desc": rule.remediation}
    if f.waived:
        event["status_id"], event["status"] = STATUS_SUPPRESSED, "Suppressed"
        if f.waiver is not None:
            w = f.waiver
            event["status_detail"] = f"Waived: {w.reason} (owner: {w.owner}, expires: {w.expires})"
    else:
        event["status_id"], event["status"] = STATUS_NEW, "New"
    return event
