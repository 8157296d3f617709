"""The suite's own rules: under CI=true a skipped test fails (tests/ci_skips.py)."""

from __future__ import annotations

import pytest

from tests import ci_skips

SKIPPING = {
    "test_missing_package": "import pytest\npytest.importorskip('no_such_package_here')\n\ndef test_a():\n    pass\n",
    "test_missing_tool": (
        "import pytest\n\ndef test_b():\n    pytest.skip('chromium is not installed')\n\n"
        "@pytest.mark.xfail(reason='a known bug')\ndef test_c():\n    assert False\n\n"
        "def test_d():\n    pass\n"),
}


def test_skips_pass_on_a_developer_machine(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(**SKIPPING)
    result = pytester.runpytest("-p", "no:randomly", plugins=[ci_skips])
    result.assert_outcomes(passed=1, skipped=2, xfailed=1)


def test_skips_fail_under_ci(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile(**SKIPPING)
    result = pytester.runpytest("-p", "no:randomly", "--continue-on-collection-errors", plugins=[ci_skips])
    result.assert_outcomes(passed=1, failed=1, errors=1, xfailed=1)  # an xfail is not a skip
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*skipped under CI=true*chromium is not installed*",
                                 "*skipped under CI=true*no_such_package_here*"])
