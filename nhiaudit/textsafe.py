"""Make untrusted log text inert for a terminal: control characters become visible escapes.

A log field may carry ANSI/OSC sequences (``\\x1b[31m``, ``\\x1b]8;;…``), backspaces or carriage
returns that rewrite what a terminal shows. Rich markup is handled by the CLI, which renders log
text as ``rich.text.Text`` (never parsed as markup).
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def terminal_safe(value: object, limit: int | None = None) -> str:
    """``value`` as one printable line: controls (incl. bidi overrides) as ``\\xNN``/``\\uNNNN``."""
    if value is None:
        return ""
    text = str(value).replace("\n", "\\n").replace("\t", " ")
    text = _CONTROL.sub(
        lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", text
    )
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text
