"""Stopping rules (search.policies), their Tune wrapper on a synthetic objective whose answer is
known, and the replay simulator against a replay computed by hand."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import pytest

from search.policies import CONTINUE, STOP, Asha, Hyperband, Pasha
from search.replay import Curve, Scenario, replay_all, simulate
from search.trial_outcome import furthest_best as pick


def test_asha_decides_as_rays_asha_scheduler():
    """The replayed ASHA must be the one a search runs: same stream of results, same answers."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    rng = random.Random(3)
    for max_t, rf in [(4, 2.0), (9, 3.0), (6, 2.0)]:
        ray_asha = ASHAScheduler(metric="score", mode="max", max_t=max_t, grace_period=1, reduction_factor=rf)
        ours = Asha(max_t, 1, rf)
        live = {}
        for n in range(40):
            trial = SimpleNamespace(trial_id=f"t{n}")
            ray_asha.on_trial_add(None, trial)
            live[trial.trial_id] = (trial, 0)
            # advance a random live trial by one evaluation, several times
            for _ in range(3):
                if not live:
                    break
                tid = rng.choice(sorted(live))
                trial, t = live[tid]
                t += 1
                score = rng.random()
                want = ray_asha.on_trial_result(None, trial, {"training_iteration": t, "score": score})
                got = ours.on_result(tid, t, score)
                assert (got == STOP) == (want == TrialScheduler.STOP), (max_t, rf, tid, t)
                if got == STOP:
                    ray_asha.on_trial_complete(None, trial, {"training_iteration": t, "score": score})
                    ours.on_complete(tid, t, score)
                    del live[tid]
                else:
                    live[tid] = (trial, t)


def test_hyperband_brackets_start_later_and_take_trials_in_turn():
    hb = Hyperband(max_t=8, grace=1, rf=2.0, brackets=3)
    assert [b.rungs[-1][0] for b in hb.brackets] == [1, 2, 4]  # first comparison of each bracket
    for i in range(6):
        hb.add(f"t{i}")
    assert [hb.brackets.index(hb.of[f"t{i}"]) for i in range(6)] == [0, 1, 2, 0, 1, 2]
    # bracket 1 compares first at 2 evaluations: a bad trial goes on at 1
    hb.on_result("t1", 1, 0.9)
    hb.on_result("t1", 2, 0.9)
    assert hb.on_result("t4", 1, 0.1) == CONTINUE
    assert hb.on_result("t4", 2, 0.1) == STOP


def test_pasha_stops_at_the_top_rung_while_rankings_agree_and_raises_it_when_they_do_not():
    p = Pasha(max_t=8, grace=1, rf=2.0, epsilon=0.01)
    assert p.levels == [1, 2, 4, 8] and p.top_t == 2
    assert p.on_result("a", 1, 0.5) == CONTINUE
    # the leader of the top rung goes on to the full budget (the search's pick is trained to the end)
    assert p.on_result("a", 2, 0.6) == CONTINUE
    assert p.on_result("a", 4, 0.62) == CONTINUE and p.on_result("a", 8, 0.64) == STOP
    assert p.on_result("b", 1, 0.45) == STOP  # below rung 1's cutoff (a's 0.5)
    p2 = Pasha(max_t=8, grace=1, rf=2.0, epsilon=0.01)
    for t, (s1, s2) in {"a": (0.5, 0.6), "b": (0.55, 0.58)}.items():
        p2.on_result(t, 1, s1)
        last = p2.on_result(t, 2, s2)
    # b beat a at rung 1 and lost at rung 2 (by more than epsilon both times): the top rung goes
    # up; b itself is below rung 2's cutoff (a's 0.6) and stops
    assert last == STOP and p2.top_t == 4
    assert p2.on_result("c", 1, 0.7) == CONTINUE
    assert p2.on_result("c", 2, 0.95) == CONTINUE  # below the new top rung: goes on
    assert p2.on_result("d", 1, 0.9) == CONTINUE
    assert p2.on_result("d", 2, 0.9) == CONTINUE
    assert p2.on_result("c", 4, 0.72) == CONTINUE  # first at rung 4: leads it
    assert p2.on_result("d", 4, 0.70) == STOP  # d < c at both rungs: agrees, not the leader
    assert p2.top_t == 4
    assert p2.on_result("e", 1, 0.9) == CONTINUE and p2.on_result("e", 2, 0.99) == CONTINUE
    assert p2.on_result("e", 4, 0.75) == CONTINUE  # e above c and d at both rungs: agrees, leads
    assert p2.top_t == 4
    assert p2.on_result("f", 1, 0.9) == CONTINUE and p2.on_result("f", 2, 0.92) == CONTINUE
    assert p2.on_result("f", 4, 0.74) == CONTINUE  # f < c at rung 2, f > c at 4: raise again
    assert p2.top_t == 8


def test_pasha_ties_within_epsilon_are_not_disagreements():
    p = Pasha(max_t=8, grace=1, rf=2.0, epsilon=0.05)
    for t, (s1, s2) in {"a": (0.50, 0.60), "b": (0.52, 0.58)}.items():
        p.on_result(t, 1, s1)
        p.on_result(t, 2, s2)
    assert p.top_t == 2, "0.02 apart at both rungs is noise at epsilon 0.05"


# ---- the Tune wrapper on a synthetic objective ----------------------------------------------

@pytest.fixture
def ray_local(tmp_path):
    """Ray in this process, and the environment as it was afterwards: ray.init sets variables
    (RAY_AUTH_MODE=token, ...) that would change how later tests' clusters authenticate."""
    import os

    import ray

    saved = dict(os.environ)
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        yield tmp_path
    finally:
        ray.shutdown()
        os.environ.clear()
        os.environ.update(saved)


@pytest.mark.integration
def test_pasha_in_tune_finds_the_known_best_with_less_compute_than_asha(ray_local):
    from ray import tune

    from search.schedulers import make_scheduler

    def synthetic(config):
        """Score curve q * (1 - 0.5**t): every config ranks the same at every evaluation, and
        the best config is the one with the largest q (known). Defined here: Ray pickles it."""
        for t in range(1, 9):
            tune.report({"score": config["q"] * (1 - 0.5 ** t)})

    qs = [0.31, 0.52, 0.44, 0.9, 0.12, 0.66, 0.73, 0.27, 0.58, 0.81, 0.05, 0.39]
    used, schedulers = {}, {}
    for name in ("asha", "pasha"):
        schedulers[name] = make_scheduler(name, max_t=8, grace_period=1, reduction_factor=2)
        tuner = tune.Tuner(
            synthetic, param_space={"q": tune.grid_search(qs)},
            tune_config=tune.TuneConfig(max_concurrent_trials=1, scheduler=schedulers[name]),
            run_config=tune.RunConfig(verbose=0, storage_path=str(ray_local / name)))
        grid = tuner.fit()
        iters = {r.config["q"]: r.metrics["training_iteration"] for r in grid}
        used[name] = sum(iters.values())
        best = max(grid, key=lambda r: (r.metrics["training_iteration"], r.metrics["score"]))
        assert best.config["q"] == 0.9, name
    # rankings never change: PASHA keeps its top rung at 2 evaluations, and only the trials
    # that led it when they got there (0.31, 0.52, 0.9 in this order) run all 8
    assert schedulers["pasha"].policy.top_t == 2
    assert used["pasha"] < used["asha"], used


# ---- the replay simulator ------------------------------------------------------------------

def _curve(tid, scores, subs=None, train=10.0, ev=2.0):
    n = len(scores)
    return Curve(tid, [10 * (i + 1) for i in range(n)], [train] * n, [ev] * n, list(scores),
                 list(subs or scores), [100.0] * n, [25.0] * n)


CURVES = [_curve("t0", [0.5, 0.6]), _curve("t1", [0.4, 0.7]), _curve("t2", [0.7, 0.8])]


def test_replay_matches_a_hand_computed_asha_search():
    r = simulate(CURVES, [0, 1, 2], Scenario("asha", "full", concurrency=1))
    # t0: 12 s rung 1 (first there: goes on), 24 s done. t1: 36 s, 0.4 < cutoff 0.5: stopped.
    # t2: 48 s, 0.7 >= 0.45 (median of 0.5, 0.4): on; 60 s done with the table's best.
    assert r.stopped == {"t0": 2, "t1": 1, "t2": 2}
    assert (r.train_s, r.eval_s, r.steps, r.evaluations) == (50, 10, 50, 5)
    assert r.hold_s == 60 and r.final_trial == "t2" and r.within
    fifo = simulate(CURVES, [0, 1, 2], Scenario("fifo", "full", concurrency=1))
    assert (fifo.compute_s, fifo.hold_s, fifo.steps) == (72, 72, 60)


def test_replay_subset_fidelity_sees_subset_scores_and_pays_a_quarter_of_the_rows():
    curves = [_curve("t0", [0.5, 0.6], subs=[0.3, 0.6]), _curve("t1", [0.4, 0.7], subs=[0.45, 0.7])]
    r = simulate(curves, [0, 1], Scenario("asha", "subset", concurrency=1))
    # t0 rung 1 sees 0.3 (subset, 25 of 100 rows: 0.5 s), rung 2 is the whole dev set (2 s);
    # t1 sees 0.45 > 0.3 at rung 1 and goes on (with whole-dev scores it would be stopped).
    assert r.stopped == {"t0": 2, "t1": 2}
    assert r.eval_s == pytest.approx(0.5 + 2 + 0.5 + 2)
    assert r.eval_rows == 25 + 100 + 25 + 100
    assert r.final_trial == "t1"


def test_replay_two_slots_and_the_pick_rule():
    # t0 is slow: with two slots t1 reaches rung 1 first and sets the cutoff
    slow = _curve("t0", [0.5, 0.6], train=30.0)
    r = simulate([slow, CURVES[1], CURVES[2]], [0, 1, 2], Scenario("asha", "full", concurrency=2))
    # t1 at 12 s (first at rung 1), t1 done 24 s, t0 at 32 s: 0.5 >= 0.4 on; t2 starts 24 s,
    # at 36 s: 0.7 >= 0.45 on; done 48 s; t0 done 64 s
    assert r.stopped == {"t1": 2, "t0": 2, "t2": 2}
    assert pick({"a": (1, 0.9), "b": (2, 0.5), "c": (2, 0.7)}) == "c"
    assert pick({"a": (1, math.nan)}) is None


def test_replay_all_gives_ratios_per_order_against_the_baseline():
    rows = replay_all(CURVES, [Scenario("asha", "full", concurrency=1)], count=20, seed=1,
                      baseline=Scenario("fifo", "full", concurrency=1))
    assert rows[0]["replays"] == 20
    assert 0 < rows[0]["hold_ratio_q1_median_q3"][1] <= 1.0
    assert 0 <= rows[0]["within_share"] <= 1


# ---- real searches: a FIFO table replayed, PASHA with dev subsets ---------------------------

@pytest.mark.integration
def test_fifo_eval_full_search_replays_from_mlflow(tiny_model_dir, tmp_path):
    import json

    from searchkit import cli, mlflow_runs, run

    out = tmp_path / "table"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run(cli(tiny_model_dir, out, "--method", "adapter", "--num-samples", "4", "--experiment", "table",
            "--scheduler", "fifo", "--searcher", "random", "--eval-full", "--eval-rows", "8",
            "--no-default-trial", mlflow_uri=uri), tmp_path)
    client, runs = mlflow_runs(uri, "table")
    trials = [r for r in runs if r.data.tags.get("kind") == "trial"]
    for r in trials:  # every evaluation scored the whole dev set and the subset beside it
        assert r.data.metrics["eval_full"] == 1.0
        assert len(client.get_metric_history(r.info.run_id, "score_sub")) == 3
    proc = run(cli(tiny_model_dir, out, mlflow_uri=uri)[:2] + [
        "replay", "--experiment", "table", "--mlflow-uri", uri, "--orders", "10",
        "--json", str(tmp_path / "replay.json")], tmp_path)
    assert "pasha/subset" in proc.stdout and "fifo/full" in proc.stdout
    rows = {r["scenario"]: r for r in json.loads((tmp_path / "replay.json").read_text())["rows"]}
    assert rows["fifo/full"]["hold_ratio_q1_median_q3"][1] == pytest.approx(1.0)
    assert rows["fifo/subset"]["eval_s_median"] < rows["fifo/full"]["eval_s_median"]
    # a search that did not run FIFO cannot be replayed: one clear line
    bad = run(cli(tiny_model_dir, out)[:2] + ["replay", "--experiment", "nope", "--mlflow-uri", uri],
              tmp_path, rc=2)
    assert "no such MLflow experiment" in bad.stderr


@pytest.mark.integration
def test_pasha_search_with_dev_subsets_reports_a_whole_dev_best(tiny_model_dir, tmp_path):
    import json

    from searchkit import cli, mlflow_runs, run

    out = tmp_path / "p"
    proc = run(cli(tiny_model_dir, out, "--method", "lora", "--num-samples", "5", "--experiment", "p",
                   "--scheduler", "pasha", "--eval-rows", "8", "--max-steps", "40"), tmp_path)
    res = json.loads((out / "results.json").read_text())["methods"][0]
    client, runs = mlflow_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "p")
    parent = next(r for r in runs if r.data.tags.get("kind") == "method")
    trials = [r for r in runs if r.data.tags.get("kind") == "trial"]
    evals = {r.data.tags["trial_id"]: len(client.get_metric_history(r.info.run_id, "score")) for r in trials}
    assert sum(evals.values()) < 5 * 4, "PASHA stops trials (its top rung starts at 2 evaluations)"
    # the first evaluations scored 8 rows per task: 24 rows
    first = [m for r in trials for m in client.get_metric_history(r.info.run_id, "eval_rows") if m.step == 10]
    assert {m.value for m in first} == {24.0}
    # whatever rung the best stopped at, the reported score is on the whole dev set (3 x 32 rows)
    assert parent.data.metrics["eval_full"] == 1.0 and parent.data.metrics["eval_rows"] == 96.0
    assert res["best_score"] == pytest.approx(parent.data.metrics["score"])
    if evals[res["best_trial_id"]] < 4:
        assert "on the whole dev set" in proc.stdout
