"""HTML report speed and size on synthetic Reports of N actions and N findings.

    python benchmarks/report_html.py 100000 1000000

For each N: the time to build nothing but the page (``html_.render``) and its size; then, for the
largest N, the time headless Chromium takes to load and lay out the page (``--dump-dom`` and
``--screenshot``), minus its start-up on an empty page. Goal at 1M: under 20 MB, opening in seconds.

The Report is built in Python (no store): each action has a six-link chain with distinct ids, the
findings spread over five rules and all severities, 2,000 agents and N/3 tasks over one day.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nhiaudit.model import SEVERITIES, AuditedAction, Evidence, Finding, Link, Report
from nhiaudit.reports import html_

RULES = (
    ("credential-without-task", "high"),
    ("long-lived-credential", "medium"),
    ("out-of-scope-action", "high"),
    ("approval-denied", "critical"),
    ("unknown-task", "low"),
)
VERDICTS = ("approved", "unapproved", "unknown")
STATUSES = ("found", "found", "missing", "conflict", "not_required")
# The browser test's flags: the page is measured as that test renders it.
sys.path[:0] = [
    str(Path(__file__).resolve().parents[1] / "tests"),
    str(Path(__file__).resolve().parents[1] / "tests" / "reports"),
]
from test_html_browser import BROWSER_FLAGS as FLAGS  # noqa: E402


def synthetic(n: int) -> Report:
    findings: list[Finding] = []
    actions: list[AuditedAction] = []
    for i in range(n):
        event_id = f"e{i:08d}-0000-4000-8000-{i:012d}"
        when = f"2026-11-02T{i * 24 // n:02d}:{i * 1440 // n % 60:02d}:{i % 60:02d}Z"
        evidence = Evidence("cloudtrail", event_id, f"/srv/evidence/ct/{i % 400:03d}.json.gz", "ab" * 32, i, i + 1)
        actor = f"arn:aws:sts::111122223333:assumed-role/agent-{i % 2000}/session-{i}"
        task = f"t-{i // 3:07d}"
        links = (
            Link("action", event_id, "found", f"s3:PutObject by {actor}", evidence),
            Link("credential", f"ASIA{i:016d}", "found", f"aws_temporary_key held by {actor}", evidence),
            Link("issuance", f"iss-{i:08d}", STATUSES[i % 5], "issued by AssumeRole", evidence),
            Link("parent", f"AKIA{i % 50:016d}", "found", "broker", evidence, depth=1),
            Link("task", task, STATUSES[(i + 1) % 5], "agent task", None),
            Link("approval", f"APR-{i // 3}", STATUSES[(i + 2) % 5], "approved by alice@example.com", None),
            Link("authority", "change-manager", STATUSES[(i + 3) % 5], "held change-manager", None),
        )
        verdict = VERDICTS[i % 3]
        rule, severity = RULES[i % len(RULES)]
        if i % 7 == 0:
            severity = SEVERITIES[i % len(SEVERITIES)]
        finding = Finding(
            rule=rule,
            severity=severity,
            title=rule.replace("-", " "),
            message=f"{rule} fired on s3:PutObject by {actor} with credential ASIA{i:016d} in task {task}",
            source="cloudtrail",
            event_id=event_id,
            occurred_at=when,
            actor_id=actor,
            credential_id=f"ASIA{i:016d}",
            task_id=task,
            agent_id=f"agent-{i % 2000}",
            action="s3:PutObject",
            resource=f"arn:aws:s3:::reports-prod/2026/11/{i}.csv",
            evidence=evidence,
            frameworks=("NHI7:2025", "AC-6"),
            fingerprint=f"{i:032d}",
            waived=i % 50 == 0,
        )
        findings.append(finding)
        actions.append(  # with its findings on it, as report.assemble builds them
            AuditedAction(
                "cloudtrail",
                event_id,
                when,
                actor,
                "s3:PutObject",
                finding.resource,
                "high",
                verdict,
                links,
                (finding,),
            )
        )
    rank = {s: r for r, s in enumerate(SEVERITIES)}
    findings.sort(key=lambda f: (-rank[f.severity], f.occurred_at, f.source, f.event_id, f.rule))
    return Report(
        generated_at="2026-11-03T00:00:00Z",
        tool_version="bench",
        policy_path=None,
        fail_on="high",
        rules=(),
        findings=tuple(findings),
        actions=tuple(actions),
    )


def browser_seconds(browser: str, page: Path, mode: str, work: Path) -> float:
    """Wall time of one headless Chromium run on ``page`` (``dom`` or ``screenshot``)."""
    args = ["--dump-dom"] if mode == "dom" else [f"--screenshot={work / 'shot.png'}", "--window-size=1300,2000"]
    profile = work / f"profile-{mode}-{page.stem}"
    started = time.perf_counter()
    done = subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
        capture_output=True,
        timeout=600,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"chromium failed on {page}: {done.stderr.decode(errors='replace')[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[100_000, 1_000_000])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nhiaudit-html-bench-"))
    pages = []
    try:
        for n in args.sizes:
            started = time.perf_counter()
            report = synthetic(n)
            built = time.perf_counter() - started
            started = time.perf_counter()
            text = html_.render(report)
            rendered = time.perf_counter() - started
            page = work / f"report-{n}.html"
            page.write_text(text, encoding="utf-8")
            size = page.stat().st_size
            print(
                f"N={n:>9,}: report built in {built:6.1f} s; html_.render {rendered:6.2f} s; "
                f"{size / 1e6:6.2f} MB ({size:,} bytes)",
                flush=True,
            )
            pages.append((n, page))
            del report, text
        browser = shutil.which("chromium") or shutil.which("chromium-browser")
        if browser is None:
            print("chromium not installed: browser load time not measured (apt-get install chromium)")
            return
        blank = work / "blank.html"
        blank.write_text("<!DOCTYPE html><title>blank</title>\n", encoding="utf-8")
        for mode in ("dom", "screenshot"):
            base = min(browser_seconds(browser, blank, mode, work) for _ in range(2))
            n, page = pages[-1]
            seconds = browser_seconds(browser, page, mode, work)
            print(
                f"N={n:>9,}: headless chromium --{'dump-dom' if mode == 'dom' else 'screenshot'} "
                f"{seconds:6.2f} s (start-up on an empty page {base:.2f} s: the page itself ~{seconds - base:.2f} s)",
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
