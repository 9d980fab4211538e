"""Confirmation: a method's top configs retrained with new seeds, the pick reported on data that
did not choose it.

Best-of-N on one seed is biased upward (the winner's curse): the search's best score is partly
the luck of its seed and of the rows it was scored on. ``--confirm K:N`` does it in two steps,
each trained to the full budget and scored on the whole validation set:

1. **selection**: the search's top K configs and the method's defaults (the config a user gets
   without searching) with N seeds no trial used; the pick is the best mean. That mean is the
   best of K+1 noisy means, so it is biased upward too (simulated: +1.1 points with 3 equal
   candidates, N=3, 300 rows; ``tests/test_confirm.py``) and is kept only as the selection mean;
2. **fresh seeds**: the pick and the defaults retrained with N more seeds, disjoint from the
   selection's: the confirmed score, its interval (``search.stats``) and the gain over the
   defaults (paired by seed and row) come from these runs. New seeds remove the seeds' share of
   the selection bias; the validation rows still helped choose the pick, so a small upward bias
   from the rows remains in the confirmed score. The test split (``search.selection.heldout``), when
   there is one, scores these same fresh checkpoints of the pick and of the defaults: neither
   its rows nor these seeds chose anything, so its figures are the ones to quote.

(K+1) x N runs, then 2 x N (N when the defaults are the pick). Each step is one Tune experiment
(``<experiment>-<method>-confirm``, then ``-fresh``: a cluster runs a step's runs in parallel
and ``--resume`` continues them); every run keeps its final checkpoint (``num_to_keep=1``, one
per run), so the defaults' fresh ones can be scored on the test split. MLflow records each run
as a run of kind ``confirm`` nested under the method's parent run (the fresh ones have the seeds
of the block's second half).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray import tune

from search import stats
from search.callbacks import MlflowCallback, Progress, result_files
from search.experiments import restored, run_settings, trainable
from search.results import (
    CONFIRM_JSON,
    CONFIRM_OUTPUTS,
    failed,
    is_table_metric,
    numeric_metrics,
    progress_of,
    resolved_config,
    write_json_atomic,
)
from search.selection.seeds import SEED_BLOCK, confirm_seeds  # noqa: F401 - re-exported
from search.stats import Interval, Outputs
from search.trainable import OUTPUTS, RUN_KEY, run_confirm, run_of

if TYPE_CHECKING:
    from search.schedule.stops import RunsStop

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


def pick_candidates(results: list, k: int, default: dict[str, Any] | None,
                    metric: str = "score") -> list[Candidate]:
    """The top ``k`` distinct configs of the search (furthest-ran first, then by score, as the
    search picks its best), then the defaults when they are not among them."""
    ranked = sorted((r for r in results if r.metrics and not failed(r)
                     and math.isfinite(float(r.metrics.get(metric, math.nan)))),
                    key=lambda r: (progress_of(r), float(r.metrics[metric])),
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
    return run_of(candidate.config, seed)


def run_confirmation(method: str, plan, data, tracker, parent: str, concurrency: int,
                     resuming: bool, candidates: list[Candidate], seeds: list[int],
                     step: str = "confirm", ledger=None, stop: RunsStop | None = None) -> bool:
    """Train every candidate with every seed (one Tune experiment, ``<experiment>-<method>-<step>``)
    and fill in each candidate's seed scores, checkpoints, outputs and interval. False when
    interrupted. ``ledger`` (``--budget``): charged with each run's seconds. ``stop``
    (``search.schedule.stops.RunsStop``): when it fires, the runs' seconds and what it says the
    stopped runs held are charged, and no candidate is filled in (True: not interrupted)."""
    s = plan.settings
    name = f"{s.experiment}-{method}-{step}"
    runs = [run_config(c, seed) for c in candidates for seed in seeds]
    fn = trainable(run_confirm, plan, data)
    doing = "confirming" if step == "confirm" else "retraining with fresh seeds"
    print(f"[{method}] {doing} {len(candidates)} config(s) ({', '.join(map(_name, candidates))}) "
          f"with seeds {', '.join(map(str, seeds))}: {len(runs)} runs of {s.max_steps} steps", flush=True)
    tuner = restored(plan, name, fn, resuming)
    if stop is not None:
        stop.attach(name)  # a restored experiment's own copy asks it
    if tuner is not None:
        print(f"[{method}] resuming the confirmation {plan.storage_path.rstrip('/')}/{name}", flush=True)
    else:
        callbacks = [MlflowCallback(plan.mlflow_uri, tracker.experiment_id, parent, method, 1,
                                    kind="confirm"),
                     Progress(f"{method} {step}", len(runs), 1), *result_files()]
        tuner = tune.Tuner(
            fn, param_space={RUN_KEY: tune.grid_search(runs)},
            tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=concurrency,
                                        reuse_actors=True),
            run_config=replace(run_settings(plan, name, callbacks, keep_one=True), stop=stop))
    grid = tuner.fit()
    stopped = stop is not None and stop.why is not None
    if grid.num_terminated + grid.num_errors < len(runs) and not stopped:
        if stop is not None and ledger is not None:
            held = stop.charge_interrupted(method, grid)
            print(f"[{method}] interrupted: {held:.0f} s its runs held unreported charged", flush=True)
        return False
    if not stopped:
        _collect(grid, candidates)
    if ledger is not None:
        reported = 0.0
        for i, r in enumerate(grid):
            seconds = float((r.metrics or {}).get("time_total_s", 0.0) or 0.0)
            ledger.charge("confirm", method, seconds, run_id=f"{name}:{i}", index=1)
            reported += seconds
        if stopped:
            stop.charge_stopped(method, reported)
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


@dataclass
class Confirmation:
    """A method's confirmation: the selection step, its pick, and the fresh-seed runs that report
    it (the pick first, then the defaults when they are not the pick)."""

    candidates: list[Candidate]
    pick: Candidate | None
    """The best selection mean (None when every candidate failed)."""
    fresh: list[Candidate] = field(default_factory=list)

    @property
    def reported(self) -> Candidate | None:
        """The pick as retrained with fresh seeds."""
        return self.fresh[0] if self.fresh else None

    @property
    def default(self) -> Candidate | None:
        """The defaults as retrained with fresh seeds (the reported pick when they are the pick)."""
        return next((c for c in self.fresh if c.is_default), None)


def fresh_candidates(candidates: list[Candidate], pick: Candidate) -> list[Candidate]:
    """The pick, then the defaults unless they are the pick, to retrain with fresh seeds."""
    default = next((c for c in candidates if c.is_default and c is not pick), None)
    return [Candidate(c.label, c.config, c.search_score, c.trial_id, c.is_default)
            for c in [pick] + ([default] if default is not None else [])]


def confirm(method: str, plan, data, tracker, parent: str, concurrency: int, resuming: bool,
            candidates: list[Candidate], n: int) -> Confirmation | None:
    """Both steps: the candidates with N selection seeds, then the pick and the defaults with N
    fresh ones. None when interrupted (``--resume`` goes on with it)."""
    seed = plan.settings.seed
    if not run_confirmation(method, plan, data, tracker, parent, concurrency, resuming, candidates,
                            confirm_seeds(seed, n)):
        return None
    conf = Confirmation(candidates, winner(candidates))
    if conf.pick is None:
        return conf
    conf.fresh = fresh_candidates(candidates, conf.pick)
    if not run_confirmation(method, plan, data, tracker, parent, concurrency, resuming, conf.fresh,
                            confirm_seeds(seed, n, fresh=True), step="fresh"):
        return None
    return conf


def summary_numbers(conf: Confirmation) -> dict[str, float]:
    """The parent run's confirmation metrics: the pick's fresh-seed (confirmed) score and its
    intervals, its selection mean and search score, and, with the defaults, their fresh-seed
    score and the gain over them (paired by seed and row) with its interval."""
    pick, reported, default = conf.pick, conf.reported, conf.default
    assert pick is not None and reported is not None, "a confirmation without a pick"
    finite = math.isfinite(reported.mean)  # a fresh seed failed: the pick has no confirmed score
    out: dict[str, float] = {"confirmed_score": reported.mean if finite else math.nan,
                             "confirmed_seeds": float(len(reported.seed_scores))}
    if math.isfinite(pick.mean):  # a --budget pick whose race ran no round has no selection seeds
        out["selection_score"] = pick.mean
    if pick.search_score is not None:
        out["search_score"] = pick.search_score
    if reported.interval is not None:
        iv = reported.interval
        out.update(confirmed_lo=iv.lo, confirmed_hi=iv.hi, confirmed_row_lo=iv.row_lo,
                   confirmed_row_hi=iv.row_hi)
        if math.isfinite(iv.seed_half):
            out["confirmed_seed_half"] = iv.seed_half
    if default is not None and math.isfinite(default.mean):
        out["default_score"] = default.mean
        if default is reported:
            out.update(gain_over_default=0.0)
        elif default.outputs is not None and reported.outputs is not None:
            d = stats.difference(reported.outputs, default.outputs)
            out.update(gain_over_default=d.mean, gain_lo=d.lo, gain_hi=d.hi)
    return out


def _name(c: Candidate) -> str:
    return f"{c.label} (= {DEFAULT})" if c.is_default and c.label != DEFAULT else c.label


def _line(c: Candidate, mark: str = "") -> str:
    iv = c.interval
    span = f"[{iv.lo:.4f}, {iv.hi:.4f}]" if iv is not None else "(no interval)"
    search = f"search {c.search_score:.4f}" if c.search_score is not None else "not a trial"
    mean = f"{c.mean:.4f}" if math.isfinite(c.mean) else "failed"
    return f"  {_name(c):<28} {mean} {span}  ({search}){mark}"


def table(method: str, conf: Confirmation) -> str:
    """What the terminal shows after a method's confirmation: both steps."""
    n = len(conf.candidates[0].seed_scores)
    lines = [f"[{method}] confirmation, selection (mean of {n} new seeds, whole validation set; 95% "
             "interval over seeds and rows; the best mean is biased upward, it was chosen on it):"]
    lines += [_line(c, "  <- pick" if c is conf.pick else "")
              for c in sorted(conf.candidates, key=lambda c: -c.mean)]
    if conf.fresh:
        lines.append(f"[{method}] the pick and the defaults retrained with {n} fresh seeds (the "
                     "confirmed score; the validation rows still helped choose the pick):")
        lines += [_line(c, "  <- confirmed pick" if c is conf.reported else "") for c in conf.fresh]
    return "\n".join(lines)




def _candidate_record(c: Candidate) -> dict[str, Any]:
    return {"label": c.label, "is_default": c.is_default, "search_score": c.search_score,
            "seed_scores": c.seed_scores, "mean": c.mean if math.isfinite(c.mean) else None,
            "interval": c.interval.to_dict() if c.interval else None,
            "checkpoints": [str(getattr(k, "path", k)) for k in c.checkpoints], "config": c.config}


def record_pick(out: Path, conf: Confirmation, row: dict[str, Any],
                summary: dict[str, float]) -> dict[str, Any]:
    """The confirmed pick as the method's best record (config, metrics of its fresh-seed runs;
    the parent run's best): its numbers go into the table ``row`` and the parent run's
    ``summary``, both steps into ``out/confirm.json``, the fresh-seed runs' per-row validation
    outputs into ``out/confirm_outputs.npz``."""
    pick, reported = conf.pick, conf.reported
    assert pick is not None and reported is not None, "a confirmation without a pick"
    numbers = summary_numbers(conf)
    summary.update(numbers)
    row.update({k: numbers[k] for k in ("confirmed_score", "confirmed_lo", "confirmed_hi", "selection_score",
                                         "default_score", "gain_over_default") if k in numbers})
    # the task metrics and parameter shares of the pick, not of the search best
    row.update({k: v for k, v in reported.metrics.items() if is_table_metric(k)})
    write_json_atomic(out / CONFIRM_JSON, {
        "winner": pick.label, "seeds": len(pick.seed_scores),
        "candidates": [_candidate_record(c) for c in conf.candidates],
        "fresh": [_candidate_record(c) for c in conf.fresh]})
    if reported.outputs is not None:
        reported.outputs.save(out / CONFIRM_OUTPUTS)
    return {"config": pick.config, "trial_id": pick.trial_id or pick.label, "run_id": None,
            "metrics": {**reported.metrics, "score": numbers["confirmed_score"]}}
