"""Benchmarks behind ``pipeline bench ...``: each measures a target from an issue against a
baseline measured in the same run and prints ratios, never absolute pass/fail verdicts alone."""
