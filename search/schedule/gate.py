"""May a new trial start? The budget gate of ``--budget``'s pool (``search.schedule.pool``), Ray-free
so the replay of the pool (``search.schedule.budget_replay``) runs the same arithmetic.
"""

from __future__ import annotations

import time

SLOWED = "they ran far slower than measured: is other work sharing the machine?"
"""Why runs held their slots past the budget left, as the stops say it."""

RESERVE_SHARE = 0.3
"""Of the budget, what the pool leaves for the race and the fresh seeds (at least)."""


class Gate:
    """May a new trial start? Budget left minus the confirmation reserve must pay for what the
    running trials may still spend (their evaluations left, at their method's measured seconds
    per evaluation) and for the new trial run to its end. Before a method has reported, its cost
    is the mean of the measured methods' (or unknown: the trial starts, the first of a method
    always being the one that measures it). With ``--deadline`` the ledger's budget left is at
    most the slots times the time to it, and the new trial must end before it."""

    def __init__(self, ledger, reserve_s: float, max_t: int) -> None:
        self.ledger, self.reserve_s, self.max_t = ledger, reserve_s, max_t
        self.per_eval: dict[str, list[float]] = {}
        """method -> seconds of each evaluation reported (the first includes the trial's set-up)."""
        self.running: dict[str, tuple[str, int]] = {}
        """trial -> (method, evaluations reported)."""
        self.first: list[float] = []
        """Seconds of each trial's first evaluation (set-up included)."""
        self.since: dict[str, float] = {}
        """trial -> when (epoch seconds) it started or last reported: what it holds unreported."""

    def eval_s(self, method: str) -> float | None:
        own = self.per_eval.get(method)
        if own:
            return sum(own) / len(own)
        seen = [sum(v) / len(v) for v in self.per_eval.values() if v]
        return sum(seen) / len(seen) if seen else None

    def committed_s(self) -> float:
        """Seconds the running trials may still spend if none is stopped."""
        total = 0.0
        for method, done in self.running.values():
            cost = self.eval_s(method)
            total += (cost or 0.0) * max(0, self.max_t - done)
        return total

    def allows(self, method: str) -> bool:
        cost = self.eval_s(method)
        if cost is None:
            return self.ledger.left - self.reserve_s > 0 and not self.ledger.past_deadline()
        # the ledger's own test: inside the budget left (and before --deadline, when set)
        return self.ledger.fits(cost * self.max_t, committed=self.reserve_s + self.committed_s())

    def started(self, trial: str, method: str) -> None:
        self.running[trial] = (method, 0)
        self.since[trial] = time.time()

    def reported(self, trial: str, method: str, t: int, seconds: float) -> None:
        self.per_eval.setdefault(method, []).append(seconds)
        if t == 1:
            self.first.append(seconds)
        self.running[trial] = (method, t)
        self.since[trial] = time.time()

    def in_flight(self, now: float | None = None) -> dict[str, float]:
        """Running trial -> the seconds it has held its slot since it started or last reported
        (not yet charged: the ledger is charged per report)."""
        now = time.time() if now is None else now
        return {trial: max(0.0, now - self.since.get(trial, now)) for trial in self.running}

    def overrun(self, now: float | None = None) -> str | None:
        """Why the running trials must stop now, or None. Either what they hold unreported has
        spent the whole budget left, reserve included: only when they run far slower than measured
        (a machine that other work slowed down, BENCHMARKS §15), as the pool admits a trial only
        while its estimate fits the budget less the reserve. Or ``--deadline`` is
        ``STOP_AHEAD_S`` away. The held seconds are set against the budget alone: the deadline's
        cap on what is left counts time to come, not time the trials already held."""
        if not self.running:
            return None
        if self.ledger.past_deadline(now):
            return "--deadline is here"
        if sum(self.in_flight(now).values()) >= self.ledger.budget_left:
            return f"the running trials held their slots past the budget left ({SLOWED})"
        return None

    def restarted(self, now: float | None = None) -> None:
        """After a restore in a new process: the running trials hold their slots from now on
        (the time the search was stopped is not theirs)."""
        now = time.time() if now is None else now
        self.since = {trial: now for trial in self.running}

    @property
    def cold_start_s(self) -> float:
        """What a trial on a new worker process pays once more than one on a warm worker: the
        longest first evaluation less the median one (imports, a first model load). Every new
        Tune experiment (a race round, the fresh seeds) starts on new workers."""
        if len(self.first) < 2:
            return max(self.first, default=0.0)
        ordered = sorted(self.first)
        return ordered[-1] - ordered[len(ordered) // 2]

    def ended(self, trial: str) -> None:
        self.running.pop(trial, None)
        self.since.pop(trial, None)
