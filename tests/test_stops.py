"""Stopping what runs past the budget left or ``--deadline``: the pool's gate, a race round's or
the fresh seeds' stopper (``search.schedule.stops.RunsStop``), and the race without its open round."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from crossed import binary
from test_pool import pool_of

from search.schedule.budget import STOP_AHEAD_S, Ledger
from search.schedule.stops import RunsStop
from search.selection.racing import Candidate, Race


def test_under_a_deadline_the_pool_stops_its_trials_at_the_deadline_not_before():
    """The held seconds are set against the budget; the deadline's cap (slots x time to it) counts
    time to come. Two trials 30 s into their run with 15 s to the deadline are left to end."""
    pool, _, ledger = pool_of(["lora"], budget_s=1000.0, max_t=4)
    pool.suggest("t0")
    pool.suggest("t1")
    start = pool.gate.since["t0"]
    ledger.set_deadline(start + 45.0, slots=2)
    assert pool.gate.overrun(now=start + 30.0) is None, "60 s held, 30 s on the clock x 2 slots left"
    assert "--deadline" in pool.gate.overrun(now=start + 45.0 - STOP_AHEAD_S)
    # the budget alone still stops them: 1000 s held
    ledger.set_deadline(None, slots=2)
    assert "past the budget left" in pool.gate.overrun(now=start + 501.0)


def test_the_runs_stopper_fires_on_the_budget_left_or_the_deadline_and_says_what_was_held():
    ledger = Ledger(100.0)
    ledger.charge("trial", "lora", 40.0, run_id="pool", index=1)  # 60 s of the budget left
    stop = RunsStop(ledger, runs=6, slots=2, now=1000.0)
    assert stop.check(now=1029.0) is None, "2 slots x 29 s = 58 s < 60 s"
    assert "past the budget left" in stop.check(now=1030.0)
    assert RunsStop(ledger, runs=1, slots=2, now=1000.0).check(now=1059.0) is None, "one run holds one slot"
    ledger.set_deadline(1020.0, slots=2)
    assert stop.check(now=1020.0 - STOP_AHEAD_S - 0.1) is None
    assert stop.check(now=1020.0 - STOP_AHEAD_S) == "--deadline is here"
    assert stop.unreported_s(10.0) == 0.0, "it did not fire: nothing unreported to charge"
    stop.at = 1018.0
    assert stop.unreported_s(10.0) == pytest.approx(2 * 18.0 - 10.0)
    assert stop.unreported_s(50.0) == 0.0


def _outputs(score: float, seed: int, rows: int = 200):
    rng = np.random.default_rng(seed)
    return binary((rng.random(rows) < score)[None, :])


def test_a_race_stopped_in_a_round_ends_without_it():
    cands = [Candidate(f"c{i}", "lora" if i else "adapter", {"lr": 10.0**-i}) for i in range(2)]
    race = Race(cands, reserve_s=100, cost_per_run_s=1.0, halving=False, futility=False)
    for cand, seed in race.next_round():
        race.record(cand, seed, _outputs(0.6, seed))
    before = race.result().to_dict()
    assert len(race.next_round()) == 2 and race.round == 2  # round 2 open
    race.abandon("--deadline is here: round 2 was stopped")
    assert race.done and race.round == 1 and race.pending == [] and race.next_round() == []
    after = race.result().to_dict()
    assert after["scores"] == before["scores"] and after["rounds"] == 1
    assert after["stopped"].startswith("--deadline")
    again = Race.from_state(json.loads(json.dumps(race.state())))
    assert again.done and again.round == 1


@pytest.mark.integration
def test_a_tune_experiment_with_the_runs_stopper_ends_at_the_deadline(tmp_path, ray_local):
    """Two runs estimated to fit, then stalled (a machine slowed down): stopped before the
    deadline instead of running 120 s each; what they held is the stopper's to charge."""
    from ray import tune

    def toy(config):
        time.sleep(120.0)
        tune.report({"score": 0.5})

    ledger = Ledger(3600.0)
    started = time.time()
    ledger.set_deadline(started + 15.0, slots=2)
    stop = RunsStop(ledger, runs=2, slots=2)
    run_config = tune.RunConfig(storage_path=str(tmp_path / "tune"), verbose=0, stop=stop)
    grid = tune.Tuner(toy, param_space={"x": tune.grid_search([0, 1])},
                      tune_config=tune.TuneConfig(max_concurrent_trials=2), run_config=run_config).fit()
    ended = time.time()
    assert stop.why == "--deadline is here"
    assert stop.at <= ledger.deadline_at, "it fired before the deadline, not after"
    assert ended - started < 60, f"the stalled runs went on: {ended - started:.0f} s"
    assert all(not r.metrics or "score" not in r.metrics for r in grid), "no run reported"
    assert 2 * 10.0 < stop.unreported_s(0.0) <= 2 * 15.0, "both slots, from the start to the stop"


def test_after_a_resume_the_pools_stop_acts_once_tune_restored_the_pool_in_this_process(tmp_path):
    """Tune pickles the stopper and the searcher together (``tuner.pkl``), so a restored experiment
    has them as one object again; Tune then restores the searcher's state, in this process."""
    import pickle

    from search.schedule.stops import OverrunStop

    pool, _, ledger = pool_of(["lora"], budget_s=1000.0, max_t=4, tmp=tmp_path)
    pool.suggest("t0")
    ledger.set_deadline(time.time() + 1.0, slots=2)  # inside STOP_AHEAD_S: the running trial must stop
    pool.save(str(tmp_path / "searcher-state.pkl"))
    again, stop = pickle.loads(pickle.dumps((pool, OverrunStop(pool))))
    assert stop.pool is again
    again.pid = -1  # as unpickled in the resuming process, before Tune restored its state
    assert not stop.stop_all(), "a state from another process does not act"
    again.restore(str(tmp_path / "searcher-state.pkl"))
    assert stop.stop_all() and again.finished and again.overran


def test_after_a_resume_a_restored_experiments_runs_stop_hands_over_to_the_resuming_processes():
    import pickle

    from search.schedule import stops

    first = RunsStop(Ledger(100.0), runs=2, slots=2, now=0.0).attach("exp-race-1")
    copy = pickle.loads(pickle.dumps(first))  # what Tune.restore unpickles
    copy.pid = -1  # ... in another process
    stops._LIVE.pop("exp-race-1")
    assert not copy.stop_all(), "no stop of this process for the experiment: the copy does nothing"
    ledger = Ledger(3600.0)
    ledger.set_deadline(time.time() + 1.0, slots=2)
    live = RunsStop(ledger, runs=2, slots=2).attach("exp-race-1")
    assert copy.stop_all() and live.why == "--deadline is here" and copy.why is None


def test_ctrl_c_charges_what_the_pools_running_trials_held_and_a_rerun_evaluation_is_charged_again(tmp_path):
    """Slot-time the trials held is the budget's, whether or not a report carried it: the part of an
    evaluation cut by Ctrl-C, and an evaluation run again after ``--resume`` (its checkpoint older
    than its last report). The last report handed to Tune's two hooks is still charged once."""
    from test_pool import result

    from search.schedule.pool import live_pool

    pool, _, ledger = pool_of(["lora"], budget_s=1000.0, max_t=4, tmp=tmp_path)
    pool.suggest("t0")
    assert live_pool() is pool
    pool.on_trial_result("t0", result(1, 0.5, seconds=10.0))
    pool.on_trial_result("t0", result(2, 0.5, seconds=10.0))
    pool.gate.since["t0"] -= 7.0  # 7 s into its third evaluation when Ctrl-C comes
    pool.save(str(tmp_path / "searcher-state.pkl"))
    assert pool.charge_interrupted() == pytest.approx(7.0, abs=0.5)
    assert ledger.spent(kind="interrupted") == pytest.approx(7.0, abs=0.5)
    assert ledger.used == pytest.approx(27.0, abs=0.5)
    again, _, _ = pool_of(["lora"], budget_s=1000.0, max_t=4, tmp=tmp_path)
    again.restore(str(tmp_path / "searcher-state.pkl"))  # --resume: the ledger read from its file
    assert live_pool() is again
    now = {"timestamp": int(time.time()) + 1}
    again.on_trial_result("t0", result(2, 0.5, seconds=10.0))  # Tune re-sends the last report
    again.on_trial_result("t0", {**result(2, 0.5, seconds=11.0), **now})  # evaluation 2 run again
    again.on_trial_result("t0", {**result(3, 0.5, seconds=10.0), **now})
    again.on_trial_complete("t0", {**result(3, 0.5, seconds=10.0), **now})  # the last report, handed twice
    assert again.gate.ledger.spent(kind="trial") == pytest.approx(41.0)
    assert again.gate.ledger.used == pytest.approx(48.0, abs=0.5)


def test_ctrl_c_charges_what_a_round_held_less_the_runs_that_ended_in_this_process():
    class Result:
        def __init__(self, seconds, ended_at):
            self.metrics = {"time_total_s": seconds, "timestamp": ended_at}

    ledger = Ledger(1000.0)
    stop = RunsStop(ledger, runs=4, slots=2, now=1000.0).attach("exp-race-2")
    # one run ended in this process (30 s), one before the resume (its seconds are not this process's)
    held = stop.charge_interrupted("lora", [Result(30.0, 1031), Result(25.0, 900)], now=1040.0)
    assert held == pytest.approx(2 * 40.0 - 30.0)
    assert ledger.spent(kind="interrupted") == pytest.approx(50.0)
