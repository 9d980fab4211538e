"""The pool stage of a ``--budget`` search: every method's trials in one Tune experiment
(``<experiment>-pool``), the allocator deciding which method gets each new trial, the ledger
charged with every result, the search ending when what is left (less the racing reserve) cannot
pay for another trial. Trials are recorded in MLflow under their method's parent run, as in a
per-method search, so the UI and the report read them the same way.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune

from search.callbacks import ByMethod, DriverMemory, MlflowCallback, Progress, result_files
from search.experiments import restored, run_settings, trainable
from search.pruning import CheckpointPruner
from search.reported import expand
from search.schedule.pool import (
    METHOD_KEY,
    POOL,
    Gate,
    PoolScheduler,
    PoolSearcher,
    live_pool,
    per_method_policy,
    read_pool_state,
)
from search.schedule.sizing import Cost, size_plan
from search.schedule.stops import OverrunStop
from search.searchers import make_searcher, objective_metrics
from search.trainable import run_trial
from search.warm import start_points

SAMPLES_CAP = 10_000
"""Tune's sample count for the pool: the budget, not a count, ends it (the searcher says when)."""


@dataclass
class PoolOutcome:
    by_method: dict[str, list]
    """method -> the Tune results of its trials."""
    wall_s: float
    state: dict
    """``pool_state.json``: methods still searched, why the others stopped, trials per method."""


class PoolProgress(Progress):
    """``Progress`` whose status line also says the budget used and left and the methods still
    searched; once every method has reported, what the budget buys at the measured costs
    (``search.schedule.sizing``) is printed."""

    def __init__(self, pool: PoolSearcher, max_t: int, plan=None, slots: int = 1) -> None:
        super().__init__(POOL, SAMPLES_CAP, max_t)
        self.pool, self.plan, self.slots = pool, plan, slots
        self.costs: dict[str, Cost] = {}
        self.sized = False
        self.method_of: dict[str, str] = {}

    def _counts(self, trials, ending=None, failed: bool = False) -> str:
        self.num_samples = len(trials)  # no fixed count: nothing is "pending" beyond what started
        ledger = self.pool.gate.ledger
        live = ", ".join(self.pool.allocator.live())
        return (f"{super()._counts(trials, ending, failed)}; budget {ledger.used / 60:.1f}/"
                f"{ledger.budget_s / 60:.1f} min used, {_to_end(ledger.left, self.slots)}; "
                f"methods still searched: {live}")

    def _best(self) -> str:
        return super()._best().replace("best ", "leader ", 1)

    def _label(self, trial_id: str) -> str:
        method = self.method_of.get(trial_id)
        return f"{method} {trial_id}" if method else trial_id

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        method = (trial.config or {}).get(METHOD_KEY)
        if method:
            self.method_of[trial.trial_id] = method
        super().on_trial_result(iteration, trials, trial, result, **info)
        if self.sized or self.plan is None or method in self.costs:
            return
        m = expand(result)
        step, t = m.get("step"), m.get("training_iteration")
        if step and t and m.get("train_s") is not None and m.get("eval_s") is not None:
            self.costs[method] = Cost.from_report(m)
        if set(self.costs) == set(self.pool.allocator.methods):
            self.sized = True
            s, budget_s = self.plan.settings, self.pool.gate.ledger.budget_s
            try:
                sized = size_plan(budget_s, self.costs, self.slots, max_steps=s.max_steps,
                                  eval_every=s.eval_every, reduction_factor=s.reduction_factor,
                                  reserve_share=self.pool.gate.reserve_s / budget_s)
                self._say(f"at the costs measured so far, {sized.describe()}")
            except ValueError as e:
                self._say(f"warning: {e}")


def build_pool(plan, methods: list[str], concurrency: int, allocator, ledger, reserve_s: float,
               state_dir: Path) -> tuple[PoolSearcher, PoolScheduler, dict[str, list]]:
    """The pool's searcher and scheduler, and each method's enqueued first trials."""
    s = plan.settings
    searchers, constants, starts = {}, {}, {}
    for method in methods:
        starts[method] = start_points(plan, method)
        searcher, fixed = make_searcher(
            "optuna", plan.spaces[method], plan.constants[method], seed=s.seed,
            max_concurrent=concurrency, num_samples=SAMPLES_CAP,
            objectives=objective_metrics(s.objective), points=[p for _, p in starts[method]])
        searchers[method], constants[method] = searcher, fixed
    gate = Gate(ledger, reserve_s, s.max_t)
    pool = PoolSearcher(searchers, constants, allocator, gate, tasks=len(plan.settings.tasks.split(",")),
                        state_dir=str(state_dir))
    options = {"epsilon": s.pasha_epsilon} if s.scheduler == "pasha" else {}
    scheduler = PoolScheduler(per_method_policy(s.scheduler, s.max_t, s.grace_period,
                                                s.reduction_factor, **options))
    return pool, scheduler, starts


def run_pool(plan, data, tracker, parents: dict[str, str], concurrency: int, resuming: bool,
             allocator, ledger, reserve_s: float) -> PoolOutcome | None:
    """The pool stage; None when interrupted (``--resume`` goes on with it)."""
    s = plan.settings
    name = f"{s.experiment}-{POOL}"
    fn = trainable(run_trial, plan, data)
    tuner = restored(plan, name, fn, resuming)
    if tuner is not None:
        print(f"[{POOL}] resuming {plan.storage_path.rstrip('/')}/{name}", flush=True)
    else:
        pool, scheduler, starts = build_pool(plan, list(parents), concurrency, allocator, ledger,
                                             reserve_s, Path(s.out))
        per_method = {m: MlflowCallback(plan.mlflow_uri, tracker.experiment_id, parents[m], m, s.max_t,
                                        starts=starts[m]) for m in parents}
        # The best --keep-checkpoints of each method: the race and the records start from them.
        pruners = {m: CheckpointPruner(s.keep_checkpoints, m) for m in parents}
        callbacks = [ByMethod(per_method), ByMethod(pruners), PoolProgress(pool, s.max_t, plan, concurrency),
                     *result_files(), DriverMemory()]
        tuner = tune.Tuner(
            fn, param_space={},
            tune_config=tune.TuneConfig(search_alg=pool, scheduler=scheduler, num_samples=SAMPLES_CAP,
                                        max_concurrent_trials=concurrency, reuse_actors=True,
                                        trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
            run_config=dataclasses.replace(run_settings(plan, name, callbacks), stop=OverrunStop(pool)))
    start = time.time()
    grid = tuner.fit()
    by_method: dict[str, list[Any]] = {m: [] for m in parents}
    for r in grid:
        method = (r.config or {}).get(METHOD_KEY)
        if method in by_method:
            by_method[method].append(r)
    state = read_pool_state(Path(s.out)) or {}
    if not state.get("finished") or grid.num_terminated + grid.num_errors < len(grid):
        # interrupted: the searcher had not finished, or trials were still running
        pool = live_pool()
        if pool is not None and pool.gate.running:
            held = pool.charge_interrupted()
            print(f"[{POOL}] interrupted: {held:.0f} s the running trials held since their last "
                  "report charged (--resume runs that part again)", flush=True)
        return None
    return PoolOutcome(by_method, time.time() - start, state)


def _to_end(left_s: float, slots: int) -> str:
    """Wall time to the end if every slot stays busy: the trial-time left (race and fresh seeds
    included) over the slots; the search may end sooner when nothing more fits."""
    return f"about {max(left_s, 0.0) / max(slots, 1) / 60:.1f} min to the end at {slots} slot(s)"


def _trial_name(trial) -> str:
    return f"{trial.config.get(METHOD_KEY, 'trial')}_{trial.trial_id}"
