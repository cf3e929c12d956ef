"""One self-contained HTML file a reviewer can open offline: summary, findings, chains, timeline.

No script and no external fetch: the Content-Security-Policy allows inline styles only. Every value
from a log goes through :func:`esc` (control characters spelled out, then ``html.escape`` with
quotes), and class names and ids are built from fixed vocabularies or indexes, never from log text.
The severity filter is CSS-only (``:has``); a browser without it simply shows every row.
"""

from __future__ import annotations

import html
import json
from typing import Any

from nhiaudit.model import SEVERITIES, AuditedAction, Finding, Link, Report
from nhiaudit.reports._common import action_key, findings_by_action, pointer, visible

CSP = "default-src 'none'; style-src 'unsafe-inline'"
VERDICTS = ("approved", "unapproved", "unknown")
LINK_STATUSES = ("found", "missing", "conflict")

CSS = """
body{
  font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;
  margin:0 auto;
  max-width:1200px;
  padding:1em 2em;
  color:#1d2433}
h1{margin:.2em 0}
h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;width:100%;margin:.5em 0}
th,td{border:1px solid #d0d7de;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f6f8fa}
td{overflow-wrap:anywhere}
.status{font-size:1.2em;font-weight:600;padding:.4em .8em;border-radius:6px;display:inline-block}
.fail{background:#ffebe9;color:#82071e}
.pass{background:#dafbe1;color:#116329}
.alert{background:#fff1e5;border:2px solid #bc4c00;border-radius:6px;padding:.5em 1em;margin:1em 0}
.alert h2{border:0;color:#bc4c00;margin-top:.3em}
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
.status-other{color:#6e7781}
details{border:1px solid #d0d7de;border-radius:6px;margin:.4em 0;padding:.3em .8em}
summary{cursor:pointer}
ol.chain{list-style:none;padding-left:0}
ol.chain li{border-left:3px solid #d0d7de;margin:.3em 0;padding:.1em .6em}
ol.chain li.status-missing{border-color:#cf222e}
ol.chain li.status-conflict{border-color:#bf8700}
ol.chain li.status-found{border-color:#2da44e}
dl{display:grid;grid-template-columns:max-content auto;gap:0 .8em;margin:.2em 0}
dt{color:#57606a}
dd{margin:0;overflow-wrap:anywhere}
ol.timeline{list-style:none;padding-left:1em;border-left:2px solid #d0d7de}
ol.timeline li{margin:.3em 0}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.92em}
.muted{color:#57606a}
.filters label{margin-right:1em}
.msg{white-space:pre-wrap}
""" + "".join(f"body:has(#show-{s}:not(:checked)) tr.row-{s}{{display:none}}" for s in SEVERITIES)


def esc(value: Any) -> str:
    """Untrusted ``value`` as HTML text or attribute content; ``None`` as an em dash."""
    if value is None:
        return "—"
    return html.escape(visible(value), quote=True)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _choice(value: str, allowed: tuple[str, ...], prefix: str) -> str:
    """A class name from a fixed vocabulary, so log text never reaches an attribute unescaped."""
    return f"{prefix}-{value}" if value in allowed else f"{prefix}-other"


def _sev(severity: str) -> str:
    return f'<span class="sev {_choice(severity, SEVERITIES, "sev")}">{esc(severity)}</span>'


def render(report: Report) -> str:
    summary = report.summary
    groups = findings_by_action(report)
    anchors = {action_key(a.source, a.event_id): f"action-{i}" for i, (a, _) in enumerate(groups) if a is not None}
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
        *_findings(report, anchors),
        *_chains(groups),
        *_timeline(report, anchors),
        *_fixed(report),
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
        status = f'<p class="status fail">FAIL — {failing} {scope} at or above {esc(report.fail_on)}</p>'
    else:
        status = f'<p class="status pass">PASS — no {scope} at or above {esc(report.fail_on)}</p>'
    meta = [f"generated {esc(report.generated_at)}"]
    if report.policy_path:
        meta.append(f"policy <code>{esc(report.policy_path)}</code>")
    if report.baseline_path:
        meta.append(f"baseline <code>{esc(report.baseline_path)}</code>")
    return [
        "<header>",
        "<h1>nhiaudit report</h1>",
        status,
        f'<p class="muted">{" · ".join(meta)}</p>',
        '<nav><a href="#findings">Findings</a> · <a href="#chains">Chains</a> · <a href="#timeline">Timeline</a></nav>',
        "</header>",
    ]


def _expired(report: Report) -> list[str]:
    if not report.expired_waivers:
        return []
    rows = [
        f"<tr><td>{esc(w.rule)}</td><td>{esc(w.expires)}</td><td>{esc(w.owner)}</td><td>{esc(w.reason)}</td>"
        f"<td>{esc(', '.join(f'{k}={v}' for k, v in sorted(w.match.items())))}</td></tr>"
        for w in report.expired_waivers
    ]
    n = len(report.expired_waivers)
    return [
        '<section id="expired-waivers" class="alert">',
        f"<h2>⚠ {n} expired waiver{'s' if n != 1 else ''}: no longer suppressing findings</h2>",
        "<p>Renew or remove them in the policy; the findings they covered are reported again.</p>",
        "<table><thead><tr><th>Rule</th><th>Expired</th><th>Owner</th><th>Reason</th><th>Match</th></tr></thead>",
        "<tbody>",
        *rows,
        "</tbody></table>",
        "</section>",
    ]


def _summary(summary: dict[str, Any]) -> list[str]:
    cards = [
        f'<div class="card"><b>{summary["actions_audited"]}</b>audited actions</div>',
        f'<div class="card"><b>{summary["findings"]}</b>findings</div>',
        f'<div class="card"><b>{summary["waived"]}</b>waived</div>',
    ]
    cards += [f'<div class="card"><b>{summary["by_severity"][s]}</b>{_sev(s)}</div>' for s in reversed(SEVERITIES)]
    cards += [
        f'<div class="card"><b>{summary["verdicts"][v]}</b><span class="verdict-{v}">{v}</span></div>' for v in VERDICTS
    ]
    if summary["new"] is not None:
        cards.append(f'<div class="card"><b>{summary["new"]}</b>new</div>')
        cards.append(f'<div class="card"><b>{summary["fixed"]}</b>fixed</div>')
    return [
        '<section id="summary">',
        "<h2>Summary</h2>",
        '<div class="cards">',
        *cards,
        "</div>",
        "</section>",
    ]


def _finding_row(f: Finding, anchors: dict[str, str]) -> str:
    anchor = anchors.get(action_key(f.source, f.event_id))
    where = esc(f"{f.source}:{f.event_id}")
    action_cell = f'<a href="#{anchor}">{where}</a>' if anchor else where
    if f.action or f.resource:
        action_cell += f"<br>{esc(f.action)} {esc(f.resource)}"
    status = "waived" if f.waived else esc(f.baseline or "")
    if f.waived and f.waiver is not None:
        w = f.waiver
        status += f'<br><span class="muted">{esc(w.reason)} ({esc(w.owner)}, {esc(w.expires)})</span>'
    return (
        f'<tr class="{_choice(f.severity, SEVERITIES, "row")}">'
        f"<td>{_sev(f.severity)}</td><td><code>{esc(f.rule)}</code><br>{esc(f.title)}</td>"
        f'<td>{action_cell}</td><td>{esc(f.actor_id)}</td><td class="msg">{esc(f.message)}</td>'
        f'<td class="mono">{esc(pointer(f.evidence))}<br>'
        f'<span class="muted">record {esc(f.evidence.record_index)}</span></td>'
        f"<td>{esc(', '.join(f.frameworks))}</td><td>{status}</td></tr>"
    )


def _findings(report: Report, anchors: dict[str, str]) -> list[str]:
    head = ['<section id="findings">', f"<h2>Findings ({len(report.findings)})</h2>"]
    if not report.findings:
        return [*head, "<p>No findings.</p>", "</section>"]
    filters = "".join(f'<label><input type="checkbox" id="show-{s}" checked> {s}</label>' for s in reversed(SEVERITIES))
    return [
        *head,
        f'<p class="filters">Show: {filters}</p>',
        "<table><thead><tr><th>Severity</th><th>Rule</th><th>Action</th><th>Actor</th><th>Message</th>"
        "<th>Evidence</th><th>Frameworks</th><th>Status</th></tr></thead>",
        "<tbody>",
        *(_finding_row(f, anchors) for f in report.findings),
        "</tbody></table>",
        "</section>",
    ]


def _link(link: Link) -> str:
    status = _choice(link.status, LINK_STATUSES, "status")
    indent = f' style="margin-left:{max(0, int(link.depth)) * 1.5}em"' if link.depth else ""
    details = "".join(
        f"<dt>{esc(k)}</dt><dd>{esc(v if isinstance(v, str) else _json(v))}</dd>"
        for k, v in sorted(link.details.items(), key=lambda kv: str(kv[0]))
    )
    evidence = (
        f'<span class="mono">{esc(pointer(link.evidence))}</span> '
        f'<span class="muted">record {esc(link.evidence.record_index)}, '
        f"event {esc(link.evidence.source)}:{esc(link.evidence.event_id)}</span>"
        if link.evidence
        else '<span class="muted">no evidence</span>'
    )
    return (
        f'<li class="{status}"{indent}><b>{esc(link.kind)}</b> '
        f'<span class="{status}">[{esc(link.status)}]</span> <code>{esc(link.id)}</code> — {esc(link.label)}'
        f"<br>{evidence}" + (f"<dl>{details}</dl>" if details else "") + "</li>"
    )


def _chain(index: int, action: AuditedAction | None, findings: list[Finding]) -> list[str]:
    if action is None:
        first = findings[0]
        title = f"{esc(first.source)}:{esc(first.event_id)} — no audited-action record"
        links: tuple[Link, ...] = ()
    else:
        verdict = _choice(action.verdict, VERDICTS, "verdict")
        title = (
            f'<span class="{verdict}"><b>{esc(action.verdict)}</b></span> '
            f"{esc(action.occurred_at)} · <code>{esc(action.source)}:{esc(action.event_id)}</code> · "
            f"{esc(action.action)} {esc(action.resource)} · "
            f"actor {esc(action.actor_id)} · tier {esc(action.tier)}"
        )
        links = action.links
    anchor = f' id="action-{index}"' if action is not None else ""
    body = [f"<details{anchor}>", f"<summary>{title} · {len(findings)} finding(s)</summary>"]
    body += ['<ol class="chain">', *(_link(link) for link in links), "</ol>"] if links else ["<p>No chain links.</p>"]
    if findings:
        body.append("<ul>")
        body += [
            f"<li>{_sev(f.severity)} <code>{esc(f.rule)}</code> {esc(f.message)}"
            + (" <i>(waived)</i>" if f.waived else "")
            + "</li>"
            for f in findings
        ]
        body.append("</ul>")
    return [*body, "</details>"]


def _chains(groups: list[tuple[AuditedAction | None, list[Finding]]]) -> list[str]:
    body = ['<section id="chains">', f"<h2>Authorization chains ({len(groups)})</h2>"]
    for i, (action, findings) in enumerate(groups):
        body += _chain(i, action, findings)
    return [*body, "</section>"]


def _timeline(report: Report, anchors: dict[str, str]) -> list[str]:
    counts: dict[str, int] = {}
    for f in report.findings:
        if not f.waived:
            key = action_key(f.source, f.event_id)
            counts[key] = counts.get(key, 0) + 1
    ordered = sorted(report.actions, key=lambda a: (a.occurred_at, a.source, a.event_id))
    items = []
    for a in ordered:
        key = action_key(a.source, a.event_id)
        verdict = _choice(a.verdict, VERDICTS, "verdict")
        n = counts.get(key, 0)
        items.append(
            f'<li><span class="mono">{esc(a.occurred_at)}</span> '
            f'<span class="{verdict}">{esc(a.verdict)}</span> '
            f'<a href="#{anchors[key]}">{esc(_what(a.action, a.resource, key))}</a> '
            f'<span class="muted">by {esc(a.actor_id)}</span>' + (f" · <b>{n} finding(s)</b>" if n else "") + "</li>"
        )
    return [
        '<section id="timeline">',
        "<h2>Timeline</h2>",
        '<ol class="timeline">',
        *items,
        "</ol>",
        "</section>",
    ]


def _what(action: str | None, resource: str | None, key: str) -> str:
    return " ".join(part for part in (action, resource) if part) or key


def _fixed(report: Report) -> list[str]:
    if not report.baseline_path:
        return []
    rows = [
        f"<tr><td>{esc(item.get('rule'))}</td><td>{esc(item.get('source'))}:{esc(item.get('event_id'))}</td>"
        f"<td>{esc(item.get('action'))}</td><td>{esc(item.get('message'))}</td></tr>"
        for item in report.fixed
    ]
    table = (
        ["<table><thead><tr><th>Rule</th><th>Event</th><th>Action</th><th>Message</th></tr></thead><tbody>"]
        + rows
        + ["</tbody></table>"]
        if rows
        else ["<p>None.</p>"]
    )
    return [
        '<section id="fixed">',
        f"<h2>Fixed since the baseline ({len(report.fixed)})</h2>",
        *table,
        "</section>",
    ]


def _evidence_files(report: Report) -> list[str]:
    if not report.evidence_files:
        return []
    rows = [
        f'<tr><td class="mono">{esc(e.get("path"))}</td><td class="mono">{esc(e.get("sha256"))}</td>'
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
