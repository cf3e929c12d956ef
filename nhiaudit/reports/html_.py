"""One self-contained HTML file a reviewer opens offline, in seconds even at a million events.

The page is an overview (counts, findings by rule and severity, by agent and by task, a timeline
drawn as inline SVG), then the worst chains in full (``max_chains``), each drawn as a diagram, and
the most severe findings (``max_findings``). What a cap leaves out is counted on the page, with the
command that shows it (``nhiaudit trace``, the JSON report): never silently dropped.

No script at all, and nothing fetched: the Content-Security-Policy allows inline styles only, so
even markup that slipped through could not run. Sorting and filtering are CSS: radio buttons and
checkboxes placed before a table select which precomputed ``--kN`` rank orders its grid cells.
Every value from a log goes through :func:`esc` (control characters spelled out, then
``html.escape`` with quotes); class names and ids come from fixed vocabularies or indexes.
"""

from __future__ import annotations

import heapq
import html
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from nhiaudit.model import SEVERITIES, SEVERITY_RANK, VERDICTS, AuditedAction, Finding, Link, Report
from nhiaudit.reports import _svg
from nhiaudit.reports._common import action_key, pointer, visible

CSP = "default-src 'none'; style-src 'unsafe-inline'"
LINK_STATUSES = _svg.LINK_STATUSES
MAX_CHAINS = 200
MAX_FINDINGS = 2000
MAX_GROUPS = 25  # rows of the by-agent and by-task tables
MAX_CHAIN_FINDINGS = 20  # findings listed under one chain
TIMELINE_BUCKETS = 48
_SORTABLE = 10  # columns a table may sort on (the CSS below is written for this many)
# Characters after which an id may wrap: ids never break mid-word, only at their separators.
_ID_SEPARATORS = frozenset("/:.-_@,|=+")
_VERDICT_RANK = {"unapproved": 0, "unknown": 1, "approved": 2}

CSS = (
    """
body{
  font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;
  margin:0 auto;
  max-width:1600px;
  padding:1em 2em;
  color:#1d2433}
h1{margin:.2em 0}
h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.6em}
h3{margin:1.2em 0 .3em}
table{border-collapse:collapse;width:100%;margin:.5em 0}
th,td{border:1px solid #d0d7de;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f6f8fa}
table.grid{display:grid;border-collapse:separate;border:0}
table.grid thead,table.grid tbody,table.grid tr{display:contents}
table.grid th{order:-2147483000}
div.table{overflow-x:auto}
td.num,th.num{text-align:right}
.prose{overflow-wrap:anywhere}
.id{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.92em;overflow-wrap:normal;word-break:normal;hyphens:none}
.status{font-size:1.2em;font-weight:600;padding:.4em .8em;border-radius:6px;display:inline-block}
.fail{background:#ffebe9;color:#82071e}
.pass{background:#dafbe1;color:#116329}
.alert{background:#fff1e5;border:2px solid #bc4c00;border-radius:6px;padding:.5em 1em;margin:1em 0}
.alert h2{border:0;color:#bc4c00;margin-top:.3em}
.cap{background:#ddf4ff;border:1px solid #54aeff;border-radius:6px;padding:.4em .9em}
.cards{display:flex;gap:.6em;flex-wrap:wrap}
.card{border:1px solid #d0d7de;border-radius:6px;padding:.4em .9em;min-width:6em}
.card b{display:block;font-size:1.5em}
.sev{font-weight:600;border-radius:4px;padding:0 .4em;white-space:nowrap}
.sev-critical{background:#82071e;color:#fff}
.sev-high{background:#cf222e;color:#fff}
.sev-medium{background:#bf8700;color:#fff}
.sev-low{background:#0969da;color:#fff}
.sev-info{background:#6e7781;color:#fff}
.verdict-approved{color:#116329}
.verdict-unapproved{color:#cf222e}
.verdict-unknown,.verdict-other{color:#9a6700}
.status-found{color:#116329}
.status-missing{color:#cf222e}
.status-conflict{color:#9a6700}
.status-not-required,.status-other{color:#6e7781}
.chain{border:1px solid #d0d7de;border-radius:6px;margin:.6em 0;padding:.4em .8em}
.chain>p{margin:.2em 0}
details{margin:.3em 0}
summary{cursor:pointer;color:#0969da}
ol.links{list-style:none;padding-left:0}
ol.links li{border-left:3px solid #d0d7de;margin:.3em 0;padding:.1em .6em}
ol.links li.status-missing{border-color:#cf222e}
ol.links li.status-conflict{border-color:#bf8700}
ol.links li.status-found{border-color:#2da44e}
ol.links li.depth-1{margin-left:1.5em}
ol.links li.depth-2{margin-left:3em}
ol.links li.depth-3{margin-left:4.5em}
dl{display:grid;grid-template-columns:max-content auto;gap:0 .8em;margin:.2em 0}
dt{color:#57606a}
dd{margin:0;overflow-wrap:anywhere}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.92em}
.muted{color:#57606a}
.msg{white-space:pre-wrap;overflow-wrap:anywhere}
div.table>label,div.chains>label{margin-right:.9em}
input.sort{position:absolute;opacity:0;width:1px;height:1px;margin:0}
th label{cursor:pointer;color:#8c959f;padding:0 .1em;user-select:none}
svg{max-width:100%;height:auto}
svg text{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;fill:#1d2433}
svg text.k{font-weight:600}
svg .arrow{stroke:#57606a;stroke-width:1.5;fill:none}
svg .head{fill:#57606a}
svg .axis{stroke:#8c959f}
g.lk-found rect{fill:#dafbe1;stroke:#2da44e}
g.lk-missing rect{fill:#ffebe9;stroke:#cf222e;stroke-dasharray:5 3}
g.lk-conflict rect{fill:#fff8c5;stroke:#bf8700;stroke-width:2}
g.lk-not-required rect,g.lk-other rect{fill:#f6f8fa;stroke:#8c959f}
rect.bar-approved{fill:#2da44e}
rect.bar-unknown{fill:#bf8700}
rect.bar-unapproved{fill:#cf222e}
rect.bar-other{fill:#8c959f}
.legend span{margin-right:1em}
.legend i{display:inline-block;width:.8em;height:.8em;margin-right:.3em;border:1px solid #57606a}
.key-found{background:#dafbe1}.key-missing{background:#ffebe9}.key-conflict{background:#fff8c5}
.key-not-required{background:#f6f8fa}
.key-approved{background:#2da44e}.key-unknown{background:#bf8700}.key-unapproved{background:#cf222e}
"""
    # Sorting: the checked radio (class sa<N> ascending, sd<N> descending) before a grid table
    # orders its cells by the row's precomputed rank --k<N>; all cells of a row share the order.
    + "".join(
        f".sa{n}:checked~table td{{order:var(--k{n})}}"
        f".sd{n}:checked~table td{{order:calc(0 - var(--k{n}))}}"
        f".sa{n}:checked~table .h{n} .a,.sd{n}:checked~table .h{n} .d{{color:#0969da;font-weight:700}}"
        for n in range(_SORTABLE)
    )
    # Filtering: an unchecked box hides the rows (or chains) of its value.
    + "".join(f".f-{s}:not(:checked)~table tr.row-{s}{{display:none}}" for s in SEVERITIES)
    + ".f-waived:not(:checked)~table tr.waived{display:none}"
    + "".join(f".f-{v}:not(:checked)~.chain.in-{v}{{display:none}}" for v in (*VERDICTS, "other"))
)


def esc(value: Any) -> str:
    """Untrusted ``value`` as HTML text or attribute content; ``None`` as an em dash."""
    if value is None:
        return "—"
    return html.escape(visible(value), quote=True)


def ident(value: Any) -> str:
    """An id (untrusted) as escaped text that may wrap only after a run of separators (``/ : . - _ @``…),
    never inside a word: the pieces are escaped one by one and joined with ``<wbr>``."""
    if value is None:
        return "—"
    text = visible(value)
    pieces, start = [], 0
    for i, char in enumerate(text):
        if char in _ID_SEPARATORS and i + 1 < len(text) and text[i + 1] not in _ID_SEPARATORS:
            pieces.append(text[start : i + 1])
            start = i + 1
    pieces.append(text[start:])
    return "<wbr>".join(html.escape(p, quote=True) for p in pieces)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _choice(value: str, allowed: tuple[str, ...], prefix: str) -> str:
    """A class name from a fixed vocabulary, so log text never reaches an attribute unescaped."""
    return f"{prefix}-{value.replace('_', '-')}" if value in allowed else f"{prefix}-other"


def _sev(severity: str) -> str:
    return f'<span class="sev {_choice(severity, SEVERITIES, "sev")}">{esc(severity)}</span>'


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


# --- ranking: which chains and findings are shown -------------------------------------------------


def _severity_key(f: Finding) -> tuple[int, int]:
    """Most severe first, waived after every unwaived finding."""
    return (1 if f.waived else 0, -SEVERITY_RANK.get(f.severity, -1))


@dataclass
class _Group:
    """One shown chain (or orphan findings group) and its findings in report order."""

    key: str
    action: AuditedAction | None
    findings: list[Finding] = field(default_factory=list)


def _worst_chains(report: Report, limit: int) -> tuple[list[_Group], int]:
    """The ``limit`` worst chains (most severe unwaived finding, then most of them, then unapproved
    before unknown before approved, then report order), and how many there are in all: every
    action, plus one group per ``source:event_id`` of findings without an action record (sorted).

    At a million actions nothing per action is held but its key: the actions are streamed without
    their links (``heads``), ranked on the fly keeping only the ``limit`` best, and only the shown
    chains are then read in full.
    """
    worst: dict[str, int] = {}
    count: dict[str, int] = {}
    for f in report.findings:
        key = action_key(f.source, f.event_id)
        if f.waived:
            count.setdefault(key, 0)
            continue
        count[key] = count.get(key, 0) + 1
        rank = SEVERITY_RANK.get(f.severity, -1)
        if rank > worst.get(key, -1):
            worst[key] = rank
    most = len(report.findings) + 1  # above any count: the score orders exactly as the tuple would

    def score(key: str, verdict: int) -> int:
        return ((5 - worst.get(key, -1)) * most + most - count.get(key, 0)) * 3 + verdict

    seen: set[str] = set()

    def ranked() -> Iterator[tuple[int, int, str, tuple[str, str] | None]]:
        for a in report.actions.heads():
            key = action_key(a.source, a.event_id)
            if key not in seen:  # an action listed twice is one chain, at its first place
                yield score(key, _VERDICT_RANK.get(a.verdict, 1)), len(seen), key, (a.source, a.event_id)
                seen.add(key)

    best = heapq.nsmallest(limit, ranked())
    orphans = sorted(key for key in count if key not in seen)
    total = len(seen) + len(orphans)
    best = heapq.nsmallest(
        limit, [*best, *((score(key, 1), len(seen) + p, key, None) for p, key in enumerate(orphans))]
    )
    full = report.actions.first([ids for *_, ids in best if ids])
    shown = [_Group(key, full.get(ids) if ids else None) for _, _, key, ids in best]
    by_key = {g.key: g for g in shown}
    for f in report.findings:
        group = by_key.get(action_key(f.source, f.event_id))
        if group is not None:
            group.findings.append(f)
    return shown, total


# --- the page --------------------------------------------------------------------------------------


def render(
    report: Report,
    *,
    max_chains: int = MAX_CHAINS,
    max_findings: int = MAX_FINDINGS,
    compliance: dict[str, Any] | None = None,
) -> str:
    """The page. ``max_chains``: chains drawn in full, worst first; ``max_findings``: rows of the
    findings table, most severe first. Both caps are stated on the page with what they left out.
    ``compliance`` (``report --compliance``): a section with pass/fail per control."""
    if max_chains < 0 or max_findings < 0:
        raise ValueError("html: max_chains and max_findings must be 0 or more")
    summary = report.summary
    shown, total_groups = _worst_chains(report, max_chains)
    anchors = {g.key: f"action-{i}" for i, g in enumerate(shown)}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>nhiaudit report</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        *_header(report, summary),
        *_expired(report),
        *_summary(summary),
        *(_compliance(compliance) if compliance is not None else []),
        *_overview(report, summary, anchors),
        *_chains(shown, total_groups),
        *_findings(report, anchors, max_findings),
        *_fixed(report, max_findings),
        *_evidence_files(report),
        f'<footer class="muted"><p>nhiaudit {esc(report.tool_version)}</p></footer>',
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(parts)


def _header(report: Report, summary: dict[str, Any]) -> list[str]:
    failing = summary["failing"]
    scope = "new findings" if report.baseline_path else "findings"
    if failing:
        status = f'<p class="status fail">FAIL — {failing:,} {scope} at or above {esc(report.fail_on)}</p>'
    else:
        status = f'<p class="status pass">PASS — no {scope} at or above {esc(report.fail_on)}</p>'
    meta = [f"generated {esc(report.generated_at)}"]
    if report.policy_path:
        meta.append(f"policy <code>{ident(report.policy_path)}</code>")
    if report.baseline_path:
        meta.append(f"baseline <code>{ident(report.baseline_path)}</code>")
    return [
        "<header>",
        "<h1>nhiaudit report</h1>",
        status,
        f'<p class="muted">{" · ".join(meta)}</p>',
        '<nav><a href="#summary">Summary</a> · <a href="#overview">Overview</a> · <a href="#timeline">Timeline</a>'
        ' · <a href="#chains">Chains</a> · <a href="#findings">Findings</a></nav>',
        "</header>",
    ]


def _expired(report: Report) -> list[str]:
    if not report.expired_waivers:
        return []
    rows = [
        f"<tr><td>{ident(w.rule)}</td><td>{esc(w.expires)}</td><td>{ident(w.owner)}</td>"
        f'<td class="prose">{esc(w.reason)}</td>'
        f'<td class="prose">{esc(", ".join(f"{k}={v}" for k, v in sorted(w.match.items())))}</td></tr>'
        for w in report.expired_waivers
    ]
    n = len(report.expired_waivers)
    return [
        '<section id="expired-waivers" class="alert">',
        f"<h2>⚠ {_plural(n, 'expired waiver')}: no longer suppressing findings</h2>",
        "<p>Renew or remove them in the policy; the findings they covered are reported again.</p>",
        "<table><thead><tr><th>Rule</th><th>Expired</th><th>Owner</th><th>Reason</th><th>Match</th></tr></thead>",
        "<tbody>",
        *rows,
        "</tbody></table>",
        "</section>",
    ]


def _summary(summary: dict[str, Any]) -> list[str]:
    cards = [
        f'<div class="card"><b>{summary["actions_audited"]:,}</b>audited actions</div>',
        f'<div class="card"><b>{summary["findings"]:,}</b>findings</div>',
        f'<div class="card"><b>{summary["waived"]:,}</b>waived</div>',
    ]
    cards += [f'<div class="card"><b>{summary["by_severity"][s]:,}</b>{_sev(s)}</div>' for s in reversed(SEVERITIES)]
    cards += [
        f'<div class="card"><b>{summary["verdicts"][v]:,}</b><span class="verdict-{v}">{v}</span></div>'
        for v in VERDICTS
    ]
    if summary["new"] is not None:
        cards.append(f'<div class="card"><b>{summary["new"]:,}</b>new</div>')
        cards.append(f'<div class="card"><b>{summary["fixed"]:,}</b>fixed</div>')
    return [
        '<section id="summary">',
        "<h2>Summary</h2>",
        '<div class="cards">',
        *cards,
        "</div>",
        "</section>",
    ]


# --- sortable, filterable tables (CSS only) ----------------------------------------------------------


@dataclass(frozen=True)
class _Column:
    label: str  # fixed text
    track: str  # CSS grid track
    sortable: bool = True
    num: bool = False


@dataclass
class _Row:
    cells: list[str]  # markup, each value already escaped
    keys: Sequence[Any]  # one per sortable column, comparable within a column
    css: str = ""  # class from fixed vocabularies


def _table(table_id: str, columns: Sequence[_Column], rows: Sequence[_Row], filters: str = "") -> list[str]:
    """A table sortable by each sortable column (▲ ascending, ▼ descending) through hidden radios,
    and filtered by the ``filters`` checkboxes (which must come right before it: CSS ``~``)."""
    sortable = [i for i, c in enumerate(columns) if c.sortable][:_SORTABLE]
    ranks: list[list[int]] = [[0] * len(rows) for _ in sortable]
    for n, _ in enumerate(sortable):
        order = sorted(range(len(rows)), key=lambda r, n=n: (rows[r].keys[n], r))
        for position, r in enumerate(order, 1):
            ranks[n][r] = position
    radios = "".join(
        f'<input type="radio" class="sort s{d}{n}" name="{table_id}-sort" id="{table_id}-{d}{n}" '
        f'aria-label="sort by {columns[i].label}, {"ascending" if d == "a" else "descending"}">'
        for n, i in enumerate(sortable)
        for d in ("a", "d")
    )
    head = []
    for i, column in enumerate(columns):
        css = " num" if column.num else ""
        if i in sortable:
            n = sortable.index(i)
            head.append(
                f'<th class="h{n}{css}">{column.label} '
                f'<label class="a" for="{table_id}-a{n}" title="sort ascending">▲</label>'
                f'<label class="d" for="{table_id}-d{n}" title="sort descending">▼</label></th>'
            )
        else:
            head.append(f'<th class="{css.strip()}">{column.label}</th>' if css else f"<th>{column.label}</th>")
    tracks = " ".join(c.track for c in columns)
    body = []
    for r, row in enumerate(rows):
        style = ";".join(f"--k{n}:{ranks[n][r]}" for n in range(len(sortable)))
        cls = f' class="{row.css}"' if row.css else ""
        cells = "".join(
            f'<td class="num">{cell}</td>' if columns[i].num else f"<td>{cell}</td>" for i, cell in enumerate(row.cells)
        )
        body.append(f'<tr{cls} style="{style}">{cells}</tr>')
    return [
        f'<div class="table" id="{table_id}">',
        radios + filters,
        f'<table class="grid" style="grid-template-columns:{tracks}">',
        f"<thead><tr>{''.join(head)}</tr></thead>",
        "<tbody>",
        *body,
        "</tbody></table>",
        "</div>",
    ]


def _checkboxes(prefix: str, values: Sequence[tuple[str, str]]) -> str:
    """Checked filter boxes, class ``f-<value>``, for (value, label markup) pairs. They are left
    unwrapped on purpose: CSS reaches what they filter as their later siblings (``~``)."""
    boxes = "".join(
        f'<input type="checkbox" class="f-{value}" id="{prefix}-f-{value}" checked>'
        f'<label for="{prefix}-f-{value}">{label}</label>'
        for value, label in values
    )
    return f'<span class="muted">Show:</span> {boxes}'


# --- overview ------------------------------------------------------------------------------------------


def _overview(report: Report, summary: dict[str, Any], anchors: dict[str, str]) -> list[str]:
    by_rule: dict[str, list[int]] = {r.id: [0] * (len(SEVERITIES) + 1) for r in report.rules}
    # Per agent and per task: unwaived findings and the worst severity, as plain ints (see _worst_chains).
    agents: tuple[dict[str, int], dict[str, int]] = ({}, {})
    tasks: tuple[dict[str, int], dict[str, int]] = ({}, {})
    no_agent = no_task = 0
    for f in report.findings:
        counts = by_rule.get(f.rule)
        if counts is None:
            counts = by_rule[f.rule] = [0] * (len(SEVERITIES) + 1)
        if f.waived:
            counts[-1] += 1
            continue
        rank = SEVERITY_RANK.get(f.severity, 0)
        counts[rank] += 1
        no_agent += _tally(agents, f.agent_id, rank)
        no_task += _tally(tasks, f.task_id, rank)
    titles = {r.id: r.title for r in report.rules}
    severities = list(reversed(SEVERITIES))
    columns = [_Column("Rule", "minmax(min-content,2fr)"), _Column("Title", "minmax(10em,3fr)")]
    columns += [_Column(s, "max-content", num=True) for s in severities]
    columns += [_Column("total", "max-content", num=True), _Column("waived", "max-content", num=True)]
    rows = []
    for rule, counts in sorted(by_rule.items()):
        per = [counts[SEVERITY_RANK[s]] for s in severities]
        total = sum(counts[:-1])
        rows.append(
            _Row(
                [
                    f'<span class="id">{ident(rule)}</span>',
                    esc(titles.get(rule)),
                    *(f"{n:,}" for n in per),
                    f"<b>{total:,}</b>",
                    f"{counts[-1]:,}",
                ],
                [rule, titles.get(rule, ""), *(-n for n in per), -total, -counts[-1]],
            )
        )
    return [
        '<section id="overview">',
        "<h2>Overview</h2>",
        "<h3>Findings by rule and severity</h3>",
        *_table("by-rule", columns, rows),
        *_by_owner("by-agent", "agent", agents, no_agent),
        *_by_owner("by-task", "task", tasks, no_task),
        "</section>",
        *_timeline(report),
    ]


def _tally(stats: tuple[dict[str, int], dict[str, int]], value: str | None, rank: int) -> int:
    """Count one finding of severity ``rank`` for ``value`` (an agent or task id); 1 when it has none."""
    if value is None:
        return 1
    counts, worsts = stats
    counts[value] = counts.get(value, 0) + 1
    if rank > worsts.get(value, -1):
        worsts[value] = rank
    return 0


def _by_owner(table_id: str, what: str, stats: tuple[dict[str, int], dict[str, int]], without: int) -> list[str]:
    """The ``MAX_GROUPS`` agents (or tasks) with the most unwaived findings (``stats``: count and
    worst severity rank by value)."""
    head = [f"<h3>Findings by {what}</h3>"]
    counts, worsts = stats
    if not counts:
        return [*head, f"<p>No finding names a{'n' if what == 'agent' else ''} {what}.</p>"]
    best = heapq.nsmallest(MAX_GROUPS, counts.items(), key=lambda kv: (-kv[1], -worsts[kv[0]], kv[0]))
    top = [(value, (n, worsts[value])) for value, n in best]
    columns = [
        _Column(what.capitalize(), "minmax(min-content,3fr)"),
        _Column("findings", "max-content", num=True),
        _Column("worst", "max-content"),
        _Column("trace", "minmax(min-content,2fr)", sortable=False),
    ]
    rows = [
        _Row(
            [
                f'<span class="id">{ident(value)}</span>',
                f"{n:,}",
                _sev(SEVERITIES[worst]),
                f'<code class="id">nhiaudit trace --{what} {ident(value)}</code>',
            ],
            [value, -n, -worst],
        )
        for value, (n, worst) in top
    ]
    notes = []
    if len(counts) > len(top):
        notes.append(
            f"the {len(top)} {what}s with the most findings of {len(counts):,}; "
            f"{len(counts) - len(top):,} more are in the JSON report"
        )
    if without:
        notes.append(f"{_plural(without, 'finding')} name no {what}")
    return [*head, *([f'<p class="muted">{"; ".join(notes)}.</p>'] if notes else []), *_table(table_id, columns, rows)]


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def _timeline(report: Report) -> list[str]:
    """Audited actions per time bucket, stacked by verdict, as one SVG."""
    head = ['<section id="timeline">', "<h2>Timeline</h2>"]
    # Parallel lists of floats and shared strings: nothing per action for the garbage collector.
    seconds: list[float] = []
    kinds: list[str] = []
    undated = 0
    for a in report.actions.heads():
        when = _time(a.occurred_at)
        if when is None:
            undated += 1
        else:
            seconds.append(when.timestamp())
            kinds.append(a.verdict if a.verdict in VERDICTS else "other")
    if not seconds:
        return [*head, "<p>No dated audited actions.</p>", "</section>"]
    start, end = min(seconds), max(seconds)
    first, last = _utc(start), _utc(end)
    span = end - start
    n = TIMELINE_BUCKETS if span > 0 else 1
    width = span / n if span > 0 else 1.0
    buckets: list[dict[str, int]] = [{} for _ in range(n)]
    for when, verdict in zip(seconds, kinds, strict=True):
        i = min(n - 1, int((when - start) / width)) if span > 0 else 0
        buckets[i][verdict] = buckets[i].get(verdict, 0) + 1
    series = ("unapproved", "unknown", "other", "approved")
    tips = []
    for i, counts in enumerate(buckets):
        lo = first + timedelta(seconds=i * width)
        hi = first + timedelta(seconds=(i + 1) * width) if span > 0 else last
        parts = ", ".join(f"{counts[s]:,} {s}" for s in series if counts.get(s))
        tips.append(f"{_iso(lo)} – {_iso(hi)}: {parts}")
    svg = _svg.timeline(buckets, series, tips, (_iso(first), _iso(last)), esc)
    legend = "".join(f'<span><i class="key-{v}"></i>{v}</span>' for v in ("approved", "unknown", "unapproved"))
    notes = f'<p class="muted">{_plural(undated, "action")} without a readable time not drawn.</p>' if undated else ""
    return [
        *head,
        f'<p class="muted">{_plural(len(seconds), "audited action")} from {esc(_iso(first))} to {esc(_iso(last))}, '
        f"in {_plural(n, 'bucket')}; hover a bar for its counts.</p>",
        f'<p class="legend">{legend}</p>',
        svg,
        notes,
        "</section>",
    ]


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- chains ----------------------------------------------------------------------------------------


def _link(link: Link) -> str:
    status = _choice(link.status, LINK_STATUSES, "status")
    depth = f" depth-{min(3, max(0, int(link.depth)))}" if link.depth else ""
    details = "".join(
        f"<dt>{esc(k)}</dt><dd>{esc(v if isinstance(v, str) else _json(v))}</dd>"
        for k, v in sorted(link.details.items(), key=lambda kv: str(kv[0]))
    )
    evidence = (
        f'<span class="id">{ident(pointer(link.evidence))}</span> '
        f'<span class="muted">record {esc(link.evidence.record_index)}, '
        f'event <span class="id">{ident(link.evidence.source)}:{ident(link.evidence.event_id)}</span></span>'
        if link.evidence
        else '<span class="muted">no evidence</span>'
    )
    return (
        f'<li class="{status}{depth}"><b>{esc(link.kind)}</b> '
        f'<span class="{status}">[{esc(link.status)}]</span> <code class="id">{ident(link.id)}</code> — '
        f'<span class="prose">{esc(link.label)}</span>'
        f"<br>{evidence}" + (f"<dl>{details}</dl>" if details else "") + "</li>"
    )


def _chain(index: int, group: _Group) -> list[str]:
    action, findings = group.action, group.findings
    if action is None:
        first = findings[0]
        verdict = "verdict-other"
        title = f'<code class="id">{ident(first.source)}:{ident(first.event_id)}</code> — no audited-action record'
        links: tuple[Link, ...] = ()
    else:
        verdict = _choice(action.verdict, VERDICTS, "verdict")
        title = (
            f'<span class="{verdict}"><b>{esc(action.verdict)}</b></span> '
            f'{esc(action.occurred_at)} · <code class="id">{ident(action.source)}:{ident(action.event_id)}</code> · '
            f'<span class="id">{ident(action.action)}</span> <span class="id">{ident(action.resource)}</span> · '
            f'actor <span class="id">{ident(action.actor_id)}</span> · tier {esc(action.tier)}'
        )
        links = action.links
    unwaived = sum(1 for f in findings if not f.waived)
    body = [
        f'<article class="chain {verdict.replace("verdict-", "in-")}" id="action-{index}">',
        f"<p>{title} · {_plural(unwaived, 'finding')}</p>",
    ]
    if links:
        body.append(_svg.chain(links, esc))
        body += ["<details>", "<summary>links and evidence</summary>", '<ol class="links">']
        body += [_link(link) for link in links]
        body += ["</ol>", "</details>"]
    else:
        body.append("<p>No chain links.</p>")
    if findings:
        body.append("<ul>")
        body += [
            f'<li>{_sev(f.severity)} <code class="id">{ident(f.rule)}</code> <span class="msg">{esc(f.message)}</span>'
            + (" <i>(waived)</i>" if f.waived else "")
            + "</li>"
            for f in findings[:MAX_CHAIN_FINDINGS]
        ]
        if len(findings) > MAX_CHAIN_FINDINGS:
            body.append(f"<li>… {len(findings) - MAX_CHAIN_FINDINGS:,} more in the findings table and JSON report</li>")
        body.append("</ul>")
    return [*body, "</article>"]


def _chains(shown: list[_Group], total: int) -> list[str]:
    body = ['<section id="chains">', f"<h2>Authorization chains ({len(shown):,} of {total:,})</h2>"]
    if len(shown) < total:
        body.append(
            f'<p class="cap">The {len(shown):,} worst chains are drawn here (most severe findings first, then '
            f"most findings, unapproved before unknown before approved); {total - len(shown):,} more are not. "
            "<code>nhiaudit trace SOURCE:EVENT_ID</code> shows any chain in full, and the JSON report "
            "(<code>nhiaudit report --json FILE</code>) lists every action and finding.</p>"
        )
    legend = "".join(
        f'<span><i class="{_choice(s, LINK_STATUSES, "key")}"></i>{s.replace("_", " ")}</span>' for s in LINK_STATUSES
    )
    body.append(f'<p class="legend">Links: {legend} — arrows point from a link to what it authorizes.</p>')
    if not shown:
        return [*body, "<p>No audited actions.</p>", "</section>"]
    boxes = [(v, f'<span class="verdict-{v}">{v}</span>') for v in (*VERDICTS, "other")]
    body.append(f'<div class="chains">{_checkboxes("chains", boxes)}')
    for i, group in enumerate(shown):
        body += _chain(i, group)
    return [*body, "</div>", "</section>"]


# --- findings ------------------------------------------------------------------------------------------


def _finding_row(f: Finding, anchors: dict[str, str]) -> _Row:
    key = action_key(f.source, f.event_id)
    anchor = anchors.get(key)
    where = f'<span class="id">{ident(f.source)}:{ident(f.event_id)}</span>'
    action_cell = f'<a href="#{anchor}">{where}</a>' if anchor else where
    if f.action or f.resource:
        action_cell += f'<br><span class="id">{ident(f.action)}</span> <span class="id">{ident(f.resource)}</span>'
    status = "waived" if f.waived else esc(f.baseline or "")
    if f.waived and f.waiver is not None:
        w = f.waiver
        status += f'<br><span class="muted prose">{esc(w.reason)} ({esc(w.owner)}, {esc(w.expires)})</span>'
    css = _choice(f.severity, SEVERITIES, "row") + (" waived" if f.waived else "")
    cells = [
        _sev(f.severity),
        f'<code class="id">{ident(f.rule)}</code><br>{esc(f.title)}'
        f'<br><span class="muted">{ident(", ".join(f.frameworks))}</span>',
        f'<span class="id">{esc(f.occurred_at)}</span>',
        action_cell,
        f'<span class="id">{ident(f.actor_id)}</span>',
        f'<span class="msg">{esc(f.message)}</span>',
        f'<span class="id">{ident(pointer(f.evidence))}</span><br>'
        f'<span class="muted">record {esc(f.evidence.record_index)}</span>',
        status,
    ]
    keys = [
        _severity_key(f),
        f.rule,
        f.occurred_at or "",
        key,
        f.actor_id or "",
        (f.evidence.file, f.evidence.line),
        (f.waived, f.baseline or ""),
    ]
    return _Row(cells, keys, css)


FINDING_COLUMNS = (
    _Column("Severity", "max-content"),
    _Column("Rule", "minmax(min-content,1.3fr)"),
    _Column("When", "max-content"),
    _Column("Action", "minmax(min-content,1.6fr)"),
    _Column("Actor", "minmax(min-content,1.3fr)"),
    _Column("Message", "minmax(14em,3fr)", sortable=False),
    _Column("Evidence", "minmax(min-content,1.3fr)"),
    _Column("Status", "minmax(min-content,.6fr)"),
)


def _findings(report: Report, anchors: dict[str, str], limit: int) -> list[str]:
    total = len(report.findings)
    head = ['<section id="findings">', f"<h2>Findings ({total:,})</h2>"]
    if not report.findings:
        return [*head, "<p>No findings.</p>", "</section>"]
    # One int per finding ranks it (waived last, most severe first, then report order): see _worst_chains.
    scores = (
        ((6 if f.waived else 0) + 4 - SEVERITY_RANK.get(f.severity, -1)) * total + i
        for i, f in enumerate(report.findings)
    )
    picked = [score % total for score in heapq.nsmallest(limit, scores)]
    shown = [report.findings[i] for i in picked]
    cap = []
    if len(shown) < total:
        left: dict[tuple[str, str], int] = {}
        kept = set(picked)
        for i, f in enumerate(report.findings):
            if i not in kept:
                k = (f.rule, "waived" if f.waived else f.severity)
                left[k] = left.get(k, 0) + 1
        items = "".join(
            f'<li><code class="id">{ident(rule)}</code> {esc(sev)}: {n:,}</li>'
            for (rule, sev), n in sorted(left.items())
        )
        cap = [
            f'<div class="cap"><p>The {len(shown):,} most severe findings are listed (waived last); '
            f"{total - len(shown):,} more are not, by rule:</p><ul>{items}</ul>"
            "<p>The JSON report (<code>nhiaudit report --json FILE</code>) lists them all; "
            "<code>nhiaudit trace SOURCE:EVENT_ID</code> shows any action's chain.</p></div>"
        ]
    boxes = [(s, _sev(s)) for s in reversed(SEVERITIES)] + [("waived", "waived")]
    return [
        *head,
        *cap,
        *_table(
            "findings-table", FINDING_COLUMNS, [_finding_row(f, anchors) for f in shown], _checkboxes("findings", boxes)
        ),
        "</section>",
    ]


def _fixed(report: Report, limit: int) -> list[str]:
    if not report.baseline_path:
        return []
    rows = [
        f"<tr><td>{ident(item.get('rule'))}</td><td>{ident(item.get('source'))}:{ident(item.get('event_id'))}</td>"
        f'<td>{ident(item.get("action"))}</td><td class="prose">{esc(item.get("message"))}</td></tr>'
        for item in report.fixed[:limit]
    ]
    table = (
        ["<table><thead><tr><th>Rule</th><th>Event</th><th>Action</th><th>Message</th></tr></thead><tbody>"]
        + rows
        + ["</tbody></table>"]
        if rows
        else ["<p>None.</p>"]
    )
    more = len(report.fixed) - len(rows)
    note = [f'<p class="cap">{more:,} more fixed findings are listed in the JSON report.</p>'] if more > 0 else []
    return [
        '<section id="fixed">',
        f"<h2>Fixed since the baseline ({len(report.fixed):,})</h2>",
        *note,
        *table,
        "</section>",
    ]


def _compliance(result: dict[str, Any]) -> list[str]:
    controls = result["controls"]
    failed = result["failed"]
    rows = []
    for c in controls:
        rules = ", ".join(f'<span class="id">{ident(r)}</span>' for r in c["rules"])
        status = "fail" if c["status"] == "fail" else "pass"
        rows.append(
            f'<tr><td><span class="id">{ident(c["control"])}</span></td>'
            f'<td class="{status}">{status.upper()}</td>'
            f"<td>{c['failing']:,} failing / {c['findings']:,}</td><td>{rules}</td></tr>"
        )
    return [
        '<section id="compliance">',
        f"<h2>Compliance: {esc(result['title'])}</h2>",
        f"<p>{failed:,} of {len(controls):,} controls fail. A control fails on a finding at or above "
        "<code>--fail-on</code> from one of its rules.</p>",
        "<table><thead><tr><th>Control</th><th>Status</th><th>Findings</th><th>Rules</th></tr></thead><tbody>",
        *rows,
        "</tbody></table>",
        "</section>",
    ]


def _evidence_files(report: Report) -> list[str]:
    if not report.evidence_files:
        return []
    rows = [
        f'<tr><td><span class="id">{ident(e.get("path"))}</span></td><td class="mono">{esc(e.get("sha256"))}</td>'
        f"<td>{esc(e.get('source'))}</td><td>{esc(e.get('records_loaded'))} loaded, "
        f"{esc(e.get('records_rejected'))} rejected</td></tr>"
        for e in report.evidence_files
    ]
    return [
        '<section id="evidence">',
        "<h2>Evidence files</h2>",
        "<table><thead><tr><th>Path</th><th>SHA-256</th><th>Source</th><th>Records</th></tr></thead><tbody>",
        *rows,
        "</tbody></table>",
        "</section>",
    ]
