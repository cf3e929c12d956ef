"""OCSF 1.5 Detection Finding (class 2004) as JSON lines, one finding per line, for SIEM ingestion.

The declared ``metadata.version`` is the first OCSF version that has every attribute written (the
evidence artifact's ``uid`` and ``name`` are 1.5), and ``metadata.profiles`` names the profiles of the
profile attributes used (the finding's top-level ``actor`` is the ``host`` profile's). The tests
validate every line against the OCSF schema of that version and those profiles.

``time`` is when the audited action occurred (epoch ms), not when the report ran: each line stays
byte-identical across runs, so the report's ``generated_at`` is not repeated on every line. A waived
finding is ``status_id`` 3 (Suppressed) with the waiver in ``status_detail``. The evidence pointer
(source, event id, file, line, record, sha256) is ``evidences[0].data``; ids OCSF has no place for
(credential, task, agent, framework tags, baseline state) are in ``unmapped.nhiaudit``.

With ``report --compliance FRAMEWORK`` one Compliance Finding (class 2003) per control follows the
detection findings: ``compliance`` carries the framework (``standards``), the control and its
pass/fail status, ``finding_info`` the rules behind it. Their ``time`` is the newest audited action's
(what the evaluation covered), not the clock, so they stay byte-identical across runs too.
"""

from __future__ import annotations

import io
from datetime import datetime, timezone
from typing import Any, TextIO

from nhiaudit.model import Finding, Report, RuleInfo
from nhiaudit.reports.json_ import TOOL_NAME, dumps, evidence_to_dict

OCSF_VERSION = "1.5.0"
PROFILES = ("host",)  # the top-level actor of a Detection Finding is the host profile's
CLASS_UID = 2004
COMPLIANCE_CLASS_UID = 2003
COMPLIANCE_STATUS = {"pass": (1, "Pass"), "fail": (3, "Fail")}
CATEGORY_UID = 2
ACTIVITY_CREATE = 1
SEVERITY_IDS = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
SEVERITY_NAMES = {1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical", 0: "Unknown"}
STATUS_NEW, STATUS_SUPPRESSED = 1, 3


def render(report: Report, *, compliance: dict[str, Any] | None = None) -> str:
    """The JSON lines as one string (see :func:`write`)."""
    out = io.StringIO()
    write(report, out, compliance=compliance)
    return out.getvalue()


def write(report: Report, out: TextIO, *, compliance: dict[str, Any] | None = None) -> None:
    """One Detection Finding per finding, written line by line; with ``compliance``
    (``report.compliance_result``) one Compliance Finding per control after them."""
    rules = {rule.id: rule for rule in report.rules}
    for f in report.findings:
        out.write(dumps(_event(f, rules.get(f.rule), report.tool_version)) + "\n")
    if compliance is not None:
        for event in _compliance_events(report, compliance):
            out.write(dumps(event) + "\n")


def _metadata(version: str, uid: str) -> dict[str, Any]:
    return {
        "version": OCSF_VERSION,
        "profiles": list(PROFILES),
        "product": {"name": TOOL_NAME, "vendor_name": TOOL_NAME, "version": version},
        "uid": uid,
    }


def _compliance_events(report: Report, result: dict[str, Any]) -> list[dict[str, Any]]:
    """Compliance Finding (2003) per control: fail is High (a finding at or above --fail-on from
    one of its rules), pass is Informational."""
    times = (epoch_ms(a.occurred_at) for a in report.actions.heads())
    newest = max((t for t in times if t is not None), default=None)
    when = newest if newest is not None else epoch_ms(report.generated_at) or 0
    events = []
    for control in result["controls"]:
        status_id, status = COMPLIANCE_STATUS[control["status"]]
        severity_id = SEVERITY_IDS["high"] if control["status"] == "fail" else SEVERITY_IDS["info"]
        uid = f"{result['framework']}:{control['control']}"
        rules = ", ".join(control["rules"])
        events.append(
            {
                "activity_id": ACTIVITY_CREATE,
                "activity_name": "Create",
                "category_uid": CATEGORY_UID,
                "category_name": "Findings",
                "class_uid": COMPLIANCE_CLASS_UID,
                "class_name": "Compliance Finding",
                "type_uid": COMPLIANCE_CLASS_UID * 100 + ACTIVITY_CREATE,
                "type_name": "Compliance Finding: Create",
                "metadata": _metadata(report.tool_version, uid),
                "time": when,
                "severity_id": severity_id,
                "severity": SEVERITY_NAMES[severity_id],
                "message": f"{control['control']} ({result['title']}): {status.lower()}, "
                f"{control['failing']} failing of {control['findings']} findings from {rules}",
                "finding_info": {
                    "uid": uid,
                    "title": f"{result['title']} {control['control']}",
                    "types": ["compliance"],
                    "related_events_count": control["failing"],
                },
                "compliance": {
                    "standards": [result["title"]],
                    "control": control["control"],
                    "status_id": status_id,
                    "status": status,
                    "desc": f"Checked by the rules {rules}",
                },
                "status_id": STATUS_NEW,
                "status": "New",
                "unmapped": {"nhiaudit": {"framework": result["framework"], "rules": list(control["rules"])}},
            }
        )
    return events


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
        "metadata": _metadata(version, f.fingerprint),
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
