"""Properties every writer in WRITERS must have: deterministic, one wall-clock value, hostile input inert."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re

import pytest
import typer.main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from report_fixtures import GENERATED_AT, hostile_report

from nhiaudit import cli
from nhiaudit.model import Report
from nhiaudit.reports import WRITERS

# Characters that must never reach an output raw: C0 controls but TAB/LF/CR, DEL, C1 (incl. the
# one-byte CSI U+009B), bidi overrides/isolates, lone surrogates.
UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")

FORMATS = sorted(WRITERS)
# Formats whose consumers (spreadsheets, data tools) need log values byte for byte: markup in them is
# data, not markup. They still spell out control characters and neutralize formulas.
DATA_FORMATS = {"csv"}


def test_every_writer_is_a_report_option():
    """WRITERS is the list of formats: each one is written by ``nhiaudit report --<fmt> FILE``."""
    report_command = typer.main.get_command(cli.app).commands["report"]
    options = {option for param in report_command.params for option in param.opts}
    assert [fmt for fmt in WRITERS if f"--{fmt}" not in options] == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_same_report_same_bytes(fmt, any_report):
    first = WRITERS[fmt](any_report)
    assert isinstance(first, str)
    assert WRITERS[fmt](any_report) == first
    # An equal but distinct Report (fresh dicts, fresh objects) must not change a byte either.
    assert WRITERS[fmt](copy.deepcopy(any_report)) == first


@pytest.mark.parametrize("fmt", FORMATS)
def test_generated_at_is_the_only_clock_and_used_at_most_once(fmt, report):
    later = dataclasses.replace(report, generated_at="2031-01-01T00:00:00Z")
    before, after = WRITERS[fmt](report), WRITERS[fmt](later)
    assert before.count(GENERATED_AT) <= 1
    changed = [
        line
        for line in difflib.ndiff(before.splitlines(), after.splitlines())
        if line.startswith(("- ", "+ "))
    ]
    assert len(changed) <= 2, changed  # at most one line removed and one added


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_terminal_or_control_characters_survive(fmt, report):
    out = WRITERS[fmt](report)
    assert "\x1b" not in out
    assert not UNSAFE.search(out), repr(UNSAFE.search(out))


@pytest.mark.parametrize("fmt", FORMATS)
def test_script_tags_never_appear_raw(fmt, report):
    out = WRITERS[fmt](report).lower()
    if fmt in DATA_FORMATS:
        pytest.skip(f"{fmt} carries log values exactly; formula safety is what its consumers need")
    assert "<script" not in out
    assert "</script" not in out


@pytest.mark.parametrize("fmt", FORMATS)
def test_output_ends_with_a_newline(fmt, report):
    assert WRITERS[fmt](report).endswith("\n")


_hostile_text = st.text(
    alphabet=st.characters(blacklist_categories=()), min_size=0, max_size=60
) | st.sampled_from(["]]>", "<script>", "|", "\x1b[2J", "\u202e", "`", "[x](y)", "\ud800", "\uffff"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=_hostile_text, actor=_hostile_text, resource=_hostile_text)
def test_any_text_is_rendered_inert_by_every_writer(message, actor, resource):
    base = hostile_report()
    findings = tuple(
        dataclasses.replace(f, message=message, actor_id=actor, resource=resource) for f in base.findings
    )
    actions = tuple(dataclasses.replace(a, actor_id=actor, resource=resource) for a in base.actions)
    report = Report(**{**_fields(base), "findings": findings, "actions": actions})
    for fmt, render in WRITERS.items():
        out = render(report)
        assert not UNSAFE.search(out), (fmt, UNSAFE.search(out))
        assert "<script" not in out.lower() or fmt in DATA_FORMATS, fmt
        out.encode("utf-8")  # no lone surrogate left to crash the file write


def _fields(report: Report) -> dict[str, object]:
    return {f.name: getattr(report, f.name) for f in dataclasses.fields(report)}


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_writer_takes_the_compliance_result(fmt, report):
    """report --compliance passes the same result to every format; each one shows the controls."""
    from report_fixtures import COMPLIANCE

    out = WRITERS[fmt](report, compliance=COMPLIANCE)
    assert "ASI03" in out and "ASI10" in out, fmt
    assert WRITERS[fmt](report) != out


@pytest.mark.parametrize("fmt", FORMATS)
def test_streamed_output_is_the_rendered_output(fmt, any_report):
    """reports.write streams the formats that can be (JSON, OCSF) piece by piece: same bytes."""
    import io

    from nhiaudit.reports import write

    out = io.StringIO()
    write(fmt, any_report, out)
    assert out.getvalue() == WRITERS[fmt](any_report)


def test_streamed_json_is_the_one_shot_encoding(any_report):
    """Element by element, the JSON report is still exactly json.dumps(document, indent=2)."""
    import json

    from nhiaudit.reports import json_

    text = json_.render(any_report)
    assert text == json_.dumps(json.loads(text), indent=2) + "\n"


def test_json_streams_findings_and_actions(report):
    """The writer takes findings and actions one at a time and writes each before taking the next."""
    import io

    from nhiaudit.reports import json_

    out = io.StringIO()
    seen: dict[str, list[int]] = {"finding": [], "action": []}

    class Lazy:
        """An iterable that notes how much was written each time it hands out an element."""

        def __init__(self, items, name):
            self.items, self.name = items, name

        def __len__(self):
            return len(self.items)

        def __iter__(self):
            for item in self.items:
                seen[self.name].append(out.tell())
                yield item

    class LazyActions(Lazy):
        """As a store's actions: counted and listed without links apart from the full pass."""

        def heads(self):
            return iter(self.items)

        def verdicts(self):
            return report.actions.verdicts()

    lazy = dataclasses.replace(
        report, findings=Lazy(report.findings, "finding"), actions=LazyActions(report.actions, "action")
    )
    json_.write(lazy, out)
    for name, items in (("finding", report.findings), ("action", report.actions)):
        written_pass = seen[name][-len(items) :]  # the writer's own pass (the summary counts first)
        assert written_pass == sorted(set(written_pass)), (name, written_pass)  # strictly increasing
    assert out.getvalue() == json_.render(report)
