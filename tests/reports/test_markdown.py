"""Markdown for PR comments: readable as plain text, inert as GitHub renders it, capped.

The rendering checks use cmark-gfm (``cmarkgfm``, the C library GitHub renders comments with) with
raw HTML allowed, so a tag that got through would show up in the HTML.
"""

from __future__ import annotations

import dataclasses
import re
from html.parser import HTMLParser

import cmarkgfm
import pytest
from cmarkgfm.cmark import Options
from report_fixtures import COMPLIANCE, FINDINGS, MARKDOWN, SCRIPT, empty_report

from nhiaudit.reports import markdown


def gfm(text: str) -> str:
    return cmarkgfm.github_flavored_markdown_to_html(text, options=Options.CMARK_OPT_UNSAFE)


class _Cells(HTMLParser):
    """The tables of an HTML page: each a list of rows, each a list of cell texts; and its tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self.tags: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parsed(text: str) -> _Cells:
    cells = _Cells()
    cells.feed(gfm(text))
    return cells


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


def test_every_rendered_table_row_has_exactly_its_columns(report):
    html = parsed(markdown.render(report))
    assert len(html.tables) == 5  # expired waivers, severity counts, findings, waived, fixed
    for table in html.tables:
        assert len({len(row) for row in table}) == 1, table


def test_log_text_renders_as_text_only(report):
    html = parsed(markdown.render(report))
    # The only markup is the writer's own: headings, tables, emphasis, code, the list, <details>.
    allowed = {"h2", "h3", "p", "strong", "table", "thead", "tbody", "tr", "th", "td", "code", "ul", "li",
               "details", "summary", "sub", "blockquote"}
    assert set(html.tags) <= allowed, set(html.tags) - allowed
    assert "<a " not in gfm(markdown.render(report))  # no link, autolink or mention link
    assert "<script" not in markdown.render(report).lower()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # Plain words stay plain: no entity for ":" "_" "@" where Markdown does not need one.
        ("approved by bob in task t-8b21", "approved by bob in task t-8b21"),
        ("used kong_credential for it", "used kong_credential for it"),
        ("ran at 2026-11-02T10:10:00Z.", "ran at 2026-11-02T10:10:00Z."),
        ("s3:PutObject ran (approval APR-1043):", "`s3:PutObject` ran (approval APR-1043):"),
        ("bob@example.com approved", "`bob@example.com` approved"),
        ("@team see http://evil.example/x", "`@team` see `http://evil.example/x`"),
        ("www.evil.example", "`www.evil.example`"),
        ("a|b", "`a\\|b`"),
        ("[x](y) *em* $x$ ~s~ #12 __init__", "`[x](y)` `*em*` `$x$` `~s~` `#12` `__init__`"),
        ("commit deadbeef1 GH-12", "commit `deadbeef1` `GH-12`"),
        ("<b>&amp;", "&lt;b&gt;&amp;amp;"),
        ("a `tick` b", "a `` `tick` `` b"),
        ("line1\nline2\r\nline3", "line1 line2 line3"),
        ("\x1b[2J", "`\\x1b[2J`"),
        (None, "-"),
        ("", "-"),
    ],
)
def test_text(value, expected):
    assert markdown.text(value) == expected


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("arn:aws:iam::111122223333:user/carol@example.com", "arn:aws:iam::111122223333:user/carol@example.com"),
        ("a|b", "a|b"),
        ("``x`", "``x`"),
        ("` x", "` x"),
        (SCRIPT, SCRIPT),
        (MARKDOWN, MARKDOWN),
    ],
)
def test_code_renders_the_value_exactly(value, shown):
    """An id in a table cell reads back exactly as it was, whatever it holds."""
    cell = parsed(f"| a |\n|---|\n| {markdown.code(value, 500)} |\n").tables[0][1][0]
    assert cell == shown


def test_prose_renders_the_value_as_text(report):
    for finding in FINDINGS:
        shown = parsed(f"| a |\n|---|\n| {markdown.text(finding.message, 10_000)} |\n").tables[0][1][0]
        assert shown.split() == markdown.one_line(finding.message).split()


def test_long_values_are_cut():
    assert markdown.code("x" * 500, limit=10) == "`xxxxxxxxxx… (+490 chars)`"


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
    assert "| ✔ | `self-approval` |" in out
    assert "(new)" in out
    assert "### Since the baseline" not in markdown.render(dataclasses.replace(report, baseline_path=None))


def test_waived_findings_are_listed_apart(report):
    out = markdown.render(report)
    findings_table = out[out.index("### Findings") : out.index("<details>")]
    assert "long-lived-credential" not in findings_table
    assert "<details><summary>Waived findings (1)</summary>" in out


def test_worst_actions_are_trace_commands(report):
    out = markdown.render(report)
    section = out[out.index("### Trace the worst actions") :].split("\n\n")[1]
    items = parsed(section)
    assert items.tags.count("li") == 3
    assert "- `nhiaudit trace vault:vault-9` — 1 finding, worst high" in section
    # A hostile id is shell-quoted, so the command pasted runs trace on that id and nothing else.
    assert "nhiaudit trace 'kong:req-2]]>'" in re.sub(r"<[^>]+>", "", gfm(section)).replace("&gt;", ">")


def test_findings_table_is_capped_with_a_pointer_to_the_full_report(report):
    many = tuple(dataclasses.replace(FINDINGS[1], message="m", fingerprint=f"fp{i}") for i in range(250))
    out = markdown.render(dataclasses.replace(report, findings=many))
    rows = [line for line in out.splitlines() if line.startswith("| **high**")]
    assert len(rows) == markdown.MAX_ROWS
    assert "… and 200 more findings not listed here: write the full report with" in out
    out = markdown.render(dataclasses.replace(report, findings=many), max_rows=10, full_report="out/nhiaudit.html")
    assert len([line for line in out.splitlines() if line.startswith("| **high**")]) == 10
    assert "… and 240 more findings not listed here: the full report is `out/nhiaudit.html`." in out


def test_findings_table_respects_the_comment_size_budget(report):
    many = tuple(dataclasses.replace(f, fingerprint=f"fp{i}") for i, f in enumerate(FINDINGS[:4] * 500))
    out = markdown.render(dataclasses.replace(report, findings=many), max_rows=10_000)
    assert len(out) < 65_536
    assert re.search(r"… and \d+ more findings", out)


def test_compliance_section(report):
    out = markdown.render(report, compliance=COMPLIANCE)
    assert "### Compliance: OWASP Top 10 for Agentic Applications" in out
    assert "**1** of **2** controls fail" in out
    assert "| `ASI03` | ❌ fail | 2 failing / 3 | `approval-denied`, `out-of-scope-action` |" in out
    assert "| `ASI10` | ✅ pass | 0 | `self-approval` |" in out
    assert len(parsed(out).tables) == 6
