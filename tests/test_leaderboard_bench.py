"""``benchmarks/leaderboard.py`` (BENCHMARKS §11) reports the product's own figures: the numbers of
``results.json`` and ``confirm.json``, and the lead as the product's report worded it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from test_report import _confirmed, _fix, _right

from search.report.board import leaderboard, verdict
from search.report.data import ExperimentRecord

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is not an installed package
from benchmarks.leaderboard import gain_sentences, lead_of, method_records, print_tables  # noqa: E402


def test_the_lead_is_read_from_the_reports_own_sentence():
    """The report's verdict on the first two methods (the same constructed outputs as
    ``test_report``): the benchmark reads where it was judged, the figures and the outcome."""
    rng = np.random.default_rng(1)
    val, test = _right(rng), _right(rng)

    def text(first_test, second_test):
        a = _confirmed("a", _fix(val, 20, rng), None, 0.7,
                       test=None if first_test is None else (first_test, None))
        b = _confirmed("b", val, None, 0.7, test=None if second_test is None else (second_test, None))
        exp = ExperimentRecord("x", "1", "sqlite:///x.db", [b, a])
        return verdict(exp, leaderboard(exp)[2])

    holds = lead_of(text(_fix(test, 20, rng), test))
    assert holds["first"] == "a" and holds["second"] == "b" and holds["on"] == "test"
    assert holds["diff"] == 5.0 and holds["lo"] > 0 and holds["outcome"] == "separable"
    noise = lead_of(text(test ^ (rng.random((3, 400)) < 0.03), test ^ (rng.random((3, 400)) < 0.03)))
    assert noise["outcome"] == "not separable" and noise["lo"] < 0 < noise["hi"]
    turns = text(test, _fix(test, 20, rng))
    assert lead_of(turns)["outcome"] == "reversed" and lead_of(turns)["diff"] == -5.0
    assert "**" not in lead_of(turns)["sentence"]
    assert set(gain_sentences(turns)) == {"a", "b"}  # the defaults were each one's pick
    unsplit = lead_of(text(None, None))
    assert unsplit["on"] == "validation" and unsplit["diff"] == 5.0
    assert lead_of("**Not confirmed**: each score is one seed") is None


def test_every_figure_is_the_products_and_no_checkpoint_is_recorded(tmp_path, capsys):
    row = {"method": "lora", "best_score": 0.50, "selection_score": 0.52, "confirmed_score": 0.51,
           "confirmed_lo": 0.48, "confirmed_hi": 0.54, "test_score": 0.53, "test_lo": 0.50, "test_hi": 0.56,
           "test_default_score": 0.49, "test_gain_over_default": 0.04, "test_gain_lo": 0.01,
           "test_gain_hi": 0.07, "default_score": 0.47, "gain_over_default": 0.04, "stored_pct": 1.5,
           "sst_pct": 0.5}
    same = {"method": "adapter", "best_score": 0.55, "selection_score": 0.50, "confirmed_score": 0.49,
            "test_score": 0.52, "test_default_score": 0.52, "test_gain_over_default": 0.0}
    for m, winner in (("lora", "trial_1"), ("adapter", "default")):
        (tmp_path / m).mkdir()
        cands = [{"label": label, "is_default": label == "default", "seed_scores": [0.5, 0.6],
                  "checkpoints": [f"/ckpt/{m}/{label}"], "config": {"lr": 1e-3}, "mean": 0.55}
                 for label in ("trial_1", "default")]
        fresh = cands[:1] if winner == "trial_1" else cands[1:]
        (tmp_path / m / "confirm.json").write_text(json.dumps(
            {"winner": winner, "candidates": cands, "fresh": fresh}))
    rows = method_records(tmp_path, {"methods": [row, same]})
    lora, adapter = rows
    assert (lora["confirmed"], lora["selection"], lora["best_of_n"]) == (0.51, 0.52, 0.50)
    assert (lora["test_default"], lora["test_gain"], lora["test_gain_lo"]) == (0.49, 0.04, 0.01)
    assert lora["per_task_pct"] == {"sst": 0.5} and lora["pick"] == "trial_1" and not lora["pick_is_default"]
    assert adapter["pick_is_default"] and adapter["test_gain_lo"] is None
    assert "ckpt" not in json.dumps(rows)

    lead = {"first": "lora", "outcome": "not separable", "sentence": "On the test split ..."}
    summary = print_tables({"seed0": {"methods": rows, "report_order": ["lora", "adapter"], "lead": lead}})
    out = capsys.readouterr().out
    assert ("| seed0 | lora | trial_1 | 0.5000 | 0.5200 | 0.5100 [0.4800, 0.5400] | "
            "0.5300 [0.5000, 0.5600] |") in out
    assert "| 0.4900 | **+4.00 [+1.00, +7.00]** |" in out and "0 (the pick is the defaults)" in out
    assert "best-of-N rank 1 adapter; confirmed rank 1 lora. On the test split ..." in out
    assert summary["rank1_changes"] == 1 and summary["lead_outcomes"] == ["not separable"]
