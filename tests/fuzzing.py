"""Hypothesis settings shared by the fuzz tests, chosen by ``CLEANCUT_FUZZ_PROFILE``.

- ``ci`` (default): few examples, derandomized (the same examples every run, so CI never flakes
  on a new one), no example database written to the checkout;
- ``long``: thousands of random examples, with the database in ``.hypothesis/`` so a failure found
  once is replayed first next time::

    CLEANCUT_FUZZ_PROFILE=long CLEANCUT_MODEL_DIR=... .venv/bin/python -m pytest \\
        tests/test_fuzz.py tests/server/test_fuzz_api.py -p no:timeout
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

__all__ = ["LONG", "fuzz_settings"]

LONG = os.environ.get("CLEANCUT_FUZZ_PROFILE", "ci") == "long"
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]


def fuzz_settings(ci_examples: int, long_examples: int = 5_000) -> settings:
    if LONG:
        return settings(max_examples=long_examples, deadline=None, suppress_health_check=_QUIET)
    return settings(max_examples=ci_examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=_QUIET)
