"""The comparison report without a Ray cluster or MLflow: Pareto front, ASHA rungs (checked
against Ray's own scheduler object), importances and figures grouped by role, edge warnings,
the leaderboard and the self-contained HTML, on records built in code."""

from __future__ import annotations

import base64
import json
import math
import random
import re
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from search.report import build
from search.report.board import leaderboard
from search.report.data import ExperimentRecord, MethodRecord, TrialRecord, rung_steps
from search.report.doc import edge_warnings, importances, pareto_rows, ranked_importances
from search.report.pareto import pareto_front
from search.report.plots import importance_figure, values_figure
from search.searchers import objective_metrics
from spaces import get_space
from spaces.common import choice, dims_from_json, dims_to_json, logint, loguniform, uniform

DIMS = [loguniform("lr", 1e-5, 1e-3), logint("r", 4, 128, role="scientific"),
        uniform("lora_dropout", 0.0, 0.2),
        choice("target_modules", ["query,value", "query,key,value"], role="scientific")]


def brute_front(points):
    """Points no other point beats or ties on both objectives with one strictly better."""
    ok = [p for p in points if math.isfinite(p[0]) and math.isfinite(p[1])]
    return {p for p in ok if not any(q[0] >= p[0] and q[1] <= p[1] and (q[0] > p[0] or q[1] < p[1])
                                     for q in ok)}


@pytest.mark.parametrize("seed", range(30))
def test_pareto_front_matches_brute_force(seed):
    rng = random.Random(seed)
    pts = [(round(rng.random(), 2), round(rng.uniform(0.1, 10), 1)) for _ in range(rng.randint(0, 40))]
    pts += [(float("nan"), 1.0), (0.99, float("nan"))] if seed % 2 else []
    front = pareto_front(pts, score=lambda p: p[0], cost=lambda p: p[1])
    assert set(front) == brute_front(pts)
    assert [p[1] for p in front] == sorted(p[1] for p in front)  # cheapest first
    assert len(front) == len(set(front))  # an exact tie is kept once


def test_objective_parsing():
    assert objective_metrics("score") == [("score", "max")]
    assert objective_metrics("score, params") == [("score", "max"), ("stored_pct", "min")]
    for bad in ("", "params", "score,loss", "score,score", "params,score"):
        with pytest.raises(ValueError, match="--objective"):
            objective_metrics(bad)


def _method(name, settings=None, trials=(), dims=DIMS, best=None):
    s = {"scheduler": "asha", "max_steps": "200", "eval_every": "50", "grace_period": "1",
         "reduction_factor": "2.0", **(settings or {})}
    return MethodRecord(name, f"run-{name}", "FINISHED", s, {"wall_s": 120.0}, best, list(dims), list(trials))


def _trial(method, i, score, pct, params, steps=200, early=False, status="FINISHED"):
    curve = [(s, score - 0.1 * (steps - s) / 200) for s in range(50, steps + 1, 50)]
    return TrialRecord(method, f"r{method}{i}", f"{method}{i}", status, early, None,
                       {k: str(v) for k, v in params.items()},
                       {"stored_pct": pct, "sst_accuracy": score, "sst_pct": pct / 3}, curve, 30.0)


def ray_asha_steps(max_steps: int, every: int, grace: int, factor: float) -> tuple[list[float], list[int]]:
    """Ray's ASHAScheduler as search/ builds it: its milestones (in evaluations), and the steps
    at which it enters one trial into a rung when the trial reports every evaluation."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    max_t = math.ceil(max_steps / every)
    scheduler = ASHAScheduler(metric="score", mode="max", time_attr="training_iteration", max_t=max_t,
                              grace_period=grace, reduction_factor=factor)
    (bracket,) = scheduler._brackets
    trial = SimpleNamespace(trial_id="t0")
    scheduler.on_trial_add(None, trial)
    entered, steps = 0, []
    for it in range(1, max_t + 1):
        action = scheduler.on_trial_result(None, trial, {"training_iteration": it, "score": 0.5})
        now = sum(trial.trial_id in recorded for _, recorded in bracket._rungs)
        if now > entered:
            steps.append(min(it * every, max_steps))  # the evaluation at max_steps may be short
        entered = now
        if action == TrialScheduler.STOP:
            break
    return sorted(milestone for milestone, _ in bracket._rungs), steps


@pytest.mark.parametrize("max_steps, every, grace, factor", [
    (200, 50, 1, 2.0),     # max_t 4 = 2**2: the rung at max_t is never a comparison
    (1000, 100, 1, 3.0),   # max_t 10, not a power of 3
    (230, 50, 1, 2.0),     # max_steps not a multiple of eval_every: 5 evaluations, the last at 230
    (2000, 100, 3, 2.0),   # grace 3: milestones 3, 6, 12 of 20
    (1000, 50, 2, 4.0),    # Ray's default factor
    (500, 50, 1, 1.5),     # a fractional factor: milestones 1, 1.5, 2.25, 3.375, 5.06, 7.59
    (1200, 100, 1, 1.3),   # two milestones share an evaluation: the lower one enters later
    (100, 50, 2, 2.0),     # grace = max_t: no comparison at all
])
def test_rungs_follow_ashas_milestones(max_steps, every, grace, factor):
    milestones, expected = ray_asha_steps(max_steps, every, grace, factor)
    m = _method("a", {"max_steps": str(max_steps), "eval_every": str(every), "grace_period": str(grace),
                      "reduction_factor": str(factor)})
    assert rung_steps(m) == expected
    max_t = math.ceil(max_steps / every)
    if float(factor).is_integer():  # whole milestones: the trial is compared at each one below max_t
        assert expected == [int(ms) * every for ms in milestones if ms < max_t]


def test_a_fractional_factor_enters_a_skipped_milestone_later():
    # factor 1.3: milestones 1, 1.3, 1.69, 2.2, 2.86, 3.71, 4.83, 6.27, 8.16, 10.6 evaluations; 1.3
    # and 2.2 are passed over at evaluations 2 and 3 and entered at 8 and 6, where no new one is.
    _, expected = ray_asha_steps(1200, 100, 1, 1.3)
    assert expected == [100 * i for i in (1, 2, 3, 4, 5, 6, 7, 8, 9, 11)]


def test_fifo_has_no_rungs():
    assert rung_steps(_method("a", {"scheduler": "fifo"})) == []


def test_edge_warning_flags_a_best_value_at_the_end_of_its_range():
    t_edge = _trial("lora", 0, 0.7, 1.0, {"lr": 9.5e-4, "r": 16, "lora_dropout": 0.1,
                                          "target_modules": "query,value"})
    t_mid = _trial("lora", 1, 0.5, 1.0, {"lr": 1e-4, "r": 16, "lora_dropout": 0.1,
                                         "target_modules": "query,value"})
    warnings = edge_warnings(_method("lora", trials=[t_edge, t_mid]))
    assert len(warnings) == 1 and "lr=0.00095 is at the high end of [1e-05, 0.001]" in warnings[0]
    assert edge_warnings(_method("lora", trials=[t_mid])) == []


def lr_decides(n: int = 24) -> list[TrialRecord]:
    """Trials over DIMS whose score depends on lr alone (a nuisance dim)."""
    rng = random.Random(0)
    trials = []
    for i in range(n):
        p = {"lr": 10 ** rng.uniform(-5, -3), "r": rng.randint(4, 128), "lora_dropout": rng.uniform(0, 0.2),
             "target_modules": rng.choice(["query,value", "query,key,value"])}
        score = 0.3 + 0.1 * (math.log10(p["lr"]) + 5) + rng.gauss(0, 0.005)
        trials.append(_trial("lora", i, score, 1.0, p))
    return trials


def test_importance_ranks_the_dim_that_decides_the_score():
    trials = lr_decides()
    imp, evaluator = importances(_method("lora", trials=trials))
    assert evaluator == "fANOVA" and set(imp) == {d.name for d in DIMS}
    assert max(imp, key=imp.get) == "lr" and imp["lr"] > 0.5
    assert sum(imp.values()) == pytest.approx(1.0)
    assert "importance needs at least 2" in importances(_method("lora", trials=trials[:1]))


def test_report_puts_scientific_dims_first_in_importances_values_and_text(tmp_path):
    # DIMS lists lr first, and lr alone decides the score: only the roles put r and
    # target_modules (scientific) ahead of it.
    m = _method("lora", trials=lr_decides())
    report = build(ExperimentRecord("x", "1", "sqlite:///x.db", [m]), tmp_path)
    imp, _ = importances(m)
    ranked = ranked_importances(imp, m.dims)
    assert [role for _, role, _ in ranked] == ["scientific", "scientific", "nuisance", "nuisance"]
    assert ranked[2][0] == "lr" and {n for n, _, _ in ranked[:2]} == {"r", "target_modules"}

    ax = importance_figure("lora", ranked, "fANOVA").axes[0]
    bars = sorted(ax.patches, key=lambda b: -b.get_y())  # top to bottom
    assert [b.get_width() for b in bars] == [v for _, _, v in ranked]
    assert [b.get_facecolor() for b in bars[:2]] != [b.get_facecolor() for b in bars[2:]]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["scientific", "nuisance"]

    panels = [a.get_title() for a in values_figure(m).axes if a.get_title()]
    assert panels == ["r (scientific)", "target_modules (scientific)", "lr (nuisance)",
                      "lora_dropout (nuisance)"]

    md = report.markdown.read_text()
    assert "Scientific dims (what this comparison is about): r, target_modules." in md
    assert "Nuisance dims (tuned so that the comparison is fair): lr, lora_dropout." in md
    found = re.search(r"scientific: (\w+) [\d.]+, (\w+) [\d.]+; nuisance: lr [\d.]+, lora_dropout", md)
    assert found and set(found.groups()) == {"r", "target_modules"}


def test_space_round_trips_through_json_roles_included():
    dims = list(get_space("lora_adapter").dims)
    loaded = dims_from_json(json.loads(json.dumps(dims_to_json(dims))))
    assert loaded == dims
    assert [d.role for d in loaded] == [d.role for d in dims]
    assert {"scientific", "nuisance", "fixed"} <= {d.role for d in loaded}


def test_the_report_imports_neither_ray_nor_a_plotting_backend():
    code = ("import sys, search.report, search.report.cli, search.report.publish, search.report.plots; "
            "assert 'ray' not in sys.modules, 'ray'; assert 'matplotlib.pyplot' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_report_ranks_methods_draws_every_figure_and_embeds_them(tmp_path):
    p = {"lr": 1e-4, "r": 8, "lora_dropout": 0.1, "target_modules": "query,value"}
    q = {"lr": 3e-4, "r": 32, "lora_dropout": 0.05, "target_modules": "query,key,value"}
    lora = [_trial("lora", 0, 0.60, 0.5, p), _trial("lora", 1, 0.55, 2.0, q, steps=50, early=True),
            _trial("lora", 2, float("nan"), 0.5, p, status="FAILED")]
    adapter = [_trial("adapter", 0, 0.70, 3.0, p), _trial("adapter", 1, 0.50, 0.4, q, steps=100, early=True)]
    exp = ExperimentRecord("x", "1", "sqlite:///x.db", [_method("lora", trials=lora),
                                                        _method("adapter", trials=adapter)])
    report = build(exp, tmp_path)
    header, rows, records = leaderboard(exp)
    assert [r["method"] for r in records] == ["adapter", "lora"]
    lora_row = records[1]
    counts = (lora_row["score"], lora_row["trials"], lora_row["stopped_early"], lora_row["failed"])
    assert counts == (0.60, 3, 1, 1)
    assert lora_row["trial_steps"] == 200 + 50 + 200 and lora_row["stored_pct"] == 0.5
    # front: adapter 0.50 at 0.4%, lora 0.60 at 0.5%, adapter 0.70 at 3%
    _, front = pareto_rows(exp.trials, {"lora": DIMS, "adapter": DIMS})
    assert [(r[0], r[1]) for r in front] == [("adapter", "0.5000"), ("lora", "0.6000"), ("adapter", "0.7000")]
    assert report.pareto == front
    page = report.html.read_text()
    imgs = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(imgs) == 1 + 2 * 3 and all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in imgs)
    assert "http" not in "".join(re.findall(r"src='([^']{0,10})", page))  # nothing fetched
    md = report.markdown.read_text()
    for ref in re.findall(r"!\[[^]]*\]\(([^)]+)\)", md):
        assert (tmp_path / ref).stat().st_size > 1000
    assert "| 1 | adapter | 0.7000 |" in md
    saved = json.loads((tmp_path / "leaderboard.json").read_text())  # what benchmarks read back
    assert saved["verdict"] == report.verdict and saved["verdict"].startswith("**Not confirmed**")


def test_the_legend_tells_the_figures_that_chose_from_the_one_to_quote():
    from search.report.make import LEGEND

    for term in ("best-of-N =", "selection mean =", "biased upward", "confirmed =", "fresh seeds",
                 "test =", "the figure to quote", "vs defaults =", "(test)", "(validation)"):
        assert term in LEGEND, term


# ---- the confirmed leaderboard and its verdict ------------------------------------------------
def _right(rng, n: int = 400, seeds: int = 3, share: float = 0.7) -> np.ndarray:
    """(seeds, rows) right/wrong: rows easy or hard for every seed, 2% flipped per seed."""
    easy = rng.random(n) < share
    return np.array([easy ^ (rng.random(n) < 0.02) for _ in range(seeds)])


def _fix(right: np.ndarray, rows: int, rng) -> np.ndarray:
    """``right`` with ``rows`` rows that every seed got wrong now right on every seed: exactly
    ``rows / n`` better."""
    better = right.copy()
    better[:, rng.choice(np.flatnonzero(~right.any(0)), rows, replace=False)] = True
    return better


def _confirmed(name, pick, default, search, test=None, trial_score=0.5):
    """A method confirmed by the product: its pick's and its defaults' fresh-seed right/wrong on
    validation (``pick``, ``default``; ``default`` None: the defaults were the pick) and on test
    (``test``: (pick, default) or None for no test split), summed up by ``search.selection.confirm`` and
    ``search.selection.heldout`` as the driver does."""
    from search.selection.confirm import Candidate, Confirmation, summary_numbers
    from search.selection.heldout import gain_numbers
    from search.stats import Outputs, interval

    def outputs(right):
        return Outputs({"b": "binary"}, {"b": np.ones(right.shape[1])}, {"b": right.astype(float)})

    def cand(label, right, is_default):
        c = Candidate(label, {"lr": label}, search, trial_id=label, is_default=is_default)
        c.outputs, c.seed_scores = outputs(right), [float(v) for v in right.mean(1)]
        c.interval = interval(c.outputs, resamples=300)
        return c

    chosen = Candidate(name, {"lr": name}, search, is_default=default is None,
                       seed_scores=[float(v) + 0.01 for v in pick.mean(1)])  # the best of several
    fresh = [cand(name, pick, default is None)]
    fresh += [cand("default", default, True)] if default is not None else []
    summary = {"wall_s": 60.0, "stored_pct": 1.0, "amortised_pct": 0.4,
               "over_adapter": 1.0 if name == "hyper" else 0.0,
               **summary_numbers(Confirmation([chosen], chosen, fresh))}
    m = _method(name, trials=[_trial(name, 0, trial_score, 1.0, {"lr": 1e-4})])
    m.confirm_outputs = fresh[0].outputs
    if test is not None:
        on_test = [outputs(t) if t is not None else None for t in test]
        iv = interval(on_test[0], resamples=300)
        summary.update(test_score=iv.mean, test_lo=iv.lo, test_hi=iv.hi, **gain_numbers(*on_test))
        m.test_outputs = on_test[0]
    m.summary = summary
    return m


def test_confirmed_leaderboard_ranks_by_the_confirmed_mean_and_judges_gains_on_the_test_split():
    """Gains over the defaults computed by the product from the fresh runs' outputs: steady's is
    +5 points on validation (20 of 400 rows fixed on every seed) and +3 on test (12 rows);
    worse's -4 on test (16 rows broken); hyper's noise. The verdict quotes the test split's."""
    from search.report.board import leaderboard, verdict

    rng = np.random.default_rng(0)
    val = _right(rng)
    test = [_right(rng) for _ in range(3)]
    noisy = [test[2] ^ (rng.random((3, 400)) < 0.04) for _ in range(2)]  # both alike, by noise
    broken = test[1].copy()
    broken[:, rng.choice(np.flatnonzero(test[1].all(0)), 16, replace=False)] = False
    steady = _confirmed("steady", _fix(val, 20, rng), val, 0.70,
                        test=(_fix(test[0], 12, rng), test[0]))
    lucky = _confirmed("lucky", val, None, 0.80, test=(test[1], None))
    worse = _confirmed("worse", val & _right(rng, share=0.99), val & _right(rng, share=0.99), 0.72,
                       test=(broken, test[1]))
    hyper = _confirmed("hyper", val & (rng.random((3, 400)) < 0.9), val & (rng.random((3, 400)) < 0.9),
                       0.75, test=tuple(noisy))
    exp = ExperimentRecord("x", "1", "sqlite:///x.db", [lucky, hyper, worse, steady])
    header, rows, records = leaderboard(exp)
    assert [r["method"] for r in records][:2] == ["steady", "lucky"]
    assert header[2:6] == ["confirmed [95%]", "best-of-N", "selection mean", "test [95%]"]
    assert "% amortised" in header
    assert rows[0][3] == "0.7000" and rows[1][3] == "0.8000"  # best-of-N kept beside it
    assert float(rows[0][4]) == pytest.approx(records[0]["confirmed"] + 0.01, abs=1e-4)  # selection mean
    assert all(r["gain_on"] == "test" for r in records)
    assert rows[0][6].startswith("+3.00 [") and rows[0][6].endswith("(test)")
    assert "more than plain per-task adapters" in next(r for r in rows if r[1] == "hyper")[-1]
    text = verdict(exp, records)
    assert "- steady: the search beat the method's defaults by +3.00 [" in text
    assert "points on the test split." in text
    assert "- lucky: the method's defaults had the best selection mean" in text
    assert "- worse: the method's defaults beat the search's pick by +4.00 [" in text
    hyper_line = next(line for line in text.splitlines() if line.startswith("- hyper"))
    assert "not a separable gain" in hyper_line and "on the test split" in hyper_line
    # the validation gain, which the verdict must not quote
    assert steady.summary["gain_over_default"] == pytest.approx(0.05) and "+5.00" not in text


def test_the_lead_is_judged_on_the_test_split_not_on_the_rows_that_chose():
    """First on validation by 5 points (separable there); on test the order holds by 5 points
    (separable), is noise, or turns: the verdict follows the test split. Without a test split it
    says what it rests on."""
    from search.report.board import leaderboard, verdict

    rng = np.random.default_rng(1)
    val, test = _right(rng), _right(rng)
    first_val, second_val = _fix(val, 20, rng), val

    def lead(first_test, second_test):
        a = _confirmed("a", first_val, None, 0.7, test=None if first_test is None else (first_test, None))
        b = _confirmed("b", second_val, None, 0.7, test=None if second_test is None else (second_test, None))
        exp = ExperimentRecord("x", "1", "sqlite:///x.db", [b, a])
        _, _, records = leaderboard(exp)
        assert [r["method"] for r in records] == ["a", "b"]
        return verdict(exp, records).splitlines()[0]

    holds = lead(_fix(test, 20, rng), test)
    assert holds.startswith("On the test split") and "**a** (first on validation) vs **b**: +5.00 [" in holds
    assert "separable at this budget" in holds and "Not separable" not in holds
    noise = lead(test ^ (rng.random((3, 400)) < 0.03), test ^ (rng.random((3, 400)) < 0.03))
    assert noise.startswith("On the test split") and "**Not separable at this budget**" in noise
    turns = lead(test, _fix(test, 20, rng))
    assert "-5.00 [" in turns and "**b** is ahead, separably" in turns
    unsplit = lead(None, None)
    assert "fresh-seed validation runs: +5.00 [" in unsplit and "no test split" in unsplit


def test_unconfirmed_leaderboard_says_its_ranks_rest_on_one_seed():
    from search.report.board import leaderboard, verdict

    exp = ExperimentRecord("x", "1", "sqlite:///x.db", [
        _method("lora", trials=[_trial("lora", 0, 0.6, 0.5, {"lr": 1e-4})]),
        _method("adapter", trials=[_trial("adapter", 0, 0.7, 3.0, {"lr": 1e-4})])])
    header, _, records = leaderboard(exp)
    assert "confirmed [95%]" not in header and [r["method"] for r in records] == ["adapter", "lora"]
    assert verdict(exp, records).startswith("**Not confirmed**")
    assert verdict(ExperimentRecord("x", "1", "u", exp.methods[:1]), records[:1]) == ""


def test_a_budget_search_table_says_its_order_is_not_the_answer_and_shows_no_nan():
    """A ``--budget`` search confirms only the methods that reached its race's fresh seeds: the
    terminal table shows '-' for the others' confirmed cell (it printed 'nan [nan, nan]') and the
    verdict points at the answer instead of telling the user to run with ``--confirm``."""
    from pathlib import Path

    from search.report.board import leaderboard, verdict
    from search.report.make import Report, summary_text

    rng = np.random.default_rng(2)
    raced = _confirmed("adapter", _right(rng), None, 0.50)
    other = _method("lora_adapter", trials=[_trial("lora_adapter", 0, 0.55, 1.0, {"lr": 1e-4})])
    for m in (raced, other):
        m.settings["budget"] = "1591.4s"
    exp = ExperimentRecord("x", "1", "sqlite:///x.db", [raced, other])
    _, _, records = leaderboard(exp)
    text = verdict(exp, records)
    assert text.startswith("**A `--budget` search**") and "adapter reached" in text
    assert "--confirm" not in text
    table = summary_text(Report(Path("."), Path("r.html"), Path("r.md"), {}, records, [], [], text))
    assert "nan" not in table and "lora_adapter" in table
    lora = _method("lora", trials=[_trial("lora", 0, 0.5, 1.0, {})])
    plain = ExperimentRecord("x", "1", "u", [_confirmed("adapter", _right(rng), None, 0.5), lora])
    assert verdict(plain, leaderboard(plain)[2]).startswith("**Not confirmed**")


def test_the_figures_draw_when_no_trial_reported_a_score(tmp_path):
    """A --budget search stopped before any report (BENCHMARKS §15, "loaded") still gets its
    report: a log axis with no point used to fail ("Data cannot be log-scaled")."""
    from search.report.plots import pareto_figure, save

    failed = [_trial("lora", i, math.nan, 1.0, {"lr": 1e-4, "r": 8}) for i in range(2)]
    methods = [_method("lora", trials=failed), _method("adapter")]
    path = save(pareto_figure(methods), tmp_path / "pareto.png")
    assert path.stat().st_size > 1000
    assert save(values_figure(methods[0]) or pareto_figure([]), tmp_path / "values.png").exists()
