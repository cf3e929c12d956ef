"""Report writers: one pure ``render(report: model.Report, **options) -> str`` per format, no I/O, no clock.

How to add one:
1. Write ``nhiaudit/reports/<fmt>.py`` with ``render(report)``; escape every log string for the medium.
2. Register it in ``WRITERS`` below (the key is the CLI flag: ``--<fmt> FILE``).
3. ``tests/reports`` runs every writer against hostile input; add a test that the output is valid.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TextIO

from nhiaudit.model import Report
from nhiaudit.reports import csv_, html_, json_, junit, markdown, ocsf, sarif

# render(report, **options): options are format-specific keywords (SARIF: max_results, category, …).
WRITERS: dict[str, Callable[..., str]] = {
    "json": json_.render,
    "sarif": sarif.render,
    "junit": junit.render,
    "markdown": markdown.render,
    "ocsf": ocsf.render,
    "html": html_.render,
    "csv": csv_.render,
}

# write(report, out, **options): formats that can be written piece by piece (every finding or action
# encoded and written on its own), so a report at a million events is never one string in memory.
STREAMING: dict[str, Callable[..., None]] = {"json": json_.write, "ocsf": ocsf.write}


def write(fmt: str, report: Report, out: TextIO, **options: Any) -> None:
    """Write format ``fmt`` of ``report`` to ``out``: streamed when the format can be, else rendered.
    The bytes are ``WRITERS[fmt](report, **options)`` either way."""
    if fmt in STREAMING:
        STREAMING[fmt](report, out, **options)
    else:
        out.write(WRITERS[fmt](report, **options))


#: The file each format gets in ``report --output-dir DIR``.
FILE_NAMES = {
    "json": "nhiaudit.json",
    "sarif": "nhiaudit.sarif",
    "junit": "nhiaudit.junit.xml",
    "markdown": "nhiaudit.md",
    "ocsf": "nhiaudit.ocsf.jsonl",
    "html": "nhiaudit.html",
    "csv": "nhiaudit.csv",
}
