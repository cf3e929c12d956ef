"""HTML: one self-contained page, no script, nothing fetched, every log value escaped."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from report_fixtures import ACTIONS, SCRIPT, empty_report

from nhiaudit.reports import html_


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(text: str) -> _Collector:
    parser = _Collector()
    parser.feed(text)
    parser.close()
    return parser


def test_self_contained_and_script_free(any_report):
    page = _parse(html_.render(any_report))
    tags = {tag for tag, _ in page.tags}
    assert not tags & {"script", "img", "iframe", "link", "object", "embed", "form", "base"}
    for tag, attrs in page.tags:
        assert "src" not in attrs, tag
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        if "href" in attrs:
            assert re.fullmatch(r"#[a-z0-9-]+", attrs["href"] or ""), attrs
    metas = [attrs for tag, attrs in page.tags if tag == "meta"]
    assert {"http-equiv": "Content-Security-Policy", "content": html_.CSP} in metas
    assert html_.CSP == "default-src 'none'; style-src 'unsafe-inline'"


def test_attributes_come_from_fixed_vocabularies(report):
    page = _parse(html_.render(report))
    for _, attrs in page.tags:
        for name in ("class", "id"):
            if name in attrs:
                assert re.fullmatch(r"[a-z0-9 -]+", attrs[name] or ""), attrs


def test_log_values_are_escaped_text(report):
    out = html_.render(report)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    text = "".join(_parse(out).text)
    assert SCRIPT in text  # the reader sees the value, as text
    assert "\\x1b[31mred" in text
    assert "weird<script>" in text  # an unknown verdict is shown, but not used as a class


def test_sections_for_summary_findings_chains_timeline_and_expired_waivers(report):
    page = _parse(html_.render(report))
    ids = [attrs.get("id") for _, attrs in page.tags if attrs.get("id")]
    for section in ("expired-waivers", "summary", "findings", "chains", "timeline", "fixed", "evidence"):
        assert section in ids
    assert sum(1 for i in ids if i.startswith("action-")) == len(ACTIONS)
    chain_items = [
        attrs for tag, attrs in page.tags if tag == "li" and "status-" in (attrs.get("class") or "")
    ]
    assert len(chain_items) == sum(len(a.links) for a in ACTIONS)


def test_timeline_is_chronological(report):
    out = html_.render(report)
    timeline = out[
        out.index('<ol class="timeline">') : out.index("</ol>", out.index('<ol class="timeline">'))
    ]
    times = re.findall(r'<span class="mono">([^<]+)</span>', timeline)
    assert times == sorted(a.occurred_at for a in ACTIONS)


def test_generated_at_appears_once(report):
    assert html_.render(report).count(report.generated_at) == 1


def test_empty_report_says_no_findings():
    out = html_.render(empty_report())
    assert "<p>No findings.</p>" in out
    assert 'class="status pass"' in out
