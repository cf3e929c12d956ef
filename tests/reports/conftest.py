"""Fixtures for the report writer tests: the hostile Report (see report_fixtures.py). The ``schemas``
fixture is tests/conftest.py's."""

from __future__ import annotations

import pytest
from report_fixtures import empty_report, hostile_report

from nhiaudit.model import Report


@pytest.fixture
def report() -> Report:
    return hostile_report()


@pytest.fixture(params=["hostile", "empty"])
def any_report(request: pytest.FixtureRequest) -> Report:
    return hostile_report() if request.param == "hostile" else empty_report()
