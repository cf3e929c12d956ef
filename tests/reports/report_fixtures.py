"""A hand-built Report whose log-derived strings are hostile (imported by the report tests).

Every field that could come from a log carries something that breaks a naive writer: terminal
escapes (SGR and an OSC 8 hyperlink), Rich markup, HTML, a CSV formula, an XML CDATA terminator,
quotes, NUL and other control characters, bidi overrides, a 2 KB string and non-ASCII text.
"""

from __future__ import annotations

from nhiaudit.model import AuditedAction, Evidence, Finding, Link, Report, RuleInfo, Waiver

ANSI = "\x1b[31mred\x1b[0m"
OSC8 = "\x1b]8;;http://evil.example\x07click me\x1b]8;;\x07"
RICH = "[bold red]x[/]"
SCRIPT = "<script>alert(1)</script>"
FORMULA = "=cmd|' /C calc'!A0"
CDATA_END = "]]>"
QUOTES = "\"quotes\" & 'apostrophes'"
CONTROL = "nul\x00bel\x07bs\x08vt\x0bff\x0cdel\x7fcsi\x9b"
BIDI = "\u202eevil\u202c"
NON_ASCII = "Zoë ✓ 日本語 👩‍💻"
MARKDOWN = "a | b `code` [link](http://evil.example) @security-team www.evil.example $x$ *em*"
LONG = "L" * 2048

HOSTILE = " ".join([ANSI, OSC8, RICH, SCRIPT, FORMULA, CDATA_END, QUOTES, CONTROL, BIDI, NON_ASCII, MARKDOWN])
GENERATED_AT = "2026-11-03T07:00:00Z"

RULES = (
    RuleInfo(
        "approval-denied",
        "Action ran although its approval was denied",
        "critical",
        ("NHI5:2025", "ASI03", "AU-10"),
        "The task has approval records, all of them denials, yet the action ran.",
        "Revoke the credential and find out why the denial did not stop the agent.",
        "queries/rules/approval-denied.sql",
    ),
    RuleInfo(
        "credential-without-task",
        "Credential acts without a task",
        "high",
        ("NHI7:2025", "T8"),
        "No credential on the chain carries a task id and no trace context joins it to one.",
        "Stamp a task id on every credential the orchestrator issues (`sourceIdentity`).",
    ),
    RuleInfo(
        "long-lived-credential",
        "Long-lived credential used by a non-human identity",
        "medium",
        ("NHI7:2025", "IA-5"),
        "A non-human actor acts with a long-term credential.",
        "Replace the key with short-lived credentials.",
    ),
    RuleInfo(
        "out-of-scope-action",
        "Action outside the approved scope",
        "high",
        ("ASI03", "AC-6"),
        "The action or resource lies outside the approval's scope.",
        "Narrow the agent's permissions to the approved scope.",
    ),
    RuleInfo(
        "self-approval",
        "Self-approval",
        "high",
        ("T10",),
        "The approver is the requester, the agent or a non-human identity.",
        "Require a different human approver.",
    ),
)


def _evidence(source: str, event_id: str, file: str, index: int) -> Evidence:
    return Evidence(source, event_id, file, "ab" * 32, index, index + 1)


EV1 = _evidence("cloudtrail", f"ev-1{SCRIPT}", f"logs/ct {SCRIPT}.json", 0)
EV2 = _evidence("kong", f"req-2{CDATA_END}", "logs\\kong\\access.log", 6)
EV3 = _evidence("provenance", "apr-3", "/var/log/nhi/provenance ü.ndjson", 2)
EV_ORPHAN = _evidence("vault", "vault-9", "C:\\evidence\\vault audit.log", 41)

ACTOR1 = f"arn:aws:sts::111111111111:assumed-role/agent/{ANSI}"

EXPIRED = Waiver(
    rule="long-lived-credential",
    match={"actor_id": f"legacy-etl{SCRIPT}"},
    reason=f"Migration {HOSTILE}",
    owner=f"platform{RICH}@example.com",
    expires="2026-01-31",
    expired=True,
)
ACTIVE = Waiver(
    rule="long-lived-credential",
    match={"actor_id": ACTOR1},
    reason=f"JIT rollout {OSC8} {CDATA_END}",
    owner="@platform-team",
    expires="2027-01-31",
)


def _finding(rule: str, severity: str, evidence: Evidence, **fields: object) -> Finding:
    values: dict[str, object] = {
        "title": next(r.title for r in RULES if r.id == rule),
        "message": f"{rule} fired",
        "occurred_at": "2026-11-02T09:12:00Z",
        "actor_id": None,
        "credential_id": None,
        "task_id": None,
        "agent_id": None,
        "action": None,
        "resource": None,
        "frameworks": next(r.frameworks for r in RULES if r.id == rule),
        "fingerprint": f"fp-{rule}-{evidence.event_id[:4]}",
    }
    values.update(fields)
    return Finding(
        rule=rule,
        severity=severity,
        source=evidence.source,
        event_id=evidence.event_id,
        evidence=evidence,
        **values,
    )  # type: ignore[arg-type]


FINDINGS = (
    _finding(
        "approval-denied",
        "critical",
        EV1,
        message=f"Approval APR-1 denied by alice; {HOSTILE}",
        actor_id=ACTOR1,
        credential_id="ASIAEXAMPLE",
        task_id=f"t-7f3a{RICH}",
        agent_id=f"report-bot{SCRIPT}",
        action="s3:PutObject",
        resource=f"arn:aws:s3:::reports-prod/{SCRIPT}{CDATA_END}",
        baseline="new",
    ),
    _finding(
        "credential-without-task",
        "high",
        EV2,
        message=LONG,
        occurred_at="2026-11-02T09:20:00Z",
        actor_id=RICH,
        credential_id=f"kong:{QUOTES}",
        action=FORMULA,
        resource=NON_ASCII,
        baseline="unchanged",
    ),
    _finding(
        "out-of-scope-action",
        "high",
        EV2,
        message=f"{MARKDOWN}\nsecond line\r\nthird",
        occurred_at="2026-11-02T09:20:00Z",
        actor_id=RICH,
        task_id="t-9",
        agent_id="report-bot",
        action=FORMULA,
        resource=NON_ASCII,
        baseline="new",
    ),
    _finding(
        "self-approval",
        "high",
        EV_ORPHAN,
        message=f"approver is the agent {CONTROL}",
        occurred_at="2026-11-02T10:00:00Z",
        actor_id=f"vault-token {BIDI}",
        baseline="unchanged",
    ),
    _finding(
        "long-lived-credential",
        "medium",
        EV1,
        message=f"AKIA key used {OSC8}",
        actor_id=ACTOR1,
        credential_id="AKIAEXAMPLE",
        action="s3:PutObject",
        resource="arn:aws:s3:::reports-prod/x",
        waived=True,
        waiver=ACTIVE,
        baseline="unchanged",
    ),
)

ACTIONS = (
    AuditedAction(
        source=EV1.source,
        event_id=EV1.event_id,
        occurred_at="2026-11-02T09:12:00Z",
        actor_id=ACTOR1,
        action="s3:PutObject",
        resource=f"arn:aws:s3:::reports-prod/{SCRIPT}{CDATA_END}",
        tier="high",
        verdict="unapproved",
        links=(
            Link("action", EV1.event_id, "found", f"s3:PutObject by {ANSI}", EV1),
            Link("credential", "ASIAEXAMPLE", "found", f"session {OSC8}", EV1, {"ttl": 3600}),
            Link("parent", "AKIAEXAMPLE", "found", "long-term key", EV1, {}, depth=1),
            Link("task", f"t-7f3a{RICH}", "found", f"Publish report {NON_ASCII}", EV3),
            Link(
                "approval",
                "APR-1",
                "conflict",
                f"denied by alice {SCRIPT}",
                EV3,
                {"decision": "denied", "scope": {"actions": ["s3:*"], "note": HOSTILE}, "tags": [FORMULA]},
            ),
            Link("authority", None, "missing", f"no grant {CDATA_END}", None),
        ),
        findings=(FINDINGS[0], FINDINGS[4]),
    ),
    AuditedAction(
        source=EV2.source,
        event_id=EV2.event_id,
        occurred_at="2026-11-02T09:20:00Z",
        actor_id=RICH,
        action=FORMULA,
        resource=NON_ASCII,
        tier="medium",
        verdict=f"weird{SCRIPT}",
        links=(
            Link("credential", f"kong:{QUOTES}", "found", LONG, EV2),
            Link("task", None, "missing", "", None),
        ),
        findings=(FINDINGS[1], FINDINGS[2]),
    ),
    AuditedAction(
        source="gcp",
        event_id="insert-3",
        occurred_at="2026-11-02T08:00:00Z",
        actor_id=None,
        action=None,
        resource=None,
        tier="medium",
        verdict="approved",
        links=(),
    ),
)


def hostile_report() -> Report:
    return Report(
        generated_at=GENERATED_AT,
        tool_version="0.1.0",
        policy_path=f"policy {SCRIPT}.toml",
        fail_on="high",
        rules=RULES,
        findings=FINDINGS,
        actions=ACTIONS,
        expired_waivers=(EXPIRED,),
        fixed=(
            {
                "rule": "self-approval",
                "severity": "high",
                "source": "provenance",
                "event_id": f"old{CDATA_END}",
                "message": f"fixed {HOSTILE}",
                "fingerprint": "fp-old",
                "action": FORMULA,
            },
        ),
        evidence_files=(
            {"path": EV1.file, "sha256": EV1.sha256, "source": "cloudtrail", "records": 3},
            {"path": EV2.file, "sha256": EV2.sha256, "source": "kong", "records": 7},
        ),
        baseline_path=f"previous {SCRIPT}.json",
    )


def empty_report() -> Report:
    return Report(
        generated_at=GENERATED_AT,
        tool_version="0.1.0",
        policy_path=None,
        fail_on="high",
        rules=RULES,
        findings=(),
        actions=(),
    )


# What report.compliance_result gives the writers for --compliance (a failing and a passing control).
COMPLIANCE = {
    "framework": "owasp-agentic",
    "title": "OWASP Top 10 for Agentic Applications",
    "controls": [
        {
            "control": "ASI03",
            "status": "fail",
            "rules": ["approval-denied", "out-of-scope-action"],
            "findings": 3,
            "failing": 2,
        },
        {"control": "ASI10", "status": "pass", "rules": ["self-approval"], "findings": 0, "failing": 0},
    ],
    "failed": 1,
}
