"""The HTML report in a real browser: headless Chromium renders the sample world's report (plus one
hostile CloudTrail record whose fields are markup and script) and the test reads the DOM it built.

Skipped with a reason where Chromium is not installed, except on CI, where ``.ci/run`` installs
Debian's ``chromium`` and a missing browser fails the run.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest
from helpers import on_ci

from nhiaudit import ingest, store
from nhiaudit.model import ListedActions
from nhiaudit.policy import load_policy
from nhiaudit.reports import html_
from nhiaudit.session import AuditSession

WORLD = Path(__file__).resolve().parents[2] / "sample_logs"
PINNED = datetime(2026, 11, 3, 0, 0, tzinfo=timezone.utc)
PWN_SCRIPT = "<script>document.title='pwned'</script>"
PWN_IMG = "<img src=x onerror=\"document.title='pwned'\">"
HOSTILE_ID = "e1000000-0000-4000-8000-00000099ff01"
BROWSER_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def chromium() -> str:
    """The Chromium binary; skip without one, fail on CI (``.ci/run`` installs it)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "chromium is not installed (apt-get install chromium); .ci/run installs it"
        if on_ci():
            pytest.fail(f"{message}; CI must not skip the browser test.", pytrace=False)
        pytest.skip(message)
    return found


def dump_dom(browser: str, page: Path, profile: Path) -> str:
    """The DOM Chromium built from ``page``, serialized after load (scripts, had any run, included)."""
    done = subprocess.run(
        [browser, *BROWSER_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.tags: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in_title = tag == "title" and len(self.tags) < 10

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_title:
            self.title += data


def _hostile_world(tmp: Path) -> Path:
    """A copy of the sample world with one more CloudTrail record: a legacy-etl PutObject whose
    object key is a script, in a file whose name is an ``<img onerror>``."""
    world = tmp / "world"
    shutil.copytree(WORLD, world)
    record = json.loads((world / "cloudtrail" / "extra.ndjson").read_text(encoding="utf-8").splitlines()[0])
    key = f"legacy/{PWN_SCRIPT}{PWN_IMG}"
    record["eventID"] = HOSTILE_ID
    record["requestParameters"]["key"] = key
    record["resources"][0]["ARN"] = f"arn:aws:s3:::datalake-prod/{key}"
    record["userAgent"] = PWN_SCRIPT
    (world / "cloudtrail" / f"x{PWN_IMG}.ndjson").write_text(json.dumps(record) + "\n", encoding="utf-8")
    return world


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory):
    browser = chromium()
    tmp = tmp_path_factory.mktemp("browser")
    world = _hostile_world(tmp)
    con = store.connect(tmp / "world.duckdb")
    try:
        ingest.ingest(con, [world])
        report = AuditSession.attach(con, load_policy(world / "nhiaudit.toml")).report(generated_at=PINNED)
        page = tmp / "report.html"  # rendered while the store is open: the report streams its actions
        page.write_text(html_.render(report), encoding="utf-8")
        report = dataclasses.replace(report, actions=ListedActions(report.actions))  # for the tests after
    finally:
        con.close()
    dom = dump_dom(browser, page, tmp / "profile")
    parsed = _Text()
    parsed.feed(dom)
    parsed.close()
    return report, page.read_text(encoding="utf-8"), dom, parsed


def test_the_page_shows_the_verdict_counts_a_rule_and_an_action(rendered):
    report, _, dom, parsed = rendered
    text = "".join(parsed.text)
    verdicts = report.summary["verdicts"]
    for verdict, n in verdicts.items():
        assert re.search(rf'<div class="card"><b>{n:,}</b><span class="verdict-{verdict}">{verdict}</span></div>', dom)
    assert f"{len(report.actions):,}audited actions" in text
    assert "approval-denied" in text  # a rule id, whole (the <wbr> break points add no text)
    assert "cloudtrail:e1000000-0000-4000-8000-000000040002" in text  # an action id
    assert f"cloudtrail:{HOSTILE_ID}" in text
    assert dom.count('<svg class="diagram"') >= 17


def test_no_script_from_the_evidence_runs(rendered):
    report, source, dom, parsed = rendered
    assert any(a.event_id == HOSTILE_ID for a in report.actions.heads()), "the hostile record must be an audited action"
    assert PWN_SCRIPT in "".join(parsed.text)  # shown to the reader, as text
    assert PWN_IMG in "".join(parsed.text)
    assert parsed.title == "nhiaudit report"  # document.title was never set
    assert "pwned" not in parsed.title
    assert "script" not in parsed.tags and "img" not in parsed.tags  # neither became an element
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;" in dom
    assert "<script" not in source.lower()
