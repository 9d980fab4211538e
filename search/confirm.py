"""Confirmation: a method's top configs retrained with new seeds, the winner picked on their mean.

Best-of-N on one seed is biased upward (the winner's curse): the search's best score is partly
the luck of its seed and of the rows it was scored on. ``--confirm K:N`` retrains the search's
top K configs, and the method's defaults (the config a user gets without searching), with N
seeds the search never used, each to the full budget and scored on the whole validation set.
The winner is the candidate with the best mean over seeds; its intervals come from
``search.stats``. The runs are one Tune experiment (``<experiment>-<method>-confirm``, so a
cluster runs them in parallel and ``--resume`` continues them), recorded in MLflow as runs of
kind ``confirm`` nested under the method's parent run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import tune

from search import stats
from search.callbacks import MlflowCallback, Progress, result_files
from search.results import (
    CONFIRM_JSON,
    CONFIRM_OUTPUTS,
    failed,
    is_table_metric,
    numeric_metrics,
    resolved_config,
    write_json_atomic,
)
from search.stats import Interval, Outputs
from search.trainable import OUTPUTS, RUN_KEY, run_confirm

DEFAULT = "default"


@dataclass
class Candidate:
    label: str
    """The search trial it came from (``trial_<id>``) or ``default``."""
    config: dict[str, Any]
    """The resolved flat train config, with the search's seed."""
    search_score: float | None = None
    """Its score in the search (one seed; None for a default that was not a trial)."""
    trial_id: str | None = None
    """The search trial's id (None for a default that was not a trial)."""
    is_default: bool = False
    """The method's defaults (a trial of the search or added for confirmation)."""
    seed_scores: list[float] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    """Its runs' reported numbers (task metrics, parameter shares) averaged over the seeds."""
    checkpoints: list[Any] = field(default_factory=list)
    """Each seed's final checkpoint (a Tune ``Checkpoint``), in seed order."""
    outputs: Outputs | None = None
    interval: Interval | None = None

    @property
    def mean(self) -> float:
        """The mean over seeds; -inf when a seed failed (a config that diverges under some seeds
        is never the pick)."""
        if not self.seed_scores or not all(math.isfinite(s) for s in self.seed_scores):
            return -math.inf
        return sum(self.seed_scores) / len(self.seed_scores)


def confirm_seeds(search_seed: int, n: int) -> list[int]:
    """N seeds no trial of the search used (every trial trains with ``search_seed``), in a block
    of their own per search seed: searches with neighbouring ``--seed`` share none (up to 999
    seeds each), so their confirmations are independent."""
    if not 0 < n < 1000:
        raise ValueError(f"confirmation seeds: 1 to 999 per candidate, not {n}")
    return [1000 * (search_seed + 1) + i for i in range(n)]


def pick_candidates(results: list, k: int, default: dict[str, Any] | None,
                    metric: str = "score") -> list[Candidate]:
    """The top ``k`` distinct configs of the search (furthest-ran first, then by score, as the
    search picks its best), then the defaults when they are not among them."""
    ranked = sorted((r for r in results if r.metrics and not failed(r)
                     and math.isfinite(float(r.metrics.get(metric, math.nan)))),
                    key=lambda r: (int(r.metrics.get("training_iteration", 0)), float(r.metrics[metric])),
                    reverse=True)
    out: list[Candidate] = []
    for r in ranked:
        config = resolved_config(r.config)
        if any(_same(config, c.config) for c in out):
            continue
        tid = r.metrics.get("trial_id")
        out.append(Candidate(f"trial_{tid}", config, float(r.metrics[metric]), trial_id=tid))
        if len(out) == k:
            break
    if default is not None:
        twin = next((c for c in out if _same(c.config, default)), None)
        if twin is not None:
            twin.is_default = True
        else:
            out.append(Candidate(DEFAULT, default, is_default=True))
    return out


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return {k: str(v) for k, v in a.items()} == {k: str(v) for k, v in b.items()}


def run_config(candidate: Candidate, seed: int) -> dict[str, Any]:
    """A confirmation run of ``candidate``: new seed, the full budget, one evaluation at the
    end on the whole validation set."""
    return {**candidate.config, "seed": seed, "eval_every": candidate.config["max_steps"],
            "eval_rows": None, "eval_full": False}


def run_confirmation(method: str, plan, data, tracker, parent: str, concurrency: int,
                     resuming: bool, candidates: list[Candidate], seeds: list[int]) -> bool:
    """Train every candidate with every seed (one Tune experiment) and fill in each candidate's
    seed scores, checkpoints, outputs and interval. False when interrupted."""
    s = plan.settings
    name = f"{s.experiment}-{method}-confirm"
    path = f"{plan.storage_path.rstrip('/')}/{name}"
    runs = [run_config(c, seed) for c in candidates for seed in seeds]
    resources = {"cpu": s.cpus_per_trial, "gpu": s.gpus_per_trial}
    trainable = tune.with_resources(tune.with_parameters(run_confirm, data=data), resources)
    print(f"[{method}] confirming {len(candidates)} config(s) ({', '.join(map(_name, candidates))}) "
          f"with seeds {', '.join(map(str, seeds))}: {len(runs)} runs of {s.max_steps} steps", flush=True)
    if tune.Tuner.can_restore(path):
        if not resuming:
            raise FileExistsError(f"a Tune experiment already exists at {path}; pass --resume to "
                                  "continue it, or another --experiment or --storage-path")
        print(f"[{method}] resuming the confirmation {path}", flush=True)
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True)
    else:
        callbacks = [MlflowCallback(plan.mlflow_uri, tracker.experiment_id, parent, method, 1,
                                    kind="confirm"),
                     Progress(f"{method} confirm", len(runs), 1), *result_files()]
        tuner = tune.Tuner(
            trainable, param_space={RUN_KEY: tune.grid_search(runs)},
            tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=concurrency,
                                        reuse_actors=True),
            run_config=tune.RunConfig(name=name, storage_path=plan.storage_path, callbacks=callbacks,
                                      verbose=0, log_to_file=True,
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                                      failure_config=tune.FailureConfig(max_failures=2)))
    grid = tuner.fit()
    if grid.num_terminated + grid.num_errors < len(runs):
        return False
    _collect(grid, candidates)
    return True


def _collect(grid, candidates: list[Candidate]) -> None:
    """Each candidate's seed scores, checkpoint folders and per-row outputs (in seed order)."""
    by_run: dict[tuple[int, int], tuple[float, Any, Outputs | None, dict[str, float]]] = {}
    for r in grid:
        run = r.config[RUN_KEY]
        index = next(i for i, c in enumerate(candidates) if _same(_strip(c.config), _strip(run)))
        score = float((r.metrics or {}).get("score", math.nan)) if not failed(r) else math.nan
        outputs = None
        if r.checkpoint is not None and math.isfinite(score):
            with r.checkpoint.as_directory() as folder:  # local or cloud storage alike
                file = Path(folder) / OUTPUTS
                outputs = Outputs.load(file) if file.exists() else None
        by_run[(index, int(run["seed"]))] = (score, r.checkpoint, outputs, numeric_metrics(r.metrics or {}))
    for i, c in enumerate(candidates):
        mine = sorted((seed, v) for (j, seed), v in by_run.items() if j == i)
        c.seed_scores = [v[0] for _, v in mine]
        c.checkpoints = [v[1] for _, v in mine if v[1] is not None]
        reported = [v[3] for _, v in mine if math.isfinite(v[0])]
        keys = set.intersection(*(set(m) for m in reported)) if reported else set()
        c.metrics = {k: sum(m[k] for m in reported) / len(reported) for k in sorted(keys)
                     if k not in ("step", "training_iteration", "time_total_s")}
        outs = [v[2] for _, v in mine if v[2] is not None]
        if outs and len(outs) == len(mine):
            c.outputs = Outputs.stack(outs)
            c.interval = stats.interval(c.outputs)


def _strip(config: dict[str, Any]) -> dict[str, Any]:
    """A config without what a confirmation run changes."""
    return {k: v for k, v in config.items() if k not in ("seed", "eval_every", "eval_rows", "eval_full")}


def winner(candidates: list[Candidate]) -> Candidate | None:
    """The candidate with the best mean over seeds; None when every one failed."""
    best = max(candidates, key=lambda c: c.mean, default=None)
    return best if best is not None and math.isfinite(best.mean) else None


def summary_numbers(candidates: list[Candidate], best: Candidate) -> dict[str, float]:
    """The parent run's confirmation metrics: the winner's confirmed score and intervals, its
    search score, and (when the defaults were confirmed) the gain over them with its interval."""
    out: dict[str, float] = {"confirmed_score": best.mean, "confirmed_seeds": float(len(best.seed_scores))}
    if best.search_score is not None:
        out["search_score"] = best.search_score
    if best.interval is not None:
        iv = best.interval
        out.update(confirmed_lo=iv.lo, confirmed_hi=iv.hi, confirmed_row_lo=iv.row_lo,
                   confirmed_row_hi=iv.row_hi)
        if math.isfinite(iv.seed_half):
            out["confirmed_seed_half"] = iv.seed_half
    default = next((c for c in candidates if c.is_default), None)
    if default is not None and math.isfinite(default.mean):
        out["default_score"] = default.mean
        if default is not best and default.outputs is not None and best.outputs is not None:
            d = stats.difference(best.outputs, default.outputs)
            out.update(gain_over_default=d.mean, gain_lo=d.lo, gain_hi=d.hi)
        elif default is best:
            out.update(gain_over_default=0.0)
    return out


def _name(c: Candidate) -> str:
    return f"{c.label} (= {DEFAULT})" if c.is_default and c.label != DEFAULT else c.label


def table(method: str, candidates: list[Candidate], best: Candidate | None) -> str:
    """What the terminal shows after a method's confirmation."""
    lines = [f"[{method}] confirmation (mean of {len(candidates[0].seed_scores)} new seeds, whole "
             "validation set; 95% interval over seeds and rows):"]
    for c in sorted(candidates, key=lambda c: -c.mean):
        iv = c.interval
        span = f"[{iv.lo:.4f}, {iv.hi:.4f}]" if iv is not None else "(no interval)"
        search = f"search {c.search_score:.4f}" if c.search_score is not None else "not a trial"
        mark = "  <- confirmed best" if c is best else ""
        mean = f"{c.mean:.4f}" if math.isfinite(c.mean) else "failed"
        lines.append(f"  {_name(c):<28} {mean} {span}  ({search}){mark}")
    return "\n".join(lines)


def default_config(plan, method: str) -> dict[str, Any] | None:
    """The resolved config of the method's defaults (with the search's fixed values), which
    confirmation retrains beside the top configs, whether or not the search began with them
    (``--no-default-trial``); None for ``auto`` and when a default lies outside the space."""
    from search.warm import default_point

    if method == "auto":
        return None
    space = plan.spaces[method]
    point = default_point(space, method, lambda _: None, plan.constants[method])
    if point is None:
        return None
    fixed = {d.name: d.value for d in space.dims if d.kind == "fixed"}  # as every trial has them
    return resolved_config({**plan.constants[method], **fixed, **point})


def record_pick(out: Path, candidates: list[Candidate], pick: Candidate, row: dict[str, Any],
                summary: dict[str, float]) -> dict[str, Any]:
    """The confirmed pick as the method's best record (config, metrics; the parent run's best):
    its numbers go into the table ``row`` and the parent run's ``summary``, every candidate into
    ``out/confirm.json``, its per-row validation outputs into ``out/confirm_outputs.npz``."""
    numbers = summary_numbers(candidates, pick)
    summary.update(numbers)
    row.update({k: numbers[k] for k in ("confirmed_score", "confirmed_lo", "confirmed_hi",
                                         "default_score", "gain_over_default") if k in numbers})
    # the task metrics and parameter shares of the pick, not of the search best
    row.update({k: v for k, v in pick.metrics.items() if is_table_metric(k)})
    write_json_atomic(out / CONFIRM_JSON, {
        "winner": pick.label, "seeds": len(pick.seed_scores),
        "candidates": [{"label": c.label, "is_default": c.is_default, "search_score": c.search_score,
                        "seed_scores": c.seed_scores, "mean": c.mean if math.isfinite(c.mean) else None,
                        "interval": c.interval.to_dict() if c.interval else None,
                        "checkpoints": [str(getattr(k, "path", k)) for k in c.checkpoints],
                        "config": c.config} for c in candidates]})
    if pick.outputs is not None:
        pick.outputs.save(out / CONFIRM_OUTPUTS)
    return {"config": pick.config, "trial_id": pick.trial_id or pick.label, "run_id": None,
            "metrics": {**pick.metrics, "score": pick.mean}}
