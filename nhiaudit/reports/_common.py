"""Helpers shared by the report writers: neutralizing hostile text and grouping findings by action.

Every string that came from a log may hold terminal escapes, bidi overrides or bytes that XML 1.0
forbids. Text formats (Markdown, HTML, JUnit) pass such strings through :func:`visible` before their
own escaping; JSON formats rely on ``json.dumps(ensure_ascii=True)``, which escapes all of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from nhiaudit.model import Evidence, Finding, Report

# C0 controls except TAB/LF/CR, DEL, C1 controls (U+009B is a one-byte CSI on some terminals),
# bidi marks (ALM, LRM, RLM), embeddings/overrides/isolates ("Trojan Source"), lone surrogates,
# and the two non-characters XML 1.0 forbids (U+FFFE, U+FFFF).
_UNSAFE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufffe\uffff]"
)


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def visible(value: object) -> str:
    """``value`` as text with every unsafe character spelled out (``\\x1b``), so it prints inert."""
    if value is None:
        return ""
    return _UNSAFE.sub(_escape_char, str(value))


def one_line(value: object) -> str:
    """:func:`visible`, with line breaks and tabs folded into single spaces."""
    return re.sub(r"[\r\n\t]+", " ", visible(value))


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marking the cut with an ellipsis and the dropped count."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… (+{len(text) - limit} chars)"


def pointer(evidence: Evidence | None) -> str:
    """The evidence pointer as a reviewer types it: ``file:line``."""
    if evidence is None:
        return ""
    return f"{evidence.file}:{evidence.line}"


def action_key(source: str, event_id: str) -> str:
    return f"{source}:{event_id}"


def findings_by_action(report: Report) -> Iterator[tuple[Any, list[Finding]]]:
    """Each audited action with its findings (report order), then findings whose action is not listed.

    The actions are ``report.actions.heads()`` (no links: a writer that needs them iterates the
    actions), streamed, so a second pass is a second call. Findings without an action record come
    last, one group per ``source:event_id`` (sorted) with ``None`` for the action, so no finding is
    ever lost from a per-action view.
    """
    grouped: dict[str, list[Finding]] = {}
    for finding in report.findings:
        grouped.setdefault(action_key(finding.source, finding.event_id), []).append(finding)
    for action in report.actions.heads():
        yield action, grouped.pop(action_key(action.source, action.event_id), [])
    for key in sorted(grouped):
        yield None, grouped[key]
