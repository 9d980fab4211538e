"""The cluster path on this machine: Ray's autoscaler (fake multi-node provider) launching the
worker types of ``cluster.yaml`` for a search's waiting trials, 0.25-GPU trials packed four to a
GPU, idle workers removed afterwards; the rehearsal config; bounded checkpoints on disk."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from searchkit import ROOT, cli, mlflow_runs, run, trial_results, wait_for

from search.rehearse import FAKE_HEAD, fake_config


def test_rehearsal_config_takes_the_node_types_of_cluster_yaml():
    raw = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    config = fake_config(raw, idle_minutes=0.2, max_workers=2)
    assert config["provider"]["type"] == "fake_multinode"
    workers = {n: t for n, t in config["available_node_types"].items() if n != FAKE_HEAD}
    assert set(workers) == set(raw["available_node_types"]) - {raw["head_node_type"]}
    for name, node in workers.items():
        declared = raw["available_node_types"][name]
        resources = {k: v for k, v in node["resources"].items() if k != "object_store_memory"}
        assert resources == declared["resources"]
        assert node["max_workers"] == declared["max_workers"]
    head = config["available_node_types"][FAKE_HEAD]["resources"]
    assert head == raw["available_node_types"][raw["head_node_type"]]["resources"] == {"CPU": 0}
    assert config["max_workers"] == 2 and config["idle_timeout_minutes"] == 0.2
    assert config["upscaling_speed"] == raw["upscaling_speed"]


def test_rehearsal_config_refuses_a_config_without_workers_or_head():
    with pytest.raises(ValueError, match="head_node_type 'nope'"):
        fake_config({"available_node_types": {"h": {"resources": {}}}, "head_node_type": "nope"})
    with pytest.raises(ValueError, match="no worker node types"):
        fake_config({"available_node_types": {"h": {"resources": {}}}, "head_node_type": "h"})


def _alive():
    import ray

    return [n for n in ray.nodes() if n["Alive"]]


def _max_overlap(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    best = now = 0
    for _, d in edges:
        now += d
        best = max(best, now)
    return best


@pytest.mark.integration
def test_autoscaler_launches_gpu_workers_packs_four_trials_per_gpu_and_removes_idle_workers(
        tiny_model_dir, tmp_path):
    import ray

    from search import rehearse

    config = fake_config(yaml.safe_load((ROOT / "cluster.yaml").read_text()), idle_minutes=0.2,
                         max_workers=2)
    ray.shutdown()  # a Ray an earlier test left connected in this process: down() stops it
    rehearse.down()
    address = rehearse.up(config, port=6390)
    out = tmp_path / "as"
    try:
        ray.init(address=address, logging_level="ERROR")
        assert len(_alive()) == 1 and ray.cluster_resources().get("GPU", 0) == 0  # the CPU-0 head only
        head = _alive()[0]["NodeID"]
        ray.shutdown()
        run(cli(tiny_model_dir, out, "--method", "lora", "--num-samples", "8", "--experiment", "as",
                "--max-steps", "20", "--scheduler", "fifo", "--searcher", "random", "--confirm", "0",
                "--gpus-per-trial", "0.25", "--max-concurrent", "8", "--address", address),
            tmp_path, timeout=900)
        ray.init(address=address, logging_level="ERROR")
        # idle workers leave after the search (0.2 min idle here)
        wait_for(lambda: len(_alive()) == 1, 180, "the idle workers to be removed", every=2)
        assert _alive()[0]["NodeID"] == head
        logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    finally:
        ray.shutdown()
        rehearse.down()
    trials = trial_results(out, "as", "lora")
    assert len(trials) == 8 and all(len(rows) == 2 for rows in trials.values())
    by_node: dict[str, list[tuple[float, float]]] = {}
    for rows in trials.values():
        first, last = rows[0], rows[-1]
        assert first["node_id"] != head  # the head declares no CPU: trials run on launched workers
        # Ray gave the trial a share of GPU 0 of its node and set CUDA_VISIBLE_DEVICES to it;
        # the declared GPU is not real, so the trainer trained on the CPU
        assert first["gpu_ids"] == first["cuda_visible_devices"] == "0" and first["device"] == "cpu"
        by_node.setdefault(first["node_id"], []).append((first["timestamp"] - first["time_this_iter_s"],
                                                         last["timestamp"]))
    assert len(by_node) == 2, "the autoscaler launched two GPU workers for eight 0.25-GPU trials"
    assert sorted(len(s) for s in by_node.values()) == [4, 4]
    assert all(_max_overlap(spans) == 4 for spans in by_node.values()), "four trials shared each GPU"
    note = re.compile(r"CUDA_VISIBLE_DEVICES=0 but .+: training on the CPU")
    assert any(note.search(p.read_text(errors="replace")) for p in logs.glob("worker-*.out"))
    _, runs = mlflow_runs(f"sqlite:///{out.parent / 'mlflow.db'}", "as")
    tagged = [r for r in runs if r.data.tags.get("kind") == "trial"]
    assert len(tagged) == 8 and {r.data.tags["gpu_ids"] for r in tagged} == {"0"}
    assert {r.data.tags["node_id"] for r in tagged} == set(by_node)
    summary = json.loads((out / "results.json").read_text())
    assert summary["methods"][0]["trials"] == 8 and summary["methods"][0]["failed"] == 0


def test_the_ray_command_is_found_beside_the_interpreter_before_path(tmp_path, monkeypatch):
    """A virtual environment used without activating it (``.venv/bin/python -m pytest``) has
    ``ray`` beside its python and not on PATH."""
    from search.rehearse import ray_command

    venv = tmp_path / "venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").write_text("")
    ray = venv / "ray"
    ray.write_text("#!/bin/sh\n")
    ray.chmod(0o755)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert ray_command(str(venv / "python")) == str(ray)
    ray.unlink()
    with pytest.raises(RuntimeError, match="no `ray` command beside"):
        ray_command(str(venv / "python"))
