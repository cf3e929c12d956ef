"""Fixtures for the report writer tests: the hostile Report (see report_fixtures.py) and the schemas."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_fixtures import SCHEMAS, empty_report, hostile_report

from nhiaudit.model import Report


@pytest.fixture
def report() -> Report:
    return hostile_report()


@pytest.fixture(params=["hostile", "empty"])
def any_report(request: pytest.FixtureRequest) -> Report:
    return hostile_report() if request.param == "hostile" else empty_report()


@pytest.fixture
def schemas() -> Path:
    if not SCHEMAS.is_dir():
        pytest.skip(f"schemas not found at {SCHEMAS}")
    return SCHEMAS
