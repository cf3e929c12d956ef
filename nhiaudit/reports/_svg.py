"""Inline SVG for the HTML report: a chain as a row of linked boxes, and a stacked-bar timeline.

Both return markup to embed in the page (no ``<defs>``, no ids, nothing fetched). Log text reaches
the drawing only as element text through the caller's ``esc``; class names come from fixed
vocabularies, and every number is computed here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from nhiaudit.model import Link

LINK_STATUSES = ("found", "missing", "conflict", "not_required")

# Box geometry (px in the viewBox): a monospace character is about 0.6 em at 12 px.
_CHAR_W = 7.3
_BOX_H = 44
_GAP = 30
_PAD = 10
_MIN_W = 120
_MAX_CHARS = 48
_ROW_W = 1100


def _status_class(status: str) -> str:
    return f"lk-{status.replace('_', '-')}" if status in LINK_STATUSES else "lk-other"


def _shorten(text: str, limit: int = _MAX_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def chain(links: Sequence[Link], esc: Callable[[object], str]) -> str:
    """``links`` (action first) as boxes joined by arrows that point from each link to the one it
    authorizes (action ← credential ← issuance ← parents ← task ← approval ← authority), wrapped
    into rows; coloured by status. The full id and label of each box are in its tooltip."""
    boxes = []
    for link in links:
        kind = f"{link.kind} {link.depth}" if link.depth else link.kind
        head = f"{kind} · {link.status}"
        ident = _shorten(link.id if link.id is not None else "—")
        width = max(_MIN_W, round(_CHAR_W * max(len(head), len(ident)) + 2 * _PAD))
        boxes.append((link, head, ident, width))
    if not boxes:
        return ""
    rows: list[list[tuple[Link, str, str, int]]] = [[]]
    used = 0
    for box in boxes:
        if rows[-1] and used + _GAP + box[3] > _ROW_W:
            rows.append([])
            used = 0
        used += (_GAP if rows[-1] else 0) + box[3]
        rows[-1].append(box)
    width = max(sum(b[3] for b in row) + _GAP * (len(row) - 1) for row in rows)
    height = len(rows) * (_BOX_H + _GAP) - _GAP
    out = [
        f'<svg class="diagram" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="authorization chain, {len(boxes)} links">'
    ]
    prev_centre = 0
    for r, row in enumerate(rows):
        y = r * (_BOX_H + _GAP)
        x = 0
        for i, (link, head, ident, w) in enumerate(row):
            if i:
                out.append(_arrow_left(x, y))
            elif r:
                out.append(_arrow_up(x + w // 2, prev_centre, y))
            tip = f"{head}: {link.id if link.id is not None else '—'} — {link.label}"
            out.append(
                f'<g class="{_status_class(link.status)}"><title>{esc(tip)}</title>'
                f'<rect x="{x}" y="{y}" width="{w}" height="{_BOX_H}" rx="6"/>'
                f'<text x="{x + _PAD}" y="{y + 17}" class="k">{esc(head)}</text>'
                f'<text x="{x + _PAD}" y="{y + 35}">{esc(ident)}</text></g>'
            )
            prev_centre = x + w // 2
            x += w + _GAP
    out.append("</svg>")
    return "".join(out)


def _arrow_left(x: int, y: int) -> str:
    """From the box starting at ``x`` to the previous one, which it authorizes (pointing left)."""
    mid = y + _BOX_H // 2
    tip = x - _GAP + 1
    return (
        f'<path class="arrow" d="M{x} {mid} H{tip + 6}"/>'
        f'<path class="head" d="M{tip + 7} {mid - 5} L{tip} {mid} L{tip + 7} {mid + 5} Z"/>'
    )


def _arrow_up(start: int, end: int, y: int) -> str:
    """From a row's first box (centre ``start``) up to the last box of the row above (centre ``end``)."""
    tip = y - _GAP + 1
    return (
        f'<path class="arrow" d="M{start} {y} V{y - _GAP // 2} H{end} V{tip + 6}"/>'
        f'<path class="head" d="M{end - 5} {tip + 7} L{end} {tip} L{end + 5} {tip + 7} Z"/>'
    )


def timeline(
    buckets: Sequence[dict[str, int]],
    series: Sequence[str],
    tips: Sequence[str],
    labels: tuple[str, str],
    esc: Callable[[object], str],
) -> str:
    """Stacked bars, one per bucket: ``buckets[i][name]`` for each name of ``series`` (bottom
    first, class ``bar-<name>``), ``tips[i]`` as each bar's tooltip, ``labels`` under the first and
    last bar."""
    width, height, base = 960, 150, 130
    peak = max((sum(b.get(s, 0) for s in series) for b in buckets), default=0)
    if not buckets or peak == 0:
        return ""
    step = width / len(buckets)
    bar = max(1.0, step - 2)
    out = [
        f'<svg class="timeline" viewBox="0 0 {width} {height + 10}" width="{width}" height="{height + 10}" '
        f'role="img" aria-label="audited actions over time">',
        f'<path class="axis" d="M0 {base + 0.5} H{width}"/>',
        f'<text x="0" y="10" class="k">{peak}</text>',
    ]
    for i, counts in enumerate(buckets):
        x = round(i * step + 1, 1)
        top = base
        rects = []
        for name in series:
            n = counts.get(name, 0)
            if not n:
                continue
            h = max(1.0, round((base - 14) * n / peak, 1))
            top = round(top - h, 1)
            rects.append(f'<rect class="bar-{name}" x="{x}" y="{top}" width="{round(bar, 1)}" height="{h}"/>')
        if rects:
            out.append(f"<g><title>{esc(tips[i])}</title>{''.join(rects)}</g>")
    out.append(f'<text x="0" y="{height + 5}">{esc(labels[0])}</text>')
    out.append(f'<text x="{width}" y="{height + 5}" text-anchor="end">{esc(labels[1])}</text>')
    out.append("</svg>")
    return "".join(out)
