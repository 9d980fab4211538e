"""``--budget`` end to end on the tiny model: a search interrupted midway and resumed keeps the
budget it had used, ends inside the budget, and records its answer on disk and in MLflow."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import pytest
from searchkit import ENV, ROOT, cli, mlflow_runs, run

from benchmarks.budget_vs_sequential import trial_time
from search.schedule.budget import Ledger

BUDGET_S = 150.0


def test_budget_flags_that_it_sizes_itself_are_refused(tiny_model_dir, tmp_path):
    proc = run(cli(tiny_model_dir, tmp_path / "x", "--method", "lora,adapter", "--budget", "2m",
                   "--num-samples", "4"), tmp_path, rc=2)
    assert "--num-samples: --budget sizes the trials" in proc.stderr
    proc = run(cli(tiny_model_dir, tmp_path / "y", "--method", "lora", "--budget", "two hours"), tmp_path,
               rc=2)
    assert "--budget" in proc.stderr and "two hours" in proc.stderr and len(proc.stderr.splitlines()) == 1
    proc = run(cli(tiny_model_dir, tmp_path / "z", "--method", "lora", "--deadline", "1h"), tmp_path, rc=2)
    assert proc.stderr.startswith("error: --deadline 1h: needs --budget")
    assert len(proc.stderr.splitlines()) == 1 and not (tmp_path / "z" / "search.json").exists()
    proc = run(cli(tiny_model_dir, tmp_path / "w", "--method", "lora", "--budget", "2h",
                   "--deadline", "soon"), tmp_path, rc=2)
    assert "--deadline 'soon': not a duration" in proc.stderr and len(proc.stderr.splitlines()) == 1


@pytest.mark.integration
def test_a_budget_search_resumed_keeps_what_it_used_and_ends_inside_its_budget(tiny_model_dir, tmp_path):
    out = tmp_path / "b"
    cmd = cli(tiny_model_dir, out, "--method", "lora,adapter", "--budget", f"{BUDGET_S:g}s",
              "--val-from-train", "0.2", "--experiment", "b", "--max-concurrent", "2",
              "--max-steps", "300", "--eval-every", "100")  # trials of seconds: few, not hundreds
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:  # Ctrl+C once the pool has spent a fifth of the budget
        deadline = time.time() + 300
        while time.time() < deadline and _used(out) < BUDGET_S / 5:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = "".join(lines)
    assert proc.returncode == 130, output[-3000:]
    used_before = _used(out)
    assert 0 < used_before < BUDGET_S and not (out / "answer.json").exists()

    time.sleep(3)  # time while stopped: never charged
    resumed = run(cmd + ["--resume"], tmp_path, timeout=900)
    start_line = next(ln for ln in resumed.stdout.splitlines() if ln.startswith("budget "))
    assert "used)" in start_line and "(0s used)" not in start_line, start_line
    ledger = Ledger.load(out / "budget.json")
    assert ledger.used <= 1.05 * BUDGET_S, resumed.stdout[-3000:]
    # Ctrl+C came while trials ran: what they held since their last report was charged, as the
    # slots were held (--resume runs that part again; Tune's files hold only the re-run).
    interrupted = ledger.spent(kind="interrupted")
    assert 0 < interrupted < BUDGET_S / 5 and "interrupted:" in output, output[-3000:]
    # The rest against every report Tune wrote: the same (trial, iteration) pairs. An iteration
    # charged before the Ctrl+C and run again after the restore (its checkpoint older than its
    # report) is charged twice, Tune's files count it once: up to one evaluation per running trial
    # (measured here: equal to the tenth of a second). A ledger that missed reports at large
    # falls outside 5% of B.
    files = trial_time(out / "tune")["total_s"]
    assert abs(ledger.used - interrupted - files) <= 0.05 * BUDGET_S, (ledger.used, interrupted, files)
    assert ledger.spent(kind="confirm") > 0, ("the race and the fresh seeds were charged",
                                             resumed.stdout[-3000:])
    answer = json.loads((out / "answer.json").read_text())
    assert answer["verdict"] and answer["used_s"] == pytest.approx(ledger.used, rel=1e-6)
    assert json.loads((out / "race.json").read_text())["stopped"], "race.json says why the race ended"
    assert set(answer["methods"]) == {"lora", "adapter"}
    assert json.loads((out / "results.json").read_text())["answer"]["verdict"] == answer["verdict"]
    _, runs = mlflow_runs(f"sqlite:///{out.parent / 'mlflow.db'}", "b")
    recorded = [r for r in runs if r.data.tags.get("kind") == "answer"]
    assert len(recorded) == 1 and recorded[0].data.tags["verdict"] == answer["verdict"]
    assert recorded[0].data.metrics["budget_used_s"] == pytest.approx(ledger.used, rel=1e-6)


@pytest.mark.integration
def test_a_deadline_ends_every_run_before_it_however_large_the_budget(tiny_model_dir, tmp_path):
    out, deadline_s, slots = tmp_path / "d", 60.0, 2
    started = time.time()
    proc = run(cli(tiny_model_dir, out, "--method", "lora,adapter", "--budget", "20m", "--deadline",
                   f"{deadline_s:g}s", "--val-from-train", "0.2", "--experiment", "d", "--max-concurrent",
                   str(slots), "--max-steps", "300", "--eval-every", "100"), tmp_path, timeout=900)
    assert "[budget] --deadline: every run ends within" in proc.stdout, proc.stdout[-3000:]
    ledger = Ledger.load(out / "budget.json")
    # 20 min of budget, but 2 slots x 60 s on the clock: the cap, not the budget, ended the search
    assert 0 < ledger.used <= slots * deadline_s, proc.stdout[-3000:]
    ends = [json.loads(path.read_text().strip().splitlines()[-1])["timestamp"]
            for path in (out / "tune").glob("*/*/result.json") if path.read_text().strip()]
    # the clock starts with the command (imports before it: seconds); every run ended before it
    assert started < ledger.deadline_at - deadline_s < started + 30
    assert ends and max(ends) <= ledger.deadline_at + 1, (max(ends) - started, proc.stdout[-3000:])
    assert json.loads((out / "answer.json").read_text())["verdict"]


def _used(out) -> float:
    try:
        return Ledger.load(out / "budget.json").used
    except (OSError, ValueError, KeyError):
        return 0.0


@pytest.mark.integration
def test_a_race_round_is_one_tune_experiment_charged_to_the_ledger(tiny_model_dir, tmp_path, ray_local):
    """Two rounds of a race between two configs of the tiny model: every survivor trained once per
    round with the round's seed, each run's seconds charged once, the race saved after each round."""
    from search.plan import make_plan, prepare
    from search.selection.race_tune import load_race, run_round
    from search.selection.racing import Candidate, Race
    from search.settings import settings_from
    from search.tracking import Tracker
    from search.warm import default_config

    s = settings_from({"method": "lora", "model": tiny_model_dir, "max_steps": 20, "eval_every": 10,
                       "max_train_samples": 64, "max_eval_samples": 32, "out": str(tmp_path / "r"),
                       "experiment": "r", "mlflow_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    plan = make_plan(s)
    data = prepare(plan)
    tracker = Tracker(plan.mlflow_uri, s.experiment)
    parents = {"lora": tracker.parent_run("lora", {})}
    default = default_config(plan, "lora")
    other = {**default, "lr": default["lr"] * 3}
    race = Race([Candidate("lora:default", "lora", default, True), Candidate("lora:x3", "lora", other)],
                reserve_s=1e4, cost_per_run_s=1.0, max_rounds=2)
    ledger = Ledger(1e4, tmp_path / "budget.json")
    for _ in range(2):
        assert run_round(plan, data, tracker, parents, 2, False, race, ledger)
    assert race.round == 2 and race.runs_used == 4
    assert [s for s, _, _ in race.runs["lora:x3"]] == [race.seed(1), race.seed(2)]
    assert ledger.spent(kind="confirm") == pytest.approx(race.spent_s) and ledger.used > 0
    saved = load_race(tmp_path / "r")
    assert saved.runs_used == 4 and saved.scores("lora:x3") == race.scores("lora:x3")
    assert run_round(plan, data, tracker, parents, 2, False, race, ledger)  # the race is over
    assert race.done and race.runs_used == 4


def test_fresh_runs_are_costed_from_the_last_measured_experiment_not_the_pool_alone(tmp_path):
    """The overspend found under load (BENCHMARKS §15): the pool's estimate of a run was far too
    low once the machine slowed down. After the leader's fresh runs charged twice their estimate,
    the runner-up's are costed at that rate and get no seeds, where the pool's estimate alone would
    have started 3 seeds that run past the budget."""
    from search.schedule.budget import LOAD_MARGIN, Ledger
    from search.schedule.costs import Costs

    costs = Costs({"lora": 10.0, "adapter": 12.0}, cold_s=2.0, concurrency=2)
    assert costs.experiment(6) == 6 * 12.0 + 2 * 2.0  # the slowest method's run, 2 cold starts
    ledger = Ledger(400.0, tmp_path / "b.json")
    ledger.charge("trial", "lora", 150.0, run_id="pool", index=1)
    # Before the fresh runs: 3 seeds of leader, its defaults, runner-up and its defaults fit.
    assert LOAD_MARGIN * 2 * costs.experiment(6) <= ledger.left
    assert costs.seeds_that_fit(ledger, [2, 2], 3) == 3
    # The leader's 6 runs charged twice their estimate (the machine slowed down).
    charged = 2 * costs.experiment(6)
    ledger.charge("confirm", "lora", charged, run_id="fresh", index=1)
    costs.observe(6, charged)
    assert costs.factor == pytest.approx(2.0)
    assert costs.seeds_that_fit(ledger, [2], 3) == 0
    # Without the re-estimate: 3 seeds, which at the measured rate overspend.
    unobserved = Costs({"lora": 10.0, "adapter": 12.0}, cold_s=2.0, concurrency=2)
    n = unobserved.seeds_that_fit(ledger, [2], 3)
    assert n == 3 and 2 * unobserved.experiment(2 * n) > ledger.left


def test_a_faster_stage_lowers_the_next_estimate_and_a_failed_one_leaves_it():
    from search.schedule.costs import Costs

    costs = Costs({"lora": 20.0}, cold_s=0.0, concurrency=1)
    costs.observe(4, 40.0)  # race runs evaluate once: half the pool's per-run estimate
    assert costs.factor == pytest.approx(0.5)
    assert costs.experiment(2) == pytest.approx(20.0)
    costs.observe(0, 0.0)  # nothing charged (every run restored, or none ran): no change
    assert costs.factor == pytest.approx(0.5)


@pytest.mark.integration
def test_a_budget_without_max_steps_sizes_the_steps_from_one_measured_run_per_method(tiny_model_dir,
                                                                                     tmp_path):
    """Issue 26 item 1: the budget sizes the trials' length and rungs from measured costs. The
    calibration runs are charged, the sized steps are what the pool's trials ran, they are saved
    for --resume, and the search still ends inside its budget with an answer."""
    from search.schedule.calibrate import STEPS

    out = tmp_path / "s"
    cmd = [sys.executable, str(ROOT / "search" / "run.py"), "--model", tiny_model_dir,
           "--max-train-samples", "64", "--max-eval-samples", "32", "--out", str(out),
           "--mlflow-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--method", "lora,adapter",
           "--budget", f"{BUDGET_S:g}s", "--val-from-train", "0.2", "--experiment", "s",
           "--max-concurrent", "2"]
    proc = run(cmd, tmp_path, timeout=900)
    assert "steps and rungs sized from the budget" in proc.stdout
    assert "[budget] sized from the measured costs: budget" in proc.stdout, proc.stdout[-3000:]
    sizing = json.loads((out / "sizing.json").read_text())
    saved = json.loads((out / "search.json").read_text())
    assert (saved["max_steps"], saved["eval_every"]) == (sizing["max_steps"], sizing["eval_every"])
    assert saved["steps_from_budget"] is True and set(sizing["costs"]) == {"lora", "adapter"}
    ledger = Ledger.load(out / "budget.json")
    assert all(ledger.charged(f"s-calibrate:{m}", 1) for m in ("lora", "adapter"))
    assert ledger.used <= 1.05 * BUDGET_S, proc.stdout[-3000:]
    steps = {json.loads(p.read_text())["max_steps"] for p in (out / "tune" / "s-pool").glob("*/params.json")}
    assert steps == {sizing["max_steps"]} and sizing["max_steps"] != STEPS, steps
    assert json.loads((out / "answer.json").read_text())["verdict"]


def test_a_resumed_sized_search_keeps_its_sized_steps_without_measuring_again(tiny_model_dir, tmp_path):
    from search.plan import make_plan
    from search.schedule.calibrate import SIZING_FILE, sized_steps
    from search.schedule.sizing import Cost, size_plan
    from search.settings import settings_from

    s = settings_from({"method": "lora,adapter", "model": tiny_model_dir, "budget": "20m",
                       "out": str(tmp_path / "r"), "experiment": "r",
                       "mlflow_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    s.steps_from_budget = True
    plan = make_plan(s)
    costs = {"lora": Cost(0.3, 4.0, 6.0), "adapter": Cost(0.35, 4.0, 6.0)}
    sized = size_plan(1100.0, costs, 2)
    assert (sized.max_steps, sized.eval_every) != (s.max_steps, s.eval_every)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / SIZING_FILE).write_text(json.dumps(sized.to_dict()))
    ledger = Ledger(1200.0)
    # No Ray is started and nothing is charged: the saved sizing is applied as it was.
    again = sized_steps(plan, None, 2, True, ledger)
    assert again == sized and ledger.used == 0
    assert (plan.settings.max_steps, plan.settings.eval_every) == (sized.max_steps, sized.eval_every)
    assert all(c["max_steps"] == sized.max_steps and c["eval_every"] == sized.eval_every
               for c in plan.constants.values())


@pytest.mark.integration
def test_a_budget_too_small_for_the_measured_costs_ends_with_one_line_naming_the_minimum(tiny_model_dir,
                                                                                          tmp_path):
    out = tmp_path / "t"
    cmd = [sys.executable, str(ROOT / "search" / "run.py"), "--model", tiny_model_dir,
           "--max-train-samples", "64", "--max-eval-samples", "32", "--out", str(out),
           "--mlflow-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--method", "lora,adapter",
           "--budget", "5s", "--experiment", "t", "--max-concurrent", "2"]
    proc = run(cmd, tmp_path, timeout=600, rc=2)
    errors = [ln for ln in proc.stdout.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stdout[-2000:]
    assert errors[0].startswith("error: --budget 5s is too small for 2 methods: measuring them took ")
    assert "give at least" in errors[0]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (out / "sizing.json").exists()


def test_a_small_reserve_races_the_methods_bests_before_defaults_and_second_leaders(tiny_model_dir, tmp_path):
    """Found on CS224N (the live comparison): a reserve too small for every method's two leaders
    raced one method's leaders and defaults (seed 0 before 1e70c17; seeds 1 and 2 after it, where
    three entrants fitted), so the answer compared no methods. Each method's best comes first,
    then the defaults, then the second leaders, the methods by their standing."""
    from types import SimpleNamespace

    from search.budgeted import _race_candidates
    from search.plan import make_plan
    from search.schedule.costs import Costs
    from search.settings import settings_from

    s = settings_from({"method": "lora,dora,adapter,lora_adapter", "model": tiny_model_dir,
                       "max_steps": 40, "eval_every": 20, "out": str(tmp_path / "r"), "experiment": "r",
                       "mlflow_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    plan = make_plan(s)

    def trial(method, i, score):
        config = {**plan.constants[method], "lr": 1e-4 * (i + 2), "seed": s.seed}
        return SimpleNamespace(config=config, error=None, metrics={"score": score, "training_iteration": 2,
                                                       "step": 40, "trial_id": f"{method}{i}"})

    by_method = {m: [trial(m, i, 0.40 + 0.01 * k + 0.001 * i) for i in range(3)]
                 for k, m in enumerate(s.methods)}
    costs = Costs({m: 40.0 for m in s.methods}, cold_s=0.0, concurrency=2)
    # 2 seeds x k candidates fit the reserve, 2 x (k + 1) do not
    def race(k, eliminated=None):
        return _race_candidates(plan, by_method, eliminated or {}, reserve_s=2 * k * 40.0 + 1, costs=costs)

    three = race(3)
    assert [c.method for c in three] == ["lora_adapter", "adapter", "dora"], [c.name for c in three]
    assert not any(c.is_default for c in three)
    six = race(6)
    assert [c.method for c in six[:4]] == ["lora_adapter", "adapter", "dora", "lora"]
    assert [(c.method, c.is_default) for c in six[4:]] == [("lora_adapter", True), ("adapter", True)]
    # too small for two: still the two leading methods, never one method alone
    assert [c.method for c in race(0)] == ["lora_adapter", "adapter"]
    # one method left: its best and its defaults
    alone = race(0, {m: {} for m in s.methods if m != "dora"})
    assert [(c.method, c.is_default) for c in alone] == [("dora", False), ("dora", True)]
    everything = _race_candidates(plan, by_method, {}, reserve_s=1e9, costs=costs)
    assert len({c.method for c in everything}) == 4 and len(everything) == 12
    assert not any(c.is_default for c in everything[:4])
