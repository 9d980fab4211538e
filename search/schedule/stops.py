"""Stopping a ``--budget`` search's Tune experiments before they run past the budget or
``--deadline``: Tune polls a ``Stopper``'s ``stop_all`` on its loop, between reports, so a run slowed
far past its estimate is stopped without waiting for its next evaluation.

After ``--resume`` a restored experiment runs the stopper unpickled from its first run, in
another process. The pool's acts once Tune has restored the pool's state in this process (the
stopper and the searcher were pickled together, so they are one object again). A race round's or
the fresh seeds' hands over to the stopper the resuming process made for that experiment
(``RunsStop.attach``): its clock starts with the resume, its ledger is the one now charged.
"""

from __future__ import annotations

import os
import time

from ray import tune

from search.schedule.budget import Ledger
from search.schedule.gate import SLOWED
from search.schedule.pool import PoolSearcher

_LIVE: dict[str, RunsStop] = {}
"""Experiment name -> the ``RunsStop`` this process made for it."""


class _ExperimentStop(tune.Stopper):
    """A stopper that ends the whole experiment (``stop_all``), never a single trial."""

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False


class OverrunStop(_ExperimentStop):
    """The pool's: ends the experiment once ``PoolSearcher.guard`` fires (the running trials held
    their slots past the budget left, or the deadline is here), while the pool's state is this
    process's (built here, or restored here by Tune)."""

    def __init__(self, pool: PoolSearcher) -> None:
        self.pool = pool

    def stop_all(self) -> bool:
        return os.getpid() == self.pool.pid and self.pool.guard()


class RunsStop(_ExperimentStop):
    """A race round's or the fresh seeds': their runs report once, at their end, so the ledger sees
    nothing while they run. From the experiment's start each of ``min(runs, slots)`` slots counts
    as held (worker start-up included: an upper bound once fewer runs than slots are left), and the
    experiment ends when that has spent the budget left, or ``--deadline`` is
    ``STOP_AHEAD_S`` away. ``why`` then says which, and ``unreported_s`` what the caller charges for
    the runs stopped before their report."""

    def __init__(self, ledger: Ledger, runs: int, slots: int, now: float | None = None) -> None:
        self.ledger, self.slots = ledger, max(1, min(int(runs), int(slots)))
        self.start = time.time() if now is None else now
        self.pid = os.getpid()
        self.why: str | None = None
        self.at: float | None = None
        """When it fired (epoch seconds)."""
        self.experiment: str | None = None

    def attach(self, experiment: str) -> RunsStop:
        """Make this the stop of Tune experiment ``experiment`` in this process: a copy of an earlier
        one that a restored experiment unpickled asks this one."""
        self.experiment = experiment
        _LIVE[experiment] = self
        return self

    def held_s(self, now: float | None = None) -> float:
        """Slot-seconds the experiment has held (at most): its slots times the time since its start."""
        return self.slots * max(0.0, (time.time() if now is None else now) - self.start)

    def check(self, now: float | None = None) -> str | None:
        """Why the experiment must end now, or None (it has not fired: ``stop_all`` keeps it)."""
        if self.ledger.past_deadline(now):
            return "--deadline is here"
        if self.held_s(now) >= self.ledger.budget_left:
            return f"its runs held {self.slots} slot(s) past the budget left ({SLOWED})"
        return None

    def stop_all(self) -> bool:
        live = _LIVE.get(self.experiment) if self.experiment is not None else None
        if live is not None and live is not self:
            return live.stop_all()  # a restored experiment's copy: the resuming process's stop acts
        if os.getpid() != self.pid:
            return False
        if self.why is None:
            now = time.time()
            self.why = self.check(now)
            self.at = now if self.why is not None else None
        return self.why is not None

    def unreported_s(self, reported_s: float) -> float:
        """What the stopped runs held beyond the seconds the experiment's runs reported: the slots
        from the start to the stop, less those seconds (0 when it did not fire)."""
        return 0.0 if self.at is None else self._held_less(self.at, reported_s)

    def _held_less(self, at: float, reported_s: float) -> float:
        return max(0.0, self.held_s(at) - max(0.0, reported_s))

    def charge_interrupted(self, method: str, results, now: float | None = None) -> float:
        """Ctrl-C stopped the experiment: charge what its slots held since this process started it
        (``start``) less the seconds of ``results`` (Tune's) that ended since, which are charged
        when ``--resume`` collects them, as ``<experiment>/interrupted-<time>``; the runs stopped
        before their report run again after ``--resume``. Returns the seconds (an upper bound:
        every slot counts as held)."""
        now = time.time() if now is None else now
        ended = sum(float(m.get("time_total_s", 0.0) or 0.0) for m in (r.metrics or {} for r in results)
                    if float(m.get("timestamp", 0) or 0) >= self.start - 1)
        seconds = self._held_less(now, ended)
        self.ledger.charge("interrupted", method, seconds, run_id=f"{self.experiment}/interrupted-{now:.0f}",
                           index=1)
        return seconds

    def charge_stopped(self, method: str, reported_s: float) -> float:
        """Charge ``unreported_s`` to ``method`` as ``<experiment>/stopped``; returns the seconds."""
        seconds = self.unreported_s(reported_s)
        self.ledger.charge("confirm", method, seconds, run_id=f"{self.experiment}/stopped", index=1)
        return seconds
