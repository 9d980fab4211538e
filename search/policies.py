"""Stopping rules of the schedulers, without Ray: the same objects decide in a real search
(``search.schedulers`` wraps them as Tune schedulers) and in a replay (``search.replay``).

Time is counted in evaluations (a trial's ``training_iteration``); a rung is an evaluation
count at which trials are compared. Each policy answers one question when a trial reports:
go on, or stop here. None of them pauses trials, so they work with any searcher and any
concurrency limit.

- ``Asha``: asynchronous successive halving as Ray Tune's ``ASHAScheduler`` decides it (one
  bracket): at each rung, a trial below the ``1 - 1/rf`` quantile of the scores recorded there
  before it is stopped. The first arrivals at a rung have nothing to compare with and go on.
- ``Hyperband``: several such brackets, trial ``i`` in bracket ``i mod B``; bracket ``s`` first
  compares at ``grace * rf**s`` evaluations (Li et al.'s hedge against a too-short grace).
- ``Pasha``: progressive ASHA (Bohdal et al., 2023), stopping variant: trials stop at a current
  *top* rung (at first the second rung) unless the ranking there disagrees with the ranking one
  rung below; each disagreement raises the top rung by one, up to the full budget, and the trial
  that revealed it goes on. Two trials' order counts as a disagreement only when both rungs
  separate them by more than ``epsilon`` (the noise a user would not act on). Where the paper
  resumes paused trials, this variant lets the leader of the top rung (the best score there so
  far) go on to the full budget, so the search's pick is a trial trained to the end.
"""

from __future__ import annotations

import math
from collections.abc import Callable

CONTINUE, STOP = "continue", "stop"


def _nanpercentile(values: list[float], q: float) -> float:
    """numpy's nanpercentile (linear interpolation), without numpy; NaN when all are NaN."""
    xs = sorted(v for v in values if not math.isnan(v))
    if not xs:
        return math.nan
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


class Bracket:
    """One bracket of asynchronous successive halving: rungs at ``grace * rf**(k + s)``
    evaluations below ``max_t``, the scores recorded at each."""

    def __init__(self, grace: int, max_t: int, rf: float, s: int = 0) -> None:
        self.rf = rf
        count = int(math.log(max_t / grace) / math.log(rf) - s + 1)
        self.rungs: list[tuple[float, dict[str, float]]] = [
            (grace * rf ** (k + s), {}) for k in reversed(range(count))]  # largest first

    def cutoff(self, recorded: dict[str, float]) -> float | None:
        if not recorded:
            return None
        return _nanpercentile(list(recorded.values()), (1 - 1 / self.rf) * 100)

    def on_result(self, trial: str, t: int, score: float) -> str:
        """Record ``score`` at the highest rung ``t`` has reached that ``trial`` has not been
        recorded at; stop it when it is below that rung's cutoff."""
        for milestone, recorded in self.rungs:
            if t < milestone or trial in recorded:
                continue
            cutoff = self.cutoff(recorded)
            action = STOP if cutoff is not None and score < cutoff else CONTINUE
            recorded[trial] = score
            return action
        return CONTINUE


class Policy:
    """A stopping rule over trials that report a score after each evaluation (higher is
    better). ``on_result`` is called after every evaluation ``t`` (1-based)."""

    name = "policy"

    def __init__(self, max_t: int) -> None:
        self.max_t = max_t

    def add(self, trial: str) -> None:
        """A new trial is about to start."""

    def on_result(self, trial: str, t: int, score: float) -> str:
        raise NotImplementedError

    def on_complete(self, trial: str, t: int, score: float) -> None:
        """A trial ended (any reason); its last result."""

    def remove(self, trial: str) -> None:
        """A trial was removed before it completed (errors)."""


class Fifo(Policy):
    name = "fifo"

    def on_result(self, trial: str, t: int, score: float) -> str:
        return STOP if t >= self.max_t else CONTINUE


class Asha(Policy):
    """Ray Tune's ASHA rule (``brackets=1``, ``stop_last_trials=True``)."""

    name = "asha"

    def __init__(self, max_t: int, grace: int = 1, rf: float = 2.0) -> None:
        super().__init__(max_t)
        self.bracket = Bracket(grace, max_t, rf)

    def on_result(self, trial: str, t: int, score: float) -> str:
        if t >= self.max_t:
            return STOP
        return self.bracket.on_result(trial, t, score)

    def on_complete(self, trial: str, t: int, score: float) -> None:
        self.bracket.on_result(trial, t, score)


class Hyperband(Policy):
    """Asynchronous Hyperband: ``brackets`` ASHA brackets, assigned round-robin."""

    name = "hyperband"

    def __init__(self, max_t: int, grace: int = 1, rf: float = 2.0, brackets: int = 3) -> None:
        super().__init__(max_t)
        most = max(1, int(math.log(max_t / grace) / math.log(rf) + 1))
        self.brackets = [Bracket(grace, max_t, rf, s) for s in range(min(brackets, most))]
        self.of: dict[str, Bracket] = {}

    def add(self, trial: str) -> None:
        self.of.setdefault(trial, self.brackets[len(self.of) % len(self.brackets)])

    def on_result(self, trial: str, t: int, score: float) -> str:
        if t >= self.max_t:
            return STOP
        self.add(trial)
        return self.of[trial].on_result(trial, t, score)

    def on_complete(self, trial: str, t: int, score: float) -> None:
        self.add(trial)
        self.of[trial].on_result(trial, t, score)


class Pasha(Policy):
    """Progressive ASHA, stopping variant (see the module docstring)."""

    name = "pasha"

    def __init__(self, max_t: int, grace: int = 1, rf: float = 2.0, epsilon: float = 0.005) -> None:
        super().__init__(max_t)
        levels = []
        level = float(grace)
        while level < max_t:
            levels.append(level)
            level *= rf
        self.levels = levels + [float(max_t)]
        self.scores: list[dict[str, float]] = [{} for _ in self.levels]
        self.rf, self.epsilon = rf, epsilon
        self.top = min(1, len(self.levels) - 1)

    @property
    def top_t(self) -> float:
        """The evaluations a trial gets today unless the ranking proves unstable."""
        return self.levels[self.top]

    def on_result(self, trial: str, t: int, score: float) -> str:
        k = max((i for i, lv in enumerate(self.levels) if t >= lv and trial not in self.scores[i]),
                default=None)
        if k is None:
            return CONTINUE
        recorded = self.scores[k]
        below = bool(recorded) and score < _nanpercentile(list(recorded.values()), (1 - 1 / self.rf) * 100)
        recorded[trial] = score
        if k == len(self.levels) - 1:
            return STOP
        if k != self.top:  # below the top rung, or a leader on its way to the full budget
            return STOP if below else CONTINUE
        # A new score at the top rung: if it shows the two top rungs ranking differently, the
        # budget is raised by a rung, and this trial (unless below the cutoff) goes on to it.
        raised = self.top < len(self.levels) - 1 and self._disagree(self.top)
        if raised:
            self.top += 1
            return STOP if below else CONTINUE
        # The best trial at the top rung so far goes on to the full budget: the search's pick
        # is always a trial trained to the end (and scored on the whole dev set), never one that
        # a raised top rung left behind.
        leads = all(score >= s for t, s in recorded.items() if t != trial and not math.isnan(s))
        return CONTINUE if leads and not math.isnan(score) else STOP

    def _disagree(self, k: int) -> bool:
        """Do rungs ``k`` and ``k - 1`` order some pair of their common trials differently,
        each by more than ``epsilon``?"""
        upper, lower = self.scores[k], self.scores[k - 1]
        both = [t for t in upper if t in lower and not math.isnan(upper[t]) and not math.isnan(lower[t])]
        eps = self.epsilon
        for i, a in enumerate(both):
            for b in both[i + 1:]:
                d_low, d_up = lower[a] - lower[b], upper[a] - upper[b]
                if (d_low > eps and d_up < -eps) or (d_low < -eps and d_up > eps):
                    return True
        return False


POLICIES: dict[str, Callable[..., Policy]] = {
    "asha": lambda max_t, grace, rf: Asha(max_t, grace, rf),
    "hyperband": lambda max_t, grace, rf: Hyperband(max_t, grace, rf),
    "pasha": lambda max_t, grace, rf: Pasha(max_t, grace, rf),
    "fifo": lambda max_t, grace, rf: Fifo(max_t),
}
"""Name -> ``(max_t, grace_period, reduction_factor) -> Policy``."""


def make_policy(name: str, max_t: int, grace: int = 1, rf: float = 2.0) -> Policy:
    if name not in POLICIES:
        raise ValueError(f"unknown scheduler {name!r}; choose one of: {', '.join(POLICIES)}")
    return POLICIES[name](max_t, grace, rf)
