"""Steps and rungs sized from the budget (``--budget`` without ``--max-steps``/``--eval-every``).

Before the pool, one short run per method (its defaults, ``STEPS`` steps, one evaluation on the
whole validation set: a dearer evaluation than the pool's early subset rungs, so the sizing errs
long on cost) measures what a step, an evaluation and a start cost; the runs are one Tune
experiment (``<experiment>-calibrate``) and their seconds are charged to the ledger.
``search.schedule.sizing.size_plan`` turns the costs into ``max_steps`` and ``eval_every`` (and
the trials per method it expects); the search goes on with them: they are written into the
settings (``search.json``) and each method's constants, and the measured costs and the plan into
``sizing.json``, so ``--resume`` keeps them and does not measure again.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from ray import tune

from search.callbacks import result_files
from search.experiments import restored, run_settings, trainable
from search.reported import expand
from search.results import failed, write_json_atomic
from search.schedule.budget import Ledger, format_duration
from search.schedule.gate import RESERVE_SHARE
from search.schedule.sizing import BudgetPlan, Cost, minimum_budget, size_plan
from search.trainable import RUN_KEY, run_confirm, run_of
from search.warm import default_config

STEPS = 20
"""Training steps of a calibration run: enough to average a step's time past the first ones."""
RUNGS = 3
"""Rungs of a sized trial: 4 evaluations (1, 2, 4), as in BENCHMARKS §9's scheduler tables; with
4 rungs (8 evaluations) short budgets bought trials that spent more on evaluating than training."""
MIN_STEPS = 40
"""The shortest sized trial (``size_plan``'s ``min_steps``)."""
SIZING_FILE = "sizing.json"


class SizingError(ValueError):
    """The budget cannot be sized (one line for the terminal): the search ends with exit code 2."""


def sized_steps(plan, data, concurrency: int, resuming: bool, ledger: Ledger) -> BudgetPlan | None:
    """Measure, size and apply (see the module doc); the saved sizing when there is one. None when
    interrupted. Raises ``SizingError`` (one line) when a method has no defaults to measure, a
    calibration run failed, or the budget is too small for one trial per method at the shortest
    length."""
    s = plan.settings
    path = Path(s.out) / SIZING_FILE
    if path.exists():
        saved = json.loads(path.read_text())
        apply(plan, int(saved["max_steps"]), int(saved["eval_every"]))
        return BudgetPlan.from_dict(saved)
    costs = measure(plan, data, concurrency, resuming, ledger)
    if costs is None:
        return None
    try:
        sized = size_plan(max(ledger.left, 0.0), costs, concurrency, rungs=RUNGS, min_steps=MIN_STEPS,
                          reduction_factor=s.reduction_factor, reserve_share=RESERVE_SHARE)
    except ValueError:
        need = minimum_budget(costs, MIN_STEPS, max(1, round(s.reduction_factor ** (RUNGS - 1))))
        raise SizingError(
            f"--budget {format_duration(ledger.budget_s)} is too small for {len(costs)} methods: measuring "
            f"them took {format_duration(ledger.used)}, and one trial per method of {MIN_STEPS} steps "
            f"plus a minimal confirmation needs {format_duration(need)} more; give at least "
            f"{format_duration(ledger.used + need)}, or --max-steps and --eval-every") from None
    apply(plan, sized.max_steps, sized.eval_every)
    write_json_atomic(path, sized.to_dict())
    write_json_atomic(Path(s.out) / "search.json", asdict(s))
    return sized


def measure(plan, data, concurrency: int, resuming: bool, ledger: Ledger) -> dict[str, Cost] | None:
    """One ``STEPS``-step run of each method's defaults; its seconds per step, per evaluation and
    per start. None when interrupted."""
    s = plan.settings
    runs = {}
    for method in s.methods:
        config = default_config(plan, method)
        if config is None:
            raise SizingError(f"--budget cannot size the steps: {method} has no default config to "
                             "measure; pass --max-steps and --eval-every")
        runs[method] = {**run_of(config, s.seed), "max_steps": STEPS, "eval_every": STEPS}
    name = f"{s.experiment}-calibrate"
    print(f"[budget] measuring a step, an evaluation and a start of each method: {len(runs)} runs "
          f"of {STEPS} steps ({name})", flush=True)
    fn = trainable(run_confirm, plan, data)
    tuner = restored(plan, name, fn, resuming) or tune.Tuner(
        fn, param_space={RUN_KEY: tune.grid_search(list(runs.values()))},
        tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=concurrency, reuse_actors=True),
        run_config=run_settings(plan, name, list(result_files()), keep_one=True))
    grid = tuner.fit()
    if grid.num_terminated + grid.num_errors < len(runs):
        return None
    costs: dict[str, Cost] = {}
    for r in grid:
        method = r.config[RUN_KEY]["method"]
        m = expand(r.metrics)
        if failed(r) or not m.get("train_s") or m.get("eval_s") is None:
            raise SizingError(f"--budget cannot size the steps: {method}'s calibration run failed "
                             f"({m.get('error') or r.error or 'no timing reported'}); pass --max-steps "
                             "and --eval-every")
        ledger.charge("trial", method, float(m.get("time_total_s") or 0.0), run_id=f"{name}:{method}",
                      index=1)
        costs[method] = Cost.from_report(m)
    for method, c in costs.items():
        print(f"[budget] {method}: {c.step_s:.3f} s/step, {c.eval_s:.1f} s/evaluation, "
              f"{c.setup_s:.1f} s/start", flush=True)
    return costs


def apply(plan, max_steps: int, eval_every: int) -> None:
    """The search goes on with these: its settings and every method's constants."""
    s = plan.settings
    s.max_steps, s.eval_every = max_steps, eval_every
    for constants in plan.constants.values():
        constants["max_steps"], constants["eval_every"] = max_steps, eval_every
