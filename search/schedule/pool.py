"""One pool of trials for every method: the Tune side of ``--budget`` (issue 26).

Today's searches run each method as its own Tune experiment, one after another, so a method that
trails after its first rungs still gets all its trials and, on a cluster, the last trials of one
method leave slots idle before the next starts. Here all methods' trials share one experiment:

- ``PoolSearcher`` holds one searcher per method (each with its own space, constants and first
  trials: the defaults, then any warm start) and, for each new trial, asks the
  ``MethodAllocator`` which live method gets it. It sees every result (Tune sends them to the
  searcher as well as to the scheduler), so it feeds the allocator, charges the ledger and stops
  proposing when what is left of the budget cannot pay for another trial to its end.
- ``PoolScheduler`` keeps one stopping policy per method (rungs compare a method's trials with
  each other, never lora's with adapter's: their scores at equal steps mean different things).

Why the searcher owns the allocator and the ledger: Tune saves the searcher's state with the
experiment and restores it on ``--resume``, while the scheduler comes back as pickled at the start
(``search.schedule.policy_scheduler`` writes its own file for that). One owner, one saved copy.
"""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher

from search.schedule.gate import Gate
from search.schedule.policies import CONTINUE, Policy
from search.schedule.policy_scheduler import PolicyScheduler

POOL = "pool"
POOL_STATE = "pool_state.json"
METHOD_KEY = "method"
MAX_ERRORS = 4
"""Trials that error before reporting anything, with no trial yet reporting: the pool stops
(every method's trials failing at start is a set-up problem, not something budget fixes)."""
TIME = "training_iteration"

_LIVE: list[PoolSearcher] = []
"""The pool this process built or restored last (``live_pool``)."""


def live_pool() -> PoolSearcher | None:
    """The pool built, or restored by Tune, in this process: after ``Tuner.fit`` returns, the
    caller's handle on a restored experiment's searcher (Tune unpickled it)."""
    return _LIVE[-1] if _LIVE and _LIVE[-1].pid == os.getpid() else None


class PoolSearcher(Searcher):
    """Per-method searchers behind one Tune searcher; the allocator picks the method of each new
    trial, the ledger is charged with every result's seconds (the ledger saves itself after each
    charge when it has a path). ``state_dir``: where ``POOL_STATE`` says, after every result,
    which methods are still searched, why the others stopped and whether the pool is finished:
    the driver's record of the stage (the searcher Tune restores may be older than it)."""

    def __init__(self, searchers: dict[str, Searcher], constants: dict[str, dict[str, Any]],
                 allocator, gate: Gate, metric: str = "score", mode: str = "max", tasks: int = 1,
                 state_dir: str | None = None) -> None:
        super().__init__(metric=metric, mode=mode)
        self.searchers, self.constants = searchers, constants
        self.allocator, self.gate, self.state_dir = allocator, gate, state_dir
        self.tasks = max(1, tasks)  # eval_rows counts every task's rows; the allocator wants one's
        self.method_of: dict[str, str] = {}
        self.exhausted: set[str] = set()
        """Methods whose own searcher has no more trials (its sample count reached)."""
        self.finished = False
        self.overran = False
        """Set by ``guard``: the pool was stopped with trials running past the budget."""
        self.errors = 0
        self.pid = os.getpid()
        """The process whose state this is: the one that built the pool, or restored it."""
        self.restored_at: float | None = None
        self._here: set[tuple[str, int]] = set()
        """(trial, evaluation) reports this process charged (``_rerun``)."""
        _LIVE[:] = [self]

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # each method's searcher was built with its metric, mode and space

    def suggest(self, trial_id: str):
        if self.finished:
            return Searcher.FINISHED
        while True:
            live = [m for m in self.allocator.live() if m not in self.exhausted]
            method = self.allocator.next_method(among=live)
            if method is None:
                return self._finish("no method has trials left")
            if not self.gate.allows(method):
                if not self.gate.running:  # nothing running can free budget: the search is over
                    return self._finish("the budget left pays for no further trial")
                return None  # wait: a running trial may be stopped early and free budget
            config = self.searchers[method].suggest(trial_id)
            if config == Searcher.FINISHED:
                self.exhausted.add(method)
                continue
            if config is None:
                return None
            self.method_of[trial_id] = method
            self.allocator.started(method, trial_id)
            self.gate.started(trial_id, method)
            return {**self.constants[method], **config, METHOD_KEY: method}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        method = self.method_of.get(trial_id)
        if method is not None:
            self.searchers[method].on_trial_result(trial_id, result)
            self._observe(trial_id, method, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        method = self.method_of.get(trial_id)
        if method is None:
            return
        self.searchers[method].on_trial_complete(trial_id, result=result, error=error)
        if result and not error:
            # Tune hands a trial's last result (its last evaluation, or the one a rung stopped
            # it at) to on_trial_complete only, never to on_trial_result: charge and observe it
            # here (a report already charged is not charged again).
            self._observe(trial_id, method, result)
        if error and not (result or {}).get(TIME):
            self.allocator.failed(method, trial_id)
            self.errors += 1
            if self.errors >= MAX_ERRORS and not self.gate.per_eval:
                self._finish(f"the first {self.errors} trials errored before any evaluation")
        self.gate.ended(trial_id)
        self._write()

    def _observe(self, trial_id: str, method: str, result: dict) -> None:
        t = int(result.get(TIME, 0) or 0)
        if t <= 0:
            return
        seconds = float(result.get("time_this_iter_s", 0.0) or 0.0)
        run_id = trial_id
        if self._rerun(trial_id, t, result):
            run_id = f"{trial_id}/rerun-{self.restored_at or 0:.0f}"
        if self.gate.ledger.charge("trial", method, seconds, run_id=run_id, index=t):
            self._here.add((trial_id, t))
            self.gate.reported(trial_id, method, t, seconds)
        score = result.get(self.metric)
        if isinstance(score, (int, float)):
            rows = float(result.get("eval_rows", 0.0) or 0.0) / self.tasks
            self.allocator.observe(method, trial_id, int(result.get("step", t)), float(score), int(rows))
        self._write()

    def _rerun(self, trial_id: str, t: int, result: dict) -> bool:
        """Is this an evaluation charged before ``--resume`` and run again since (the trial's
        checkpoint older than its report): the slot was held twice. Not when Tune hands the same
        report again: twice in one process (its two hooks), or one from before the restore (its
        ``timestamp`` is older)."""
        if (trial_id, t) in self._here or self.restored_at is None:
            return False  # charged in this process, or no restore yet
        if not self.gate.ledger.charged(trial_id, t):
            return False
        stamp = result.get("timestamp")
        return isinstance(stamp, (int, float)) and stamp >= self.restored_at - 1

    def guard(self) -> bool:
        """Stop the pool now when the running trials have held their slots past the whole budget
        left, or ``--deadline`` is here (``Gate.overrun``): what they hold unreported is charged
        (the slots were held), the pool finishes, and the caller ends the experiment. True once it
        has fired."""
        if self.overran:
            return True
        why = self.gate.overrun()  # also after the last start: trials still run
        if why is None:
            return False
        self._charge_held("trial", "overrun")
        self.overran = True
        self._finish(f"{why}; they are stopped")
        return True

    def charge_interrupted(self, now: float | None = None) -> float:
        """Ctrl-C stopped the experiment: charge what the running trials held since they started or
        last reported (``--resume`` runs that part again, and charges it again when it reports).
        Returns the seconds charged."""
        now = time.time() if now is None else now
        return self._charge_held("interrupted", f"interrupted-{now:.0f}", now)

    def _charge_held(self, kind: str, tag: str, now: float | None = None) -> float:
        """Charge what each running trial held since it started or last reported, as
        ``<trial>/<tag>``; returns the seconds charged."""
        total = 0.0
        for trial, seconds in self.gate.in_flight(now).items():
            method, t = self.gate.running[trial]
            if self.gate.ledger.charge(kind, method, seconds, run_id=f"{trial}/{tag}", index=t + 1):
                total += seconds
        return total

    def _finish(self, why: str):
        self.finished = True
        print(f"[{POOL}] no new trials: {why}; {len(self.gate.running)} still running", flush=True)
        self._write(why)
        return Searcher.FINISHED

    def _write(self, why: str | None = None) -> None:
        if self.state_dir is None:
            return
        write_pool_state(Path(self.state_dir), {
            "finished": self.finished, "why_finished": why, "live": self.allocator.live(),
            "eliminated": self.allocator.eliminated(), "allocation": self.allocator.state(),
            "cold_start_s": self.gate.cold_start_s,
            "trials": {m: self.allocator.trials_started(m) for m in self.allocator.methods}})

    # Tune saves a searcher with save() and restores it with restore(): the whole pool at once.
    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
        ledger = self.gate.ledger
        if ledger.path is not None and Path(ledger.path).exists():  # the newer, charged per report
            self.gate.ledger = type(ledger).load(ledger.path)
        self.gate.restarted()
        self.pid = os.getpid()  # restored in this process: its overrun stop acts again
        self.restored_at, self._here = time.time(), set()
        _LIVE[:] = [self]


def write_pool_state(folder: Path, state: dict) -> None:
    from search.results import write_json_atomic

    write_json_atomic(folder / POOL_STATE, state)


def read_pool_state(folder: Path) -> dict | None:
    import json

    path = folder / POOL_STATE
    return json.loads(path.read_text()) if path.exists() else None


class ByMethod(Policy):
    """One stopping policy per method; a trial is judged by its own method's."""

    name = "by-method"

    def __init__(self, make: Callable[[], Policy], max_t: int) -> None:
        super().__init__(max_t)
        self.make = make
        self.policies: dict[str, Policy] = {}
        self.method_of: dict[str, str] = {}

    def assign(self, trial: str, method: str) -> None:
        self.method_of[trial] = method
        if method not in self.policies:
            self.policies[method] = self.make()

    def _policy(self, trial: str) -> Policy | None:
        method = self.method_of.get(trial)
        return None if method is None else self.policies[method]

    def add(self, trial: str) -> None:
        policy = self._policy(trial)
        if policy is not None:
            policy.add(trial)

    def on_result(self, trial: str, t: int, score: float) -> str:
        policy = self._policy(trial)
        return CONTINUE if policy is None else policy.on_result(trial, t, score)

    def on_complete(self, trial: str, t: int, score: float) -> None:
        policy = self._policy(trial)
        if policy is not None:
            policy.on_complete(trial, t, score)

    def remove(self, trial: str) -> None:
        policy = self._policy(trial)
        if policy is not None:
            policy.remove(trial)


class PoolScheduler(PolicyScheduler):
    """``PolicyScheduler`` over a ``ByMethod`` policy: each trial's method read from its config."""

    def __init__(self, policy: ByMethod) -> None:
        super().__init__(policy)

    def on_trial_add(self, tune_controller, trial) -> None:
        self._load_once(trial)  # a restored search's saved policies first
        method = trial.config.get(METHOD_KEY)
        if method is not None:
            self.policy.assign(trial.trial_id, method)
        self.policy.add(trial.trial_id)


def per_method_policy(name: str, max_t: int, grace: int, rf: float, **options) -> ByMethod:
    from functools import partial

    from search.schedule.policies import make_policy

    return ByMethod(partial(make_policy, name, max_t, grace, rf, **options), max_t)

