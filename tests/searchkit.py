"""Helpers for tests that run real searches: the CLI, its output folders, MLflow, a server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Tune copies trial results to the storage path when it saves the experiment state: every 10 s
# or more by default, longer than most test searches. The tests watch that folder mid-search
# (a trial midway, a checkpoint to kill after), so they have Tune save every half second.
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "TUNE_GLOBAL_CHECKPOINT_S": "0.5"}


def cli(model_dir: str, out: Path, *args: str, mlflow_uri: str | None = None) -> list[str]:
    """``search/run.py`` on the tiny model, 30 steps, 3 evaluations (override by later flags)."""
    return [sys.executable, str(ROOT / "search" / "run.py"), "--model", model_dir,
            "--max-steps", "30", "--eval-every", "10", "--max-train-samples", "64",
            "--max-eval-samples", "32", "--out", str(out),
            "--mlflow-uri", mlflow_uri or f"sqlite:///{out.parent / 'mlflow.db'}", *args]


def run(cmd: list[str], cwd: Path, timeout: float = 300, rc: int = 0,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env or ENV, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == rc, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


class Background:
    """A command running in the background with its output collected line by line."""

    def __init__(self, cmd: list[str], cwd: Path) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self._reader.start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        finally:
            self.stop()
        self._reader.join(timeout=10)
        return rc

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


def wait_for(condition, timeout: float, what: str, every: float = 0.02):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def trial_results(out: Path, experiment: str, method: str) -> dict[str, list[dict]]:
    """Every result row Tune stored, by trial folder (read from disk, not from our summary)."""
    rows = {}
    for trial in sorted((out / "tune" / f"{experiment}-{method}").glob("trial_*")):
        path = trial / "result.json"
        lines = path.read_text().splitlines() if path.exists() else []
        rows[trial.name] = [json.loads(line) for line in lines if line.strip()]
    return rows


def saved_ended(out: Path, experiment: str, method: str) -> list[str]:
    """The trial folders whose trials have ended in the newest experiment state Tune saved to the
    storage path (what a ``--resume`` starts from); [] before the first save or mid-write."""
    folder = out / "tune" / f"{experiment}-{method}"
    states = sorted(folder.glob("experiment_state-*.json"))
    try:
        trials = json.loads(states[-1].read_text())["trial_data"] if states else []
        return [f"trial_{s['trial_id']}" for s in (json.loads(t[0]) for t in trials)
                if s["status"] == "TERMINATED"]
    except (OSError, ValueError, KeyError, IndexError):
        return []


def partial_trials(out: Path, experiment: str, method: str, min_rows: int, max_t: int) -> dict:
    """Trials that have reported at least ``min_rows`` but not all evaluations."""
    try:
        results = trial_results(out, experiment, method)
    except (OSError, ValueError):  # a file being written
        return {}
    return {t: rows for t, rows in results.items() if min_rows <= len(rows) < max_t}


def mlflow_client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def mlflow_runs(uri: str, experiment: str):
    client = mlflow_client(uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    return client, client.search_runs([exp.experiment_id], max_results=1000)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 over a SQLite store; stop and start it again at will."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root / "server.log", "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1", "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
             "--artifacts-destination", str(self.root / "artifacts")],
            cwd=self.root, env=ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self._healthy, timeout, f"the MLflow server on {self.uri}", every=0.5)

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"mlflow server exited: {(self.root / 'server.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None


def trial_workers(driver: int) -> list[int]:
    """Pids of ``driver``'s descendants that Ray names ``ray::ImplicitFunc...`` (a function
    trainable's actor): that search's trial workers, not another one's on the same machine."""
    import psutil

    pids = []
    try:
        children = psutil.Process(driver).children(recursive=True)
    except psutil.Error:
        return pids
    for child in children:
        try:
            name = child.cmdline()[:1]
        except psutil.Error:
            continue
        if name and name[0].startswith("ray::ImplicitFunc"):
            pids.append(child.pid)
    return pids


class MemorySampler:
    """Reads the private anonymous memory (``Pss_Anon``: ``trainers.memory.anon_gb``) of a search's driver
    and of each of its trial workers every ``every`` seconds until ``stop``."""

    def __init__(self, driver: int, every: float) -> None:
        self.driver, self.every = driver, every
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from trainers.memory import anon_gb

        while not self._stop.is_set():
            self.samples.append({"t": time.time(), "driver_gb": anon_gb(self.driver, proportional=True),
                                 "workers": {str(p): anon_gb(p, proportional=True)
                                             for p in trial_workers(self.driver)}})
            self._stop.wait(self.every)

    def stop(self) -> list[dict]:
        self._stop.set()
        self._thread.join()
        return self.samples


def per_trial(samples: list[dict], ends: list[float]) -> list[dict]:
    """For each trial k (in the order they ended): the lowest and highest worker memory sampled
    while it ran (from the end of trial k-1, or the first sample, to its own end) and the
    driver's at its end. One trial at a time, so that window is trial k's alone."""
    rows, start = [], samples[0]["t"]
    for k, end in enumerate(sorted(ends), start=1):
        window = [v for s in samples if start < s["t"] <= end
                  for v in s["workers"].values() if v is not None]
        driver = [s["driver_gb"] for s in samples if s["t"] <= end and s["driver_gb"] is not None]
        if window:
            rows.append({"trial": k, "t_s": end - samples[0]["t"], "worker_min_gb": min(window),
                         "worker_peak_gb": max(window), "driver_gb": driver[-1] if driver else None})
        start = end
    return rows
