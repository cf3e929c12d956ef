"""Compare a run with a previous JSON report (``--baseline F``): which findings are new, which fixed.

Findings match on ``fingerprint`` (a hash of rule, source and event id, stable across runs), so a
reworded message or a changed severity is still the same finding. With a baseline, ``--fail-on``
counts new findings only (``Report.summary``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from nhiaudit.errors import NhiauditError
from nhiaudit.model import Finding

_HOW_TO_FIX = "Pass a report written by `nhiaudit report --json FILE`."


def apply_baseline(
    findings: Sequence[Finding], previous_json: str, where: str = "baseline"
) -> tuple[tuple[Finding, ...], tuple[dict[str, Any], ...]]:
    """Mark each finding ``new`` or ``unchanged``; return them and the previous findings now absent.

    ``where`` names the baseline in error messages (the CLI passes the file path).
    """
    previous = load_previous_findings(previous_json, where)
    before = {item["fingerprint"] for item in previous}
    marked = tuple(replace(f, baseline="unchanged" if f.fingerprint in before else "new") for f in findings)

    now = {f.fingerprint for f in findings}
    fixed: list[dict[str, Any]] = []
    listed: set[str] = set()
    for item in previous:
        fingerprint = item["fingerprint"]
        if fingerprint not in now and fingerprint not in listed:
            listed.add(fingerprint)
            fixed.append(item)
    return marked, tuple(fixed)


def load_previous_findings(previous_json: str, where: str = "baseline") -> list[dict[str, Any]]:
    """The ``findings`` of a previous nhiaudit JSON report, checked enough to match on."""
    try:
        document = json.loads(previous_json)
    except json.JSONDecodeError as e:
        raise NhiauditError(f"{where}:{e.lineno}: not valid JSON ({e.msg}). {_HOW_TO_FIX}") from None
    if not isinstance(document, dict):
        raise NhiauditError(f"{where}: not an nhiaudit JSON report (not a JSON object). {_HOW_TO_FIX}")
    if "runs" in document and "findings" not in document:
        raise NhiauditError(f"{where}: this is a SARIF file, not an nhiaudit JSON report. {_HOW_TO_FIX}")
    tool = document.get("tool")
    if not isinstance(tool, dict) or tool.get("name") != "nhiaudit":
        raise NhiauditError(
            f'{where}: not an nhiaudit JSON report (no "tool": {{"name": "nhiaudit"}}). {_HOW_TO_FIX}'
        )
    findings = document.get("findings")
    if not isinstance(findings, list):
        raise NhiauditError(f'{where}: "findings" is missing or not a list. {_HOW_TO_FIX}')
    for i, item in enumerate(findings):
        if not isinstance(item, dict) or not isinstance(item.get("fingerprint"), str):
            raise NhiauditError(
                f'{where}: findings[{i}] has no "fingerprint"; the report is from an older nhiaudit '
                f"or was edited. {_HOW_TO_FIX}"
            )
    return findings
