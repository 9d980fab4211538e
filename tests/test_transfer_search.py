"""``search/run.py --transfer-from``: a real search (Ray, Optuna, MLflow) over how a tiny trained
multitask checkpoint takes a new task, from a checkpoint folder and from the MLflow run of an
earlier search; and the one-line refusals."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from searchkit import cli, mlflow_client, run
from tiny import write_tiny_model_dir

from spaces.transfer import transfer_space
from trainers.checkpoint import read_meta, trained_tasks
from trainers.config import TrainConfig
from trainers.loop import train
from trainers.methods import get_method


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[str, Path]:
    """A tiny model folder and an adapter checkpoint trained on the demo sst and quora."""
    root = tmp_path_factory.mktemp("transfer-search")
    model = write_tiny_model_dir(root / "model")
    cfg = TrainConfig.from_flat({"method": "adapter", "tasks": "sst,quora", "model": model,
                                 "max_steps": 10, "eval_every": 10, "adapter_size": 8,
                                 "batch_size": 16, "max_length": 32})
    train(cfg, out=root / "src", log=lambda m: None)
    return model, root / "src" / "checkpoint"


def _runs(uri: str, experiment: str) -> list:
    client = mlflow_client(uri)
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


@pytest.mark.integration
def test_a_transfer_search_from_a_checkpoint_then_from_its_mlflow_run(source, tmp_path):
    model, checkpoint = source
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "first"
    run(cli(model, out, "--transfer-from", str(checkpoint), "--tasks", "cfimdb", "--num-samples", "3",
            "--experiment", "tx", mlflow_uri=uri), cwd=tmp_path)
    best = json.loads((out / "adapter" / "best_config.json").read_text())
    assert best["init_from"] == str(checkpoint) and best["tasks"] == "cfimdb"
    assert best["adapter_size"] == 8  # the checkpoint's option
    picked = read_meta(out / "adapter" / "best_checkpoint")
    assert trained_tasks(picked) == ["sst", "quora", "cfimdb"]
    assert picked["transfer"]["source"] == str(checkpoint)
    runs = _runs(uri, "tx")
    parent = next(r for r in runs if r.data.tags.get("kind") == "method")
    assert parent.data.tags["search.transfer_from"] == str(checkpoint)
    assert parent.data.tags["search.source_tasks"] == "sst,quora"
    assert parent.data.tags["search.source_method"] == "adapter"
    trials = [r for r in runs if r.data.tags.get("kind") == "trial"]
    assert len(trials) == 3 and all(r.data.params["init_from"] == str(checkpoint) for r in trials)
    # Steps are a quarter, half or all of --max-steps 30; the default trial is the transfer's
    # defaults (nearest, none, the method's rate) at the whole budget.
    assert {r.data.params["max_steps"] for r in trials} <= {"7", "15", "30"}
    (default,) = [r for r in trials if r.data.tags.get("warm_start") == "default"]
    assert {k: default.data.params[k] for k in ("max_steps", "unfreeze", "transfer_init", "lr")} == {
        "max_steps": "30", "unfreeze": "none", "transfer_init": "nearest",
        "lr": str(get_method("adapter").DEFAULT_LR)}
    # The pick, from the trials' own records: the best last score among the trials that ran
    # furthest, a trial that trained its own whole (searched) max_steps counting as furthest
    # (README); best_config.json holds that trial's searched values, exactly, and its
    # checkpoint is that trial's, trained to its own steps (10 per evaluation).
    evals = {r.info.run_id: int(r.data.metrics["training_iteration"]) for r in trials}
    client = mlflow_client(uri)
    last_step = {r.info.run_id: max(m.step for m in client.get_metric_history(r.info.run_id, "score"))
                 for r in trials}
    reach = {r.info.run_id: math.inf if last_step[r.info.run_id] >= int(r.data.params["max_steps"])
             else evals[r.info.run_id] for r in trials}
    furthest = max(reach.values())
    top = max(r.data.metrics["score"] for r in trials if reach[r.info.run_id] == furthest)
    (chosen,) = [r for r in trials if r.data.tags.get("best") == "true"]
    assert reach[chosen.info.run_id] == furthest and chosen.data.metrics["score"] == top
    assert parent.data.tags["best_run_id"] == chosen.info.run_id
    searched = [d.name for d in transfer_space("adapter", 30).searched()]
    assert {k: str(best[k]) for k in searched} == {k: chosen.data.params[k] for k in searched}
    assert picked["step"] == min(best["max_steps"], 10 * evals[chosen.info.run_id])
    assert {k: picked["transfer"][k] for k in ("unfreeze", "transfer_init")} == {
        k: best[k] for k in ("unfreeze", "transfer_init")}

    # The first search's method run holds its pick's checkpoint (sst, quora, cfimdb): a source too.
    second = tmp_path / "second"
    run(cli(model, second, "--transfer-from", parent.info.run_id, "--tasks", "sts", "--num-samples",
            "1", "--max-steps", "10", "--experiment", "tx2", mlflow_uri=uri), cwd=tmp_path)
    downloaded = second / "transfer-source" / "checkpoint"
    assert trained_tasks(read_meta(downloaded)) == ["sst", "quora", "cfimdb"]
    again = json.loads((second / "adapter" / "best_config.json").read_text())
    assert again["init_from"] == str(downloaded.resolve()) and again["tasks"] == "sts"
    parent2 = next(r for r in _runs(uri, "tx2") if r.data.tags.get("kind") == "method")
    assert parent2.data.tags["search.transfer_from"] == parent.info.run_id
    assert parent2.data.tags["search.source_tasks"] == "sst,quora,cfimdb"


@pytest.mark.parametrize(("args", "message"), [
    (["--transfer-from", "no-such-thing"], "--transfer-from no-such-thing: neither a checkpoint folder"),
    (["--transfer-from", "0123456789abcdef0123456789abcdef"], "no such MLflow run"),
    (["--method", "lora"], "--method lora: --transfer-from"),
    (["--set", "adapter_size=4"], "--set/--range adapter_size: a transfer keeps the checkpoint's"),
    (["--tasks", "sst"], "--tasks sst: the checkpoint was trained on sst, quora already"),
])
def test_bad_transfer_searches_fail_in_one_line(source, tmp_path, args, message):
    model, checkpoint = source
    base = ["--transfer-from", str(checkpoint), "--tasks", "cfimdb"]
    given = dict(zip(args[::2], args[1::2], strict=True))
    flags = [x for k, v in {**dict(zip(base[::2], base[1::2], strict=True)), **given}.items() for x in (k, v)]
    proc = run(cli(model, tmp_path / "out", *flags), cwd=tmp_path, rc=2)
    err = proc.stderr.strip().splitlines()
    assert any(message in line for line in err), proc.stderr[-2000:]
