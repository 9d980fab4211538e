"""MLflow record of a search: one experiment, a parent run per method, a nested run per trial.

Only the driver writes to MLflow, in batches, so 32 concurrent trials never open 32 writers on a
SQLite file. Every write goes through a ``WriteQueue``: writes that fail (a tracking server
restarting) stay queued, in order, and are retried while the search goes on — the one retry
path of the project. At the end each method's parent run receives its best trial's config
(params and ``best_config.json``), metrics and checkpoint, and the tag ``best_config=true``:
filter on it in the MLflow UI to see every method's best side by side.

No Ray import: the Tune callback that feeds ``TrialRuns`` lives in ``search/callbacks.py``.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from search.trial_outcome import FAILED, STOPPED_EARLY, outcome

SPACE_ARTIFACT = "space.json"
"""On each method's parent run: the searched dims (what the report plots values against)."""
BATCH = 100  # MLflow's limit of params per log_batch call
DRAIN_S = 300.0  # how long queued MLflow writes are retried at the end of a method
RETRY_S = 5.0
PLACEMENT = ("node_id", "gpu_ids", "cuda_visible_devices", "device")
"""Where a trial ran: the report keys its MLflow run is tagged with when it ends."""


def ui_hint(uri: str) -> str:
    if uri.startswith(("http://", "https://")):
        return f"open {uri} (on a cluster: ray attach cluster.yaml -p 5000, then http://127.0.0.1:5000)"
    return f"mlflow ui --backend-store-uri {uri}   (then open http://127.0.0.1:5000)"


def _first_line(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"


class WriteQueue:
    """MLflow writes run in order; a failing one stays queued (with those after it) and is
    retried every ``retry_s`` seconds, so training never waits on the tracking store."""

    def __init__(self, uri: str, retry_s: float = RETRY_S) -> None:
        self.uri, self.retry_s = uri, retry_s
        self._pending: deque[tuple[str, Callable[[], None]]] = deque()
        self._failing_since: float | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def put(self, what: str, write: Callable[[], None]) -> bool:
        """Queue ``write`` (``what`` names it in messages) and try the queue now."""
        self.add(what, write)
        return self.flush()

    def add(self, what: str, write: Callable[[], None]) -> None:
        """Queue ``write`` without trying it (a ``BackgroundWrites`` thread runs the queue)."""
        self._pending.append((what, write))

    def flush(self) -> bool:
        """Run queued writes in order; stop at the first failure. True when none is left."""
        while self._pending:
            what, write = self._pending[0]
            try:
                write()
            except Exception as e:  # noqa: BLE001 - any store failure: keep the write, go on
                if self._failing_since is None:
                    self._failing_since = time.time()
                    print(f"[mlflow] {self.uri} failed at {what}: {_first_line(e)}; training goes on, "
                          f"{len(self._pending)} write(s) queued and retried every {self.retry_s:g}s",
                          flush=True)
                return False
            self._pending.popleft()
        if self._failing_since is not None:
            print(f"[mlflow] {self.uri} reachable again after {time.time() - self._failing_since:.0f}s; "
                  "queued writes done", flush=True)
            self._failing_since = None
        return True

    def drain(self, timeout_s: float = DRAIN_S) -> bool:
        """Retry the queue until it is empty or ``timeout_s`` has passed; False (said once,
        with what is lost) when writes are left."""
        deadline = time.time() + timeout_s
        while not self.flush() and time.time() < deadline:
            time.sleep(min(self.retry_s, max(0.0, deadline - time.time())))
        if self._pending:
            print(f"[mlflow] {len(self._pending)} write(s) to {self.uri} could not be made in "
                  f"{timeout_s:.0f}s (first: {self._pending[0][0]})", flush=True)
        return not self._pending


class BackgroundWrites:
    """A ``WriteQueue`` run by one writer thread, so the Tune loop never waits on the tracking
    store: ``add`` returns at once; the thread makes the writes in order as they come, and
    retries failed ones every ``retry_s`` seconds. ``drain`` stops the thread and makes what is
    left in the caller's thread. ``lock`` is held while one write runs (read what writes change
    under it: a reader waits for one write, not for the queue)."""

    def __init__(self, queue: WriteQueue) -> None:
        self.queue = queue
        self.lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        return len(self.queue)

    def __reduce__(self):  # pickled (with a Tune callback) as an empty queue to the same store
        return BackgroundWrites, (WriteQueue(self.queue.uri, self.queue.retry_s),)

    def add(self, what: str, write: Callable[[], None]) -> None:
        self.queue.add(what, lambda: self._locked(write))
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mlflow-writes", daemon=True)
            self._thread.start()
        self._wake.set()

    def _locked(self, write: Callable[[], None]) -> None:
        with self.lock:
            write()

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.queue.retry_s)
            self._wake.clear()
            self.queue.flush()

    def drain(self, timeout_s: float = DRAIN_S) -> bool:
        """Stop the thread after the writes it is making; retry what is left until it is made
        or ``timeout_s`` has passed (said once, with what is lost, as ``WriteQueue.drain``)."""
        if self._thread is not None:
            self._stop = True
            self._wake.set()
            self._thread.join()
            self._thread, self._stop = None, False
        return self.queue.drain(timeout_s)


class Tracker:
    """Driver-side MLflow handle of one search (experiment = the search's name)."""

    def __init__(self, uri: str, experiment: str) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            self.experiment_id = found.experiment_id
        else:
            location = None
            if uri.startswith("sqlite:///"):  # artifacts next to the database, not in the cwd
                location = (Path(uri[len("sqlite:///"):]).parent / "mlruns").as_uri()
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)

    def retrying(self, what: str, write: Callable[[], None], timeout_s: float = DRAIN_S) -> bool:
        """Run ``write`` through a write queue until it succeeds or ``timeout_s`` passes."""
        queue = WriteQueue(self.uri)
        return queue.put(what, write) or queue.drain(timeout_s)

    def parent_run(self, method: str, settings: dict[str, Any],
                   space: dict[str, Any] | None = None) -> str:
        """The method's parent run: reattached on ``--resume``, created otherwise (with the
        searched ``space`` as ``space.json``)."""
        runs = self.client.search_runs(
            [self.experiment_id], f"tags.kind = 'method' and tags.method = '{method}'", max_results=1)
        if runs:
            run_id = runs[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        tags = {"kind": "method", "method": method, **{f"search.{k}": str(v) for k, v in settings.items()}}
        run_id = self.client.create_run(self.experiment_id, run_name=method, tags=tags).info.run_id
        if space is not None:
            self.client.log_dict(run_id, space, SPACE_ARTIFACT)
        return run_id

    def answer_run(self, answer: dict[str, Any]) -> str:
        """``--budget``'s answer on the search's own run (kind ``answer``, one per search; a
        ``--resume`` that finishes again rewrites it): the verdict and the winner as tags, the
        budget and the figures as metrics, the whole record as ``answer.json``."""
        from mlflow.entities import Metric, RunTag

        runs = self.client.search_runs([self.experiment_id], "tags.kind = 'answer'", max_results=1)
        run_id = (runs[0].info.run_id if runs else
                  self.client.create_run(self.experiment_id, run_name="answer",
                                         tags={"kind": "answer"}).info.run_id)
        winner, runner, lead = (answer.get(k) or {} for k in ("winner", "runner_up", "lead"))
        numbers = {"budget_s": answer.get("budget_s"), "budget_used_s": answer.get("used_s"),
                   "budget_used_share": answer.get("used_share"), "winner_score": winner.get("score"),
                   "winner_lo": winner.get("lo"), "winner_hi": winner.get("hi"),
                   "runner_up_score": runner.get("score"), "lead_points": lead.get("points"),
                   "lead_lo": lead.get("lo"), "lead_hi": lead.get("hi")}
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, 0) for k, v in numbers.items()
                   if isinstance(v, (int, float)) and math.isfinite(v)]
        tags = [RunTag("verdict", str(answer.get("verdict", ""))[:4900]),
                RunTag("winner_method", str(winner.get("method", ""))),
                RunTag("runner_up_method", str(runner.get("method", ""))),
                RunTag("split", str(answer.get("split")))]
        self.client.log_batch(run_id, metrics=metrics, tags=tags)
        self.client.log_dict(run_id, answer, "answer.json")
        self.client.set_terminated(run_id, "FINISHED")
        return run_id

    def finish_parent(self, run_id: str, best: dict[str, Any] | None, summary: dict[str, float],
                      checkpoint_dir: str | None = None) -> None:
        """Record the best trial on the parent run (config, metrics, checkpoint) and close it."""
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in summary.items()]
        if best is None:
            self.client.log_batch(run_id, metrics=metrics)
            self.client.set_terminated(run_id, "FAILED")
            return
        metrics += [Metric(k, v, now, 0) for k, v in best["metrics"].items()]
        logged = self.client.get_run(run_id).data.params
        params = [Param(k, str(v)) for k, v in best["config"].items() if k not in logged]
        changed = sorted(k for k, v in best["config"].items() if k in logged and logged[k] != str(v))
        tags = [RunTag("best_config", "true"), RunTag("best_trial_id", best["trial_id"]),
                RunTag("best_run_id", best.get("run_id") or ""),
                RunTag("best_config_changed", ",".join(changed) or "no")]
        for i in range(0, max(len(params), 1), BATCH):
            self.client.log_batch(run_id, metrics=metrics if i == 0 else (),
                                  params=params[i:i + BATCH], tags=tags if i == 0 else ())
        self.client.log_dict(run_id, best["config"], "best_config.json")
        if checkpoint_dir:
            self.client.log_artifacts(run_id, checkpoint_dir, "checkpoint")
        if best.get("run_id"):
            self.client.set_tag(best["run_id"], "best", "true")
        self.client.set_terminated(run_id, "FINISHED")

    def end_run(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status)

    def trial_run_id(self, trial_id: str | None) -> str | None:
        """The MLflow run of a Tune trial, or None when it has none (never created or lost)."""
        if not trial_id:
            return None
        runs = self.client.search_runs([self.experiment_id],
                                       f"tags.kind = 'trial' and tags.trial_id = '{trial_id}'",
                                       max_results=1)
        return runs[0].info.run_id if runs else None

    def tag_design_best(self, design: str, trial_id: str | None) -> bool:
        """Tag the run of a design's best trial ``design_best=true``; a trial without a run
        (its start was never recorded) is said and skipped, never retried as a store failure."""
        run_id = self.trial_run_id(trial_id)
        if run_id is None:
            print(f"[mlflow] design {design}: its best trial {trial_id} has no MLflow run; "
                  "not tagged design_best", flush=True)
            return False
        self.client.set_tag(run_id, "design_best", "true")
        return True

    def close_stale_runs(self, method: str, statuses: dict[str, str], default: str = "KILLED",
                         kind: str = "trial") -> int:
        """Close the method's trial runs still marked RUNNING: ``statuses[trial_id]`` when the
        trial's fate is known (a driver killed before it could record it), else ``default``.
        Returns how many were closed."""
        stale = self.client.search_runs(
            [self.experiment_id], f"tags.kind = '{kind}' and tags.method = '{method}' "
            "and attributes.status = 'RUNNING'", max_results=10000)
        for run in stale:
            self.client.set_terminated(run.info.run_id, statuses.get(run.data.tags.get("trial_id"), default))
        return len(stale)


class TrialRuns:
    """One nested MLflow run per trial: params at start, a batch of metrics per report, tags
    and status at the end. Called through a ``WriteQueue`` by the Tune callback."""

    def __init__(self, uri: str, experiment_id: str, parent_run_id: str, method: str, max_t: int,
                 starts: list[tuple[str, dict[str, Any]]] | None = None, kind: str = "trial") -> None:
        self.uri, self.experiment_id, self.parent_run_id = uri, experiment_id, parent_run_id
        self.method, self.max_t = method, max_t
        self.kind = kind
        """``trial`` (a search trial) or ``confirm`` (a confirmation run: its Tune config is
        ``{"run": <flat train config>}``; the report never counts it as a trial)."""
        self.runs: dict[str, str] = {}  # trial_id -> run_id, saved with the experiment state
        self.starts = list(starts or [])
        """The enqueued (origin, point)s (``search.warm``): the trial running one is tagged."""
        self.started: set[int] = set()  # indices of starts whose trial has its run, saved too
        self.resumed = False
        """Set on a resumed search: a trial may have a run the saved state does not name."""
        self._client = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_client": None}

    def __setstate__(self, state: dict) -> None:  # a state saved before warm starts lacks them
        self.__dict__.update({"starts": [], "started": set(), "kind": "trial", "resumed": False, **state})

    @property
    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def start(self, trial_id: str, trial_config: dict[str, Any]) -> None:
        from mlflow.entities import Param

        from search.warm import origin_of
        from spaces.auto import design_name, is_auto, to_train_config

        run_id = self.runs.get(trial_id) or (self._find_run(trial_id) if self.resumed else None)
        if run_id is not None:  # a restored trial goes on in its run
            self.runs[trial_id] = run_id
            self.client.update_run(run_id, status="RUNNING")
            return
        tags = {"mlflow.parentRunId": self.parent_run_id, "kind": self.kind, "method": self.method,
                "trial_id": trial_id}
        if self.kind == "confirm":
            from search.trainable import RUN_KEY

            trial_config = trial_config[RUN_KEY]
            tags["seed"] = str(trial_config["seed"])
        flat = to_train_config(trial_config).to_flat()
        if is_auto(trial_config):  # --method auto: the concrete design, compared like a method
            tags["design"] = design_name(flat)
        start = origin_of(trial_config, self.starts, self.started)
        if start is not None:  # an enqueued point: "default" or the experiment it came from
            tags["warm_start"] = self.starts[start][0]
        name = f"{self.method}-{'confirm-' if self.kind == 'confirm' else ''}{trial_id}"
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        self.runs[trial_id] = run.info.run_id
        if start is not None:
            self.started.add(start)
        params = [Param(k, str(v)) for k, v in flat.items()]
        for i in range(0, len(params), BATCH):
            self.client.log_batch(run.info.run_id, params=params[i:i + BATCH])

    def _find_run(self, trial_id: str) -> str | None:
        """The run of a trial created before the driver was killed (not in the saved state)."""
        found = self.client.search_runs(
            [self.experiment_id], f"tags.kind = '{self.kind}' and tags.trial_id = '{trial_id}' "
            f"and tags.method = '{self.method}'", max_results=1)
        return found[0].info.run_id if found else None

    def log(self, trial_id: str, metrics: dict[str, float], step: int, timestamp_s: float) -> None:
        from mlflow.entities import Metric

        ts = int(timestamp_s * 1000)
        rows = [Metric(k, v, ts, step) for k, v in metrics.items()]
        self.client.log_batch(self.runs[trial_id], metrics=rows)

    def close(self, trial_id: str, last: dict[str, Any], errored: bool) -> None:
        from mlflow.entities import RunTag

        fate = outcome(last, self.max_t, errored)
        tags = [RunTag("stopped_early", str(fate == STOPPED_EARLY).lower())]
        if last.get("failure"):
            tags.append(RunTag("failure", str(last["failure"])))
        for key in PLACEMENT:  # where the trial ran (search.trainable)
            if key in last:
                tags.append(RunTag(key, str(last[key])))
        run_id = self.runs[trial_id]
        self.client.log_batch(run_id, tags=tags)
        self.client.set_terminated(run_id, "FAILED" if fate == FAILED else "FINISHED")
