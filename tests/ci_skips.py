"""Under CI=true a skipped test is a failed test.

Tests skip when a tool, package or data set is missing (Chromium, torch, MNIST) so that a
developer's partial install still runs what it can. In CI, `.ci/run` installs all of them: a
skip there means the check silently did not happen, which must not pass. Loaded by conftest.py
as a plugin (and by the test of this rule through pytester).
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def _reason(longrepr: object) -> str:
    # A skip's longrepr is (file, line, "Skipped: reason").
    return longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


def _fail(report: pytest.TestReport | pytest.CollectReport) -> None:
    report.outcome = "failed"
    report.longrepr = (f"skipped under CI=true, where .ci/run installs every tool, package and data "
                       f"set the tests need: {_reason(report.longrepr)}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        _fail(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> object:
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped:  # a whole module skipped by importorskip
        _fail(report)
