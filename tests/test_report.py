"""The comparison report without Ray or MLflow: Pareto front, ASHA rungs, importances, edge
warnings, the leaderboard and the self-contained HTML, on records built in code."""

from __future__ import annotations

import base64
import json
import math
import random
import re

import pytest

from search.pareto import pareto_front
from search.registry import objective_metrics
from search.report import build
from search.report_data import ExperimentRecord, MethodRecord, TrialRecord, dims_from_json, dims_to_json
from search.report_doc import edge_warnings, importances, leaderboard, pareto_rows
from search.report_plots import rung_steps
from spaces import get_space
from spaces.common import choice, logint, loguniform, uniform

DIMS = [loguniform("lr", 1e-5, 1e-3), logint("r", 4, 128), uniform("lora_dropout", 0.0, 0.2),
        choice("target_modules", ["query,value", "query,key,value"])]


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


def test_rungs_follow_ashas_milestones():
    assert rung_steps(_method("a")) == [50, 100]  # 4 evaluations: rungs at 1 and 2, then the end
    assert rung_steps(_method("a", {"max_steps": "900", "eval_every": "100",
                                    "reduction_factor": "3.0"})) == [100, 300]
    assert rung_steps(_method("a", {"scheduler": "fifo"})) == []


def test_edge_warning_flags_a_best_value_at_the_end_of_its_range():
    t_edge = _trial("lora", 0, 0.7, 1.0, {"lr": 9.5e-4, "r": 16, "lora_dropout": 0.1,
                                          "target_modules": "query,value"})
    t_mid = _trial("lora", 1, 0.5, 1.0, {"lr": 1e-4, "r": 16, "lora_dropout": 0.1,
                                         "target_modules": "query,value"})
    warnings = edge_warnings(_method("lora", trials=[t_edge, t_mid]))
    assert len(warnings) == 1 and "lr=0.00095 is at the high end of [1e-05, 0.001]" in warnings[0]
    assert edge_warnings(_method("lora", trials=[t_mid])) == []


def test_importance_ranks_the_dim_that_decides_the_score():
    rng = random.Random(0)
    trials = []
    for i in range(24):
        p = {"lr": 10 ** rng.uniform(-5, -3), "r": rng.randint(4, 128), "lora_dropout": rng.uniform(0, 0.2),
             "target_modules": rng.choice(["query,value", "query,key,value"])}
        score = 0.3 + 0.1 * (math.log10(p["lr"]) + 5) + rng.gauss(0, 0.005)  # only lr matters
        trials.append(_trial("lora", i, score, 1.0, p))
    imp, evaluator = importances(_method("lora", trials=trials))
    assert evaluator == "fANOVA" and set(imp) == {d.name for d in DIMS}
    assert max(imp, key=imp.get) == "lr" and imp["lr"] > 0.5
    assert sum(imp.values()) == pytest.approx(1.0)
    assert "importance needs at least 2" in importances(_method("lora", trials=trials[:1]))


def test_space_round_trips_through_json():
    dims = list(get_space("lora_adapter").dims)
    assert dims_from_json(json.loads(json.dumps(dims_to_json(dims)))) == dims


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
