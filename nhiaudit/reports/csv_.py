"""The findings as CSV, one row per finding, for a spreadsheet or a data tool.

Cells go through the same guard as ``nhiaudit sql --csv`` (:func:`nhiaudit.query.to_csv`): a cell
that a spreadsheet would run as a formula (leading ``= + - @``, TAB, CR) is quoted with ``'``, and
control and bidi characters are spelled out. Rows are in report order (most severe first).

With ``report --compliance FRAMEWORK`` a last column, ``controls``, lists the framework's controls
each finding's rule maps to, so a pivot per control in a spreadsheet gives its findings. The
per-control pass/fail table itself is not a CSV row: a CSV file is one table, one row per finding,
and mixing rows of another shape in would break every tool that reads it; that table is in the
terminal, JSON, SARIF, JUnit, Markdown, HTML and OCSF outputs.
"""

from __future__ import annotations

from typing import Any

from nhiaudit.model import Report
from nhiaudit.query import to_csv

COLUMNS = (
    "severity",
    "rule",
    "action_id",
    "occurred_at",
    "actor_id",
    "credential_id",
    "task_id",
    "agent_id",
    "action",
    "resource",
    "message",
    "evidence_file",
    "evidence_line",
    "record_index",
    "evidence_sha256",
    "frameworks",
    "waived",
    "waiver_reason",
    "waiver_owner",
    "waiver_expires",
    "baseline",
    "fingerprint",
)


def render(report: Report, *, compliance: dict[str, Any] | None = None) -> str:
    rows = (
        (
            f.severity,
            f.rule,
            f"{f.source}:{f.event_id}",
            f.occurred_at,
            f.actor_id,
            f.credential_id,
            f.task_id,
            f.agent_id,
            f.action,
            f.resource,
            f.message,
            f.evidence.file,
            f.evidence.line,
            f.evidence.record_index,
            f.evidence.sha256,
            " ".join(f.frameworks),
            f.waived,
            f.waiver.reason if f.waiver else None,
            f.waiver.owner if f.waiver else None,
            f.waiver.expires if f.waiver else None,
            f.baseline,
            f.fingerprint,
        )
        for f in report.findings
    )
    if compliance is None:
        return to_csv(list(COLUMNS), rows)
    controls: dict[str, list[str]] = {}
    for control in compliance["controls"]:
        for rule in control["rules"]:
            controls.setdefault(rule, []).append(control["control"])
    rows = ((*row, " ".join(controls.get(f.rule, ()))) for row, f in zip(rows, report.findings, strict=True))
    return to_csv([*COLUMNS, "controls"], rows)
