"""A Markdown summary sized for a pull-request comment (GitHub-flavoured Markdown).

Log text only ever lands in table cells, through :func:`cell`: it is folded to one line, spelled out
where it holds control characters, cut to a bound, and every character that Markdown or inline HTML
could act on is written as an HTML entity. So a ``|`` cannot split a row, ``[x](http://evil)`` cannot
become a link, ``<script>`` stays text, a URL cannot auto-link (its ``:`` is an entity) and
``@team`` cannot mention anyone.
"""

from __future__ import annotations

import re
from typing import Any

from nhiaudit.model import SEVERITIES, Finding, Report
from nhiaudit.reports._common import one_line, pointer, truncate

MAX_ROWS = 200  # findings table rows; the rest are counted, not listed
MAX_TABLE_CHARS = 45_000  # GitHub rejects comments over 65,536 characters
CELL_LIMIT = 120
MESSAGE_LIMIT = 300

_ENTITIES = {
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    '"': "&quot;",
    "|": "&#124;",
    "`": "&#96;",
    "[": "&#91;",
    "]": "&#93;",
    "(": "&#40;",
    ")": "&#41;",
    "\\": "&#92;",
    "*": "&#42;",
    "_": "&#95;",
    "~": "&#126;",
    ":": "&#58;",
    "!": "&#33;",
    "$": "&#36;",  # GitHub renders $...$ as math
    "@": "&#64;",
    "\u2060": "&#8288;",
}
# GitHub turns "@org/team" into a mention (and a notification) after rendering, so entities cannot
# stop it; an invisible word joiner after an @ that starts a word does. Emails stay as they are.
_MENTION = re.compile(r"(?<![\w.+-])@")
_TABLE = str.maketrans(_ENTITIES)


def cell(value: Any, limit: int = CELL_LIMIT) -> str:
    """``value`` as inert text for one Markdown table cell (``-`` when empty)."""
    if value is None or value == "":
        return "-"
    text = _MENTION.sub("@\u2060", truncate(one_line(value), limit)).translate(_TABLE)
    # "www." auto-links in GFM even without a scheme.
    return text.replace("www.", "www&#46;").replace("WWW.", "WWW&#46;")


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def render(report: Report) -> str:
    summary = report.summary
    out: list[str] = [_headline(report, summary), ""]
    if report.expired_waivers:
        out += _expired_waivers(report)
    out += _counts(summary)
    live = [f for f in report.findings if not f.waived]
    waived = [f for f in report.findings if f.waived]
    out += _findings_table(live, bool(report.baseline_path))
    if waived:
        out += _waived(waived)
    if report.baseline_path:
        out += _baseline(report, summary)
    generated = f" at {cell(report.generated_at)}" if report.generated_at else ""
    out += [f"<sub>nhiaudit {cell(report.tool_version)}{generated}</sub>", ""]
    return "\n".join(out)


def _headline(report: Report, summary: dict[str, Any]) -> str:
    failing = summary["failing"]
    scope = "new findings" if report.baseline_path else "findings"
    threshold = f"at or above **{cell(report.fail_on)}**"
    if failing:
        noun = scope[:-1] if failing == 1 else scope
        return f"## ❌ nhiaudit: FAIL — {failing} {noun} {threshold}"
    return f"## ✅ nhiaudit: PASS — no {scope} {threshold}"


def _expired_waivers(report: Report) -> list[str]:
    n = len(report.expired_waivers)
    lines = [
        "> [!CAUTION]",
        f"> **{n} expired waiver{'s' if n != 1 else ''}** no longer "
        f"suppress{'es' if n == 1 else ''} findings. "
        "Renew or remove them in the policy.",
        "",
        "| Rule | Expired | Owner | Reason | Match |",
        "|---|---|---|---|---|",
    ]
    for w in report.expired_waivers:
        match = ", ".join(f"{k}={v}" for k, v in sorted(w.match.items()))
        lines.append(_row(cell(w.rule), cell(w.expires), cell(w.owner), cell(w.reason), cell(match)))
    return [*lines, ""]


def _counts(summary: dict[str, Any]) -> list[str]:
    verdicts = summary["verdicts"]
    lines = [
        f"**{summary['actions_audited']}** audited actions "
        f"({verdicts['approved']} approved, {verdicts['unapproved']} unapproved, "
        f"{verdicts['unknown']} unknown) · "
        f"**{summary['findings']}** findings · **{summary['waived']}** waived",
        "",
        "| Severity | Findings |",
        "|---|---:|",
    ]
    lines += [_row(sev, str(summary["by_severity"][sev])) for sev in reversed(SEVERITIES)]
    return [*lines, ""]


def _findings_table(findings: list[Finding], baseline: bool) -> list[str]:
    lines = ["### Findings", ""]
    if not findings:
        return [*lines, "No findings.", ""]
    lines += ["| Severity | Rule | Action | Actor | Message | Evidence |", "|---|---|---|---|---|---|"]
    used = 0
    shown = 0
    for f in findings:
        severity = f"**{f.severity}**" + (" (new)" if baseline and f.baseline == "new" else "")
        action = " ".join(part for part in (f.action, f.resource) if part) or f"{f.source}:{f.event_id}"
        row = _row(
            severity,
            cell(f.rule),
            cell(action),
            cell(f.actor_id),
            cell(f.message, MESSAGE_LIMIT),
            cell(pointer(f.evidence)),
        )
        if shown >= MAX_ROWS or used + len(row) > MAX_TABLE_CHARS:
            break
        lines.append(row)
        used += len(row) + 1
        shown += 1
    if shown < len(findings):
        lines += [
            "",
            f"… and {len(findings) - shown} more findings (see the full JSON, SARIF or HTML report).",
        ]
    return [*lines, ""]


def _waived(findings: list[Finding]) -> list[str]:
    lines = [
        "<details><summary>Waived findings (" + str(len(findings)) + ")</summary>",
        "",
        "| Severity | Rule | Action | Reason | Owner | Expires |",
        "|---|---|---|---|---|---|",
    ]
    for f in findings[:MAX_ROWS]:
        w = f.waiver
        lines.append(
            _row(
                f.severity,
                cell(f.rule),
                cell(f.action or f"{f.source}:{f.event_id}"),
                cell(w.reason if w else None),
                cell(w.owner if w else None),
                cell(w.expires if w else None),
            )
        )
    if len(findings) > MAX_ROWS:
        lines += ["", f"… and {len(findings) - MAX_ROWS} more waived findings."]
    return [*lines, "", "</details>", ""]


def _baseline(report: Report, summary: dict[str, Any]) -> list[str]:
    lines = [
        "### Since the baseline",
        "",
        f"**{summary['new']}** new · **{summary['fixed']}** fixed (baseline {cell(report.baseline_path)})",
        "",
    ]
    if not report.fixed:
        return lines
    lines += ["| Fixed | Rule | Action | Message |", "|---|---|---|---|"]
    for item in report.fixed[:MAX_ROWS]:
        where = f"{item.get('source', '')}:{item.get('event_id', '')}"
        lines.append(
            _row(
                "✔",
                cell(item.get("rule")),
                cell(item.get("action") or where),
                cell(item.get("message"), MESSAGE_LIMIT),
            )
        )
    if len(report.fixed) > MAX_ROWS:
        lines += ["", f"… and {len(report.fixed) - MAX_ROWS} more fixed findings."]
    return [*lines, ""]
