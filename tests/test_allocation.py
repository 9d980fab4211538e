"""Issue 26's Ray-free core: ``--budget`` parsing, the trial-time ledger (charged once per report,
kept across ``--resume``), what a budget buys (``size_plan``), and between-method successive
halving (``MethodAllocator``) on synthetic learning curves whose answer is known."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from search.schedule.budget import LOAD_MARGIN, STOP_AHEAD_S, Ledger, format_duration, parse_duration
from search.schedule.methods import MethodAllocator, diff_noise
from search.schedule.sizing import Cost, bracket_cost, changes, milestones, minimum_budget, size_plan

# -- --budget ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text, seconds", [
    ("2h", 7200), ("45m", 2700), ("90s", 90), ("1h30m", 5400), ("1.5h", 5400), ("3600", 3600),
    ("1h30m15s", 5415), (" 2H ", 7200), ("0.5m", 30), ("12.5", 12.5)])
def test_durations_parse(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "h", "2x", "30m1h", "1h 2h", "-5", "0", "0m", "inf", "nan",
                                  "two hours"])
def test_bad_durations_are_refused_naming_the_flag_the_text_and_an_example(text):
    with pytest.raises(ValueError) as e:
        parse_duration(text)
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"--budget {text!r}") and "1h30m" in message


def test_durations_print_in_a_form_they_parse_back():
    for seconds in (45, 95, 2700, 5400, 7200, 86400 + 60):
        assert parse_duration(format_duration(seconds)) == seconds


# -- the ledger -------------------------------------------------------------------------------


def test_two_trials_side_by_side_charge_the_sum_of_their_slot_time():
    ledger = Ledger(100.0)
    assert ledger.charge("trial", "lora", 10.0, run_id="t1", index=1)
    assert ledger.charge("trial", "dora", 10.0, run_id="t2", index=1)
    assert ledger.charge("setup", "lora", 3.0, run_id="t1", index=0)
    assert ledger.charge("confirm", "lora", 7.0, run_id="c1", index=1)
    assert ledger.used == pytest.approx(30.0) and ledger.left == pytest.approx(70.0)
    assert ledger.share_used == pytest.approx(0.3)
    assert ledger.spent("trial") == 20.0 and ledger.spent(method="lora") == 20.0
    assert ledger.by_method() == {"lora": 20.0, "dora": 10.0}
    with pytest.raises(ValueError):
        ledger.charge("nap", "lora", 1.0, run_id="t1", index=2)
    with pytest.raises(ValueError):
        ledger.charge("trial", "lora", -1.0, run_id="t1", index=2)


def test_a_result_re_sent_after_a_restore_is_not_charged_twice():
    ledger = Ledger(100.0)
    assert ledger.charge("trial", "lora", 12.0, run_id="t1", index=3)
    assert not ledger.charge("trial", "lora", 12.0, run_id="t1", index=3)
    assert ledger.charged("t1", 3) and not ledger.charged("t1", 4)
    assert ledger.used == 12.0
    assert ledger.charge("trial", "lora", 12.0, run_id="t1", index=4)  # the next report is
    assert ledger.charge("trial", "lora", 5.0, run_id="t2", index=3)  # another run's same index is
    assert ledger.used == 29.0


def test_fits_says_whether_a_run_still_ends_inside_the_budget():
    ledger = Ledger(100.0)
    ledger.charge("trial", "lora", 60.0, run_id="t1", index=1)
    assert ledger.fits(40.0) and not ledger.fits(40.5)
    assert not ledger.fits(30.0, committed=15.0)  # running trials will take 15 s of what is left
    assert ledger.fits(25.0, committed=15.0)


def test_resume_continues_with_what_was_left_and_time_while_stopped_costs_nothing(tmp_path):
    path = tmp_path / "search" / "budget.json"
    ledger = Ledger(3600.0, path)
    ledger.charge("trial", "lora", 600.0, run_id="t1", index=1)  # saved on every charge
    ledger.charge("trial", "dora", 300.0, run_id="t2", index=1)
    assert json.loads(path.read_text())["budget_s"] == 3600.0
    assert not list(path.parent.glob("*.tmp"))  # the atomic write leaves no temporary file

    # The search is stopped (however long: nothing is charged without a report) and resumed.
    resumed = Ledger.load(path)
    assert resumed.used == pytest.approx(900.0) and resumed.left == pytest.approx(2700.0)
    assert resumed.by_method() == ledger.by_method()
    assert not resumed.charge("trial", "lora", 600.0, run_id="t1", index=1)  # Tune re-sends it
    assert resumed.charge("trial", "lora", 100.0, run_id="t1", index=2)
    assert Ledger.load(path).used == pytest.approx(1000.0)  # kept saving to the same file
    assert "left 43m" in Ledger.load(path).describe()


def test_a_deadline_caps_what_is_left_at_the_slots_times_the_clock_and_refuses_a_run_that_ends_after_it(
        tmp_path):
    ledger = Ledger(3600.0, tmp_path / "budget.json")
    ledger.charge("trial", "lora", 600.0, run_id="t1", index=1)
    assert ledger.left == pytest.approx(3000.0)  # no deadline: the budget alone
    ledger.set_deadline(time.time() + 600.0, slots=2)  # 10 min on the clock, 2 slots: <= 1200 s left
    assert 1190.0 < ledger.left <= 1200.0
    assert ledger.fits(500.0) and not ledger.fits(700.0), "one run of 700 s ends after the deadline"
    assert ledger.fits(1000.0, wall=500.0), "1000 s of trial-time on 2 slots ends in time"
    assert not ledger.fits(1300.0, wall=500.0), "more trial-time than 2 slots x 10 min"
    # the clock side with room: the estimate x LOAD_MARGIN, ending STOP_AHEAD_S before the deadline
    edge = (ledger.wall_left - STOP_AHEAD_S) / LOAD_MARGIN
    assert ledger.fits(10.0, wall=edge - 1.0) and not ledger.fits(10.0, wall=edge + 1.0)
    assert not ledger.past_deadline() and ledger.past_deadline(now=ledger.deadline_at - STOP_AHEAD_S)
    assert "deadline in" in ledger.describe() and "left 20m" in ledger.describe()
    kept = Ledger.load(tmp_path / "budget.json")  # the pool's searcher reads its own copy
    assert kept.deadline_at == ledger.deadline_at and kept.slots == 2
    kept.set_deadline(None, slots=2)  # a --resume without --deadline: the budget alone again
    assert kept.left == pytest.approx(3000.0) and kept.fits(2000.0)
    ledger.set_deadline(time.time() - 1.0, slots=2)  # past it: nothing fits
    assert ledger.left < 0 and not ledger.fits(0.0)


# -- what a budget buys -----------------------------------------------------------------------

COSTS = {"lora": Cost(0.30, 4.0, 20.0), "dora": Cost(0.40, 4.0, 20.0),
         "adapter": Cost(0.25, 4.0, 15.0), "lora_adapter": Cost(0.35, 4.0, 20.0)}


def test_rungs_and_the_bracket_cost_follow_successive_halving():
    assert milestones(8, 2.0) == [1, 2, 4, 8] and milestones(3, 2.0) == [1, 2, 3]
    c = Cost(1.0, 0.0, 0.0)
    # 8 trials, rungs at 10/20/40/80 steps: 4 stop at 10, 2 at 20, 1 at 40, 1 runs to 80.
    assert bracket_cost(c, 8, 80, 10, [1, 2, 4, 8], 2.0) == pytest.approx(4 * 10 + 2 * 20 + 40 + 80)
    assert bracket_cost(c, 1, 80, 10, [1, 2, 4, 8], 2.0) == pytest.approx(80)  # alone: to the end


@pytest.mark.parametrize("budget", [1800, 3600, 7200, 4 * 3600, 24 * 3600])
def test_the_plan_fits_the_budget(budget):
    plan = size_plan(budget, COSTS, slots=4)
    assert plan.search_s + plan.reserve_s <= budget
    assert plan.search_s == pytest.approx(sum(
        bracket_cost(c, plan.trials[m], plan.max_steps, plan.eval_every,
                     milestones(plan.evaluations, 2.0), 2.0) for m, c in COSTS.items()))
    full = max(c.run(plan.max_steps, plan.evaluations) for c in COSTS.values())
    assert plan.reserve_s >= 2 * full  # at least the minimal confirmation
    assert plan.rungs[-1] == plan.max_steps and len(plan.describe().splitlines()) == 1


def test_more_budget_buys_more_trials_and_no_shorter_ones():
    plans = [size_plan(b, COSTS, slots=4) for b in (3600, 7200, 4 * 3600, 24 * 3600)]
    for small, big in zip(plans, plans[1:], strict=False):
        assert big.max_steps >= small.max_steps and big.trials["lora"] >= small.trials["lora"]
    assert plans[-1].trials["lora"] > plans[0].trials["lora"]
    fixed = [size_plan(b, COSTS, slots=4, max_steps=150) for b in (3600, 7200, 4 * 3600)]
    assert [p.trials["lora"] for p in fixed] == sorted({p.trials["lora"] for p in fixed})


def test_the_race_reserve_is_the_full_race_capped_at_its_share():
    plan = size_plan(4 * 3600, COSTS, slots=4)
    assert plan.race_rounds == 3 and plan.race_candidates == 2 + len(COSTS)
    assert plan.reserve_s <= 0.3 * plan.budget_s + 1e-6
    assert min(plan.trials.values()) >= plan.evaluations  # a full bracket per method


def test_fixed_values_are_kept():
    plan = size_plan(7200, COSTS, slots=2, max_steps=150)
    assert plan.max_steps == 150 and plan.fixed == ("max_steps",) and "fixed: max_steps" in plan.describe()
    both = size_plan(7200, COSTS, slots=2, max_steps=150, eval_every=50)
    assert (both.max_steps, both.eval_every, both.rungs) == (150, 50, (50, 100, 150))


def test_measured_costs_re_size_the_plan_and_say_what_moved():
    assumed = size_plan(7200, COSTS, slots=4)
    slower = {m: Cost(c.step_s * 2, c.eval_s, c.setup_s) for m, c in COSTS.items()}
    measured = size_plan(7200, slower, slots=4)
    line = changes(assumed, measured)
    assert line.startswith("plan re-sized:") and "max_steps" in line and "\n" not in line
    assert changes(assumed, size_plan(7200, COSTS, slots=4)) == "plan unchanged"


def test_a_budget_too_small_is_refused_naming_the_minimum():
    need = minimum_budget(COSTS, 150, 8)
    assert size_plan(math.ceil(need), COSTS, max_steps=150).trials == dict.fromkeys(COSTS, 1)
    with pytest.raises(ValueError) as e:
        size_plan(need - 1, COSTS, max_steps=150)
    message = str(e.value)
    assert "\n" not in message and "too small" in message and format_duration(math.ceil(need)) in message
    with pytest.raises(ValueError, match="at least"):
        size_plan(60, COSTS)  # unfixed: refused at the shortest trial (min_steps)


# -- between-method successive halving --------------------------------------------------------

RUNGS = ((20, 64, 0.06), (40, 128, 0.03), (80, 256, 0.0))
"""(step, validation rows per task scored there, how far below its final score a trial is)."""


def simulate(rng: np.random.Generator, truths: dict[str, float], *, waves: int = 6,
             rho: float = 0.0, spread: float = 0.03) -> MethodAllocator:
    """One search: each wave starts one trial per live method (``next_method``); a trial's
    config reaches ``truth - |N(0, spread)|``, lower by the lag at earlier rungs. Its score at a
    rung is its accuracy on the rung's rows (nested subsets of one validation set, the same for
    every trial). Row r is right when ``sqrt(rho) * difficulty[r] + sqrt(1 - rho) * own[r]`` is
    below the accuracy's normal quantile: ``rho = 0`` makes models err independently (the case
    the noise bound is tight for), ``rho > 0`` makes them agree on hard rows as real models do."""
    from statistics import NormalDist

    quantile = NormalDist().inv_cdf
    alloc = MethodAllocator(list(truths))
    difficulty = rng.standard_normal(256)
    k = 0
    for _ in range(waves):
        wave = []
        for _ in range(len(alloc.live())):
            method = alloc.next_method()
            alloc.started(method, f"t{k}")
            latent = math.sqrt(rho) * difficulty + math.sqrt(1 - rho) * rng.standard_normal(256)
            wave.append((method, f"t{k}", truths[method] - abs(rng.normal(0, spread)), latent))
            k += 1
        for step, rows, lag in RUNGS:
            limits = [quantile(quality - lag) for _, _, quality, _ in wave]
            right = np.stack([latent[:rows] for *_, latent in wave]) < np.array(limits)[:, None]
            for (method, trial, _, _), score in zip(wave, right.mean(axis=1).tolist(), strict=True):
                alloc.observe(method, trial, step, score, rows)
    return alloc


def test_the_weak_methods_are_eliminated_and_the_leader_never():
    rng = np.random.default_rng(26)
    truths = {"lora": 0.60, "dora": 0.59, "adapter": 0.45, "prefix": 0.40}
    runs = [simulate(rng, truths) for _ in range(200)]
    found = np.mean([{"adapter", "prefix"} <= set(a.eliminated()) for a in runs])
    leader_out = np.mean(["lora" in a.eliminated() for a in runs])
    assert found >= 0.9  # measured 0.955 (adapter, 15 points behind: 0.955; prefix: 1.0)
    assert leader_out <= 0.02  # measured 0.0; dora, one point behind lora, 0.02
    assert all({"lora", "dora"} & set(a.live()) for a in runs)
    # Stopping the weak ones moved trials to the strong ones.
    trials = {m: np.mean([a.trials_started(m) for a in runs]) for m in truths}
    assert trials["lora"] > 5.9 and trials["adapter"] < 4 and trials["prefix"] < 3


def test_equal_methods_are_rarely_eliminated():
    """Four methods with the same truth, 500 simulated searches: the familywise false-elimination
    rate. Independent errors (rho = 0, the worst case for the bound) measured 4.6% (binomial
    se over 500 draws: 0.9 points, hence the bound 6%); models that agree on hard rows
    (rho = 0.5) 0.4%. Without the multiplicity correction (z = 2 as it stands) they were 32.6%
    and 15%."""
    rng = np.random.default_rng(2026)
    equal = dict.fromkeys(("lora", "dora", "adapter", "prefix"), 0.60)
    worst = np.mean([bool(simulate(rng, equal).eliminated()) for _ in range(500)])
    agreeing = np.mean([bool(simulate(rng, equal, rho=0.5).eliminated()) for _ in range(500)])
    assert worst <= 0.06 and agreeing <= 0.02


def test_elimination_says_when_and_why():
    alloc = MethodAllocator(["lora", "adapter", "dora"], min_trials=2)
    for i, m in enumerate(["lora", "adapter", "dora"] * 2):
        alloc.started(m, f"t{i}")
    scores = {"lora": (0.70, 0.72), "adapter": (0.45, 0.40), "dora": (0.69, 0.66)}
    for m, (s1, _) in scores.items():
        alloc.observe(m, f"{m}1", 60, s1, 256)
        assert not alloc.eliminated()  # one trial each: below min_trials
    for m, (_, s2) in scores.items():
        alloc.observe(m, f"{m}2", 60, s2, 256)
    out = alloc.eliminated()
    assert set(out) == {"adapter"} and alloc.live() == ["lora", "dora"]
    rec = out["adapter"]
    assert rec["step"] == 60 and rec["leader"] == "lora" and rec["best"] == 0.45 and rec["trials"] == 2
    assert rec["gap"] == pytest.approx(0.27) and rec["when"] == 5
    assert rec["noise"] == pytest.approx(rec["z"] * diff_noise(0.72, 0.45, 256))
    assert rec["why"].startswith(
        "best 0.450 at step 60 is 27.0 points behind lora's 0.720 at step 60 (noise ")


def test_the_noise_bound_and_epsilon():
    # sqrt(2 * 0.25 / 100): two scores at 0.5 on 100 rows.
    assert diff_noise(0.5, 0.5, 100) == pytest.approx(math.sqrt(0.005))
    assert diff_noise(0.9, 0.5, 100) == diff_noise(0.5, 0.9, 100) == diff_noise(0.5, 0.5, 100)
    alloc = MethodAllocator(["a", "b"], epsilon=0.5)
    assert alloc.z_for(2, 1) == pytest.approx(2.0) and alloc.z_for(4, 3) == pytest.approx(2.80, abs=0.01)
    for t in ("1", "2"):
        alloc.observe("a", "a" + t, 10, 0.9, 100_000)
        alloc.observe("b", "b" + t, 10, 0.6, 100_000)
    assert not alloc.eliminated()  # 30 points is within epsilon = 50 points


def test_methods_are_compared_only_at_equal_steps():
    alloc = MethodAllocator(["a", "b"])
    for t in ("1", "2"):
        alloc.observe("a", "a" + t, 80, 0.90, 1000)  # trained longer
        alloc.observe("b", "b" + t, 20, 0.50, 1000)
    assert alloc.live() == ["a", "b"]
    alloc.observe("a", "a1", 20, 0.52, 1000)
    assert alloc.live() == ["a", "b"]


def test_the_leader_and_the_last_live_method_are_never_eliminated():
    alloc = MethodAllocator(["a", "b"], min_trials=1)
    alloc.observe("a", "a1", 10, 0.2, 10_000)
    alloc.observe("b", "b1", 10, 0.9, 10_000)
    assert alloc.live() == ["b"] and alloc.leader() == "b"
    alloc.observe("b", "b2", 20, 0.1, 10_000)  # b alone: nothing to compare with
    assert alloc.live() == ["b"] and alloc.next_method() == "b"


def test_a_method_whose_trials_all_failed_is_eliminated():
    alloc = MethodAllocator(["lora", "prefix"], min_trials=2)
    alloc.observe("prefix", "p1", 20, float("nan"), 64)
    assert alloc.live() == ["lora", "prefix"]
    alloc.failed("prefix", "p2")  # errored before its first evaluation
    assert alloc.eliminated()["prefix"]["why"] == "every trial failed" and alloc.live() == ["lora"]
    alone = MethodAllocator(["lora"], min_trials=1)
    alone.observe("lora", "l1", 20, float("nan"), 64)
    assert alone.live() == ["lora"]  # the last live method stays


def test_next_method_balances_trials_in_the_given_order():
    alloc = MethodAllocator(["lora", "dora", "adapter"])
    order = []
    for i in range(5):
        m = alloc.next_method()
        alloc.started(m, f"t{i}")
        order.append(m)
    assert order == ["lora", "dora", "adapter", "lora", "dora"]
    alloc.started("lora", "t0")  # the same trial again counts once
    assert alloc.trials_started("lora") == 2 and alloc.next_method() == "adapter"
    with pytest.raises(ValueError, match="unknown method"):
        alloc.observe("bitfit", "x", 10, 0.5, 64)


def test_the_state_survives_a_json_round_trip():
    rng = np.random.default_rng(7)
    alloc = simulate(rng, {"lora": 0.60, "dora": 0.59, "adapter": 0.45, "prefix": 0.40}, waves=3)
    alloc.observe("lora", "tnan", 20, float("nan"), 64)
    again = MethodAllocator.from_state(json.loads(json.dumps(alloc.state(), allow_nan=False)))
    assert again.live() == alloc.live() and again.eliminated() == alloc.eliminated()
    assert again.next_method() == alloc.next_method() and again.leader() == alloc.leader()
    assert again.best("lora", 80) == alloc.best("lora", 80) and again.seen == alloc.seen
    assert again.state() == alloc.state()


def test_a_very_large_z_is_corrected_without_overflow():
    """z = 8 puts the normal's upper tail below float resolution of 1 - p: the correction must
    still give a finite z at least as large (it crashed with 'p must be in (0, 1)')."""
    a = MethodAllocator(["a", "b", "c", "d"], z=8.0)
    z = a.z_for(4, 3)
    assert math.isfinite(z) and z > 8.0
    assert MethodAllocator(["a", "b"], z=40.0).z_for(4, 3) == 40.0  # tail 0 in floats: as given
