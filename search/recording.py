"""A finished method's records: its table row, best config and checkpoint (``best_config.json``,
``best_checkpoint/``), its MLflow parent run, and the test split's figures; the same for a
per-method search (``search.driver``) and for ``--budget`` (``search.budgeted``).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from search.plan import Plan, space_record
from search.report.pareto import pareto_front
from search.results import (
    CONFIRM_JSON,
    CONFIRM_OUTPUTS,
    TEST_OUTPUTS,
    best_record,
    checkpoint_files,
    failed,
    resolved_config,
    summarize,
    write_best,
    write_json_atomic,
)
from search.searchers import METRIC
from search.selection.confirm import Confirmation, record_pick
from search.selection.heldout import test_confirmation, test_pick
from search.settings import confirm_budget
from search.tracking import Tracker
from spaces.auto import design_name
from trainers.splits import has_test_split

PRUNED = "pruned.jsonl"  # per method: the proposals --max-params pruned before training


def parent_run(method: str, plan: Plan, tracker: Tracker) -> str:
    """The method's MLflow parent run, tagged with the settings that define its search."""
    s = plan.settings
    settings = {k: getattr(s, k) for k in (
        "num_samples", "max_steps", "eval_every", "scheduler", "searcher", "grace_period",
        "reduction_factor", "tasks", "data_dir", "model", "seed", "objective", "max_params",
        "default_trial", "warm_start", "eval_rows", "eval_growth", "eval_full", "val_from_train",
        "budget")}
    settings["confirm"] = "race" if s.budget else "{}:{}".format(*confirm_budget(s))  # effective K:N
    if plan.source is not None:  # a transfer search names its source (tags search.transfer_from, ...)
        settings.update(plan.source)
    return tracker.parent_run(method, settings, space=space_record(plan, method))


def record_method(method: str, plan: Plan, grid, tracker: Tracker, parent: str, wall: float,
            data, confirmed: Confirmation | None = None) -> dict[str, Any]:
    """The finished method's row; its best config and checkpoint written, then recorded in
    MLflow (retried while the store is down; ``row["mlflow_recorded"]`` says if it made it).
    With ``confirmed`` its pick is the method's best config, and the test split (when there is
    one) scores the pick's and the defaults' fresh-seed checkpoints."""
    s = plan.settings
    row, best = summarize(method, grid, s.max_t, wall, METRIC)
    row["pareto"] = _pareto(grid)
    if s.max_params:
        pruned = Path(s.out) / method / PRUNED
        row["pruned_over_budget"] = len(pruned.read_text().splitlines()) if pruned.exists() else 0
    designs = _designs(grid, Path(s.out) / method) if method == "auto" else {}
    fates = {r.metrics.get("trial_id"): "FAILED" if failed(r) else "FINISHED" for r in grid if r.metrics}
    pick = confirmed.reported if confirmed is not None else None  # the pick's fresh-seed runs
    with checkpoint_files(best, pick.checkpoints[0] if pick and pick.checkpoints else None) as ckpt:
        summary = {k: float(row[k]) for k in ("trials", "stopped_early", "failed", "evals_run",
                                              "evals_if_no_stopping", "wall_s")}
        record = best_record(best, None) if best is not None else None
        if record is not None and ckpt and record["metrics"].get("eval_full") == 0.0 and pick is None:
            _rescore(record, row, ckpt, data, method)
        if pick is not None:
            record = record_pick(Path(s.out) / method, confirmed, row, summary)
        if record is not None and has_test_split(data.specs, s.val_from_train):
            if pick is not None:
                test_confirmation(method, Path(s.out) / method, confirmed, row, summary)
            else:
                test_pick(method, Path(s.out) / method, [ckpt], row, summary)
        if record is not None:  # the files first: they do not depend on MLflow being up
            write_best(Path(s.out), method, record, ckpt)

        def record_in_mlflow() -> None:
            tracker.close_stale_runs(method, fates)  # runs a killed driver could not close
            if record is not None:
                record["run_id"] = tracker.trial_run_id(record["trial_id"])
            tracker.finish_parent(parent, record, summary, ckpt)
            for name in (CONFIRM_JSON, CONFIRM_OUTPUTS, TEST_OUTPUTS):
                if (Path(s.out) / method / name).exists():
                    tracker.client.log_artifact(parent, str(Path(s.out) / method / name))
            for d in designs.values():  # each design's best, as each method's best
                tracker.tag_design_best(d["design"], d["trial_id"])

        row["mlflow_recorded"] = tracker.retrying("recording the best config", record_in_mlflow)
    return row


def _rescore(record: dict[str, Any], row: dict[str, Any], ckpt: str, data, method: str) -> None:
    """The best trial ended on a dev subset (a scheduler stopped it before its last
    evaluation): score its checkpoint on the whole dev set, so "the score" is always that."""
    from trainers.checkpoint import load_checkpoint
    from trainers.loop import evaluate, pick_device

    t0 = time.time()
    model, cfg, _ = load_checkpoint(ckpt)
    device = pick_device(cfg)
    full = evaluate(model.to(device), data, cfg, device)
    m = record["metrics"]
    m["score_subset"], m["score"] = m["score"], full["score"]
    m.update({f"{spec.name}_{spec.metric}": full[spec.name] for spec in data.specs})
    m["eval_rows"], m["eval_full"] = full["eval_rows"], 1.0
    row.update({f"{spec.name}_{spec.metric}": full[spec.name] for spec in data.specs})
    row["best_score"] = full["score"]
    print(f"[{method}] best trial {record['trial_id']} stopped on a dev subset (score "
          f"{m['score_subset']:.4f}); on the whole dev set: {full['score']:.4f} "
          f"({time.time() - t0:.0f} s)", flush=True)


def _pareto(grid) -> list[dict[str, Any]]:
    """The method's trials on the score vs % stored parameters front (last reported values)."""
    points = [{"trial_id": r.metrics.get("trial_id"), "score": float(r.metrics.get(METRIC, math.nan)),
               "stored_pct": float(r.metrics.get("stored_pct", math.nan)),
               "config": resolved_config(r.config)}
              for r in grid if r.metrics and not failed(r)]
    return pareto_front(points, score=lambda p: p["score"], cost=lambda p: p["stored_pct"])


def _designs(grid, out: Path) -> dict[str, dict[str, Any]]:
    """``--method auto``: the best trial of each concrete design, printed and written to
    ``designs.json`` (score, % parameters, config) like a method's best config."""
    best: dict[str, dict[str, Any]] = {}
    for r in grid:
        if not r.metrics or failed(r) or not math.isfinite(r.metrics.get(METRIC, math.nan)):
            continue
        config = resolved_config(r.config)
        name = design_name(config)
        entry = best.setdefault(name, {"design": name, "trials": 0, "score": -math.inf})
        entry["trials"] += 1
        if r.metrics[METRIC] > entry["score"]:
            entry.update(score=float(r.metrics[METRIC]), trial_id=r.metrics.get("trial_id"),
                         stored_pct=float(r.metrics.get("stored_pct", math.nan)), config=config, result=r)
    rows = sorted(best.values(), key=lambda d: -d["score"])
    write_json_atomic(out / "designs.json", [{k: v for k, v in d.items() if k != "result"} for d in rows])
    print("[auto] designs found (best trial each):")
    for d in rows:
        print(f"  {d['design']:<48} score {d['score']:.4f}  {d['stored_pct']:.3f}% params  "
              f"({d['trials']} trial(s), best {d['trial_id']})")
    return best
