"""Confirmation, validation carved from train, and a test split selection never reads.

Unit tests on the pieces (carving, candidates, the winner, flags); integration: a real search
with ``--confirm`` on task files that name a labelled test split, with every open of the test
file recorded by an audit hook in the driver and in every Ray worker.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from crossed import Noise, binary, correct, rows_of
from searchkit import ENV, cli, mlflow_runs, run

from search.settings import Settings, confirm_budget, parse_confirm
from search.stats import Outputs, interval
from trainers import demo
from trainers.config import TrainConfig
from trainers.data import prepare_data, split_examples
from trainers.splits import carve, has_test_split, source
from trainers.tasks import CS224N


# ---- validation carved from train ---------------------------------------------------------
def test_carve_is_stratified_disjoint_and_fixed():
    spec = CS224N["sst"]
    labels = np.repeat(np.arange(5), [100, 300, 200, 50, 350]).astype(np.float32)
    train, val = carve(spec, labels, 0.1)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == len(labels)
    counts = np.bincount(labels[val].astype(int), minlength=5)
    np.testing.assert_array_equal(counts, [10, 30, 20, 5, 35])  # each class's share
    again = carve(spec, labels, 0.1)
    np.testing.assert_array_equal(val, again[1])  # a constant seed: every run holds out these rows
    with pytest.raises(ValueError, match="leaves no training rows"):
        carve(spec, labels[:1], 0.99)


def test_val_from_train_reads_validation_from_train_and_test_from_dev():
    assert [source(CS224N["sst"], s, 0.1) for s in ("train", "dev", "test")] == ["train", "train", "dev"]
    cfg = TrainConfig(val_from_train=0.2, tasks=("sst",))
    files: dict = {}
    train = split_examples(CS224N["sst"], "train", cfg, log=lambda _: None, files=files)
    val = split_examples(CS224N["sst"], "dev", cfg, log=lambda _: None, files=files)
    test = split_examples(CS224N["sst"], "test", cfg, log=lambda _: None)
    whole = demo.demo_examples("sst", "train")
    assert len(train) + len(val) == len(whole) and abs(len(val) - 0.2 * len(whole)) <= 5
    assert not set(train) & set(val) or len(set(train) & set(val)) < 3  # generated rows may repeat
    assert test == demo.demo_examples("sst", "dev")
    assert has_test_split([CS224N["sst"]], 0.1) and not has_test_split([CS224N["sst"]], None)
    with pytest.raises(ValueError, match="no test split"):
        split_examples(CS224N["sst"], "test", TrainConfig(tasks=("sst",)))


def test_training_refuses_the_test_split(tiny_tokenizer):
    from trainers.loop import train

    cfg = TrainConfig(method="lora", tasks=("sst",), val_from_train=0.2, max_steps=1)
    data = prepare_data(cfg, tiny_tokenizer, log=lambda _: None, splits=("train", "test"))
    assert data.eval_split == "test"
    with pytest.raises(ValueError, match="not the test split"):
        train(cfg, data=data, backbone=object(), tokenizer=tiny_tokenizer, log=lambda _: None)


# ---- flags and candidates -----------------------------------------------------------------
def test_confirmation_seeds_of_neighbouring_searches_are_disjoint():
    """Selection seeds and fresh seeds, of searches with neighbouring --seed (negative ones
    too): no two share a seed, and none is the seed of its own search's trials."""
    from search.selection.confirm import confirm_seeds

    seeds = range(-3, 5)
    blocks = [set(confirm_seeds(seed, 498, fresh=fresh)) for seed in seeds for fresh in (False, True)]
    assert all(len(b) == 498 for b in blocks)
    assert all(not (a & b) for i, a in enumerate(blocks) for b in blocks[i + 1:])
    assert all(seed not in blocks[2 * i] | blocks[2 * i + 1] for i, seed in enumerate(seeds))  # its trials'
    assert confirm_seeds(0, 2) == [1000, 1001] and confirm_seeds(0, 2, fresh=True) == [1500, 1501]
    with pytest.raises(ValueError, match="1 to 498"):
        confirm_seeds(0, 499)


def test_confirm_flag_and_its_defaults():
    assert parse_confirm("3:2") == (3, 2) and parse_confirm("0") == (0, 0)
    for bad in ("3", "a:b", "0:3", "2:0", "3:1"):
        with pytest.raises(ValueError, match="--confirm"):
            parse_confirm(bad)
    assert confirm_budget(Settings(methods=["lora"])) == (0, 0)
    assert confirm_budget(Settings(methods=["lora", "adapter"])) == (2, 3)
    assert confirm_budget(Settings(methods=["lora", "adapter"], confirm="0")) == (0, 0)


def test_more_confirm_seeds_than_a_block_holds_are_refused_when_the_flag_is_parsed(tmp_path, capsys):
    """N above 498 would fail in ``confirm_seeds`` only after the whole search: the flag refuses
    it, in one line naming --confirm and the limit, before anything runs."""
    from search.cli import main
    from search.selection.confirm import confirm_seeds
    from search.settings import MAX_CONFIRM_SEEDS

    assert MAX_CONFIRM_SEEDS == 498 and parse_confirm("2:498") == (2, 498)
    assert len(confirm_seeds(0, MAX_CONFIRM_SEEDS, fresh=True)) == MAX_CONFIRM_SEEDS
    with pytest.raises(ValueError):
        confirm_seeds(0, MAX_CONFIRM_SEEDS + 1)  # the limit the flag states is the seeds' own
    with pytest.raises(ValueError, match=r"^--confirm 2:499: N must be <= 498"):
        parse_confirm("2:499")
    assert main(["--method", "lora,adapter", "--confirm", "2:499", "--out", str(tmp_path / "o"),
                 "--mlflow-uri", f"sqlite:///{tmp_path / 'm.db'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --confirm 2:499: N must be <= 498") and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_a_bad_confirm_flag_exits_2_before_ray(tmp_path):
    from search.cli import main

    assert main(["--method", "lora", "--confirm", "3", "--out", str(tmp_path / "o"),
                 "--mlflow-uri", f"sqlite:///{tmp_path / 'm.db'}"]) == 2
    assert not (tmp_path / "o" / "search.json").exists()


def _result(tid: str, lr: float, score: float, iters: int, failure: str | None = None):
    metrics = {"trial_id": tid, "score": score, "training_iteration": iters}
    if failure:
        metrics["failure"] = failure
    return SimpleNamespace(metrics=metrics, error=None, config={"method": "lora", "lr": lr})


def test_candidates_are_the_furthest_best_distinct_configs_then_the_defaults():
    from search.selection.confirm import pick_candidates

    results = [_result("a", 1e-3, 0.70, 1),  # stopped at the first rung: a subset score
               _result("b", 2e-4, 0.60, 3), _result("c", 3e-4, 0.65, 3),
               _result("d", 3e-4, 0.64, 3),  # the same config as c: confirmed once
               _result("e", 5e-4, float("nan"), 3, failure="non-finite loss")]
    default = TrainConfig(method="lora").to_flat()
    got = pick_candidates(results, 2, default)
    assert [c.label for c in got] == ["trial_c", "trial_b", "default"]
    assert got[-1].is_default and got[0].search_score == 0.65
    # the defaults among the top configs are confirmed once, marked
    twin = TrainConfig.from_flat({"method": "lora", "lr": 2e-4}).to_flat()
    got = pick_candidates(results, 2, twin)
    assert [(c.label, c.is_default) for c in got] == [("trial_c", False), ("trial_b", True)]


def _cand(label: str, right: np.ndarray, default: bool = False):
    """A candidate whose seeds' right/wrong on one binary task is ``right`` (seeds, rows)."""
    from search.selection.confirm import Candidate

    c = Candidate(label, {"lr": len(label)}, 0.7, is_default=default)
    c.outputs = binary(right)
    c.seed_scores = [float(v) for v in right.mean(1)]
    c.interval = interval(c.outputs, resamples=300)
    return c


def test_the_pick_is_chosen_on_selection_seeds_and_reported_on_fresh_ones():
    """Selection: "b" has the best mean, "a" a seed that failed. The numbers reported are those
    of the fresh-seed runs: the confirmed score, its interval, and the gain over the defaults
    (12 of 400 rows the defaults get wrong on every seed and the pick right: +3 points exactly,
    separable)."""
    from search.selection.confirm import Confirmation, fresh_candidates, summary_numbers, winner

    rng = np.random.default_rng(0)
    base = rng.random(400) < 0.6
    a, b = _cand("a", np.array([base] * 3)), _cand("b", np.array([base | (rng.random(400) < 0.3)] * 3))
    a.seed_scores[1] = float("nan")
    d = _cand("default", np.array([base ^ (rng.random(400) < 0.03) for _ in range(3)]), default=True)
    assert winner([a, b, d]) is b and math.isinf(a.mean)
    fresh = fresh_candidates([a, b, d], b)
    assert [(c.label, c.is_default, c.seed_scores) for c in fresh] == [("b", False, []),
                                                                         ("default", True, [])]
    again = np.array([base ^ (rng.random(400) < 0.03) for _ in range(3)])  # the defaults, fresh seeds
    fixed = rng.choice(np.flatnonzero(~again.any(0)), 12, replace=False)
    better = again.copy()
    better[:, fixed] = True
    fresh = [_cand("b", better), _cand("default", again, default=True)]
    numbers = summary_numbers(Confirmation([a, b, d], b, fresh))
    assert numbers["selection_score"] == pytest.approx(b.mean)
    assert numbers["confirmed_score"] == pytest.approx(better.mean()) != pytest.approx(b.mean)
    assert (numbers["confirmed_lo"], numbers["confirmed_hi"]) == (fresh[0].interval.lo, fresh[0].interval.hi)
    assert numbers["default_score"] == pytest.approx(again.mean())
    assert numbers["gain_over_default"] == pytest.approx(12 / 400)
    assert 0 < numbers["gain_lo"] < 12 / 400 < numbers["gain_hi"]
    # the defaults as the pick: retrained once, no gain to interval
    fresh = fresh_candidates([a, d], d)
    assert len(fresh) == 1 and fresh[0].is_default
    fresh[0].seed_scores, fresh[0].outputs = [0.6, 0.62], binary(np.array([base, base]))
    numbers = summary_numbers(Confirmation([a, d], d, fresh))
    assert numbers["gain_over_default"] == 0.0 and "gain_lo" not in numbers


def test_a_pick_without_selection_seeds_reports_no_selection_score():
    """A ``--budget`` race that ran no round leaves its pick no selection seeds: the records say
    nothing of a selection score (they said -inf)."""
    from search.selection.confirm import Confirmation, summary_numbers

    rng = np.random.default_rng(1)
    right = np.array([rng.random(300) < 0.6 for _ in range(3)])
    pick = _cand("b", right)
    pick.seed_scores.clear()
    assert math.isinf(pick.mean)
    numbers = summary_numbers(Confirmation([pick], pick, [_cand("b", right)]))
    assert "selection_score" not in numbers
    assert numbers["confirmed_score"] == pytest.approx(right.mean())


def test_the_fresh_seed_figure_of_the_pick_is_free_of_the_selection_bias():
    """1,000 simulated confirmations: 3 candidates of the same true score 0.70, 3 seeds each on
    the same 300 validation rows (seed sd ~1 point). The pick's selection mean is the best of 3
    noisy means: biased upward. Its fresh seeds on the same rows leave the rows' share; its
    fresh seeds on the test split, nothing."""
    from search.selection.confirm import Candidate, Confirmation, fresh_candidates, summary_numbers, winner

    rng = np.random.default_rng(21)
    noise, draws, truth = Noise(seed=0.03, config_seed=0.03), 1000, 0.7
    val = rows_of(rng, 3, draws, 300, noise)
    chosen = correct(rng, [truth] * 3, draws, 3, 300, noise, on=val).mean(-1)  # (configs, draws, seeds)
    again = correct(rng, [truth] * 3, draws, 3, 300, noise, on=val).mean(-1)
    tested = correct(rng, [truth] * 3, draws, 3, 300, noise).mean(-1)
    errors = []
    for i in range(draws):
        cands = [Candidate(f"c{j}", {"j": j}, seed_scores=list(chosen[j, i])) for j in range(3)]
        pick = winner(cands)
        j = cands.index(pick)
        (fresh,) = fresh_candidates(cands, pick)
        fresh.seed_scores = list(again[j, i])
        numbers = summary_numbers(Confirmation(cands, pick, [fresh]))
        errors.append((numbers["selection_score"], numbers["confirmed_score"], tested[j, i].mean()))
    bias = 100 * (np.mean(errors, axis=0) - truth)
    se = 100 * np.std(errors, axis=0) / math.sqrt(draws)
    assert bias[0] > 0.7 and bias[0] > 8 * se[0]  # the selection mean: about +1.1 points
    assert 0 < bias[1] < bias[0] / 2  # fresh seeds, the rows that chose: a small share remains
    assert abs(bias[2]) < 3 * se[2]  # fresh seeds on the test split: none


# ---- a real search: confirmation, MLflow, and the test file never read while selecting --------
AUDIT = '''
import os, sys, time
_path = os.environ.get("PEFT_TEST_AUDIT")
_watch = os.environ.get("PEFT_TEST_WATCH")
if _path and _watch:
    def _hook(event, args):
        if event != "open" or not args:  # the hook sees every audited event: be quick, never raise
            return
        path = args[0]
        if isinstance(path, (str, bytes, os.PathLike)) and _watch in os.fsdecode(path):
            with open(_path, "a") as f:
                f.write(f"{time.time()} {os.getpid()}\\n")
    sys.addaudithook(_hook)
'''


def _write(path: Path, rows: list[tuple]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sentence", "label"])
        w.writerows(rows)


@pytest.fixture(scope="module")
def confirmed(tiny_model_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("confirm")
    data = base / "data"
    data.mkdir()
    for split, name, n in (("train", "train", 120), ("dev", "dev", 120), ("test", "heldout", 80)):
        _write(data / f"pos-{name}.csv", [(t, int(y)) for t, _, y in demo.demo_examples("sst", split)][:n])
    tasks = {"tasks": [{"name": "pos", "kind": "classification", "num_labels": 5, "text": "sentence",
                        "label": "label", "format": "csv", "train": "data/pos-train.csv",
                        "dev": "data/pos-dev.csv", "test": "data/pos-heldout.csv"}]}
    (base / "tasks.json").write_text(json.dumps(tasks))
    hook = base / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(AUDIT)
    audit = base / "opens.log"
    env = {**ENV, "PEFT_TEST_AUDIT": str(audit), "PEFT_TEST_WATCH": "pos-heldout.csv",
           "PYTHONPATH": os.pathsep.join(p for p in [str(hook), ENV.get("PYTHONPATH")] if p)}
    cmd = cli(tiny_model_dir, base / "out", "--method", "lora", "--tasks", "pos", "--task-file",
              str(base / "tasks.json"), "--num-samples", "3", "--max-steps", "20", "--eval-every", "10",
              "--confirm", "1:2", "--experiment", "cf")
    proc = run(cmd, base, env=env)
    return base, proc.stdout, audit


@pytest.mark.integration
def test_confirmation_picks_records_and_scores_the_test_split_once_after_selection(confirmed):
    from search.selection.heldout import TEST_DEFAULT_OUTPUTS
    from search.stats import difference

    base, stdout, audit = confirmed
    out = base / "out"
    record = json.loads((out / "lora" / "confirm.json").read_text())
    cands = record["candidates"]
    assert len(cands) in (1, 2) and any(c["is_default"] for c in cands)  # the top 1 and the defaults
    assert all(len(c["seed_scores"]) == 2 for c in cands)
    pick = next(c for c in cands if c["label"] == record["winner"])
    assert pick["mean"] == max(c["mean"] for c in cands)
    assert json.loads((out / "lora" / "best_config.json").read_text()) == pick["config"]
    # reported: the pick (and the defaults unless they are the pick) retrained with fresh seeds
    fresh = record["fresh"]
    assert [c["label"] for c in fresh][0] == pick["label"] and len(fresh) == (1 if pick["is_default"] else 2)
    assert all(len(c["seed_scores"]) == 2 for c in fresh) and fresh[-1]["is_default"]
    # the recorded interval is the one of the fresh runs' outputs, and the row reports it
    outputs = Outputs.load(out / "lora" / "confirm_outputs.npz")
    again = interval(outputs)
    assert outputs.seeds == 2 and again.mean == pytest.approx(fresh[0]["mean"])
    assert (fresh[0]["interval"]["lo"], fresh[0]["interval"]["hi"]) == pytest.approx((again.lo, again.hi))
    row = json.loads((out / "results.json").read_text())["methods"][0]
    assert row["confirmed_score"] == pytest.approx(fresh[0]["mean"])
    assert row["selection_score"] == pytest.approx(pick["mean"])
    assert (row["confirmed_lo"], row["confirmed_hi"]) == pytest.approx((again.lo, again.hi))
    # the test split: the pick's and the defaults' fresh checkpoints, the gain paired on it
    test = Outputs.load(out / "lora" / "test_outputs.npz")
    assert test.rows == 80 and test.seeds == 2 and math.isfinite(row["test_score"])
    if pick["is_default"]:
        assert row["test_gain_over_default"] == 0.0 and row["test_default_score"] == row["test_score"]
    else:
        defaults = Outputs.load(out / "lora" / TEST_DEFAULT_OUTPUTS)
        assert defaults.seeds == 2
        assert row["test_gain_over_default"] == pytest.approx(difference(test, defaults).mean)
    # MLflow: every run of both steps nested under the parent, kind confirm; the parent holds the pick
    _, runs = mlflow_runs(f"sqlite:///{base / 'mlflow.db'}", "cf")
    (parent,) = [r for r in runs if r.data.tags.get("kind") == "method"]
    confirms = [r for r in runs if r.data.tags.get("kind") == "confirm"]
    assert len(confirms) == 2 * len(cands) + 2 * len(fresh)
    assert {r.data.tags["mlflow.parentRunId"] for r in confirms} == {parent.info.run_id}
    assert sorted({r.data.tags["seed"] for r in confirms}) == ["1000", "1001", "1500", "1501"]
    assert parent.data.metrics["confirmed_score"] == pytest.approx(fresh[0]["mean"])
    assert {"test_score", "selection_score", "test_gain_over_default"} <= set(parent.data.metrics)
    assert "confirmation, selection (mean of 2 new seeds" in stdout and "test score of the pick" in stdout
    assert "retrained with 2 fresh seeds" in stdout
    # the test file: opened, only by the driver, and only after the confirmation was decided
    opens = [line.split() for line in audit.read_text().splitlines()]
    assert opens, "the test split was never scored"
    decided = (out / "lora" / "confirm.json").stat().st_mtime
    assert all(float(t) >= decided for t, _ in opens), "the test file was read before the pick was made"
    assert len({pid for _, pid in opens}) == 1
    # the report ranks by the confirmed score and says whether the search beat the defaults
    md = (out / "report" / "report.md").read_text()
    assert "confirmed [95%]" in md and ("defaults" in md)


def test_a_search_prepares_no_test_rows(tmp_path, monkeypatch):
    """What a search tokenizes (and ships to every trial) holds training and validation rows
    only: with --val-from-train one read of each train file, never a dev or test file."""
    import trainers.data as data_module
    from search.plan import make_plan, prepare
    from search.settings import settings_from

    seen: list[str] = []
    real = data_module.load_split
    def spy(spec, split, data_dir, log):
        seen.append(split)
        return real(spec, split, data_dir, log)

    monkeypatch.setattr(data_module, "load_split", spy)
    s = settings_from({"method": "lora", "tasks": "sst,sts", "val_from_train": 0.1, "out": str(tmp_path),
                       "experiment": "x", "mlflow_uri": f"sqlite:///{tmp_path / 'm.db'}"})
    data = prepare(make_plan(s))
    assert seen == ["train", "train"] and data.eval_split == "dev"


@pytest.mark.integration
def test_an_interrupted_confirmation_resumes_without_rerunning_finished_runs(tiny_model_dir, tmp_path):
    import re
    import signal

    from searchkit import Background, wait_for

    out = tmp_path / "ci"
    cmd = cli(tiny_model_dir, out, "--method", "lora", "--num-samples", "2", "--max-steps", "20",
              "--confirm", "1:3", "--max-concurrent", "1", "--experiment", "ci")
    done = re.compile(r"confirm .*trial (\w+) finished at eval")
    search = Background(cmd, tmp_path)
    try:
        wait_for(lambda: done.search(search.output), 300, "a finished confirmation run")
        os.kill(search.proc.pid, signal.SIGINT)  # Ctrl-C to the driver: Tune saves its state
        assert search.wait(timeout=120) == 130
    finally:
        search.stop()
    assert "confirmation interrupted; --resume goes on with it" in search.output
    first = set(done.findall(search.output))
    resumed = run(cmd + ["--resume"], tmp_path, timeout=600)
    assert "resuming the confirmation" in resumed.stdout
    again = set(done.findall(resumed.stdout))
    assert first and not first & again, "a finished confirmation run ran again"
    record = json.loads((out / "lora" / "confirm.json").read_text())
    assert all(len(c["seed_scores"]) == 3 for c in record["candidates"] + record["fresh"])
    _, runs = mlflow_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "ci")
    confirms = [r for r in runs if r.data.tags.get("kind") == "confirm"]
    # reattached, not duplicated
    assert len(confirms) == 3 * (len(record["candidates"]) + len(record["fresh"]))
    assert all(r.info.status == "FINISHED" for r in confirms)


def test_a_pick_without_a_checkpoint_is_said_not_crashed_on(tmp_path, capsys):
    """A method whose pick kept no checkpoint: one line, no test numbers, no IndexError."""
    from search.selection.heldout import score_test, test_pick

    row, summary = {}, {}
    test_pick("lora", tmp_path, [None], row, summary)
    assert "no checkpoint of the pick was kept" in capsys.readouterr().out
    assert row == {} and summary == {}
    with pytest.raises(ValueError, match="no checkpoint to score"):
        score_test([])
