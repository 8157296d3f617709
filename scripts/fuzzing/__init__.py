"""The fuzz battery behind scripts/fuzz.py (see its docstring): seeds, mutators, targets, workers.

A package of its own, beside the script, so that tests/test_fuzz.py can import the mutators and
the regression inputs without running the battery.
"""
