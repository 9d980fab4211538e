"""The pool of trials across methods (``search.schedule.pool``): which method gets each new
trial, per-method rungs, the budget gate, and a real Tune run of the pool on a toy trainable."""

from __future__ import annotations

import math
import time

import pytest
from ray.tune.search import Searcher

from search.schedule.budget import Ledger
from search.schedule.methods import MethodAllocator
from search.schedule.policies import CONTINUE, STOP
from search.schedule.pool import (
    METHOD_KEY,
    ByMethod,
    Gate,
    PoolSearcher,
    per_method_policy,
    read_pool_state,
)


class Counting(Searcher):
    """Proposes {"x": i} for i = 0, 1, ... up to ``limit`` proposals, then FINISHED."""

    def __init__(self, limit: int = 100) -> None:
        super().__init__(metric="score", mode="max")
        self.limit, self.n, self.results, self.completed = limit, 0, [], []

    def suggest(self, trial_id):
        if self.n >= self.limit:
            return Searcher.FINISHED
        self.n += 1
        return {"x": self.n - 1}

    def on_trial_result(self, trial_id, result):
        self.results.append(trial_id)

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.completed.append(trial_id)


def pool_of(methods, budget_s=1000.0, reserve_s=0.0, max_t=4, limit=100, tmp=None):
    ledger = Ledger(budget_s, path=None if tmp is None else tmp / "budget.json")
    gate = Gate(ledger, reserve_s, max_t)
    searchers = {m: Counting(limit) for m in methods}
    pool = PoolSearcher(searchers, {m: {"lr": i} for i, m in enumerate(methods)},
                        MethodAllocator(methods, min_trials=2), gate, tasks=3,
                        state_dir=None if tmp is None else str(tmp))
    return pool, searchers, ledger


def result(t, score, seconds=1.0, rows=64 * 3, step=None):
    return {"training_iteration": t, "score": score, "time_this_iter_s": seconds,
            "eval_rows": rows, "step": step or 10 * t}


def test_new_trials_alternate_between_methods_and_carry_the_method_and_its_constants():
    pool, searchers, _ = pool_of(["lora", "adapter"])
    configs = [pool.suggest(f"t{i}") for i in range(4)]
    assert [c[METHOD_KEY] for c in configs] == ["lora", "adapter", "lora", "adapter"]
    assert configs[1]["lr"] == 1 and configs[0]["lr"] == 0, "each method's own constants"
    pool.on_trial_result("t1", result(1, 0.5))
    assert searchers["adapter"].results == ["t1"] and searchers["lora"].results == []


def test_an_eliminated_method_gets_no_new_trials():
    pool, _, _ = pool_of(["lora", "adapter"])
    for i in range(4):
        pool.suggest(f"t{i}")  # t0, t2 lora; t1, t3 adapter
    # at step 10 on 64 rows per task, lora 0.80 vs adapter 0.20: far beyond row noise
    for tid, score in [("t0", 0.80), ("t2", 0.78), ("t1", 0.20), ("t3", 0.22)]:
        pool.on_trial_result(tid, result(1, score))
    assert pool.allocator.live() == ["lora"]
    assert {pool.suggest(f"n{i}")[METHOD_KEY] for i in range(3)} == {"lora"}


def test_a_method_whose_searcher_is_done_leaves_the_pool_to_the_others():
    pool, _, _ = pool_of(["lora", "adapter"], limit=1)
    assert [pool.suggest(f"t{i}")[METHOD_KEY] for i in range(2)] == ["lora", "adapter"]
    assert pool.suggest("t2") == Searcher.FINISHED and pool.finished


def test_the_budget_gate_waits_while_trials_run_and_finishes_when_nothing_can_pay():
    # 10 s of budget; every evaluation measured at 1 s, 4 evaluations a trial: a trial costs 4 s.
    pool, _, ledger = pool_of(["lora"], budget_s=10.0, max_t=4)
    assert pool.suggest("t0") is not None
    pool.on_trial_result("t0", result(1, 0.5, seconds=1.0))
    # left 9 s, t0 may still spend 3 s: a new 4 s trial fits (9 - 3 >= 4)
    assert pool.suggest("t1") is not None
    pool.on_trial_result("t1", result(1, 0.5, seconds=1.0))
    # left 8 s, committed 3 + 3: no room for 4 more; trials run, so wait (None), not finish
    assert pool.suggest("t2") is None and not pool.finished
    for t in (2, 3, 4):
        pool.on_trial_result("t0", result(t, 0.5, seconds=1.0))
    pool.on_trial_complete("t0", result(4, 0.5))
    # left 5 s, committed 3 (t1): 2 < 4, still wait
    assert pool.suggest("t2") is None
    pool.on_trial_complete("t1", result(1, 0.5))  # t1 stopped early: nothing committed now
    assert pool.suggest("t2") is not None  # 5 s left pays a 4 s trial
    pool.on_trial_result("t2", result(1, 0.5, seconds=1.0))
    pool.on_trial_complete("t2", result(1, 0.5))  # stopped: 4 s left, a trial costs 4
    assert pool.suggest("t3") is not None
    for t in (1, 2, 3, 4):
        pool.on_trial_result("t3", result(t, 0.5, seconds=1.0))
    pool.on_trial_complete("t3", result(4, 0.5))
    assert pool.suggest("t4") == Searcher.FINISHED, "nothing runs and 0 s is left"
    assert ledger.used == pytest.approx(10.0) and ledger.used <= ledger.budget_s


def test_the_reserve_is_kept_for_the_race():
    pool, _, _ = pool_of(["lora"], budget_s=10.0, reserve_s=6.0, max_t=4)
    pool.suggest("t0")
    for t in (1, 2, 3, 4):
        pool.on_trial_result("t0", result(t, 0.5, seconds=1.0))
    pool.on_trial_complete("t0", result(4, 0.5))
    assert pool.suggest("t1") == Searcher.FINISHED, "6 s left is the reserve: no 4 s trial"


def test_with_a_deadline_no_trial_starts_that_would_end_after_it():
    pool, _, ledger = pool_of(["lora"], budget_s=1000.0, max_t=4)
    pool.suggest("t0")
    for t in (1, 2, 3, 4):  # 5 s an evaluation: a trial takes 20 s on its slot
        pool.on_trial_result("t0", result(t, 0.5, seconds=5.0))
    pool.on_trial_complete("t0", result(4, 0.5))
    ledger.set_deadline(time.time() + 60.0, slots=2)
    assert pool.suggest("t1") is not None, "20 s ends well inside 60 s"
    pool.on_trial_complete("t1", result(1, 0.5))
    ledger.set_deadline(time.time() + 15.0, slots=2)  # the budget has 980 s left, the clock 15 s
    assert pool.suggest("t2") == Searcher.FINISHED, "a 20 s trial would end after the deadline"


def test_trials_running_far_past_their_estimate_are_stopped_when_they_hold_the_budget_left():
    pool, _, ledger = pool_of(["lora"], budget_s=100.0, reserve_s=30.0, max_t=4)
    pool.suggest("t0")
    for t in (1, 2, 3, 4):  # 5 s an evaluation, measured on an idle machine: a trial costs 20 s
        pool.on_trial_result("t0", result(t, 0.5, seconds=5.0))
    pool.on_trial_complete("t0", result(4, 0.5))
    assert pool.suggest("t1") is not None and pool.suggest("t2") is not None  # 80 s left pays both
    start = pool.gate.since["t1"]
    # the machine slows down: no report for 30 s, then 41 s (80 s left of the budget)
    assert not pool.gate.overrun(now=start + 30.0) and not pool.guard()
    assert pool.gate.overrun(now=start + 41.0)
    pool.gate.since = {k: v - 41.0 for k, v in pool.gate.since.items()}  # as if 41 s went by
    assert pool.guard() and pool.finished and pool.overran
    assert ledger.used == pytest.approx(20.0 + 2 * 41.0, abs=0.5), "the slots held were charged"
    assert pool.suggest("t3") == Searcher.FINISHED
    assert pool.guard(), "it stays fired"
    assert ledger.used == pytest.approx(102.0, abs=0.5), "and charges once"


def test_a_restored_pool_does_not_count_the_time_it_was_stopped_as_held():
    pool, _, _ = pool_of(["lora"], budget_s=100.0, max_t=4)
    pool.suggest("t0")
    pool.gate.since["t0"] -= 3600.0  # stopped for an hour with t0 running
    pool.gate.restarted()
    assert pool.gate.in_flight()["t0"] < 1.0 and not pool.gate.overrun()


def test_a_result_sent_again_after_a_restore_is_charged_once(tmp_path):
    pool, _, ledger = pool_of(["lora"], tmp=tmp_path)
    pool.suggest("t0")
    pool.on_trial_result("t0", result(1, 0.5, seconds=2.0))
    pool.save(str(tmp_path / "searcher.pkl"))
    pool.on_trial_result("t0", result(2, 0.5, seconds=3.0))  # charged after the searcher's save
    restored, _, _ = pool_of(["lora"], tmp=tmp_path)
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.gate.ledger.used == pytest.approx(5.0), "the ledger file is newer than the pickle"
    restored.on_trial_result("t0", result(2, 0.5, seconds=3.0))  # Tune re-sends the last result
    assert restored.gate.ledger.used == pytest.approx(5.0)
    state = read_pool_state(tmp_path)
    assert state["live"] == ["lora"] and state["trials"] == {"lora": 1}


def test_each_method_has_its_own_rungs():
    policy = per_method_policy("asha", max_t=4, grace=1, rf=2.0)
    for trial, method in [("a1", "lora"), ("a2", "lora"), ("b1", "adapter")]:
        policy.assign(trial, method)
        policy.add(trial)
    assert policy.on_result("a1", 1, 0.9) == CONTINUE
    assert policy.on_result("a2", 1, 0.1) == STOP, "below lora's rung"
    # adapter's rung is empty: its first trial goes on whatever lora's scores were
    assert policy.on_result("b1", 1, 0.05) == CONTINUE
    assert isinstance(policy, ByMethod) and set(policy.policies) == {"lora", "adapter"}


# ---- a real Tune run of the pool ---------------------------------------------------------------
@pytest.mark.integration
def test_a_tune_run_of_the_pool_ends_inside_its_budget_and_starves_the_weak_method(tmp_path, ray_local):
    from ray import tune

    from search.schedule.pool import PoolScheduler

    def toy(config):  # nested: Ray ships it by value to the workers
        """Score = the method's level plus a little of x, reported 4 times."""
        level = {"good": 0.8, "bad": 0.2}[config[METHOD_KEY]]
        for t in range(1, 5):
            time.sleep(0.05)
            tune.report({"score": level + 0.001 * config["x"], "step": 10 * t, "eval_rows": 64 * 3})

    pool, _, ledger = pool_of(["good", "bad"], budget_s=2.0, max_t=4, tmp=tmp_path)
    tuner = tune.Tuner(toy, param_space={}, tune_config=tune.TuneConfig(
        search_alg=pool, scheduler=PoolScheduler(per_method_policy("asha", 4, 1, 2.0)), num_samples=1000,
        max_concurrent_trials=2), run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), verbose=0))
    grid = tuner.fit()
    state = read_pool_state(tmp_path)
    used = Ledger.load(tmp_path / "budget.json").used
    assert state["finished"] and grid.num_terminated == len(grid)
    assert used <= 2.0 * 1.05, f"trial-time {used:.2f} s over the 2 s budget"
    methods = [r.config[METHOD_KEY] for r in grid]
    assert "bad" in state["eliminated"] and methods.count("good") > methods.count("bad")
    assert math.isfinite(used) and used > 1.0, "the budget was spent, not left idle"
    # every report charged once, the last included (Tune sends it to on_trial_complete only)
    reported = sum(float(r.metrics_dataframe["time_this_iter_s"].sum()) for r in grid)
    assert used == pytest.approx(reported, rel=1e-6)


@pytest.mark.integration
def test_a_tune_run_of_the_pool_stops_trials_that_hold_their_slots_past_the_budget(tmp_path, ray_local):
    from ray import tune

    from search.schedule.pool import PoolScheduler
    from search.schedule.stops import OverrunStop

    def toy(config):
        """The first trial of each method is quick; later ones stall (a machine slowed down)."""
        for t in range(1, 5):
            time.sleep(0.05 if config["x"] == 0 else 120.0)
            tune.report({"score": 0.5, "step": 10 * t, "eval_rows": 64 * 3})

    # 20 s: well above two workers' start-up, which counts as held (a slot is taken from the start)
    pool, _, ledger = pool_of(["a", "b"], budget_s=20.0, max_t=4, tmp=tmp_path)
    started = time.time()
    tuner = tune.Tuner(toy, param_space={}, tune_config=tune.TuneConfig(
        search_alg=pool, scheduler=PoolScheduler(per_method_policy("fifo", 4, 1, 2.0)), num_samples=1000,
        max_concurrent_trials=2), run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), verbose=0,
                                                            stop=OverrunStop(pool)))
    tuner.fit()
    state = read_pool_state(tmp_path)
    used = Ledger.load(tmp_path / "budget.json").used
    assert state["finished"] and "held their slots past the budget" in state["why_finished"]
    # without the stop the stalled trials run 480 s each; with it the pool ends near its budget
    assert used <= 20.0 + 2 * 1.0, f"trial-time {used:.2f} s of a 20 s budget"
    assert time.time() - started < 60


def test_the_progress_line_names_the_leaders_method_the_budget_and_the_time_to_the_end():
    from types import SimpleNamespace

    from search.schedule.stage import PoolProgress

    pool, _, ledger = pool_of(["lora", "adapter"], budget_s=1200.0)
    ledger.charge("trial", "lora", 300.0, run_id="a", index=1)
    progress = PoolProgress(pool, max_t=4, slots=2)
    trials = [SimpleNamespace(trial_id=t, config={METHOD_KEY: m}, status="RUNNING", last_result={})
              for t, m in (("t1", "lora"), ("t2", "adapter"))]
    progress.on_trial_result(0, trials, trials[0], result(1, 0.41))
    progress.on_trial_result(0, trials, trials[1], result(1, 0.52))
    line = f"{progress._counts(trials)}; {progress._best()}"
    assert "leader 0.5200 (adapter t2 at step 10)" in line
    assert "budget 5.0/20.0 min used" in line
    assert "about 7.5 min to the end at 2 slot(s)" in line  # 900 s left over 2 slots
