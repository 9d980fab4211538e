"""``--budget``: one budget of trial-time in, one defended answer out (issue 26).

The stages, each charged to one ledger (``search.schedule.budget``, saved as ``budget.json`` so
``--resume`` goes on with what was left; time while the search was stopped is never charged):

1. **Pool** (``search.schedule.stage``): every method's trials in one Tune experiment; a method
   separably behind the leader at equal steps gets no new trials; no trial starts that the budget
   left, less the race's reserve, cannot pay to its end.
2. **Race** (``search.selection.racing``): each surviving method's best config, then as the
   reserve allows the methods' defaults and next leaders (``_race_candidates``), get seeds in
   rounds, planned as sequential halving over the reserve (the worse half by mean cut after each
   phase, no claim made); one separably behind the leader is dropped; it stops on one survivor or
   when the plan's rounds have run or the reserve cannot pay another round.
3. **Fresh seeds and the test split**: the race's leader, the best candidate of another method
   (the runner-up) and their methods' defaults (when they raced) are retrained with seeds the
   race never used, 3 or as many as 5 when the budget left pays;
   the test split scores them (``search.selection.heldout``). The reported figures come from these runs: the
   race's seeds chose the leader, so its race mean is biased upward.

The driver records each method as a per-method search does (``search.recording.record_method``) and then calls
``answer`` for the verdict.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search import stats
from search.results import CONFIRM_OUTPUTS, TEST_OUTPUTS, progress_of, write_json_atomic
from search.schedule.budget import Ledger, format_duration, parse_duration
from search.schedule.calibrate import sized_steps
from search.schedule.costs import Costs, run_cost
from search.schedule.gate import RESERVE_SHARE
from search.schedule.methods import MethodAllocator
from search.schedule.stage import run_pool
from search.schedule.stops import RunsStop
from search.selection.confirm import Candidate as Pick
from search.selection.confirm import (
    Confirmation,
    confirm_seeds,
    pick_candidates,
    run_confirmation,
)
from search.selection.race_tune import load_race, run_round, save_race
from search.selection.racing import Candidate, Race
from search.stats import Outputs
from search.warm import default_config

BUDGET_FILE = "budget.json"
ANSWER_FILE = "answer.json"
LEADERS = 2
"""Configs per surviving method that enter the race (beside its defaults)."""
FRESH_SEEDS = 3
"""Seeds of the runs that report the answer, as planned (2 when the budget left pays no more)."""
MOST_FRESH_SEEDS = 5
"""... and as many as this when the budget left after the race pays for them: what the race and
the estimates left unspent (7-12% of B on CS224N, BENCHMARKS §15) narrows the answer's interval."""
FRESH_FILE = "fresh.json"
"""method -> the fresh seeds chosen for it, so ``--resume`` retrains with the same seeds."""


@dataclass
class BudgetOutcome:
    by_method: dict[str, list]
    """method -> its pool trials' Tune results."""
    confirmations: dict[str, Confirmation] = field(default_factory=dict)
    """The methods retrained with fresh seeds: their pick and defaults (``recording.record_method``)."""
    race: dict[str, Any] | None = None
    eliminated: dict[str, dict[str, Any]] = field(default_factory=dict)
    ledger: Ledger | None = None
    wall_s: float = 0.0
    fresh_note: str | None = None
    """Why a finalist got no fresh seeds (the budget left, ``--deadline``, its runs stopped): the
    runner-up, or the leader and with it the runner-up."""


def run_budgeted(plan, data, tracker, parents: dict[str, str], concurrency: int,
                 resuming: bool, deadline_at: float | None = None) -> BudgetOutcome | None:
    """The three stages; None when interrupted (``--resume`` goes on where it stopped).
    ``deadline_at``: ``--deadline``'s wall clock (epoch seconds), this invocation's only."""
    s = plan.settings
    out = Path(s.out)
    budget_s = parse_duration(s.budget)
    path = out / BUDGET_FILE
    ledger = Ledger.load(path) if path.exists() else Ledger(budget_s, path)
    ledger.set_deadline(deadline_at, concurrency)
    ledger.save()
    if s.steps_from_budget:
        sized = sized_steps(plan, data, concurrency, resuming, ledger)
        if sized is None:
            return None
        print(f"[budget] sized from the measured costs: {sized.describe()}", flush=True)
    reserve_s = RESERVE_SHARE * min(budget_s, ledger.used + max(ledger.left, 0.0))  # --deadline caps it
    print(f"budget {format_duration(budget_s)} of trial-time ({format_duration(ledger.used)} used): "
          f"a pool of {', '.join(s.methods)} trials ({s.max_steps} steps, evaluated every "
          f"{s.eval_every}, {s.scheduler} rungs per method) while the budget less "
          f"{format_duration(reserve_s)} pays for them; then each method's best (and, as the reserve "
          f"allows, its defaults) race on new seeds, and the answer is retrained with {FRESH_SEEDS} "
          f"fresh seeds (up to {MOST_FRESH_SEEDS} when the budget left pays)", flush=True)
    if ledger.deadline_at is not None:
        print(f"[budget] --deadline: every run ends within {format_duration(ledger.wall_left)} on the "
              f"clock; of the budget, at most {concurrency} slot(s) x that is left "
              f"({format_duration(max(ledger.left, 0.0))})", flush=True)
    pool = run_pool(plan, data, tracker, parents, concurrency, resuming, MethodAllocator(list(s.methods)),
                    ledger, reserve_s)
    if pool is None:
        return None
    ledger = Ledger.load(path)  # the pool's searcher charged (and saved) its own copy
    outcome = BudgetOutcome(pool.by_method, eliminated=pool.state.get("eliminated", {}), ledger=ledger,
                            wall_s=pool.wall_s)
    for method, why in outcome.eliminated.items():
        print(f"[{method}] no new trials after evaluation {why['when']}: {why['why']}", flush=True)
    # Each race round and each method's fresh seeds is a Tune experiment of its own, on new
    # workers: each of its first `concurrency` runs also pays the cold start the pool measured.
    costs = Costs(run_cost(pool.by_method, s.max_t), float(pool.state.get("cold_start_s") or 0.0),
                  concurrency)
    race = load_race(out)
    if race is None:
        fresh_s = 2 * costs.experiment(3 * FRESH_SEEDS / 2)  # two methods' fresh runs, at most
        picks = _race_candidates(plan, pool.by_method, outcome.eliminated, ledger.left - fresh_s, costs)
        if not picks:
            print("[race] no method has a finite score: nothing to race", flush=True)
            return outcome
        race = Race(picks, reserve_s=max(ledger.left - fresh_s, 0.0),
                    cost_per_run_s=max(costs.experiment(len(picks)) / len(picks), 1e-3), search_seed=s.seed)
        save_race(out, race)
    while not race.done:
        if ledger.deadline_at is not None and not race.pending and not ledger.fits(
                costs.experiment(len(race.alive)), wall=costs.wall(len(race.alive))):
            race.stopped = (f"--deadline: another round would end after it "
                            f"({format_duration(ledger.wall_left)} left)")
            save_race(out, race)
            break
        if not run_round(plan, data, tracker, parents, concurrency, resuming, race, ledger):
            return None
        resuming = False  # only the round that was open when the search stopped is restored
    result = race.result()
    outcome.race = result.to_dict()
    last = [sec for runs in race.runs.values() for seed, _, sec in runs
            if race.round and seed == race.seed(race.round)]
    costs.observe(len(last), sum(last))  # the race's last round, measured: what the fresh runs cost now
    if result.rounds == 0:
        print(f"[race] no round was run ({result.stopped}); {len(race.candidates)} candidate(s): "
              f"the fresh seeds decide among the leader ({result.leader}) and the best of another "
              "method", flush=True)
    else:
        print(f"[race] {result.verdict} ({result.rounds} round(s), {result.runs} runs, stopped: "
              f"{result.stopped})", flush=True)
    if result.leader is None:
        return outcome
    fresh = _fresh(plan, data, tracker, parents, concurrency, resuming, race, ledger, costs)
    if fresh is None:
        return None
    outcome.confirmations, outcome.fresh_note = fresh
    outcome.ledger = ledger
    return outcome


def _race_candidates(plan, by_method: dict[str, list], eliminated: dict, reserve_s: float,
                     costs: Costs) -> list[Candidate]:
    """The race's entrants, in the order of what the race is for: the best config of each
    surviving method (the methods compared), then each one's defaults (is tuning worth it), then
    each one's next ``LEADERS - 1`` configs; within each, the methods by their pool standing. The
    longest such prefix of which two seeds each fit the reserve, never fewer than the first two
    (the two leading methods' bests; one method's best and its defaults when one method is left).

    Measured on CS224N (BENCHMARKS §15, seeds 1 and 2): a reserve that paid for three entrants
    raced one method's two leaders and its defaults, and the answer compared no methods."""
    scored = {m: [r for r in rs if r.metrics and math.isfinite(float(r.metrics.get("score", math.nan)))]
              for m, rs in by_method.items() if m not in eliminated}
    best = {m: max((progress_of(r), float(r.metrics["score"])) for r in rs) for m, rs in scored.items() if rs}
    methods = sorted(best, key=lambda m: best[m], reverse=True)
    per: dict[str, list[Candidate]] = {}
    for m in methods:
        per[m] = [Candidate(f"{m}:{c.label}", m, c.config, c.is_default)
                  for c in pick_candidates(by_method[m], LEADERS, default_config(plan, m))]
    firsts = [cs[0] for cs in per.values() if cs]
    defaults = [c for cs in per.values() for c in cs[1:] if c.is_default]
    seconds = [c for cs in per.values() for c in cs[1:] if not c.is_default]
    order = firsts + defaults + seconds
    keep = next((k for k in range(len(order), 2, -1) if 2 * costs.experiment(k) <= reserve_s),
                min(2, len(order)))
    return order[:keep]


def _fresh(plan, data, tracker, parents, concurrency, resuming, race: Race, ledger: Ledger,
           costs: Costs) -> tuple[dict[str, Confirmation], str | None] | None:
    """The race's leader, the runner-up (the best candidate of another method) and the leader's
    method defaults retrained with fresh seeds, as many as the budget left pays (2 to
    ``MOST_FRESH_SEEDS``); per method a ``Confirmation`` for the driver to record and test, and why a
    finalist has none (the budget left or the deadline paid for none, or its runs were stopped:
    ``RunsStop``). None when interrupted."""
    s = plan.settings
    leader = race.leader
    by_name = {c.name: c for c in race.candidates}
    order = [by_name[n] for n in race.standing()]  # survivors, then later leavers; failed: -inf
    top = next(c for c in order if c.name == leader)
    runner = next((c for c in order if c.method != top.method), None)
    finalists = {top.method: top, **({runner.method: runner} if runner else {})}
    runs = {m: [c] + ([d] if (d := _default_of(race, m)) is not None and d is not c else [])
            for m, c in finalists.items()}
    chosen_file = Path(s.out) / FRESH_FILE
    chosen_n = json.loads(chosen_file.read_text()) if chosen_file.exists() else {}
    n_all = (max(chosen_n.values()) if chosen_n else
             costs.seeds_that_fit(ledger, [len(c) for c in runs.values()], MOST_FRESH_SEEDS))
    if n_all == 0:
        clock = "" if ledger.deadline_at is None else f", --deadline in {format_duration(ledger.wall_left)}"
        note = f"the budget left ({format_duration(max(ledger.left, 0.0))}{clock}) pays for no fresh seeds"
        print(f"[answer] {note}: the answer is the race's (its figures chose it: biased upward)", flush=True)
        return {}, note
    confirmations: dict[str, Confirmation] = {}
    for i, (method, chosen) in enumerate(runs.items()):
        # The runner-up's runs are costed again from the leader's, just measured: a machine slowed
        # by other work since the pool or the race is seen here (fewer seeds, or none).
        n = int(chosen_n.get(method)
                or (n_all if i == 0 else costs.seeds_that_fit(ledger, [len(chosen)], n_all)))
        if n == 0:
            note = (f"the budget left ({format_duration(ledger.left)}) paid no fresh seeds for {method}: "
                    f"the leader's fresh runs took {costs.factor:.2f}x their estimate")
            print(f"[answer] {note}", flush=True)
            return confirmations, note
        chosen_n[method] = n
        write_json_atomic(chosen_file, chosen_n)
        picks = [_pick(race, c) for c in race.candidates if c.method == method]
        fresh = [Pick(p.label, p.config, p.search_score, p.trial_id, p.is_default)
                 for p in picks if p.label in {c.name for c in chosen}]
        fresh.sort(key=lambda p: p.is_default and p.label != finalists[method].name)
        before = ledger.used
        stop = RunsStop(ledger, n * len(fresh), concurrency)
        if not run_confirmation(method, plan, data, tracker, parents[method], concurrency, resuming, fresh,
                                confirm_seeds(s.seed, n, fresh=True), step="fresh", ledger=ledger, stop=stop):
            return None
        if stop.why is not None:
            held = format_duration(ledger.used - before)
            note = f"{method}'s fresh runs were stopped ({stop.why}; {held} charged): it has no fresh seeds"
            print(f"[answer] {note}", flush=True)
            return confirmations, note
        costs.observe(n * len(fresh), ledger.used - before)
        pick = next(p for p in picks if p.label == finalists[method].name)
        confirmations[method] = Confirmation(picks, pick, fresh)
    return confirmations, None


def _default_of(race: Race, method: str) -> Candidate | None:
    return next((c for c in race.candidates if c.method == method and c.is_default), None)


def _pick(race: Race, c: Candidate) -> Pick:
    """A race candidate as ``search.selection.confirm`` records one (its race seeds as selection seeds)."""
    pick = Pick(c.name, c.config, is_default=c.is_default)
    pick.seed_scores = race.scores(c.name)
    return pick


# ---- the answer ------------------------------------------------------------------------------
def answer(plan, outcome: BudgetOutcome, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The verdict from the fresh-seed runs (test split when there is one, else validation):
    the winner with its score and interval, the runner-up and the lead with its interval, or a
    tie and what more budget would likely decide it; per method how far it got. Written to
    ``answer.json`` and printed."""
    s = plan.settings
    out = Path(s.out)
    ledger = outcome.ledger or Ledger.load(out / BUDGET_FILE)
    race = outcome.race or {}
    by_row = {r["method"]: r for r in rows}
    finalists = list(outcome.confirmations)
    tested = finalists and all((out / m / TEST_OUTPUTS).exists() for m in finalists)
    split = "test" if tested else "validation"
    file = TEST_OUTPUTS if split == "test" else CONFIRM_OUTPUTS
    outputs = {m: Outputs.load(out / m / file) for m in finalists if (out / m / file).exists()}
    record: dict[str, Any] = {
        "budget_s": ledger.budget_s, "used_s": ledger.used, "used_share": ledger.share_used,
        "by_stage_s": {k: ledger.spent(kind=k) for k in ("trial", "confirm", "interrupted")},
        "split": split, "race": race, "methods": _method_rows(outcome, by_row, ledger)}
    if outcome.fresh_note:
        record["fresh_note"] = outcome.fresh_note
    if not outputs:
        record["verdict"] = race.get("verdict", "no answer: no method reported a finite score")
        return _write(out, record)
    top = finalists[0]
    iv = stats.interval(outputs[top])
    record["winner"] = {"method": top, "config": outcome.confirmations[top].pick.config,
                        "score": iv.mean, "lo": iv.lo, "hi": iv.hi, "seeds": iv.seeds, "rows": iv.rows}
    if len(finalists) > 1 and finalists[1] in outputs:
        runner = finalists[1]
        d = stats.difference(outputs[top], outputs[runner])
        riv = stats.interval(outputs[runner])
        record["runner_up"] = {"method": runner, "score": riv.mean, "lo": riv.lo, "hi": riv.hi}
        record["lead"] = {"points": 100 * d.mean, "lo": 100 * d.lo, "hi": 100 * d.hi}
        if stats.separable(d) and d.mean > 0:
            record["verdict"] = (f"{top} wins: {iv.mean:.4f} [{iv.lo:.4f}, {iv.hi:.4f}] on the {split} "
                                 f"split, {100 * d.mean:+.2f} points [{100 * d.lo:+.2f}, {100 * d.hi:+.2f}] "
                                 f"over {runner}")
        else:
            more = _to_decide(d, abs(d.mean))
            record["verdict"] = (f"not separable at this budget: {top} and {runner} tie on the {split} "
                                 f"split ({100 * d.mean:+.2f} points [{100 * d.lo:+.2f}, "
                                 f"{100 * d.hi:+.2f}]); to decide it: {more}")
    else:
        raced = sorted(set((race.get("methods") or {}).values()))
        others = [m for m in s.methods if m != top]
        why = (outcome.fresh_note if outcome.fresh_note else
               "no other method reached the race's end" if len(raced) > 1 else
               f"only {top}'s candidates entered the race: the budget left paid for no more"
               if others else "the only method searched")
        record["verdict"] = f"{top}: {iv.mean:.4f} [{iv.lo:.4f}, {iv.hi:.4f}] on the {split} split ({why})"
    return _write(out, record)


def _to_decide(d, gap: float) -> str:
    """What more budget would likely separate a tie: the fresh seeds per candidate at which the
    observed gap would leave the interval (``racing.to_decide``), if it holds."""
    from search.selection.racing import to_decide

    need = to_decide(gap, d.seed_half, d.rows_half, d.seeds, stats.LEVEL)
    if need is None:
        return ("no number of seeds would at this gap: the rows' part of the interval covers it "
                "(more evaluation rows, or a longer budget per run, might)")
    return f"about {need} seeds per candidate instead of {d.seeds}, if the observed gap holds (an estimate)"


def _method_rows(outcome: BudgetOutcome, by_row: dict[str, dict], ledger: Ledger) -> dict[str, dict]:
    spent = ledger.by_method()
    rows = {}
    for method, results in outcome.by_method.items():
        gone = outcome.eliminated.get(method)
        rows[method] = {"trials": len(results), "trial_time_s": spent.get(method, 0.0),
                        "best_score": by_row.get(method, {}).get("best_score"),
                        "stopped_receiving": gone["why"] if gone else None}
    return rows


def _write(out: Path, record: dict[str, Any]) -> dict[str, Any]:
    from search.results import json_safe

    write_json_atomic(out / ANSWER_FILE, json_safe(record))
    print(f"\nanswer: {record['verdict']}\nbudget used {format_duration(record['used_s'])} of "
          f"{format_duration(record['budget_s'])} ({100 * record['used_share']:.1f}%)", flush=True)
    for method, row in record["methods"].items():
        why = f"; no new trials: {row['stopped_receiving']}" if row["stopped_receiving"] else ""
        print(f"  {method}: {row['trials']} trials, {format_duration(row['trial_time_s'])}{why}", flush=True)
    return record

