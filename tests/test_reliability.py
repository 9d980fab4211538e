"""Reliability scenarios of the README's "Reliability" section, each against the real thing:
a real Ray runtime (local, or a local two-node cluster), real processes killed with real
signals, a real MLflow store (SQLite, or an ``mlflow server`` this test starts and stops).

Each test prints a ``[recovery]`` line with the time the recovery took (``pytest -s``)."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
from searchkit import (
    Background,
    MlflowServer,
    cli,
    mlflow_client,
    mlflow_runs,
    partial_trials,
    run,
    saved_ended,
    trial_results,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

# Slow enough trials to be hit midway: 10 evaluations of 60 steps on the tiny model.
STEPS, EVERY = 600, 60
SLOW = ["--max-steps", str(STEPS), "--eval-every", str(EVERY), "--max-train-samples", "256"]
MAX_T = STEPS // EVERY


def steps_of(rows: list[dict]) -> list[int]:
    return [int(r["step"]) for r in rows]


def assert_went_on(rows: list[dict], trial: str, repeats_allowed: int = 0) -> None:
    """The trial reached the last step, every evaluation step was reported, and a restart went
    on from a checkpoint: no step reported twice (beyond ``repeats_allowed``: a step whose
    checkpoint a killed driver had not yet recorded), never a restart from the first step."""
    steps = steps_of(rows)
    assert set(steps) == set(range(EVERY, STEPS + 1, EVERY)), (trial, steps)
    assert steps[-1] == STEPS and len(steps) - len(set(steps)) <= repeats_allowed, (trial, steps)
    assert steps.count(EVERY) == 1, (trial, steps)


def recovery(what: str, seconds: float) -> None:
    print(f"\n[recovery] {what}: {seconds:.1f} s")


# ---- 1. a trial's worker process is SIGKILLed -------------------------------------------------
def test_killed_trial_worker_restarts_from_its_checkpoint(tiny_model_dir, tmp_path):
    out = tmp_path / "kw"
    search = Background(cli(tiny_model_dir, out, "--method", "lora", "--num-samples", "2",
                            "--experiment", "kw", "--scheduler", "fifo", "--max-concurrent", "1",
                            *SLOW), tmp_path)
    try:
        hit = wait_for(lambda: partial_trials(out, "kw", "lora", 2, MAX_T), 240, "a trial midway")
        victim, before = next(iter(hit.items()))
        os.kill(int(before[-1]["pid"]), signal.SIGKILL)
        killed_at = time.time()
        assert search.wait(timeout=400) == 0, search.output[-3000:]
    finally:
        search.stop()
    after = trial_results(out, "kw", "lora")
    assert len(after) == 2
    for trial, rows in after.items():
        # a kill between a report and its checkpoint's registration repeats that one step (seen
        # once in three suite runs: steps 60, 120, 180, 180, 240, ...); never more, never from 60
        assert_went_on(rows, trial, repeats_allowed=1 if trial == victim else 0)
    rows = after[victim]
    pids = list(dict.fromkeys(int(r["pid"]) for r in rows))
    assert len(pids) == 2, "a new worker process went on with the killed trial"
    first_new = next(r for r in rows if int(r["pid"]) == pids[1])
    assert first_new["step"] > before[-1]["step"] - EVERY  # resumed, not started over
    recovery("trial worker SIGKILL -> next report of the restarted trial",
             first_new["timestamp"] - killed_at)


# ---- 2. a worker node of a two-node cluster is removed ----------------------------------------
def test_removed_node_trials_resume_on_the_other_node(tiny_model_dir, tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    out = tmp_path / "node"
    search = None
    try:
        worker = cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address)
        cluster.wait_for_nodes()
        ray.shutdown()
        search = Background(cli(tiny_model_dir, out, "--method", "lora", "--num-samples", "2",
                                "--experiment", "node", "--scheduler", "fifo", "--searcher", "random",
                                "--max-concurrent", "2", "--address", cluster.address, *SLOW), tmp_path)

        def on_worker():
            found = partial_trials(out, "node", "lora", 2, MAX_T)
            return {t: r for t, r in found.items() if r[-1]["node_id"] == worker.node_id}

        hit = wait_for(on_worker, 300, "a trial midway on the worker node")
        victim, before = next(iter(hit.items()))
        cluster.remove_node(worker)
        removed_at = time.time()
        assert search.wait(timeout=500) == 0, search.output[-3000:]
    finally:
        if search is not None:
            search.stop()
        ray.shutdown()
        cluster.shutdown()
    after = trial_results(out, "node", "lora")
    assert len(after) == 2
    for trial, rows in after.items():
        assert_went_on(rows, trial)
    rows = after[victim]
    assert rows[-1]["node_id"] != worker.node_id, "the trial finished on the remaining node"
    moved = next(r for r in rows if r["node_id"] != worker.node_id and r["step"] > before[-1]["step"])
    recovery("worker node removed -> next report of its trial on the head", moved["timestamp"] - removed_at)


# ---- 2b. spot preemption at size: a worker running several trials is removed -----------------
def test_preempted_worker_with_three_trials_they_resume_elsewhere_recorded_once(tiny_model_dir, tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    out = tmp_path / "spot"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    search = None
    try:
        worker = cluster.add_node(num_cpus=3)
        ray.init(address=cluster.address)
        cluster.wait_for_nodes()
        ray.shutdown()
        search = Background(cli(tiny_model_dir, out, "--method", "lora", "--num-samples", "5",
                                "--experiment", "spot", "--scheduler", "fifo", "--searcher", "random",
                                "--max-concurrent", "5", "--confirm", "0", "--address", cluster.address,
                                *SLOW, mlflow_uri=uri), tmp_path)

        def three_on_worker():
            found = partial_trials(out, "spot", "lora", 1, MAX_T)
            mine = {t: r for t, r in found.items() if r[-1]["node_id"] == worker.node_id}
            return mine if len(mine) == 3 else None

        hit = wait_for(three_on_worker, 400, "three trials midway on the worker node")
        cluster.remove_node(worker)  # no notice, like a reclaimed spot machine
        assert search.wait(timeout=900) == 0, search.output[-3000:]
    finally:
        if search is not None:
            search.stop()
        ray.shutdown()
        cluster.shutdown()
    after = trial_results(out, "spot", "lora")
    assert len(after) == 5
    for trial, rows in after.items():
        assert_went_on(rows, trial)
    for trial, before in hit.items():
        rows = after[trial]
        assert rows[-1]["node_id"] != worker.node_id, "the preempted trial finished on the other node"
        moved = [r for r in rows if r["node_id"] != worker.node_id]
        assert moved[0]["step"] > before[-1]["step"]  # resumed from its checkpoint, not from the start
    _, runs = mlflow_runs(uri, "spot")
    trial_runs = [r for r in runs if r.data.tags.get("kind") == "trial"]
    ids = [r.data.tags["trial_id"] for r in trial_runs]
    assert len(ids) == len(set(ids)) == 5, ids  # every trial recorded once
    assert all(r.info.status == "FINISHED" for r in trial_runs)
    assert {"trial_" + i for i in ids} == set(after)


# ---- 3. the driver is SIGKILLed, then resumed ---------------------------------------------------
ENDED = re.compile(r"trial (\w+) (?:finished|stopped early) at eval")


def test_driver_sigkill_then_resume_finishes_the_budget_and_closes_every_run(tiny_model_dir, tmp_path):
    out = tmp_path / "dk"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = cli(tiny_model_dir, out, "--method", "lora", "--num-samples", "4", "--experiment", "dk",
              "--max-concurrent", "1", "--grace-period", "2", "--reduction-factor", "2", *SLOW)
    search = Background(cmd, tmp_path)
    try:
        wait_for(lambda: saved_ended(out, "dk", "lora") and partial_trials(out, "dk", "lora", 1, MAX_T),
                 300, "an ended trial in the saved state and another one midway")
        os.killpg(search.proc.pid, signal.SIGKILL)  # driver and its local Ray, no cleanup at all
        search.wait(timeout=60)
    finally:
        search.stop()
    before = trial_results(out, "dk", "lora")
    # Ended as far as the state a resume reads knows (Tune saves it every few seconds: a trial
    # that ended after the last save goes on from the last checkpoint that save names).
    ended = {t: before[t] for t in saved_ended(out, "dk", "lora")}
    _, runs = mlflow_runs(uri, "dk")
    assert any(r.info.status == "RUNNING" for r in runs), "the kill left runs open (else no test)"

    t0 = time.time()
    resumed = run(cmd + ["--resume"], tmp_path, timeout=600)
    recovery("driver SIGKILL -> resumed search finished", time.time() - t0)
    after = trial_results(out, "dk", "lora")
    assert len(after) == 4, "the trial budget is kept"
    assert ended
    for trial, rows in ended.items():  # ended before the last save: not run again
        assert after[trial] == rows, trial
    assert not set(ENDED.findall(resumed.stdout)) & {t.removeprefix("trial_") for t in ended}
    for trial, rows in after.items():  # interrupted ones went on from a checkpoint
        steps = steps_of(rows)
        assert steps.count(EVERY) == 1 and len(steps) - len(set(steps)) <= 1, (trial, steps)
    results = json.loads((out / "results.json").read_text())["methods"][0]
    assert results["trials"] == 4 and results["best_score"] is not None
    _, runs = mlflow_runs(uri, "dk")
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
    trial_runs = [r for r in runs if r.data.tags.get("kind") == "trial"]
    assert sorted("trial_" + r.data.tags["trial_id"] for r in trial_runs) == sorted(after), \
        "one MLflow run per trial: reattached, not duplicated"


# ---- 4. NaN losses ----------------------------------------------------------------------------
def test_nan_trials_stop_at_once_are_marked_and_never_best(tiny_model_dir, tmp_path):
    out = tmp_path / "nan"
    # alpha/r = 1e300 overflows float32: LoRA's output is NaN at once; adapters have no alpha.
    proc = run(cli(tiny_model_dir, out, "--method", "lora,adapter", "--num-samples", "2",
                   "--experiment", "nan", "--scheduler", "fifo", "--set", "alpha=1e300", "--confirm", "0"),
               tmp_path, rc=1)
    assert "no trial of lora reported a finite score" in proc.stdout
    assert not (out / "lora" / "best_config.json").exists()
    assert (out / "adapter" / "best_config.json").exists()
    for trial, rows in trial_results(out, "nan", "lora").items():
        assert len(rows) == 1 and rows[0]["failure"] == "non-finite loss", trial  # one report, no retry
        assert rows[0]["step"] < 10, "stopped at the step it happened, before any evaluation"
    results = {r["method"]: r for r in json.loads((out / "results.json").read_text())["methods"]}
    assert results["lora"]["failed"] == 2 and results["lora"]["best_score"] is None
    assert results["adapter"]["failed"] == 0 and results["adapter"]["best_score"] is not None
    _, runs = mlflow_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "nan")
    lora_trials = [r for r in runs if r.data.tags.get("kind") == "trial" and r.data.tags["method"] == "lora"]
    assert len(lora_trials) == 2
    assert all(r.info.status == "FAILED" and r.data.tags["failure"] == "non-finite loss" for r in lora_trials)
    assert "FAILED: loss became" in proc.stdout


# ---- 5. bad data -------------------------------------------------------------------------------
GOOD = "\tid\tsentence\tsentiment\n" + "".join(f"{i}\tr{i}\tgood movie {i}\t{i % 5}\n" for i in range(200))


@pytest.mark.parametrize("train,match", [
    ("\tid\ttext\tlabel\n0\ta\tgood\t1\n", "missing column"),
    (GOOD + "".join(f"{i}\tr\tgood\tawful\n" for i in range(50)), "50 malformed rows"),
    ("", "empty file"),
    (b"\tid\tsentence\tsentiment\n0\ta\t\xff\xfe bad\t1\n", "not UTF-8"),
], ids=["missing-column", "bad-labels", "empty", "not-utf8"])
def test_bad_data_fails_before_any_trial(tiny_model_dir, tmp_path, train, match):
    data = tmp_path / "data"
    data.mkdir()
    path = data / "ids-sst-train.csv"
    path.write_bytes(train if isinstance(train, bytes) else train.encode())
    (data / "ids-sst-dev.csv").write_text(GOOD)
    out = tmp_path / "bad"
    proc = run(cli(tiny_model_dir, out, "--method", "lora", "--tasks", "sst", "--data-dir", str(data),
                   "--experiment", "bad"), tmp_path, rc=2)
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error:") and str(path) in line and match in line, proc.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (out / "tune").exists()


def test_a_few_bad_rows_are_skipped_and_counted(tiny_model_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "ids-sst-train.csv").write_text(GOOD + "200\tr\tgood\tawful\n")
    (data / "ids-sst-dev.csv").write_text(GOOD)
    proc = run(cli(tiny_model_dir, tmp_path / "few", "--method", "lora", "--tasks", "sst", "--data-dir",
                   str(data), "--experiment", "few", "--num-samples", "1", "--max-steps", "10"), tmp_path)
    assert "ids-sst-train.csv: skipped 1 malformed row(s)" in proc.stdout
    assert "ids-sst-train.csv:202" in proc.stdout  # names the row


# ---- 6. invalid search settings ------------------------------------------------------------------
@pytest.mark.parametrize("args,match", [
    (["--range", "lr=1e-3:1e-4"], "low must be < high"),
    (["--range", "lr=0:1e-3"], "log range needs low > 0"),
    (["--range", "nope=1:2"], "--range nope: not a searched dim"),
    (["--set", "nope=1"], "--set nope: not a config key"),
    (["--method", "lorax"], "lorax"),
    (["--tasks", "sst,nli"], "unknown task(s) nli"),
    (["--reduction-factor", "1"], "--reduction-factor must be > 1"),
])
def test_invalid_settings_fail_before_ray_and_mlflow(tiny_model_dir, tmp_path, args, match):
    out = tmp_path / "inv"
    proc = run(cli(tiny_model_dir, out, "--experiment", "inv", *args), tmp_path, rc=2)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and match in lines[0], proc.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (out / "search.json").exists()
    assert not (out / "tune").exists()


# ---- 7. 32 trials, one MLflow store ------------------------------------------------------------
def _count_every_metric(uri: str, out: Path, experiment: str) -> tuple[int, int]:
    """(metric values Tune has, metric values MLflow has) over every trial of the search."""
    from search.results import numeric_metrics

    client, runs = mlflow_runs(uri, experiment)
    by_trial = {r.data.tags["trial_id"]: r for r in runs if r.data.tags.get("kind") == "trial"}
    tune_n = mlflow_n = 0
    for trial, rows in trial_results(out, experiment, "lora").items():
        run_ = by_trial[trial.removeprefix("trial_")]
        for key in numeric_metrics(rows[0]):
            tune_n += sum(key in numeric_metrics(r) for r in rows)
            mlflow_n += len(client.get_metric_history(run_.info.run_id, key))
    return tune_n, mlflow_n


@pytest.mark.parametrize("store", ["sqlite", "server"])
def test_32_trials_log_to_one_store_without_losing_a_metric(tiny_model_dir, tmp_path, store):
    server = MlflowServer(tmp_path / "server") if store == "server" else None
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    try:
        if server is not None:
            server.start()
            uri = server.uri
        out = tmp_path / "many"
        proc = run(cli(tiny_model_dir, out, "--method", "lora", "--num-samples", "32", "--experiment",
                       "many", "--scheduler", "fifo", "--searcher", "random", "--cpus-per-trial", "0.25",
                       "--max-concurrent", "8", "--max-steps", "20", mlflow_uri=uri), tmp_path, timeout=600)
        tune_n, mlflow_n = _count_every_metric(uri, out, "many")
    finally:
        if server is not None:
            server.stop()
    assert "database is locked" not in proc.stdout + proc.stderr
    assert len(trial_results(out, "many", "lora")) == 32
    assert tune_n > 32 * 2 * 10 and mlflow_n == tune_n


# ---- 8 and 9. the MLflow server goes away and comes back; a finished search reruns -------------
def test_mlflow_server_outage_loses_nothing_and_best_config_is_rebuilt(tiny_model_dir, tmp_path):
    server = MlflowServer(tmp_path / "server")
    server.start()
    out = tmp_path / "away"
    cmd = cli(tiny_model_dir, out, "--method", "lora", "--num-samples", "2", "--experiment", "away",
              "--scheduler", "fifo", "--max-concurrent", "1", *SLOW, mlflow_uri=server.uri)
    search = Background(cmd, tmp_path)
    try:
        wait_for(lambda: partial_trials(out, "away", "lora", 1, MAX_T), 300, "a first report")
        server.stop()
        down_at = time.time()
        before = sum(len(r) for r in trial_results(out, "away", "lora").values())
        wait_for(lambda: sum(len(r) for r in trial_results(out, "away", "lora").values()) >= before + 2,
                 120, "training to go on without MLflow")
        server.start()
        assert search.wait(timeout=600) == 0, search.output[-3000:]
        tune_n, mlflow_n = _count_every_metric(server.uri, out, "away")
        assert "failed at" in search.output and "reachable again" in search.output
        assert mlflow_n == tune_n, "every metric reached MLflow after the outage"
        client, runs = mlflow_runs(server.uri, "away")
        parent = next(r for r in runs if r.data.tags.get("kind") == "method")
        assert parent.data.tags["best_config"] == "true" and parent.info.status == "FINISHED"
        recovery("MLflow server down -> search finished with every metric recorded", time.time() - down_at)

        # 9: the files are rebuilt from the Tune experiment folder alone, identical.
        best = (out / "lora" / "best_config.json").read_text()
        table = json.loads((out / "results.json").read_text())["methods"]
        (out / "lora" / "best_config.json").unlink()
        (out / "results.json").unlink()
        again = run(cmd + ["--resume"], tmp_path)
        assert (out / "lora" / "best_config.json").read_text() == best
        assert [r["best_score"] for r in json.loads((out / "results.json").read_text())["methods"]] == \
            [r["best_score"] for r in table]
        assert not ENDED.search(again.stdout), "no trial ran again"
    finally:
        search.stop()
        server.stop()


def test_result_files_are_replaced_atomically(tmp_path, monkeypatch):
    from search import results

    path = tmp_path / "best_config.json"
    results.write_json_atomic(path, {"lr": 1e-4})
    monkeypatch.setattr(results.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        results.write_json_atomic(path, {"lr": 1.0})
    assert json.loads(path.read_text()) == {"lr": 1e-4}, "a failed write leaves the old file whole"


# ---- 10. a trial runs out of memory --------------------------------------------------------------
@pytest.mark.skipif(Path("/proc/sys/vm/overcommit_memory").exists()
                    and Path("/proc/sys/vm/overcommit_memory").read_text().strip() == "1",
                    reason="with overcommit always on, an impossible allocation is not refused")
def test_out_of_memory_trial_fails_alone_with_a_clear_message(tiny_model_dir, tmp_path):
    out = tmp_path / "oom"
    # A bottleneck of 10^10 units needs ~2.5 TB: the allocator refuses it on any machine.
    proc = run(cli(tiny_model_dir, out, "--method", "adapter,lora", "--num-samples", "2",
                   "--experiment", "oom", "--scheduler", "fifo", "--set", "adapter_size=10000000000",
                   "--confirm", "0"),
               tmp_path, rc=1)
    assert "out of memory" in proc.stdout and "no trial of adapter reported a finite score" in proc.stdout
    for rows in trial_results(out, "oom", "adapter").values():
        assert len(rows) == 1 and rows[0]["failure"] == "out of memory"  # not retried
    results = {r["method"]: r for r in json.loads((out / "results.json").read_text())["methods"]}
    assert results["adapter"]["failed"] == 2 and results["lora"]["best_score"] is not None
    client = mlflow_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    _, runs = mlflow_runs(client.tracking_uri, "oom")
    oom = [r for r in runs if r.data.tags.get("method") == "adapter" and r.data.tags.get("kind") == "trial"]
    assert oom and all(r.data.tags.get("failure") == "out of memory" for r in oom)


# ---- 11. secure defaults ------------------------------------------------------------------------
def test_secure_defaults():
    import tomllib
    import yaml
    from packaging.requirements import Requirement
    from packaging.version import Version

    root = Path(__file__).resolve().parents[1]
    cfg = yaml.safe_load((root / "cluster.yaml").read_text())
    ports = [(p["FromPort"], p["ToPort"]) for p in cfg["provider"]["security_group"]["IpPermissions"]]
    assert ports == [(22, 22)], "only SSH is open"
    head = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "mlflow server --host 127.0.0.1" in head
    deps = {Requirement(d).name: Requirement(d) for d in
            tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]}
    # Lowest allowed versions are past the advisories the README lists.
    assert not deps["ray"].specifier.contains(Version("2.54.0"))
    assert not deps["mlflow"].specifier.contains(Version("3.9.0"))
    import subprocess

    tracked = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True).stdout.split()
    secrets = ("AKIA", "aws_secret_access_key", "BEGIN RSA PRIVATE KEY", "BEGIN OPENSSH PRIVATE KEY")
    for name in tracked:
        path = root / name
        if path.is_file() and path.suffix not in (".png", ".safetensors"):
            text = path.read_text(errors="ignore")
            assert not any(s in text for s in secrets if name != "tests/test_reliability.py"), name
