"""Stopping rules (search.schedule.policies), their Tune wrapper on a synthetic objective whose answer is
known, its state across --resume, and a real PASHA search with dev subsets (the replay
simulator: tests/test_replay.py)."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import pytest

from search.schedule.policies import CONTINUE, STOP, Asha, Hyperband, Pasha, make_policy


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
    paper = Pasha(max_t=8, grace=1, rf=2.0, epsilon=0.01, leader=False)
    assert paper.on_result("a", 1, 0.5) == CONTINUE and paper.on_result("a", 2, 0.6) == STOP
    p2 = Pasha(max_t=8, grace=1, rf=2.0, epsilon=0.01)
    for t, (s1, s2) in {"a": (0.5, 0.6), "b": (0.55, 0.58)}.items():
        p2.on_result(t, 1, s1)
        last = p2.on_result(t, 2, s2)
    # rung 2 ranks a first, rung 1 ranks b first and a is 0.05 (> epsilon) below it there: the
    # top rung goes up; b itself is below rung 2's cutoff (a's 0.6) and stops
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
    # f is 2nd at rung 4, 3rd at rung 2 where it is 0.03 below c, 2nd there: raise again; f is
    # above rung 4's cutoff and goes on
    assert p2.on_result("f", 4, 0.74) == CONTINUE
    assert p2.top_t == 8


def test_pasha_soft_ranking_groups_trials_within_epsilon_at_the_lower_rung():
    p = Pasha(max_t=8, grace=1, rf=2.0, epsilon=0.05)
    for t, (s1, s2) in {"a": (0.50, 0.60), "b": (0.52, 0.58)}.items():
        p.on_result(t, 1, s1)
        p.on_result(t, 2, s2)
    assert p.top_t == 2, "0.02 apart at rung 1 is one group at epsilon 0.05"
    p = Pasha(max_t=8, grace=1, rf=2.0, epsilon=0.05)
    for t, (s1, s2) in {"a": (0.50, 0.601), "b": (0.60, 0.600)}.items():
        p.on_result(t, 1, s1)
        p.on_result(t, 2, s2)
    # 0.001 apart at rung 2 but 0.1 apart at rung 1, in the other order: a left b's group
    assert p.top_t == 4


def test_pasha_epsilon_starts_at_zero_and_is_estimated_from_curves_that_cross_twice():
    p = Pasha(max_t=8, grace=1, rf=2.0, leader=False)
    assert p.epsilon == 0
    # a 0.001 swap at the first check raises the top rung: no pair can be noisy yet
    p.on_result("x", 1, 0.500)
    p.on_result("x", 2, 0.600)
    p.on_result("y", 1, 0.501)
    p.on_result("y", 2, 0.599)
    assert p.top_t == 4 and p.epsilon == 0
    fixed = Pasha(max_t=8, grace=1, rf=2.0, epsilon=0.005, leader=False)
    for t, s1, s2 in [("x", 0.500, 0.600), ("y", 0.501, 0.599)]:
        fixed.on_result(t, 1, s1)
        fixed.on_result(t, 2, s2)
    assert fixed.top_t == 2
    # Now evaluations 3 and 4 are the window. p, q and r each cross the others twice:
    #        1     2     3     4
    curves = {"p": [0.70, 0.70, 0.80, 0.90],
              "q": [0.71, 0.69, 0.81, 0.85],
              "r": [0.72, 0.68, 0.82, 0.80]}
    for i in (0, 1):
        for t in "pqr":
            assert p.on_result(t, i + 1, curves[t][i]) == CONTINUE, (t, i)  # above the cutoffs
    p.on_result("p", 3, 0.80)
    p.on_result("q", 3, 0.81)
    assert p.epsilon == pytest.approx(0.01)  # (p, q) at 3: p < q, p > q at 2, p < q at 1
    p.on_result("p", 4, 0.90)
    p.on_result("q", 4, 0.85)
    assert p.epsilon == pytest.approx(0.05)  # (p, q) judged at 4 now: 0.90 - 0.85
    p.on_result("r", 3, 0.82)
    p.on_result("r", 4, 0.80)
    # gaps at 4: (p, q) 0.05, (p, r) 0.10, (q, r) 0.05; their 90th percentile
    assert p.epsilon == pytest.approx(0.05 + 0.8 * 0.05)
    assert p.top_t == 4  # rung 4 and rung 2 rank p, q, r alike


def test_pasha_stops_a_config_asha_keeps_with_or_without_the_leader_rule():
    """The issue's case: B, second at the top rung by 0.01, would end best; ASHA's cutoff (a
    quantile) keeps it, PASHA's top rung stops it, leader rule or not."""
    stream = [("A", 1, 0.50), ("A", 2, 0.80), ("C", 1, 0.52), ("C", 2, 0.60), ("B", 1, 0.52)]
    for policy in (Pasha(4, epsilon=0.1), Pasha(4, epsilon=0.1, leader=False), Asha(4)):
        for trial, t, score in stream:
            policy.on_result(trial, t, score)
        got = policy.on_result("B", 2, 0.79)
        assert got == (CONTINUE if isinstance(policy, Asha) else STOP), policy.name


def test_pasha_epsilon_fixed_from_the_flag_and_bad_values_refused_in_one_line():
    for bad in (-0.1, math.nan, math.inf):
        with pytest.raises(ValueError, match="epsilon must be a finite number >= 0"):
            Pasha(4, epsilon=bad)
    with pytest.raises(ValueError, match="only pasha"):
        make_policy("asha", 4, epsilon=0.1)
    from search.schedule.schedulers import make_scheduler
    from search.settings import settings_from

    fixed = make_scheduler("pasha", max_t=4, grace_period=1, reduction_factor=2, epsilon=0.02)
    assert fixed.policy.epsilon == 0.02
    assert settings_from({"scheduler": "pasha", "pasha_epsilon": 0.02}).pasha_epsilon == 0.02
    for values, message in [({"scheduler": "asha", "pasha_epsilon": 0.02}, "applies to --scheduler pasha"),
                            ({"pasha_epsilon": -1.0}, "--pasha-epsilon must be a finite number >= 0")]:
        with pytest.raises(ValueError, match=message):
            settings_from(values)


def test_policy_scheduler_state_comes_back_when_tune_rebuilds_it_as_pickled_at_the_start(tmp_path):
    """Tune keeps the scheduler pickled with the Tuner at the start and never saves it
    (ray-project/ray#30838): the scheduler writes its state where Tune's experiment checkpoints
    take it, and a restored copy reads it back when the restored trials are added."""
    import pickle

    from ray.tune.schedulers import TrialScheduler

    from search.schedule.policy_scheduler import STATE_FILE, PolicyScheduler

    folder = tmp_path / "exp" / "driver_artifacts"
    folder.mkdir(parents=True)
    storage = SimpleNamespace(experiment_driver_staging_path=str(folder))
    trial = {t: SimpleNamespace(trial_id=t, storage=storage) for t in "abc"}
    first = PolicyScheduler(Pasha(4))
    at_start = pickle.dumps(first)  # what a restored Tuner runs

    def report(scheduler, t, it, score):
        return scheduler.on_trial_result(None, trial[t], {"training_iteration": it, "score": score})

    first.on_trial_add(None, trial["a"])
    assert report(first, "a", 1, 0.5) == TrialScheduler.CONTINUE
    first.on_trial_add(None, trial["b"])
    assert report(first, "b", 1, 0.4) == TrialScheduler.STOP
    assert (folder / STATE_FILE).exists()

    restored = pickle.loads(at_start)
    assert restored.policy.scores[0] == {}, "as pickled at the start: empty rungs"
    restored.on_trial_add(None, trial["a"])
    assert restored.policy.scores[0] == {"a": 0.5, "b": 0.4}
    # a restored trial reports again: the same answers (b was stopped; its rung is recorded)
    assert report(restored, "b", 1, 0.4) == TrialScheduler.STOP
    assert report(restored, "a", 1, 0.5) == TrialScheduler.CONTINUE
    # a new trial meets the rung as it was: below the cutoff (0.45), stopped (empty rungs: goes on)
    restored.on_trial_add(None, trial["c"])
    assert report(restored, "c", 1, 0.42) == TrialScheduler.STOP


# ---- the Tune wrapper on a synthetic objective ----------------------------------------------

@pytest.mark.integration
def test_pasha_in_tune_finds_the_known_best_with_less_compute_than_asha(ray_local):
    from ray import tune

    from search.schedule.schedulers import make_scheduler

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


class _InterruptOnce:
    """A Tune callback (built lazily: Ray is imported in the test) that interrupts the run as
    Ctrl+C does when the ``n``-th trial ends, once: the restored run finds the marker and goes on."""

    @staticmethod
    def make(n: int, marker):
        import os
        import signal

        from ray import tune

        class InterruptOnce(tune.Callback):
            def __init__(self) -> None:
                self.ended = 0

            def on_trial_complete(self, iteration, trials, trial, **info) -> None:
                self.ended += 1
                if self.ended == n and not marker.exists():
                    marker.touch()
                    os.kill(os.getpid(), signal.SIGINT)  # Tune stops, saves, and fit() returns

        return InterruptOnce()


@pytest.mark.integration
def test_resumed_search_keeps_pashas_rungs(ray_local):
    """The path of ``--resume`` (``Tuner.restore``, which rebuilds the scheduler as pickled at the
    start): a run interrupted after 3 of 6 trials and restored decides as if never interrupted."""
    from ray import tune

    from search.schedule.schedulers import make_scheduler

    def synthetic(config):
        for t in range(1, 5):
            tune.report({"score": config["q"] * (1 - 0.5 ** t)})

    marker = ray_local / "interrupted"
    scheduler = make_scheduler("pasha", max_t=4, grace_period=1, reduction_factor=2)
    tuner = tune.Tuner(
        synthetic, param_space={"q": tune.grid_search([0.5, 0.9, 0.3, 0.2, 0.8, 0.1])},
        tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=True, scheduler=scheduler),
        run_config=tune.RunConfig(name="resume", verbose=0, storage_path=str(ray_local),
                                  callbacks=[_InterruptOnce.make(3, marker)]))
    first = tuner.fit()
    assert marker.exists() and sum(r.metrics.get("training_iteration", 0) > 0 for r in first) < 6
    grid = tune.Tuner.restore(str(ray_local / "resume"), synthetic, resume_unfinished=True).fit()
    ran = {r.config["q"]: r.metrics["training_iteration"] for r in grid}
    # 0.5 and 0.9 lead rung 2 in turn (full budget); 0.3, 0.2 and 0.1 fall below rung 1's cutoff;
    # 0.8 reaches the top rung behind 0.9 and stops. Restored with empty rungs, 0.2 would be
    # first at rung 1 and lead rung 2: 4 evaluations.
    assert ran == {0.5: 4, 0.9: 4, 0.3: 1, 0.2: 1, 0.8: 2, 0.1: 1}


# ---- a real search: PASHA with dev subsets ---------------------------------------------------

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
    # the leader rule: the pick was trained to the end, its score is its own last (whole-dev)
    # evaluation, and no checkpoint needed scoring again
    assert evals[res["best_trial_id"]] == 4
    assert "stopped on a dev subset" not in proc.stdout


def test_pasha_epsilon_flag_reaches_the_search_scheduler():
    """``--pasha-epsilon`` as the command line parses it ends up in the scheduler the search runs
    (fixed, not estimated); without the flag the scheduler estimates it."""
    from search.cli import build_parser
    from search.schedule.schedulers import scheduler_for
    from search.settings import settings_from

    def built(*flags: str):
        args = {k: v for k, v in vars(build_parser().parse_args(list(flags))).items() if v is not None}
        return scheduler_for(settings_from(args)).policy

    fixed = built("--scheduler", "pasha", "--pasha-epsilon", "0.02")
    assert fixed.fixed_epsilon == 0.02 and fixed.epsilon == 0.02
    estimated = built("--scheduler", "pasha")
    assert estimated.fixed_epsilon is None and estimated.epsilon == 0
