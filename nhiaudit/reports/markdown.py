"""A Markdown summary sized for a pull-request comment (GitHub-flavoured Markdown).

Readable as plain text first: log text is not turned into entity soup. It is folded to one line,
control characters are spelled out, long values are cut, and then each word is written as it is
when Markdown would show it as it is (``approved``, ``t-8b21``, ``kong_credential``), else as a code
span (`` `s3:PutObject` ``, `` `bob@example.com` ``): nothing inside a code span renders, so a
``[x](http://evil)`` cannot become a link, a URL or an email cannot auto-link, ``$x$`` is no maths,
``*em*`` no emphasis, and GitHub does not turn ``@team`` into a mention, ``#12`` into an issue link
or a hex id into a commit link (it skips code). Only ``<``, ``>`` and ``&`` are entities (the one
thing a code span cannot carry safely when the file is read by something that is not a Markdown
renderer), and a ``|`` gets a backslash inside tables (GFM splits cells before it reads code spans).
Checked against cmark-gfm, the parser GitHub renders comments with (``tests/reports/test_markdown.py``).

The comment is capped: ``max_rows`` findings (``report --markdown-max``) and a character budget
under GitHub's 65,536-character comment limit; past the cap it says how many more there are and where
the full report is. The worst actions are listed as ``nhiaudit trace ID`` lines to copy.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from nhiaudit import report as reporting
from nhiaudit.model import SEVERITIES, Finding, Report
from nhiaudit.reports._common import one_line, pointer, truncate

MAX_ROWS = 50  # findings table rows by default (report --markdown-max); the rest are counted, not listed
MAX_TABLE_CHARS = 45_000  # GitHub rejects comments over 65,536 characters
CELL_LIMIT = 120
MESSAGE_LIMIT = 300
TRACE_LINES = 10  # worst actions listed as `nhiaudit trace ID`

# A word shown as it is: letters, digits, non-ASCII, punctuation Markdown gives no meaning inside a
# word, "_" between letters or digits (GFM never reads an intraword "_" as emphasis) and ":" between
# digits (times: 10:30:00Z).
_PLAIN = re.compile(
    r"(?:[A-Za-z0-9'\",.;()%+=?/-]|[^\x00-\x7f]|(?<=[A-Za-z0-9])_(?=[A-Za-z0-9])|(?<=[0-9]):(?=[0-9]))+"
)
# ...unless GitHub would link it: www. autolinks, a 7-40 hex run can be a commit, GH-12 an issue.
_LINKABLE = re.compile(r"www\.|(?<![\w])(?=[0-9a-f]*\d)[0-9a-f]{7,40}(?![\w])|\bGH-\d", re.IGNORECASE)
_HTML = re.compile(r"([<>&]+)")
_HTML_ENTITIES = str.maketrans({"<": "&lt;", ">": "&gt;", "&": "&amp;"})
# Leading and trailing punctuation that reads better outside a code span ("(approval", "task:").
_EDGES = re.compile(r"^([(\"']*)(.*?)([)\"'.,;:!?]*)$", re.DOTALL)


def _code_span(text: str, table: bool) -> str:
    """``text`` (no line breaks, no ``<>&``) as one code span: the fence is longer than any run of
    backticks inside, padded when the text starts or ends with one."""
    if table:
        text = text.replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith(("`", " ")) or text.endswith(("`", " ")) else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _word(word: str, table: bool, always_code: bool) -> str:
    """One whitespace-free word: code spans (all of it for an identifier, else only when Markdown
    would act on it, leaving leading and trailing punctuation outside), ``<>&`` runs as entities."""
    out = []
    for part in _HTML.split(word):
        if not part:
            continue
        if _HTML.fullmatch(part):
            out.append(part.translate(_HTML_ENTITIES))
        elif always_code:
            out.append(_code_span(part, table))
        else:
            lead, core, trail = _EDGES.match(part).groups()
            while trail.startswith(")") and core.count("(") > core.count(")"):  # "(y)" keeps its ")"
                core, trail = core + ")", trail[1:]
            if not core or (_PLAIN.fullmatch(core) and not _LINKABLE.search(core)):
                out.append(part)
            else:
                out.append(lead + _code_span(core, table) + trail)
    return "".join(out)


def text(value: Any, limit: int = MESSAGE_LIMIT, *, table: bool = True) -> str:
    """Log prose (a message, a reason) readable as plain text and inert as Markdown: each word as it
    is, or as a code span when Markdown would act on it (see the module docstring)."""
    if value is None or value == "":
        return "-"
    words = re.split(r"( +)", truncate(one_line(value), limit))
    return "".join(w if not w.strip() else _word(w, table, always_code=False) for w in words)


def code(value: Any, limit: int = CELL_LIMIT, *, table: bool = True) -> str:
    """An identifier (rule, action id, ARN, path) as a code span (``-`` when empty)."""
    if value is None or value == "":
        return "-"
    return _word(truncate(one_line(value), limit).strip(), table, always_code=True) or "-"


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def render(
    report: Report,
    *,
    max_rows: int = MAX_ROWS,
    full_report: str | None = None,
    compliance: dict[str, Any] | None = None,
) -> str:
    """The comment. ``full_report`` names where the complete report is (a file written in the same
    run, a CI artifact URL); ``compliance`` is ``report.compliance_result`` for ``--compliance``."""
    summary = report.summary
    out: list[str] = [_headline(report, summary), ""]
    if report.expired_waivers:
        out += _expired_waivers(report)
    out += _counts(summary)
    if compliance is not None:
        out += _compliance(compliance)
    live = [f for f in report.findings if not f.waived]
    waived = [f for f in report.findings if f.waived]
    out += _findings_table(live, bool(report.baseline_path), max_rows, full_report)
    out += _trace_lines(report)
    if waived:
        out += _waived(waived, max_rows)
    if report.baseline_path:
        out += _baseline(report, summary, max_rows)
    generated = f" at {report.generated_at}" if report.generated_at else ""
    out += [f"<sub>nhiaudit {code(report.tool_version, table=False)}{generated}</sub>", ""]
    return "\n".join(out)


def _headline(report: Report, summary: dict[str, Any]) -> str:
    failing = summary["failing"]
    scope = "new findings" if report.baseline_path else "findings"
    threshold = f"at or above **{report.fail_on}**"
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
        lines.append(_row(code(w.rule), code(w.expires), code(w.owner), text(w.reason), code(match)))
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


def _compliance(result: dict[str, Any]) -> list[str]:
    controls = result["controls"]
    failed = result["failed"]
    lines = [
        f"### Compliance: {text(result['title'], table=False)}",
        "",
        f"**{failed}** of **{len(controls)}** controls fail (a control fails on a finding at or above "
        "`--fail-on` from one of its rules).",
        "",
        "| Control | Status | Findings | Rules |",
        "|---|---|---:|---|",
    ]
    for c in controls:
        status = "❌ fail" if c["status"] == "fail" else "✅ pass"
        counts = f"{c['failing']} failing / {c['findings']}" if c["findings"] else "0"
        lines.append(_row(code(c["control"]), status, counts, ", ".join(code(r) for r in c["rules"])))
    return [*lines, ""]


def _findings_table(findings: list[Finding], baseline: bool, max_rows: int, full_report: str | None) -> list[str]:
    lines = ["### Findings", ""]
    if not findings:
        return [*lines, "No findings.", ""]
    lines += [
        "| Severity | Rule | Action | Actor | Message | Evidence | Action id |",
        "|---|---|---|---|---|---|---|",
    ]
    used = 0
    shown = 0
    for f in findings:
        severity = f"**{f.severity}**" + (" (new)" if baseline and f.baseline == "new" else "")
        action = " ".join(part for part in (f.action, f.resource) if part)
        row = _row(
            severity,
            code(f.rule),
            code(action),
            code(f.actor_id),
            text(f.message, MESSAGE_LIMIT),
            code(pointer(f.evidence)),
            code(f"{f.source}:{f.event_id}"),
        )
        if shown >= max_rows or used + len(row) > MAX_TABLE_CHARS:
            break
        lines.append(row)
        used += len(row) + 1
        shown += 1
    if shown < len(findings):
        where = (
            f"the full report is {code(full_report, 300, table=False)}"
            if full_report
            else "write the full report with `nhiaudit report --html report.html`, or query "
            '`nhiaudit sql "SELECT * FROM findings"`'
        )
        lines += ["", f"… and {len(findings) - shown} more findings not listed here: {where}."]
    return [*lines, ""]


def _trace_lines(report: Report) -> list[str]:
    """The worst actions as commands to copy: their chain in full, evidence per link."""
    worst = reporting.worst_actions(report, TRACE_LINES)
    if not worst:
        return []
    lines = ["### Trace the worst actions", ""]
    for key, action, severity, count in worst:
        noun = "finding" if count == 1 else "findings"
        what = f", {code(action, table=False)}" if action else ""
        command = code("nhiaudit trace " + shlex.quote(key), 300, table=False)
        lines.append(f"- {command} — {count} {noun}, worst {severity}{what}")
    return [*lines, ""]


def _waived(findings: list[Finding], max_rows: int) -> list[str]:
    lines = [
        "<details><summary>Waived findings (" + str(len(findings)) + ")</summary>",
        "",
        "| Severity | Rule | Action | Reason | Owner | Expires |",
        "|---|---|---|---|---|---|",
    ]
    for f in findings[:max_rows]:
        w = f.waiver
        lines.append(
            _row(
                f.severity,
                code(f.rule),
                code(f.action or f"{f.source}:{f.event_id}"),
                text(w.reason if w else None),
                code(w.owner if w else None),
                code(w.expires if w else None),
            )
        )
    if len(findings) > max_rows:
        lines += ["", f"… and {len(findings) - max_rows} more waived findings."]
    return [*lines, "", "</details>", ""]


def _baseline(report: Report, summary: dict[str, Any], max_rows: int) -> list[str]:
    lines = [
        "### Since the baseline",
        "",
        f"**{summary['new']}** new · **{summary['fixed']}** fixed (baseline {code(report.baseline_path, table=False)})",
        "",
    ]
    if not report.fixed:
        return lines
    lines += ["| Fixed | Rule | Action | Message |", "|---|---|---|---|"]
    for item in report.fixed[:max_rows]:
        where = f"{item.get('source', '')}:{item.get('event_id', '')}"
        lines.append(
            _row(
                "✔",
                code(item.get("rule")),
                code(item.get("action") or where),
                text(item.get("message"), MESSAGE_LIMIT),
            )
        )
    if len(report.fixed) > max_rows:
        lines += ["", f"… and {len(report.fixed) - max_rows} more fixed findings."]
    return [*lines, ""]
