"""Real Ray Tune searches on this machine (CPU, a tiny random BERT, the synthetic demo suite):
ASHA stops trials early, MLflow holds the best config of each method, --resume does not rerun
finished trials, a two-node cluster runs trials on both nodes; cluster.yaml passes Ray's
own validation."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from searchkit import ENV, ROOT, cli, run, saved_ended, trial_results  # noqa: F401
from searchkit import mlflow_runs as _mlflow_runs

MAX_T = 3  # evaluations per trial: --max-steps 30 / --eval-every 10


def mlflow_runs(out: Path, experiment: str):
    return _mlflow_runs(f"sqlite:///{out.parent / 'mlflow.db'}", experiment)


# ---- one search over two methods, shared by the tests below -------------------------------------
@pytest.fixture(scope="module")
def search(tiny_model_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("search")
    out = base / "it"
    # --confirm 0: the search's own record (confirmation: tests/test_confirm.py)
    proc = run(cli(tiny_model_dir, out, "--method", "lora,adapter", "--num-samples", "6",
                   "--experiment", "it", "--grace-period", "1", "--reduction-factor", "2",
                   "--confirm", "0"), base)
    return out, proc.stdout, json.loads((out / "results.json").read_text())


@pytest.mark.integration
def test_asha_stops_some_trials_early(search):
    out, stdout, results = search
    for row in results["methods"]:
        rows = trial_results(out, "it", row["method"])
        assert len(rows) == 6
        iterations = [len(r) for r in rows.values()]
        assert sum(iterations) < 6 * MAX_T, iterations
        assert min(iterations) < MAX_T
        assert row["evals_run"] == sum(iterations) and row["stopped_early"] >= 1
    assert "stopped early" in stdout and "MLflow UI: mlflow ui --backend-store-uri" in stdout


@pytest.mark.integration
def test_ended_trials_keep_their_checkpoint_only_among_the_best_three(search):
    from search.pruning import rank

    out, stdout, results = search
    for row in results["methods"]:
        method = row["method"]
        rows = trial_results(out, "it", method)
        folder = out / "tune" / f"it-{method}"
        kept = {t for t in rows if any((folder / t).glob("checkpoint_*"))}
        assert len(kept) == 3, kept  # --keep-checkpoints 3 (the default) of 6 ended trials
        assert all(len(list((folder / t).glob("checkpoint_*"))) == 1 for t in kept)  # the latest
        assert all(len(list((folder / t).glob("checkpoint_*"))) == 1 for t in kept)  # the latest
        deleted = set(rows) - kept
        assert min(rank(rows[t][-1]) for t in kept) >= max(rank(rows[t][-1]) for t in deleted)
        best = json.loads((out / method / "best_config.json").read_text())
        assert (out / method / "best_checkpoint").is_dir() and best
        assert f"[{method}] disk: deleted the checkpoints of 3 ended trials and the superseded" in stdout


@pytest.mark.integration
def test_trial_clock_is_written_per_method(search):
    out, _, results = search
    for row in results["methods"]:
        info = json.loads((out / row["method"] / "trials.json").read_text())
        assert len(info["trials"]) == 6 and info["concurrency"] >= 1
        for t in info["trials"].values():
            # Tune started it, then its first step ran, then it ended; the trainer's time fits
            assert info["search_started_at"] <= t["scheduled_at"] <= t["first_step_at"] <= t["ended_at"]
            assert 0 < t["train_s"] + t["eval_s"] <= t["ended_at"] - t["scheduled_at"]


@pytest.mark.integration
def test_best_config_of_each_method_is_read_back_from_mlflow(search):
    out, _, results = search
    client, runs = mlflow_runs(out, "it")
    parents = {r.data.tags["method"]: r for r in runs if r.data.tags.get("best_config") == "true"}
    assert set(parents) == {"lora", "adapter"}
    for method, parent in parents.items():
        best_file = json.loads((out / method / "best_config.json").read_text())
        assert parent.data.params == {k: str(v) for k, v in best_file.items()}
        assert best_file["method"] == method and parent.info.status == "FINISHED"
        trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
                  and r.data.tags.get("kind") == "trial"]
        assert len(trials) == 6 and all(r.info.status == "FINISHED" for r in trials)
        # The parent holds the best trial: the highest last score of the nested runs that ran
        # furthest (evaluations logged).
        best_trial = max(trials, key=lambda r: (len(client.get_metric_history(r.info.run_id, "score")),
                                                r.data.metrics["score"]))
        assert parent.data.metrics["score"] == pytest.approx(best_trial.data.metrics["score"])
        assert parent.data.tags["best_run_id"] == best_trial.info.run_id
        assert best_trial.data.tags["best"] == "true"
        assert best_trial.data.params == parent.data.params
        # Every evaluation was logged, per-task metrics and trainable % included.
        history = sum(len(client.get_metric_history(r.info.run_id, "score")) for r in trials)
        row = next(r for r in results["methods"] if r["method"] == method)
        assert history == row["evals_run"]
        assert {"sst_accuracy", "quora_accuracy", "sts_pearson", "stored_pct", "sst_pct"} <= set(
            best_trial.data.metrics)
        artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "checkpoint")}
        assert "checkpoint/trainable.safetensors" in artifacts
        assert (out / method / "best_checkpoint" / "trainable.safetensors").is_file()


@pytest.mark.integration
def test_best_config_reruns_through_trainers_train(search, tmp_path):
    out, _, results = search
    row = next(r for r in results["methods"] if r["method"] == "lora")
    best = trial_results(out, "it", "lora")[f"trial_{row['best_trial_id']}"]
    assert len(best) == MAX_T, "the best trial ran to the end"
    # A trial runs with one torch thread (--cpus-per-trial 1); the rerun does the same.
    run([sys.executable, "-m", "trainers.train", "--config", str(out / "lora" / "best_config.json"),
         "--num-threads", "1", "--out", str(tmp_path / "rerun")], ROOT)
    rerun = json.loads((tmp_path / "rerun" / "result.json").read_text())
    assert rerun["score"] == pytest.approx(row["best_score"], abs=1e-6)


# ---- the comparison report (search.report, run at the end of the search) ------------------------
@pytest.mark.integration
def test_report_is_written_and_logged_to_mlflow(search):
    out, stdout, results = search
    report = out / "report"
    methods = [r["method"] for r in results["methods"]]
    for name in ["pareto.png", "report.html", "report.md"] + [
            f"{kind}_{m}.png" for m in methods for kind in ("curves", "importance", "values")]:
        assert (report / name).stat().st_size > 1000, name
    page = (report / "report.html").read_text()
    srcs = re.findall(r"<img[^>]* src='([^']*)'", page)
    assert len(srcs) == 1 + 3 * len(methods) and all(s.startswith("data:image/png;base64,") for s in srcs)
    board = json.loads((report / "leaderboard.json").read_text())
    by_score = sorted(results["methods"], key=lambda r: -r["best_score"])
    assert [r["method"] for r in board["methods"]] == [r["method"] for r in by_score]
    for row, want in zip(board["methods"], by_score, strict=True):
        assert row["score"] == pytest.approx(want["best_score"])
        assert row["trials"] == 6 and row["stopped_early"] == want["stopped_early"]
        assert row["trial_steps"] == 10 * want["evals_run"]  # every evaluation is 10 steps here
    assert "report: " in stdout and "Pareto front (score vs % params)" in stdout

    client, runs = mlflow_runs(out, "it")
    for parent in [r for r in runs if r.data.tags.get("kind") == "method"]:
        m = parent.data.tags["method"]
        files = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
        assert {f"report/curves_{m}.png", "report/pareto.png", "report/report.html"} <= files
        assert "space.json" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    (report_run,) = [r for r in runs if r.data.tags.get("kind") == "report"]
    assert report_run.info.status == "FINISHED"
    exp = client.get_experiment_by_name("it")
    assert "## Leaderboard" in exp.tags["mlflow.note.content"]


@pytest.mark.integration
def test_report_cli_rebuilds_without_logging_and_rejects_unknown_experiments(search, tmp_path):
    out, _, _ = search
    uri = f"sqlite:///{out.parent / 'mlflow.db'}"
    report = [sys.executable, "-m", "search.report"]  # the installed package, run from tmp_path
    proc = run([*report, "--experiment", "it", "--mlflow-uri", uri,
                "--out", str(tmp_path / "r"), "--no-log"], tmp_path)
    assert (tmp_path / "r" / "report.html").exists() and "logged to MLflow" not in proc.stdout
    bad = run([*report, "--experiment", "nope", "--mlflow-uri", uri], tmp_path, rc=2)
    assert bad.stderr.count("\n") == 1 and "'nope': no such MLflow experiment" in bad.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.integration
def test_mlflow_ui_in_headless_chromium_lists_methods_best_metrics_and_plots(search):
    """A real MLflow server over the finished search, driven by a real browser."""
    from browser import chromium, screenshot, wait_image, wait_text
    from searchkit import MlflowServer

    out, _, results = search
    server = MlflowServer(out.parent)  # serves <base>/mlflow.db, the search's store
    server.start()
    try:
        client, runs = mlflow_runs(out, "it")
        exp_id = client.get_experiment_by_name("it").experiment_id
        parents = {r.data.tags["method"]: r for r in runs if r.data.tags.get("kind") == "method"}
        with chromium() as driver:
            driver.get(f"{server.uri}/#/experiments/{exp_id}/runs?workflowType=machine_learning")
            wait_text(driver, "peft-search report: it", *parents, "report")
            shot = screenshot(driver, "mlflow-experiment")
            for method, parent in parents.items():
                driver.get(f"{server.uri}/#/experiments/{exp_id}/runs/{parent.info.run_id}")
                best = next(r for r in results["methods"] if r["method"] == method)
                text = wait_text(driver, "best_config", "score", repr(best["best_score"]))
                for key in ("sst_accuracy", "quora_accuracy", "sts_pearson", "stored_pct"):
                    assert f"{key}\n{best[key]!r}" in text, key
                screenshot(driver, f"mlflow-run-{method}")
                # Open the curves by URL, then the Pareto plot by clicking it in the artifact tree.
                driver.get(f"{server.uri}/#/experiments/{exp_id}/runs/{parent.info.run_id}"
                           f"/artifacts/report/curves_{method}.png")
                for i, plot in enumerate((f"curves_{method}.png", "pareto.png")):
                    if i:
                        driver.find_element("xpath", f"//*[text()='{plot}']").click()
                    # The browser fetched and decoded the logged PNG: an image of its size shows.
                    png = (out / "report" / plot).read_bytes()
                    size = [int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")]
                    wait_image(driver, size, plot)
                screenshot(driver, f"mlflow-plot-{method}")
    finally:
        server.stop()
    assert shot.stat().st_size > 10_000
    print(f"screenshots: {shot.parent}")


# ---- multi-objective search ---------------------------------------------------------------------
@pytest.mark.integration
def test_objective_score_params_is_multi_objective_with_its_pareto_set(tiny_model_dir, tmp_path):
    import pickle

    from search.report.pareto import pareto_front

    out = tmp_path / "mo"
    proc = run(cli(tiny_model_dir, out, "--method", "lora", "--num-samples", "5", "--experiment", "mo",
                   "--objective", "score,params", "--max-concurrent", "2"), tmp_path)
    (state_file,) = (out / "tune" / "mo-lora").glob("searcher-state-*.pkl")
    state = pickle.loads(state_file.read_bytes())
    study = state["_ot_study"]
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert state["_metric"] == ["score", "stored_pct"]
    # Every trial was told both objectives: its last reported score and % parameters.
    last = {t.removeprefix("trial_"): rows[-1] for t, rows in trial_results(out, "mo", "lora").items()}
    told = {tid: tuple(study.trials[state["_ot_trials"][tid].number].values or ()) for tid in last}
    assert told == {tid: (r["score"], r["stored_pct"]) for tid, r in last.items()}
    # The reported Pareto set is Optuna's and a brute-force front of the trials' results.
    front = json.loads((out / "results.json").read_text())["pareto"]["lora"]
    ids = {p["trial_id"] for p in front}
    brute = pareto_front(list(last.items()), score=lambda x: x[1]["score"], cost=lambda x: x[1]["stored_pct"])
    assert ids == {tid for tid, _ in brute}
    by_number = {t.number: tid for tid, t in state["_ot_trials"].items()}
    assert ids == {by_number[t.number] for t in study.best_trials}
    assert f"[lora] Pareto set (score vs % params), {len(front)} trial(s)" in proc.stdout


# ---- interrupted, then resumed ------------------------------------------------------------------
@pytest.mark.integration
def test_resume_after_interrupt_does_not_rerun_finished_trials(tiny_model_dir, tmp_path):
    out = tmp_path / "res"
    # Trials of 300 steps (3 evaluations) take seconds: long enough to be interrupted midway.
    cmd = cli(tiny_model_dir, out, "--method", "lora", "--num-samples", "5", "--experiment", "res",
              "--scheduler", "fifo", "--max-concurrent", "1", "--max-steps", "300", "--eval-every", "100")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        # Ctrl+C once two trials have finished and, if we catch it, while a third is midway.
        deadline = time.time() + 240
        while time.time() < deadline and len(re.findall(r"trial \w+ finished", "".join(lines))) < 2:
            time.sleep(0.05)
        midway = time.time() + 20
        while time.time() < midway and not _partial(out):
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = "".join(lines)
    assert proc.returncode == 130, output[-3000:]
    assert "--resume" in output and not (out / "results.json").exists()
    before = trial_results(out, "res", "lora")
    # Ended in the state a resume reads (a trial whose last result came in as Ctrl+C stopped the
    # loop may still be running there: it goes on from the checkpoint that state names).
    finished = saved_ended(out, "res", "lora")
    assert len(finished) >= 2 and len(finished) < 5

    resumed = run(cmd + ["--resume"], tmp_path)
    after = trial_results(out, "res", "lora")
    # Finished trials untouched; interrupted ones went on from their last checkpoint (what they
    # had reported is a prefix of what they report in the end; at most the evaluation after
    # that checkpoint is reported twice).
    assert len(after) == 5
    for trial, rows in after.items():
        steps = [r["step"] for r in rows]
        assert sorted(set(steps)) == [100, 200, 300] and len(steps) - len(set(steps)) <= 1, (trial, steps)
        assert rows[:len(before.get(trial, []))] == before.get(trial, [])
        if trial in finished:
            assert rows == before[trial], trial
    for trial in finished:
        assert f"{trial.removeprefix('trial_')} finished" not in resumed.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["methods"][0]["trials"] == 5
    _, runs = mlflow_runs(out, "res")
    trial_runs = [r for r in runs if r.data.tags.get("kind") == "trial"]
    assert sorted("trial_" + r.data.tags["trial_id"] for r in trial_runs) == sorted(after)
    assert all(r.info.status == "FINISHED" for r in trial_runs)


def _partial(out: Path) -> list[str]:
    """Trials that have reported some but not all evaluations (files may be mid-write)."""
    try:
        results = trial_results(out, "res", "lora")
    except (OSError, ValueError):
        return []
    return [t for t, rows in results.items() if 0 < len(rows) < MAX_T]


# ---- two nodes ----------------------------------------------------------------------------------
@pytest.mark.integration
def test_trials_run_on_both_nodes_of_a_two_node_cluster(tiny_model_dir, tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address)
        cluster.wait_for_nodes()
        nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        ray.shutdown()
        assert len(nodes) == 2
        out = tmp_path / "two"
        run(cli(tiny_model_dir, out, "--method", "lora", "--num-samples", "4", "--experiment", "two",
                "--scheduler", "fifo", "--searcher", "random", "--max-concurrent", "2",
                "--address", cluster.address), tmp_path)
    finally:
        ray.shutdown()
        cluster.shutdown()
    used = {r[-1]["node_id"] for r in trial_results(out, "two", "lora").values()}
    assert used == nodes
    _, runs = mlflow_runs(out, "two")
    assert {r.data.tags["node_id"] for r in runs if r.data.tags.get("kind") == "trial"} == nodes


# ---- cluster.yaml -------------------------------------------------------------------------------
def test_cluster_yaml_passes_rays_validation_and_opens_only_ssh():
    import yaml
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    config = prepare_config(raw)  # what `ray up` does: merge the AWS defaults, then validate
    validate_config(config)
    assert config["provider"]["type"] == "aws"
    ports = [(p["FromPort"], p["ToPort"]) for p in raw["provider"]["security_group"]["IpPermissions"]]
    assert ports == [(22, 22)]
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "mlflow server --host 127.0.0.1" in head
    assert "--dashboard-host=0.0.0.0" not in head
    workers = config["available_node_types"]["worker.gpu"]
    assert workers["resources"]["GPU"] >= 1 and workers["max_workers"] > workers["min_workers"]
    assert any("pip install" in c and "peft-search" in c for c in config["setup_commands"])


def test_cluster_yaml_validation_catches_a_broken_config():
    import jsonschema
    import yaml
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    raw["available_node_types"]["worker.gpu"]["resources"] = {"GPU": 0.5}  # must be an integer
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(raw))
