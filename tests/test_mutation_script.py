"""scripts/mutation.py's own arithmetic: mutmut's mangled names for a scope, and the interval a
sampled score is reported with (the tool that measures the tests needs tests of its own)."""

from __future__ import annotations

import argparse

import pytest

from scripts.mutation import MODULES, mutant_globs, scope_globs, wilson_interval


def test_scope_globs_spell_functions_and_methods_as_mutmut_does() -> None:
    assert scope_globs("mnist_edge/parity.py", ("check", "Thresholds.validate")) == [
        "mnist_edge.parity.x_check__mutmut_*", "mnist_edge.parity.xǁThresholdsǁvalidate__mutmut_*"]
    assert scope_globs("mnist_edge/search/space.py", ()) == []


def test_given_mutants_replace_the_modules_scope() -> None:
    args = argparse.Namespace(mutants=" a.x_f__mutmut_1 , b* ")
    assert mutant_globs(args, "mnist_edge/parity.py") == ["a.x_f__mutmut_1", "b*"]
    scoped = mutant_globs(argparse.Namespace(mutants=""), "mnist_edge/parity.py")
    assert scoped == scope_globs("mnist_edge/parity.py", MODULES["mnist_edge/parity.py"].scope) and scoped


@pytest.mark.parametrize("killed, judged, low, high", [
    (85, 100, 76.7, 90.7),    # the textbook case: p = 0.85, n = 100
    (100, 100, 96.3, 100.0),  # all killed: the interval still admits survivors in the population
    (0, 10, 0.0, 27.8),
    (12, 12, 75.7, 100.0),
])
def test_the_wilson_interval_of_a_sampled_score(killed: int, judged: int, low: float, high: float) -> None:
    assert wilson_interval(killed, judged) == (low, high)


def test_the_interval_narrows_as_the_sample_grows_and_holds_the_rate() -> None:
    widths = []
    for judged in (20, 80, 320):
        low, high = wilson_interval(int(judged * 0.9), judged)
        assert low < 90.0 < high
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]
