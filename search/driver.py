"""The Ray side of the search: start or join Ray, run one Tune experiment per method (or, with
``--budget``, ``search.budgeted``'s pool, race and fresh seeds), record each method
(``search.recording``) and write the result table. ``search.cli`` checks everything (through
``search.plan``) before it calls ``run_search``."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import ray
from ray import tune

from search.budget import ParamCounter
from search.callbacks import DriverMemory, MlflowCallback, Progress, result_files
from search.experiments import restored, run_settings, trainable
from search.plan import Plan
from search.pruning import CheckpointPruner
from search.recording import PRUNED, parent_run, record_method
from search.results import (
    pick_best,
    table,
    write_json_atomic,
    write_tables,
)
from search.schedule.budget import format_duration, parse_duration
from search.schedule.schedulers import scheduler_for
from search.searchers import METRIC, make_searcher, objective_metrics
from search.selection.confirm import confirm, pick_candidates
from search.selection.confirm import table as confirm_table
from search.settings import confirm_budget
from search.tracking import Tracker, ui_hint
from search.trainable import run_trial
from search.warm import default_config, start_points

ROOT = Path(__file__).resolve().parents[1]
# Shipped to every node with each search, so workers run the driver's code.
SHIPPED_EXCLUDES = ["/runs/", "/mlruns/", "/mlartifacts/", "*.db", "/ray_results/", "/out/",
                    "/benchmarks/results/", ".pytest_cache/", ".ruff_cache/"]


def start_ray(address: str | None, verbose: bool = False) -> None:
    """Start local Ray or join ``address``, shipping this checkout to every node. Unless
    ``verbose``, Ray's start-up messages and Tune's status tables stay off the terminal (the
    search prints its own progress); warnings while the search runs still show."""
    # Confirmation runs (a handful) keep Tune's num_to_keep=1, whose forced experiment
    # snapshots Tune warns about: not actionable there.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune's result files are added by the search itself (callbacks.result_files), without
    # the TensorBoard logger.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # Tune keeps every registered checkpoint's result in the driver (the search's pruning deletes
    # the folders): keep only what ranks checkpoints (nothing here), not a copy of every result.
    os.environ.setdefault("TUNE_ONLY_STORE_CHECKPOINT_SCORE_ATTRIBUTE", "1")
    if not verbose:
        # The legacy reporter honours verbose=0 (Tune's new one prints its config table anyway).
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    runtime_env = {"working_dir": str(ROOT), "excludes": SHIPPED_EXCLUDES}
    # Trial output goes to each trial's folder (log_to_file); the terminal shows progress.
    ray.init(address=address, runtime_env=runtime_env, log_to_driver=verbose,
             logging_level=logging.INFO if verbose else logging.ERROR)
    if not verbose:  # start-up is over: Ray's and Tune's warnings from here on are real ones
        logging.getLogger("ray").setLevel(logging.WARNING)


def default_concurrency(s) -> int:
    """As many trials as the cluster's resources fit now (never more than a per-method search's
    trials)."""
    res = ray.cluster_resources()
    n = int(res.get("CPU", 1) // s.cpus_per_trial)
    if s.gpus_per_trial > 0:
        n = min(n, int(res.get("GPU", 0) // s.gpus_per_trial))
    return max(1, n if s.budget else min(n, s.num_samples))


def run_search(plan: Plan, data, *, address: str | None, resuming: bool, verbose: bool = False,
               deadline_at: float | None = None) -> int:
    """Run every method's search in turn; 0 when all are recorded, 1 when a method has no
    finite score, 2 on a store or experiment clash, 3 when MLflow stayed down, 130 when
    interrupted (the state is saved for --resume)."""
    s = plan.settings
    # A failed MLflow write raises at once (no minutes of HTTP retries blocking Tune's loop):
    # the tracking callback queues it and retries while training goes on.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    if not verbose:  # MLflow's own INFO lines (creating the SQLite tables, ...)
        import mlflow  # noqa: F401 - it sets its loggers' levels on import: set ours after

        logging.getLogger("mlflow").setLevel(logging.WARNING)
    try:
        tracker = Tracker(plan.mlflow_uri, s.experiment)
    except Exception as e:  # noqa: BLE001 - unreachable server, bad URI, unwritable file, ...
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        print(f"error: cannot open the MLflow store {plan.mlflow_uri}: {first}", flush=True)
        return 2
    start_ray(address, verbose)
    concurrency = s.max_concurrent or default_concurrency(s)
    trials = (f"one pool of trials for {format_duration(parse_duration(s.budget))}" if s.budget
              else f"{s.num_samples} trials")
    steps = ("steps and rungs sized from the budget" if s.steps_from_budget and not resuming else
             f"{s.max_steps} steps, eval every {s.eval_every} ({s.max_t} rungs)")
    print(f"search {s.experiment}: {', '.join(s.methods)} x {trials}, {steps}, {s.scheduler}+"
          f"{s.searcher}, {concurrency} at once; MLflow {plan.mlflow_uri}", flush=True)
    if s.budget is not None:
        from search.schedule.calibrate import SizingError

        try:
            return _run_budgeted(plan, data, tracker, concurrency, resuming, deadline_at)
        except (FileExistsError, SizingError) as e:
            print(f"error: {e}", flush=True)
            return 2
    rows: list[dict[str, Any]] = []
    fronts: dict[str, list[dict[str, Any]]] = {}
    for method in s.methods:
        try:
            row = run_method(method, plan, data, tracker, concurrency, resuming)
        except FileExistsError as e:
            print(f"error: {e}", flush=True)
            return 2
        if row is None:
            print(f"\nsearch interrupted; the state is saved. Continue it with:\n"
                  f"  python search/run.py --resume --out {s.out}", flush=True)
            return 130
        fronts[method] = row.pop("pareto")
        rows.append(row)
    return _finish(plan, rows, fronts)


def _run_budgeted(plan: Plan, data, tracker: Tracker, concurrency: int, resuming: bool,
                  deadline_at: float | None = None) -> int:
    """``--budget``: the pool, the race and the fresh seeds (``search.budgeted``), then each method
    recorded as a per-method search records it, and the answer."""
    from search.budgeted import answer, run_budgeted

    s = plan.settings
    parents = {m: parent_run(m, plan, tracker) for m in s.methods}
    outcome = run_budgeted(plan, data, tracker, parents, concurrency, resuming, deadline_at)
    if outcome is None:
        print(f"\nsearch interrupted; the state and the budget used are saved. Continue it with:\n"
              f"  python search/run.py --resume --out {s.out}", flush=True)
        return 130
    rows, fronts = [], {}
    for method in s.methods:
        (Path(s.out) / method).mkdir(parents=True, exist_ok=True)
        results = outcome.by_method.get(method, [])
        row = record_method(method, plan, results, tracker, parents[method], outcome.wall_s, data,
                      outcome.confirmations.get(method))
        fronts[method] = row.pop("pareto")
        rows.append(row)
    verdict = answer(plan, outcome, rows)
    tracker.retrying("recording the answer", lambda: tracker.answer_run(verdict))
    return _finish(plan, rows, fronts, verdict)


def _finish(plan: Plan, rows: list[dict[str, Any]], fronts: dict[str, list[dict[str, Any]]],
            verdict: dict[str, Any] | None = None) -> int:
    """Write and print the search's tables, build the report; the command's exit code."""
    s = plan.settings
    out = Path(s.out)
    meta = {"experiment": s.experiment, "mlflow_uri": plan.mlflow_uri, "storage_path": plan.storage_path,
            "settings": vars(s), "pareto": fronts}
    if verdict is not None:
        meta["answer"] = verdict
    csv_path, json_path = write_tables(out, rows, meta)
    print("\n" + table(rows))
    saved = sum(r["evals_if_no_stopping"] - r["evals_run"] for r in rows)
    total = sum(r["evals_if_no_stopping"] for r in rows)
    print(f"\nearly stopping saved {saved} of {total} trial evaluations "
          f"({saved * s.eval_every} of {total * s.eval_every} trial steps)")
    print(f"wrote {csv_path}, {json_path} and <method>/best_config.json under {out}")
    print(f"rerun a best config: python -m trainers.train --config {out / s.methods[0] / 'best_config.json'}")
    if s.objective != "score":
        for method, front in fronts.items():
            print(f"[{method}] Pareto set (score vs % params), {len(front)} trial(s): " + "; ".join(
                f"{p['score']:.4f} at {p['stored_pct']:.3f}% ({p['trial_id']})" for p in front))
    if all(r.get("mlflow_recorded", True) for r in rows):
        _report(plan, out)
    print(f"MLflow UI: {ui_hint(plan.mlflow_uri)}", flush=True)
    no_best = [r["method"] for r in rows if r["best_score"] is None]
    if no_best:
        print(f"error: no trial of {', '.join(no_best)} reported a finite score; no best config "
              "written for it", flush=True)
        return 1
    unrecorded = [r["method"] for r in rows if not r.get("mlflow_recorded", True)]
    if unrecorded:
        print(f"error: the MLflow record of {', '.join(unrecorded)} is incomplete ({plan.mlflow_uri} "
              f"unreachable); the results above and best_config.json are complete. Once MLflow is "
              f"back: python search/run.py --resume --out {s.out}", flush=True)
        return 3
    return 0


def run_method(method: str, plan: Plan, data, tracker: Tracker, concurrency: int,
               resuming: bool) -> dict | None:
    """One Tune experiment; returns the method's table row, or None when interrupted."""
    s = plan.settings
    parent = parent_run(method, plan, tracker)
    tuner, progress = _tuner(method, plan, data, tracker, parent, concurrency, resuming)
    start = time.time()
    try:
        grid = tuner.fit()
    finally:
        wall = _add_wall_time(Path(s.out), method, time.time() - start)  # across --resume runs
        if progress is not None:
            write_json_atomic(Path(s.out) / method / "trials.json",
                              {"search_started_at": start, "concurrency": concurrency,
                               "trials": progress.timing})
    if grid.num_terminated + grid.num_errors < s.num_samples:
        # Interrupted: trials still RUNNING in MLflow are marked KILLED (a --resume reattaches them).
        tracker.retrying("closing runs", lambda: (tracker.close_stale_runs(method, {}),
                                                  tracker.end_run(parent, "KILLED")))
        return None
    best = pick_best(list(grid))
    score = "none" if best is None else f"{best.metrics.get(METRIC, math.nan):.4f}"
    print(f"[{method}] search best {score}, {grid.num_terminated + grid.num_errors} trials", flush=True)
    confirmed = None
    top, seeds = confirm_budget(s)
    if top and best is None:
        print(f"[{method}] no trial reported a finite score: nothing to confirm", flush=True)
    elif top:
        default = default_config(plan, method)
        candidates = pick_candidates(list(grid), top, default)
        confirmed = (confirm(method, plan, data, tracker, parent, concurrency, resuming, candidates, seeds)
                     if candidates else None)
        if candidates and confirmed is None:
            tracker.retrying("closing runs", lambda: (tracker.close_stale_runs(method, {}, kind="confirm"),
                                                      tracker.end_run(parent, "KILLED")))
            print(f"[{method}] confirmation interrupted; --resume goes on with it", flush=True)
            return None
        if confirmed is not None:
            print(confirm_table(method, confirmed), flush=True)
    row = record_method(method, plan, grid, tracker, parent, wall, data, confirmed)
    score = "none" if row["best_score"] is None else f"{row['best_score']:.4f}"
    pick = f" (confirmed pick {row['confirmed_score']:.4f})" if row.get("confirmed_score") is not None else ""
    print(f"[{method}] best score {score}{pick}, {row['trials']} trials, "
          f"{row['stopped_early']} stopped early, {row['failed']} failed", flush=True)
    return row


def _tuner(method: str, plan: Plan, data, tracker: Tracker, parent: str, concurrency: int,
           resuming: bool) -> tuple[tune.Tuner, Progress | None]:
    """The method's Tuner: restored from its storage path on ``--resume``, new otherwise (with
    its searcher, scheduler and callbacks; ``Progress`` is None for a restored one)."""
    s = plan.settings
    name = f"{s.experiment}-{method}"
    fn = trainable(run_trial, plan, data)
    restored_tuner = restored(plan, name, fn, resuming)
    if restored_tuner is not None:
        print(f"[{method}] resuming {plan.storage_path.rstrip('/')}/{name}", flush=True)
        return restored_tuner, None
    budget = ((ParamCounter(data.specs, s.model), s.max_params, str(Path(s.out) / method / PRUNED))
              if s.max_params else None)
    space = plan.auto if method == "auto" else plan.spaces[method]
    starts = start_points(plan, method)  # the default trial, then --warm-start's best configs
    searcher, param_space = make_searcher(s.searcher, space, plan.constants[method], seed=s.seed,
                                          max_concurrent=concurrency, num_samples=s.num_samples,
                                          objectives=objective_metrics(s.objective), budget=budget,
                                          points=[p for _, p in starts])
    scheduler = scheduler_for(s)
    progress = Progress(method, s.num_samples, s.max_t)
    callbacks = [MlflowCallback(plan.mlflow_uri, tracker.experiment_id, parent, method, s.max_t,
                                starts=starts), progress, CheckpointPruner(s.keep_checkpoints, method),
                 *result_files(), DriverMemory()]
    tuner = tune.Tuner(
        fn, param_space=param_space,
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=scheduler, num_samples=s.num_samples,
            # A trial process imports torch, transformers and peft (seconds): keep it.
            reuse_actors=True, trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
        run_config=run_settings(plan, name, callbacks))
    return tuner, progress


def _report(plan, out: Path) -> None:
    """The comparison report (``search.report``); a failure here never fails the search."""
    s = plan.settings
    try:
        from search.report import make_report, summary_text

        report = make_report(plan.mlflow_uri, s.experiment, out / "report")
    except Exception as e:  # noqa: BLE001 - the search's results stand without the report
        print(f"warning: the report failed ({type(e).__name__}: {str(e)[:200]}); build it again with: "
              f"python -m search.report --experiment {s.experiment} --mlflow-uri {plan.mlflow_uri}",
              flush=True)
        return
    print("\n" + summary_text(report))
    print(f"report: {report.html} (figures and report.md beside it; logged to MLflow)", flush=True)


def _add_wall_time(out: Path, method: str, seconds: float) -> float:
    path = out / "wall_s.json"
    walls = json.loads(path.read_text()) if path.exists() else {}
    walls[method] = walls.get(method, 0.0) + seconds
    write_json_atomic(path, walls)
    return walls[method]


def _trial_name(trial) -> str:
    return f"trial_{trial.trial_id}"
