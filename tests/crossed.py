"""Simulated confirmation outputs whose true score is known: the crossed seeds x rows design.

The simulator lives in ``benchmarks/simulate.py`` (benchmarks import it too; tests/ is no
package); the tests import it from here as before. See that module for the model.
"""

from __future__ import annotations

from benchmarks.simulate import (  # noqa: F401  (re-exported)
    Noise,
    Outcome,
    binary,
    correct,
    exact_difference,
    racing_outcomes,
    rows_of,
)
