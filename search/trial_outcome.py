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


def progress(iterations: int, step: float | None, max_steps: float | None) -> float:
    """How far a trial got, for ``furthest_best``: its evaluations, or infinity when it trained
    its own whole budget (``step >= max_steps``). A trial whose searched ``max_steps`` is shorter
    than others' ends after fewer evaluations, its last one on the whole dev set at its own full
    budget: it is as finished as the longest trial, not stopped early.

        >>> progress(1, 12, 50), progress(1, 25, 50) < progress(2, 25, 100)
        (1, True)
        >>> progress(1, 12, 12)
        inf
    """
    if step is not None and max_steps is not None and step >= max_steps:
        return math.inf
    return iterations


def furthest_best(last: dict[str, tuple[float, float]]) -> str | None:
    """The best trial of a search from each trial's (progress, last score): the best score
    among the trials that ran furthest (``progress``: its evaluations, or infinity for a trial
    that trained its own whole budget). Scores of trials stopped at different rungs are
    not compared (an early rung scores a small dev subset: a lucky draw there must not beat a
    whole-dev score at the full budget). None when no score is finite."""
    finite = {t: (i, s) for t, (i, s) in last.items() if math.isfinite(s)}
    if not finite:
        return None
    furthest = max(i for i, _ in finite.values())
    return max((t for t, (i, _) in finite.items() if i == furthest), key=lambda t: finite[t][1])
