"""The replay simulator (search.schedule.replay) against searches computed by hand on constructed tables:
what counts as holding a config, set-up charged, never-held orders kept in the statistics, a
table without --eval-full refused; and a real FIFO --eval-full search replayed from MLflow."""

from __future__ import annotations

import json
import math
from itertools import permutations
from types import SimpleNamespace

import pytest

from search.results import json_safe
from search.schedule.replay import (
    Replay,
    Scenario,
    hold_ratios,
    orders,
    paired_shares,
    replay_all,
    simulate,
    summarize,
)
from search.schedule.replay_table import Curve, curves_from_records, method_curves
from search.trial_outcome import furthest_best as pick


def _curve(tid, scores, subs=None, train=10.0, ev=2.0, setup=0.0):
    n = len(scores)
    return Curve(tid, [10 * (i + 1) for i in range(n)], [train] * n, [ev] * n, list(scores),
                 list(subs or scores), [100.0] * n, [25.0] * n, setup_s=setup)


CURVES = [_curve("t0", [0.5, 0.6]), _curve("t1", [0.4, 0.7]), _curve("t2", [0.7, 0.8])]
FULL1 = Scenario("asha", "full", concurrency=1)
FIFO1 = Scenario("fifo", "full", concurrency=1)


def test_replay_matches_a_hand_computed_asha_search():
    r = simulate(CURVES, [0, 1, 2], FULL1)
    # t0: 12 s rung 1 (first there: goes on), 24 s done. t1: 36 s, 0.4 < cutoff 0.5: stopped.
    # t2: 48 s, 0.7 >= 0.45 (median of 0.5, 0.4): on; 60 s done with the table's best.
    assert r.stopped == {"t0": 2, "t1": 1, "t2": 2}
    assert (r.train_s, r.eval_s, r.steps, r.evaluations) == (50, 10, 50, 5)
    assert r.hold_s == 60 and r.final_trial == "t2" and r.within
    fifo = simulate(CURVES, [0, 1, 2], FIFO1)
    assert (fifo.compute_s, fifo.hold_s, fifo.steps) == (72, 72, 60)


def test_set_up_seconds_are_charged_once_per_trial_started():
    curves = [_curve(c.trial_id, c.score, setup=3.0) for c in CURVES]
    r = simulate(curves, [0, 1, 2], FULL1)
    # as above, each of the 3 trials paying 3 s before its first step: 9 s more, t2 done at 69 s
    assert (r.setup_s, r.compute_s, r.hold_s) == (9, 69, 69)
    assert (r.hold_train_s, r.hold_eval_s) == (50, 10)


def test_a_pick_seen_at_an_early_rung_does_not_hold_until_trained_to_the_end():
    # the best config first: it is the pick from its first evaluation (12 s) on, but holds only
    # when its full run ends (24 s); before the fix the replay credited 12 s
    for sc in (FIFO1, FULL1, Scenario("pasha", "full", concurrency=1)):
        assert simulate(CURVES, [2, 0, 1], sc).hold_s == 24, sc.label


def test_a_hold_is_cleared_when_the_pick_leaves_tolerance_and_counted_from_its_return():
    # trials of different lengths: the furthest trial is the pick, so the best config (2
    # evaluations) is the pick only until a longer one finishes
    best = _curve("best", [0.8, 0.9])
    worse = _curve("worse", [0.5, 0.6, 0.7])
    r = simulate([worse, best], [0, 1], Scenario("fifo", "full", concurrency=2), tolerance=0.02)
    # best done at 24 s (held), worse done at 36 s: the pick, 0.2 below: cleared, never held
    assert r.hold_s is None and r.final_trial == "worse" and not r.within
    close = _curve("close", [0.6, 0.7, 0.89], train=20.0)
    r = simulate([worse, best, close], [0, 1, 2], Scenario("fifo", "full", concurrency=2), tolerance=0.02)
    # worse ends at 36 s (the pick from then, outside); close (started at 24 s) ends at 90 s:
    # held again from then, with every trial's seconds spent by then (24 + 36 + 66)
    assert r.final_trial == "close" and r.hold_s == 24 + 36 + 66


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


# A table where ASHA on dev subsets loses the best config unless it comes first: its 64-row
# score at rung 1 is the worst of all, its full-budget score the best.
LOSER = [_curve("best", [0.6, 0.9], subs=[0.1, 0.9]), _curve("a", [0.5, 0.6]), _curve("b", [0.4, 0.5])]


def test_never_held_orders_stay_in_the_share_and_the_ratios():
    plans = orders(3, 20, seed=0)
    rows = replay_all(LOSER, [Scenario("asha", "subset", concurrency=1)], count=20, seed=0, baseline=FIFO1)
    first = [o[0] == 0 for o in plans]
    assert 0 < sum(first) < 20, "the check needs orders of both kinds"
    row = rows[0]
    assert row["held_share"] == row["within_share"] == sum(first) / 20
    # held: the best config's own run, a subset rung-1 evaluation (0.5 s) then the whole dev set:
    # 22.5 s against FIFO's 24 s; never held: inf, not left out
    want = [22.5 / 24 if f else math.inf for f in first]
    assert row["ratio_orders"] == pytest.approx(want)
    assert row["hold_s_orders"] == [22.5 if f else None for f in first]
    # 8 of 20 orders held: the first quartile lies among the held ones, the median among the others
    assert sum(first) == 8
    assert row["hold_ratio_q1_median_q3"] == (pytest.approx(22.5 / 24), math.inf, math.inf)


def test_ratios_and_paired_shares_count_never_held_orders_explicitly():
    held = lambda s: Replay(hold_s=s, train_s=1.0)  # noqa: E731
    a = [held(10.0), held(None), held(5.0), held(None)]
    b = [held(20.0), held(8.0), held(None), held(None)]
    assert hold_ratios(a, b) == [0.5, math.inf, 0.0, math.inf]
    assert paired_shares(a, b) == {"at_most": 0.5, "less": 0.5, "neither_held": 0.25}
    assert paired_shares(a, a) == {"at_most": 0.5, "less": 0.0, "neither_held": 0.5}
    row = summarize(a, FIFO1, b)
    assert row["held_share"] == 0.5
    assert row["hold_s_q1_median_q3"] == (pytest.approx(8.75), math.inf, math.inf)
    assert json_safe(row)["hold_s_q1_median_q3"] == [pytest.approx(8.75), None, None]


def test_the_order_of_trials_is_all_that_varies_between_orders():
    """Every permutation of CURVES under FIFO uses the same compute; the hold falls when the best
    comes first."""
    fifo = [simulate(CURVES, list(o), FIFO1) for o in permutations(range(3))]
    assert {r.compute_s for r in fifo} == {72}
    assert sorted(r.hold_s for r in fifo) == [24, 24, 48, 48, 72, 72]


def test_a_table_recorded_without_eval_full_is_refused_in_one_line():
    m = SimpleNamespace(method="adapter", settings={"scheduler": "fifo", "eval_full": "False"}, trials=[])
    with pytest.raises(ValueError, match="without --eval-full") as e:
        method_curves("sqlite:///nowhere.db", m, "table")
    assert "\n" not in str(e.value)
    m.settings["scheduler"] = "asha"
    with pytest.raises(ValueError, match="--scheduler asha"):
        method_curves("sqlite:///nowhere.db", m, "table")


def test_curve_records_round_trip_and_a_missing_field_is_named():
    from dataclasses import asdict

    records = json.loads(json.dumps([asdict(c) for c in LOSER]))
    assert curves_from_records(records) == LOSER
    del records[1]["score_sub"]
    with pytest.raises(ValueError, match=r"curve record 1 \(a\) lacks score_sub"):
        curves_from_records(records)


# ---- a real table ----------------------------------------------------------------------------

@pytest.mark.integration
def test_fifo_eval_full_search_replays_from_mlflow(tiny_model_dir, tmp_path):
    from searchkit import cli, mlflow_runs, run

    from search.report.replay import load_curves

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
    _, curves = load_curves(uri, "table")
    assert len(curves) == 4 and all(c.setup_s > 0 for c in curves)
    # FIFO runs every trial whole in any order: its compute is the table's, set-up included
    total = sum(c.setup_s + sum(c.train_s) + sum(c.eval_s) for c in curves)
    assert rows["fifo/full"]["compute_s_median"] == pytest.approx(total)
    assert rows["fifo/full"]["held_share"] == 1.0
    assert rows["fifo/subset"]["eval_s_median"] < rows["fifo/full"]["eval_s_median"]
    # a search that is not in the store cannot be replayed: one clear line
    bad = run(cli(tiny_model_dir, out)[:2] + ["replay", "--experiment", "nope", "--mlflow-uri", uri],
              tmp_path, rc=2)
    assert "no such MLflow experiment" in bad.stderr
