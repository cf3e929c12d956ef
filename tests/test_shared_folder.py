"""The shared folder (``../shared``: real-format samples, report schemas): without it the tests that need
it skip on a laptop, and on CI (``CI=true``) the run fails instead of passing green on a fraction."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import on_ci, sample

TESTS = Path(__file__).parent

NEEDS_SAMPLES = """
def test_needs_the_samples(samples_dir):
    pass


def test_needs_nothing():
    pass
"""


def _pytest_without_shared(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    """This suite's conftest and helpers, copied where no ``../shared`` exists, run on two tests."""
    tests = tmp_path / "repo" / "tests"
    tests.mkdir(parents=True)
    for name in ("conftest.py", "helpers.py"):
        shutil.copy(TESTS / name, tests / name)
    (tests / "test_needs_samples.py").write_text(NEEDS_SAMPLES, encoding="utf-8")
    (tmp_path / "repo" / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")  # the rootdir, not an ancestor's
    assert not (tmp_path / "shared").exists()
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "tests"],
        cwd=tmp_path / "repo",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_ci_the_tests_that_need_the_samples_skip(tmp_path: Path) -> None:
    run = _pytest_without_shared(tmp_path, ci=None)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed, 1 skipped" in run.stdout


def test_on_ci_a_missing_shared_folder_fails_the_run(tmp_path: Path) -> None:
    run = _pytest_without_shared(tmp_path, ci="true")
    assert run.returncode != 0
    shared = tmp_path / "shared"
    assert f"ERROR: {shared / 'samples'}, {shared / 'schemas'}: not found, and CI is set." in run.stderr
    assert "passed" not in run.stdout


@pytest.mark.parametrize(
    ("value", "expected"), [("true", True), ("1", True), ("TRUE", True), ("false", False), ("0", False), ("", False)]
)
def test_ci_is_set_by_a_true_value(value: str, expected: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", value)
    assert on_ci() is expected


def test_a_missing_sample_file_skips_or_fails_on_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "gone.ndjson"
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="gone.ndjson: not found"):
        sample(missing)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must not skip"):
        sample(missing)
    assert sample(tmp_path) == tmp_path  # a folder that exists is returned as it is
