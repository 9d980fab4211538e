"""How a trial ended: the one definition of "failed", "stopped early" and "finished".

The results table, the terminal progress and the MLflow tags all ask this module, so a trial
is never counted as stopped early in one place and failed in another. No Ray import.
"""

from __future__ import annotations

import math
from typing import Any

FAILED, STOPPED_EARLY, FINISHED = "failed", "stopped early", "finished"


def failed(last_result: dict[str, Any] | None, errored: bool = False) -> bool:
    """A trial that errored, or stopped itself on a NaN/inf loss or out of memory (it then
    reports a NaN score and its ``failure``)."""
    return errored or bool((last_result or {}).get("failure"))


def outcome(last_result: dict[str, Any] | None, max_t: int, errored: bool = False) -> str:
    """The fate of a trial from its last reported result: ``FAILED`` when it errored or stopped
    itself on a NaN/inf loss or out of memory (it then reports a ``failure``), ``STOPPED_EARLY``
    when it reported fewer than ``max_t`` evaluations, ``FINISHED`` otherwise.

        >>> outcome({"training_iteration": 1}, max_t=3)
        'stopped early'
        >>> outcome({"training_iteration": 1, "failure": "non-finite loss"}, max_t=3)
        'failed'
    """
    if failed(last_result, errored):
        return FAILED
    last = last_result or {}
    return STOPPED_EARLY if int(last.get("training_iteration", 0)) < max_t else FINISHED


def furthest_best(last: dict[str, tuple[int, float]]) -> str | None:
    """The best trial of a search from each trial's (evaluations run, last score): the best
    score among the trials that ran furthest. Scores of trials stopped at different rungs are
    not compared (an early rung scores a small dev subset: a lucky draw there must not beat a
    whole-dev score at the full budget). None when no score is finite."""
    finite = {t: (i, s) for t, (i, s) in last.items() if math.isfinite(s)}
    if not finite:
        return None
    furthest = max(i for i, _ in finite.values())
    return max((t for t, (i, _) in finite.items() if i == furthest), key=lambda t: finite[t][1])
