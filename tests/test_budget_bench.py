"""``benchmarks/budget_vs_sequential.py`` (issue 26, the live comparison): its pure parts on
constructed files, no search run. B is the trial-time of Tune's own records, measured as the
budget's ledger charges it; each arm's pick is read from what the product wrote; the summary's
two checks fail when the figures say so."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is not an installed package
from benchmarks.budget_vs_sequential import (  # noqa: E402
    budget_pick,
    by_stage,
    main,
    paired_difference,
    sequential_pick,
    slots,
    summarize,
    trial_time,
    used_ok,
    utilisation,
)
from search.stats import Outputs  # noqa: E402


def _result(folder: Path, lines: list[dict | str]) -> None:
    folder.mkdir(parents=True)
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines)
    (folder / "result.json").write_text(text + "\n")


def test_trial_time_sums_each_report_once_as_the_ledger_charges(tmp_path):
    tune = tmp_path / "tune"
    # a search trial: two reports, the second re-sent after a restore (charged once), a torn line
    _result(tune / "x-lora/trial_a", [
        {"training_iteration": 1, "time_this_iter_s": 1.5, "time_total_s": 1.5},
        {"training_iteration": 2, "time_this_iter_s": 2.5, "time_total_s": 4.0},
        {"training_iteration": 2, "time_this_iter_s": 2.5, "time_total_s": 4.0},
        '{"training_iteration": 3, "time_th'])
    _result(tune / "x-lora-confirm/run_confirm_0", [{"training_iteration": 1, "time_this_iter_s": 3.0,
                                                     "time_total_s": 3.0}])
    _result(tune / "x-adapter-fresh/run_confirm_1", [{"training_iteration": 1, "time_total_s": 7.0}])
    _result(tune / "x-pool/trial_b", [{"training_iteration": 1, "time_this_iter_s": 0.25}])
    _result(tune / "x-race-1/run_0", [{"training_iteration": 1, "time_this_iter_s": 0.75}])
    _result(tune / "x-lora/trial_empty", [""])
    (tune / "x-lora/experiment_state.json").write_text('{"time_this_iter_s": 100}')  # not a run's record

    spent = trial_time(tune)
    assert spent["total_s"] == pytest.approx(1.5 + 2.5 + 3.0 + 7.0 + 0.25 + 0.75)
    assert spent["runs"] == 5
    assert spent["by_experiment"]["x-lora"] == pytest.approx(4.0)
    assert by_stage(spent["by_experiment"], "x") == pytest.approx(
        {"search": 4.0, "confirm": 3.0, "fresh": 7.0, "pool": 0.25, "race": 0.75})
    assert trial_time(tmp_path / "nothing")["total_s"] == 0.0


def test_the_sequential_pick_is_the_best_confirmed_method_with_its_test_score():
    results = {"methods": [
        {"method": "lora", "confirmed_score": 0.50, "test_score": 0.47, "test_lo": 0.45, "test_hi": 0.49},
        {"method": "adapter", "confirmed_score": 0.52, "test_score": 0.44, "test_lo": 0.41, "test_hi": 0.47},
        {"method": "dora", "confirmed_score": math.nan, "test_score": 0.60},
        {"method": "lora_adapter", "best_score": 0.9}]}
    pick = sequential_pick(results, {"methods": [{"method": "adapter"}, {"method": "lora"}]})
    assert pick == {"method": "adapter", "confirmed": 0.52, "test": 0.44, "lo": 0.41, "hi": 0.47,
                    "report_first": "adapter"}
    assert sequential_pick(results)["report_first"] is None
    assert sequential_pick({"methods": [{"method": "lora", "best_score": 0.5}]}) is None


def test_the_budget_pick_is_the_answers_winner_and_its_ledger():
    answer = {"budget_s": 600.0, "used_s": 590.5, "split": "test", "verdict": "adapter wins",
              "by_stage_s": {"trial": 400.0, "confirm": 190.5},
              "winner": {"method": "adapter", "score": 0.51, "lo": 0.49, "hi": 0.53},
              "race": {"leader": "adapter:defaults"},
              "methods": {"adapter": {"trial_time_s": 350.0}, "lora": {"trial_time_s": 240.5}}}
    pick = budget_pick(answer)
    assert (pick["method"], pick["test"], pick["lo"], pick["hi"]) == ("adapter", 0.51, 0.49, 0.53)
    assert (pick["budget_s"], pick["used_s"], pick["split"]) == (600.0, 590.5, "test")
    assert pick["by_method_s"] == {"adapter": 350.0, "lora": 240.5}
    assert pick["race_leader"] == "adapter:defaults"
    nothing = budget_pick({"budget_s": 60.0, "used_s": 10.0, "verdict": "no answer"})
    assert nothing["method"] is None and nothing["test"] is None


def _row(seed, seq, bud, b=1000.0, used=990.0, files=995.0):
    return {"seed": seed, "B_s": b, "sequential": {"test": seq}, "budget": {"test": bud, "used_s": used,
                                                                           "files_s": files}}


def test_summary_medians_spread_and_both_checks():
    rows = [_row(0, 0.50, 0.52), _row(1, 0.48, 0.47),
            _row(2, 0.45, 0.49, b=2000.0, used=2050.0, files=2010.0)]
    s = summarize(rows)
    assert s["sequential_test"] == {"median": 0.48, "min": 0.45, "max": 0.50, "n": 3}
    assert s["budget_test"]["median"] == 0.49
    assert s["difference_points"]["median"] == pytest.approx(2.0)
    assert s["difference_points"]["min"] == pytest.approx(-1.0)
    assert s["difference_points"]["max"] == pytest.approx(4.0)
    assert s["used_over_B"]["max"] == pytest.approx(1.025)
    assert s["budget_test_ge_sequential_median"] and s["used_within_tolerance_every_run"] and s["complete"]

    over = rows[:2] + [_row(2, 0.45, 0.49, used=1040.0, files=1060.0)]  # the files say 1.06 B
    assert not used_ok(over[2]) and not summarize(over)["used_within_tolerance_every_run"]
    assert not used_ok(_row(0, 0.5, 0.5, used=None))
    worse = [_row(0, 0.50, 0.49), _row(1, 0.48, 0.47), _row(2, 0.45, 0.44)]  # median 0.47 < 0.48
    assert not summarize(worse)["budget_test_ge_sequential_median"]
    missing = rows[:2] + [_row(2, 0.45, None)]
    s = summarize(missing)
    assert not s["complete"] and not s["budget_test_ge_sequential_median"] and s["budget_test"]["n"] == 2


def test_paired_difference_on_the_test_outputs(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    def outputs(flip: float) -> Outputs:
        preds = np.stack([np.where(rng.random(400) < flip, 1 - labels, labels) for _ in range(3)])
        return Outputs({"t": "binary"}, {"t": labels}, {"t": preds})

    outputs(0.40).save(tmp_path / "seq.npz")
    outputs(0.20).save(tmp_path / "bud.npz")
    d = paired_difference(tmp_path / "seq.npz", tmp_path / "bud.npz")
    assert 10 < d["points"] < 30 and d["lo"] > 0
    assert paired_difference(tmp_path / "seq.npz", tmp_path / "none.npz") is None


def test_dry_run_gives_both_arms_the_same_flags_but_the_budget(tmp_path, capsys):
    assert main(["--dry-run", "--seeds", "4", "--work", str(tmp_path)]) == 0
    seq, bud = [ln for ln in capsys.readouterr().out.splitlines() if "search/run.py" in ln]
    assert "--num-samples 6" in seq and "--confirm 2:3" in seq and "--budget" not in seq
    assert "--budget" in bud and "--num-samples" not in bud and "--confirm" not in bud
    for flag in ("--method lora,dora,adapter,lora_adapter", "--val-from-train 0.05", "--max-steps 60",
                 "--seed 4", "--set batch_size=16", "--set max_length=64"):
        assert flag in seq and flag in bud


def test_slot_use_reads_the_trials_at_once_the_search_printed(tmp_path):
    log = tmp_path / "search.log"
    log.write_text("search x: lora, adapter x 3 trials, 20 steps, eval every 10 (2 rungs), pasha+optuna, "
                   "2 at once; MLflow sqlite:///x.db\n")
    assert slots(log) == 2 and slots(tmp_path / "none.log") is None
    assert utilisation(300.0, 200.0, 2) == pytest.approx(0.75) and utilisation(300.0, 200.0, None) is None


def test_the_peer_at_b_validates_on_train_rows_and_keeps_the_dev_files_for_its_test(tmp_path):
    """The by-hand peer's data at B: its validation rows come out of the train files (never trained
    on, capped), and the dev files are left whole as its test split, as the product's
    ``--val-from-train`` does; without the flag it validates on the dev files as before."""
    from benchmarks.peer_search import FILES, peer_load_data

    rows = {"sst": 40, "quora": 30, "sts": 24}
    for task, (train, dev, text, pair, label) in FILES.items():
        for name, n, tag in ((train, rows[task], "tr"), (dev, 7, "dv")):
            cols = ["id", text] + ([pair] if pair else []) + [label]
            lines = ["\t" + "\t".join(cols)]
            for i in range(n):
                vals = [f"{tag}{task}{i}", f"{tag} {task} text {i}", *([f"pair {i}"] if pair else []),
                        str(i % 2)]
                lines.append(f"{i}\t" + "\t".join(vals))
            (tmp_path / name).write_text("\n".join(lines) + "\n")
    data = peer_load_data(str(tmp_path), max_eval=5, val_from_train=0.25)
    for task, (_, _, text, _, _) in FILES.items():
        train, val, test = (set(data[s][task][text]) for s in ("train", "dev", "test"))
        assert len(val) == min(round(0.25 * rows[task]), 5) and not val & train
        assert len(train) + len(val) == rows[task]
        assert len(test) == 7 and all(t.startswith("dv") for t in test)
        assert all(t.startswith("tr") for t in val)
    plain = peer_load_data(str(tmp_path), max_eval=5)
    assert "test" not in plain and all(len(df) == 5 for df in plain["dev"].values())
    assert all(len(df) == rows[t] for t, df in plain["train"].items())
