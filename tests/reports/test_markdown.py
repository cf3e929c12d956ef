"""Markdown for PR comments: rows stay rows, log text stays text, the headline says pass or fail."""

from __future__ import annotations

import dataclasses
import re

import pytest
from report_fixtures import FINDINGS, empty_report

from nhiaudit.reports import markdown


def _tables(text: str) -> list[list[str]]:
    """Each Markdown table as its lines (header, delimiter, rows)."""
    tables, current = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return tables


def test_every_table_row_has_exactly_its_columns(report):
    tables = _tables(markdown.render(report))
    assert len(tables) == 5  # expired waivers, severity counts, findings, waived, fixed
    for table in tables:
        columns = table[0].count("|")
        for row in table:
            assert row.count("|") == columns, row
            assert row.endswith("|")


def test_log_text_cannot_inject_markup(report):
    out = markdown.render(report)
    assert "<script" not in out
    assert out.count("<details>") == out.count("</details>") == 1
    assert "](http" not in out  # no link
    assert "[bold red]" not in out and "`code`" not in out
    assert "http://" not in out and "www.evil" not in out  # no autolink
    assert "@security-team" not in out and "@platform-team" not in out  # no mention
    assert "@\u2060" not in out and "&#64;&#8288;security-team" in out


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a|b", "a&#124;b"),
        ("<b>&", "&lt;b&gt;&amp;"),
        ("[x](y)", "&#91;x&#93;&#40;y&#41;"),
        ("line1\nline2\r\nline3", "line1 line2 line3"),
        ("\x1b[2J", "&#92;x1b&#91;2J"),
        (None, "-"),
        ("", "-"),
        ("www.evil.example", "www&#46;evil.example"),
        ("bob@example.com", "bob&#64;example.com"),
        ("@team", "&#64;&#8288;team"),
    ],
)
def test_cell(value, expected):
    assert markdown.cell(value) == expected


def test_long_values_are_cut(report):
    assert markdown.cell("x" * 500, limit=10) == "xxxxxxxxxx… &#40;+490 chars&#41;"


def test_headline_reports_failure_against_fail_on(report):
    first = markdown.render(report).splitlines()[0]
    assert first == "## ❌ nhiaudit: FAIL — 2 new findings at or above **high**"


def test_headline_passes_when_nothing_reaches_fail_on():
    first = markdown.render(empty_report()).splitlines()[0]
    assert first == "## ✅ nhiaudit: PASS — no findings at or above **high**"


def test_expired_waivers_are_loud(report):
    out = markdown.render(report)
    assert "> [!CAUTION]\n> **1 expired waiver** no longer suppresses findings." in out
    assert out.index("[!CAUTION]") < out.index("### Findings")


def test_baseline_section_lists_fixed_findings(report):
    out = markdown.render(report)
    assert "**2** new · **1** fixed" in out
    assert "| ✔ | self-approval |" in out
    assert "(new)" in out
    assert "### Since the baseline" not in markdown.render(dataclasses.replace(report, baseline_path=None))


def test_waived_findings_are_listed_apart(report):
    out = markdown.render(report)
    findings_table = out[out.index("### Findings") : out.index("<details>")]
    assert "long-lived-credential" not in findings_table
    assert "<details><summary>Waived findings (1)</summary>" in out


def test_findings_table_is_capped(report):
    many = tuple(dataclasses.replace(FINDINGS[1], message="m", fingerprint=f"fp{i}") for i in range(250))
    out = markdown.render(dataclasses.replace(report, findings=many))
    rows = [line for line in out.splitlines() if line.startswith("| **high**")]
    assert len(rows) == markdown.MAX_ROWS
    assert "… and 50 more findings" in out


def test_findings_table_respects_the_comment_size_budget(report):
    many = tuple(dataclasses.replace(f, fingerprint=f"fp{i}") for i, f in enumerate(FINDINGS[:4] * 50))
    out = markdown.render(dataclasses.replace(report, findings=many))
    assert len(out) < 65_536
    assert re.search(r"… and \d+ more findings", out)
