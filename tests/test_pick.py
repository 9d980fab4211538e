"""The search's pick: the best last score among the trials that ran furthest, where a trial that
trained its own whole (searched) budget counts as furthest."""

from __future__ import annotations

from types import SimpleNamespace

from search.results import pick_best


def _result(tid: str, score: float, iters: int, step: int, max_steps: int):
    metrics = {"trial_id": tid, "score": score, "training_iteration": iters, "step": step}
    return SimpleNamespace(metrics=metrics, error=None, config={"method": "adapter", "max_steps": max_steps})


def test_a_trial_that_trained_its_own_shorter_budget_competes_with_the_longest():
    short = _result("short", 0.594, 1, 12, 12)  # ended at its own budget: whole dev scored
    long = _result("long", 0.5625, 2, 50, 50)
    stopped = _result("stopped", 0.70, 1, 25, 50)  # stopped by the scheduler on a subset
    assert pick_best([long, short, stopped]).metrics["trial_id"] == "short"
    assert pick_best([long, stopped]).metrics["trial_id"] == "long"
    # a stopped trial's subset score never wins, however high, while some trial finished
    assert pick_best([stopped, _result("weak", 0.30, 2, 50, 50)]).metrics["trial_id"] == "weak"
    # with no trial finished, the furthest evaluation count decides, as before
    assert pick_best([stopped, _result("two", 0.40, 2, 50, 100)]).metrics["trial_id"] == "two"
