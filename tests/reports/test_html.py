"""HTML: one self-contained page, no script, nothing fetched, every log value escaped, capped at scale."""

from __future__ import annotations

import dataclasses
import re
from html.parser import HTMLParser

import pytest
from report_fixtures import ACTIONS, EV1, FINDINGS, SCRIPT, empty_report

from nhiaudit.model import AuditedAction, Evidence, Finding, Link, Report
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


def _section(out: str, section: str) -> str:
    start = out.index(f'<section id="{section}"')
    return out[start : out.index("</section>", start)]


def test_self_contained_and_script_free(any_report):
    out = html_.render(any_report)
    page = _parse(out)
    tags = {tag for tag, _ in page.tags}
    assert not tags & {"script", "img", "iframe", "link", "object", "embed", "form", "base", "image", "use"}
    for tag, attrs in page.tags:
        assert "src" not in attrs, tag
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        if "href" in attrs:
            assert re.fullmatch(r"#[a-z0-9-]+", attrs["href"] or ""), attrs
    metas = [attrs for tag, attrs in page.tags if tag == "meta"]
    assert {"http-equiv": "Content-Security-Policy", "content": html_.CSP} in metas
    # No script-src at all: nothing on the page may run, not even markup that slipped through.
    assert html_.CSP == "default-src 'none'; style-src 'unsafe-inline'"
    assert "url(" not in html_.CSS and "@import" not in html_.CSS


def test_attributes_come_from_fixed_vocabularies(report):
    page = _parse(html_.render(report))
    for tag, attrs in page.tags:
        for name in ("class", "id", "for", "name"):
            if name in attrs:
                assert re.fullmatch(r"[a-z0-9 -]+", attrs[name] or ""), attrs
        if "style" in attrs:  # rank orders of a row, or a table's grid tracks: numbers and fixed words
            assert re.fullmatch(r"(--k\d+:\d+;?)*|grid-template-columns:[a-z0-9(), .-]+", attrs["style"] or ""), attrs
        if tag in {"svg", "rect", "path", "text"}:
            for name, value in attrs.items():
                if name not in {"class", "role", "aria-label", "text-anchor"}:
                    assert re.fullmatch(r"[0-9MLHVZ .-]+", value or ""), (tag, name, value)


def test_log_values_are_escaped_text(report):
    out = html_.render(report)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    text = "".join(_parse(out).text)
    assert SCRIPT in text  # the reader sees the value, as text
    assert "\\x1b[31mred" in text
    assert "weird<script>" in text  # an unknown verdict is shown, but not used as a class


def test_sections_for_summary_overview_findings_chains_timeline_and_expired_waivers(report):
    page = _parse(html_.render(report))
    ids = [attrs.get("id") for _, attrs in page.tags if attrs.get("id")]
    for section in ("expired-waivers", "summary", "overview", "timeline", "chains", "findings", "fixed", "evidence"):
        assert section in ids
    orphans = {(f.source, f.event_id) for f in FINDINGS} - {(a.source, a.event_id) for a in ACTIONS}
    assert sum(1 for i in ids if i.startswith("action-")) == len(ACTIONS) + len(orphans)
    chain_items = [attrs for tag, attrs in page.tags if tag == "li" and "status-" in (attrs.get("class") or "")]
    assert len(chain_items) == sum(len(a.links) for a in ACTIONS)


def test_each_chain_is_a_diagram_coloured_by_link_status(report):
    out = html_.render(report)
    diagrams = re.findall(r'<svg class="diagram".*?</svg>', out)
    assert len(diagrams) == sum(1 for a in ACTIONS if a.links)
    first = diagrams[0]  # the worst chain: the critical finding's, ev-1
    statuses = re.findall(r'<g class="lk-([a-z-]+)">', first)
    assert statuses == [link.status.replace("_", "-") for link in ACTIONS[0].links]
    assert "ASIAEXAMPLE" in first and "&lt;script&gt;" in first and "<script" not in first
    assert re.search(r"g\.lk-missing rect\{[^}]*#cf222e", html_.CSS)
    assert re.search(r"g\.lk-not-required rect[,{]", html_.CSS)


def test_worst_chains_come_first_and_the_cap_is_stated(report):
    out = html_.render(report, max_chains=1)
    chains = _section(out, "chains")
    assert chains.count("<article") == 1
    assert 'id="action-0"' in chains and "ev-1&lt;script&gt;" in chains  # the critical one
    assert "(1 of 4)" in chains and "3 more are not" in chains
    assert "nhiaudit trace SOURCE:EVENT_ID" in chains and "--json" in chains
    assert "more are not" not in _section(html_.render(report), "chains")


def test_findings_are_capped_most_severe_first_with_counts_of_the_rest(report):
    out = html_.render(report, max_findings=2)
    findings = _section(out, "findings")
    rows = re.findall(r'<tr class="row-([a-z]+)( waived)?"', findings)
    assert rows == [("critical", ""), ("high", "")]
    assert "3 more are not" in findings
    assert '<code class="id">credential-<wbr>without-<wbr>task</code> high: 0' not in findings
    left = dict(re.findall(r'<li><code class="id">([^<]*(?:<wbr>[^<]*)*)</code> ([a-z]+: \d+)</li>', findings))
    assert left == {
        "out-<wbr>of-<wbr>scope-<wbr>action": "high: 1",
        "self-<wbr>approval": "high: 1",
        "long-<wbr>lived-<wbr>credential": "waived: 1",
    }


def test_caps_must_not_be_negative(report):
    with pytest.raises(ValueError, match="max_chains"):
        html_.render(report, max_chains=-1)


def test_tables_sort_by_precomputed_ranks(report):
    out = html_.render(report)
    table = out[out.index('<div class="table" id="findings-table">') :]
    table = table[: table.index("</table>")]
    styles = re.findall(r'<tr class="row-[a-z]+(?: waived)?" style="([^"]+)"', table)
    assert len(styles) == len(FINDINGS)
    ranks = [dict(kv.split(":") for kv in s.split(";")) for s in styles]
    for key in ranks[0]:  # each sortable column's ranks are a permutation of 1..n
        assert sorted(int(r[key]) for r in ranks) == list(range(1, len(FINDINGS) + 1))
    # --k0 is severity: the rows are already most severe first, waived last.
    assert [int(r["--k0"]) for r in ranks] == list(range(1, len(FINDINGS) + 1))
    radios = re.findall(r'<input type="radio" class="sort (s[ad]\d+)"', table)
    assert len(radios) == 2 * len(ranks[0])
    for radio in radios:  # every radio has the CSS that orders by it
        assert f".{radio}:checked~table td{{order:" in html_.CSS


def test_filters_are_checkboxes_before_what_they_hide(report):
    out = html_.render(report)
    findings = _section(out, "findings")
    for severity in ("critical", "high", "medium", "low", "info", "waived"):
        box = findings.index(f'class="f-{severity}"')
        assert box < findings.index("<table")
    assert ".f-high:not(:checked)~table tr.row-high{display:none}" in html_.CSS
    chains = _section(out, "chains")
    assert chains.index('class="f-unapproved"') < chains.index("<article")
    assert ".f-unapproved:not(:checked)~.chain.in-unapproved{display:none}" in html_.CSS


def test_ids_wrap_only_after_separators():
    assert (
        html_.ident("arn:aws:sts::1111:assumed-role/a")
        == "arn:<wbr>aws:<wbr>sts::<wbr>1111:<wbr>assumed-<wbr>role/<wbr>a"
    )
    assert html_.ident("AKIAEXAMPLELONGKEY") == "AKIAEXAMPLELONGKEY"
    assert html_.ident("<a>/&") == "&lt;a&gt;/<wbr>&amp;"  # escaped piece by piece
    assert html_.ident("a/") == "a/"  # no break opportunity at the very end
    rule = re.search(r"\.id\{[^}]*\}", html_.CSS).group()
    assert "overflow-wrap:normal" in rule and "word-break:normal" in rule
    assert "anywhere" not in rule and "break-all" not in html_.CSS


def test_timeline_is_an_svg_of_every_dated_action(report):
    timeline = _section(html_.render(report), "timeline")
    assert timeline.count("<svg") == 1
    tips = re.findall(r"<g><title>([^<]*)</title>", timeline)
    counted = sum(int(n.replace(",", "")) for tip in tips for n in re.findall(r"(\d[\d,]*) [a-z]+(?:,|$)", tip))
    assert counted == len(ACTIONS)
    assert "2026-11-02T08:00:00Z" in timeline and "2026-11-02T09:20:00Z" in timeline


def test_by_agent_and_by_task_name_what_to_trace(report):
    overview = _section(html_.render(report), "overview")
    assert "nhiaudit trace --agent report-<wbr>bot" in overview
    assert "nhiaudit trace --task t-<wbr>7f3a[bold red]x[/<wbr>]" in overview
    assert "approval-<wbr>denied" in overview


def test_generated_at_appears_once(report):
    assert html_.render(report).count(report.generated_at) == 1


def test_empty_report_says_no_findings():
    out = html_.render(empty_report())
    assert "<p>No findings.</p>" in out
    assert 'class="status pass"' in out


def _many(n: int) -> Report:
    """``n`` actions with one finding each, spread over a day, sharing their links."""
    links = ACTIONS[0].links
    findings, actions = [], []
    for i in range(n):
        event_id = f"ev-{i:07d}"
        evidence = Evidence("cloudtrail", event_id, "logs/ct.json", EV1.sha256, i, i + 1)
        when = f"2026-11-02T{i * 24 // n:02d}:{i % 60:02d}:00Z"
        findings.append(
            dataclasses.replace(
                FINDINGS[1 + i % 3],
                source="cloudtrail",
                event_id=event_id,
                evidence=evidence,
                occurred_at=when,
                agent_id=f"agent-{i % 500}",
                task_id=f"t-{i}",
            )
        )
        actions.append(
            AuditedAction("cloudtrail", event_id, when, "arn:x", "s3:PutObject", "r", "high", "unapproved", links)
        )
    findings.sort(key=lambda f: (-["info", "low", "medium", "high", "critical"].index(f.severity), f.event_id))
    return dataclasses.replace(empty_report(), findings=tuple(findings), actions=tuple(actions))


def test_size_is_bounded_by_the_caps_not_the_input():
    small, large = html_.render(_many(3_000)), html_.render(_many(30_000))
    assert len(large) < 1.05 * len(small)
    assert len(large.encode()) < 5_000_000
    assert "29,800 more are not" in _section(large, "chains")
    assert "28,000 more are not" in _section(large, "findings")


def test_an_unknown_link_status_is_drawn_but_not_a_class():
    link = Link("task", "t-1", f"odd{SCRIPT}", "label", None)
    action = dataclasses.replace(ACTIONS[2], links=(link,))
    out = html_.render(dataclasses.replace(empty_report(), actions=(action,)))
    assert '<g class="lk-other">' in out and "odd&lt;script&gt;" in out


def test_a_finding_without_an_action_record_still_gets_a_chain_card(report):
    chains = _section(html_.render(report), "chains")
    assert "vault-<wbr>9</code> — no audited-action record" in chains
    assert isinstance(FINDINGS[3], Finding)


def test_chains_rank_the_same_whether_findings_are_on_their_actions_or_not(report):
    """report.assemble puts each action's findings on it (the fast path); a hand-built Report may not."""
    findings = tuple(f for f in FINDINGS if f.event_id != "vault-9")  # every finding has its action
    attached = dataclasses.replace(report, findings=findings)
    assert sum(len(a.findings) for a in attached.actions) == len(findings)
    bare = dataclasses.replace(attached, actions=tuple(dataclasses.replace(a, findings=()) for a in ACTIONS))
    for cap in (1, 2, 200):
        assert html_.render(attached, max_chains=cap) == html_.render(bare, max_chains=cap)


def test_compliance_section(report):
    from report_fixtures import COMPLIANCE

    page = html_.render(report, compliance=COMPLIANCE)
    section = page[page.index('<section id="compliance">') : page.index("</section>", page.index('id="compliance"'))]
    text = " ".join(_parse(section).text)
    assert "Compliance: OWASP Top 10 for Agentic Applications" in text
    assert "1 of 2 controls fail" in text
    assert '<td class="fail">FAIL</td>' in section and '<td class="pass">PASS</td>' in section
    assert "2 failing / 3" in section
    assert 'id="compliance"' not in html_.render(report)
