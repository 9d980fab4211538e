"""What a trial reports to Tune, and where the rest of its numbers travel.

Tune keeps, in the driver and for the whole search, a running analysis of every numeric key a
trial ever reported (min, max, mean, last, means of the last 5 and 10 values, with their
windows) and saves it in the experiment state. With the ~35 numbers of a trainer evaluation
that came to ~32 KB per trial (34 MB at 1,000 trials; BENCHMARKS.md §13-§14). Scheduling,
searching and resuming need only the score, the step and the trained share (the two-objective
searcher's second objective), so a trial reports those as numbers and every other number as
one JSON string under ``details``, which Tune stores once and does not analyse. ``expand``
gives a consumer the whole flat result back (MLflow metrics, the results table, the pick's
record). No Ray import.
"""

from __future__ import annotations

import json
import math
from typing import Any

SCHEDULING = ("score", "step", "stored_pct")
"""The numbers Tune sees: ASHA/PASHA rank by score, Optuna reads score (and stored_pct with
``--objective score,params``), progress and MLflow place each report at its step."""
DETAILS = "details"


def for_tune(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` with every number outside ``SCHEDULING`` moved into one ``details`` string
    (strings and the scheduling numbers stay as they are)."""
    kept = {k: v for k, v in metrics.items() if k in SCHEDULING or not is_number(v)}
    rest = {k: (float(v) if math.isfinite(v) else None)
            for k, v in metrics.items() if k not in kept}
    if rest:
        kept[DETAILS] = json.dumps(rest, separators=(",", ":"))
    return kept


def expand(result: dict[str, Any] | None) -> dict[str, Any]:
    """A Tune result with its ``details`` back as keys of their own (a result without them, or
    with an unreadable string, is returned as it is; a non-finite number comes back as NaN)."""
    result = dict(result or {})
    packed = result.pop(DETAILS, None)
    if isinstance(packed, str):
        try:
            more = json.loads(packed)
        except ValueError:
            return result
        for k, v in more.items():
            result.setdefault(k, math.nan if v is None else v)
    return result


def is_number(v: Any) -> bool:
    """An int or float that is not a bool (what Tune would analyse as a metric)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)
