"""MLflow record of a search: one experiment, a parent run per method, a nested run per trial.

Only the driver writes to MLflow (a Tune ``Callback``), in batches, so 32 concurrent trials
never open 32 writers on a SQLite file; writes that fail (a tracking server restarting) are
queued and retried while the search goes on. At the end each method's parent run receives its best
trial's config (params and ``best_config.json``), metrics and checkpoint, and the tag
``best_config=true``: filter on it in the MLflow UI to see every method's best side by side.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray import tune

from search.report_data import SPACE_ARTIFACT
from search.results import numeric_metrics, resolved_config
from spaces.auto import design_name, is_auto

_BATCH = 100  # MLflow's limit of params per log_batch call
DRAIN_S = 300.0  # at the end of a method, how long queued MLflow writes are retried


def ui_hint(uri: str) -> str:
    if uri.startswith(("http://", "https://")):
        return f"open {uri} (on a cluster: ray attach cluster.yaml -p 5000, then http://127.0.0.1:5000)"
    return f"mlflow ui --backend-store-uri {uri}   (then open http://127.0.0.1:5000)"


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
        if space is not None:  # what the report plots each trial's values against
            self.client.log_dict(run_id, space, SPACE_ARTIFACT)
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
        for i in range(0, max(len(params), 1), _BATCH):
            self.client.log_batch(run_id, metrics=metrics if i == 0 else (),
                                  params=params[i:i + _BATCH], tags=tags if i == 0 else ())
        self.client.log_dict(run_id, best["config"], "best_config.json")
        if checkpoint_dir:
            self.client.log_artifacts(run_id, checkpoint_dir, "checkpoint")
        if best.get("run_id"):
            self.client.set_tag(best["run_id"], "best", "true")
        self.client.set_terminated(run_id, "FINISHED")


    def close_stale_runs(self, method: str, statuses: dict[str, str], default: str = "KILLED") -> int:
        """Close the method's trial runs still marked RUNNING: ``statuses[trial_id]`` when the
        trial's fate is known (a driver killed before it could record it), else ``default``.
        Returns how many were closed."""
        stale = self.client.search_runs(
            [self.experiment_id], f"tags.kind = 'trial' and tags.method = '{method}' "
            "and attributes.status = 'RUNNING'", max_results=10000)
        for run in stale:
            self.client.set_terminated(run.info.run_id, statuses.get(run.data.tags.get("trial_id"), default))
        return len(stale)


class MlflowCallback(tune.Callback):
    """Nested MLflow run per trial: params at start, a batch of metrics per report.

    Every write is queued and the queue is drained in order; when the tracking store fails
    (a server restarting, a network blip) the writes stay queued, training goes on, and the
    queue is retried every ``retry_s`` seconds and at the end of the experiment.
    """

    def __init__(self, uri: str, experiment_id: str, parent_run_id: str, method: str,
                 max_t: int, retry_s: float = 5.0) -> None:
        self.uri, self.experiment_id, self.parent_run_id = uri, experiment_id, parent_run_id
        self.method, self.max_t, self.retry_s = method, max_t, retry_s
        self.runs: dict[str, str] = {}  # trial_id -> run_id, saved with the experiment state
        self._client = None
        self._pending: deque[tuple[str, Callable[[], None]]] = deque()
        self._failing_since: float | None = None
        self._last_try = 0.0

    # The Tuner pickles its callbacks with the experiment; client and queue are rebuilt.
    def __getstate__(self) -> dict:
        return {**self.__dict__, "_client": None, "_pending": deque(), "_failing_since": None}

    @property
    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def get_state(self) -> dict:
        return {"runs": dict(self.runs)}

    def set_state(self, state: dict) -> None:
        self.runs.update(state.get("runs", {}))

    # ---- the write queue ----------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return len(self._pending)

    def _queue(self, what: str, write: Callable[[], None]) -> None:
        self._pending.append((what, write))
        self.flush()

    def flush(self) -> bool:
        """Run queued writes in order; stop at the first failure. True when none is left."""
        self._last_try = time.time()
        while self._pending:
            what, write = self._pending[0]
            try:
                write()
            except Exception as e:  # noqa: BLE001 - any store failure: keep the write, go on
                if self._failing_since is None:
                    self._failing_since = time.time()
                    print(f"[mlflow] {self.uri} failed at {what}: {type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200] if str(e) else ''}; training goes on, "
                          f"{len(self._pending)} write(s) queued and retried every {self.retry_s:g}s",
                          flush=True)
                return False
            self._pending.popleft()
        if self._failing_since is not None:
            print(f"[mlflow] {self.uri} reachable again after {time.time() - self._failing_since:.0f}s; "
                  "queued writes done", flush=True)
            self._failing_since = None
        return True

    def drain(self, timeout_s: float) -> bool:
        """Retry the queue until it is empty or ``timeout_s`` has passed."""
        deadline = time.time() + timeout_s
        while not self.flush() and time.time() < deadline:
            time.sleep(min(self.retry_s, max(0.0, deadline - time.time())))
        return not self._pending

    def on_step_end(self, iteration, trials, **info) -> None:
        if self._pending and time.time() - self._last_try >= self.retry_s:
            self.flush()

    def on_experiment_end(self, trials, **info) -> None:
        if not self.drain(timeout_s=DRAIN_S):
            print(f"[mlflow] {len(self._pending)} write(s) to {self.uri} could not be made in "
                  f"{DRAIN_S:.0f}s and are lost from MLflow; every result is still in the Tune "
                  "experiment folder and the search's results.json", flush=True)

    # ---- trial events -------------------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._queue(f"start of trial {trial.trial_id}", lambda: self._start_run(trial))

    def _start_run(self, trial) -> None:
        from mlflow.entities import Param

        run_id = self.runs.get(trial.trial_id) or self._find_run(trial.trial_id)
        if run_id is not None:  # a restored trial goes on in its run
            self.runs[trial.trial_id] = run_id
            self.client.update_run(run_id, status="RUNNING")
            return
        tags = {"mlflow.parentRunId": self.parent_run_id, "kind": "trial", "method": self.method,
                "trial_id": trial.trial_id}
        flat = resolved_config(trial.config)
        if is_auto(trial.config):  # --method auto: the concrete design, compared like a method
            tags["design"] = design_name(flat)
        run = self.client.create_run(self.experiment_id, run_name=f"{self.method}-{trial.trial_id}",
                                     tags=tags)
        self.runs[trial.trial_id] = run.info.run_id
        params = [Param(k, str(v)) for k, v in flat.items()]
        for i in range(0, len(params), _BATCH):
            self.client.log_batch(run.info.run_id, params=params[i:i + _BATCH])

    def _find_run(self, trial_id: str) -> str | None:
        """The run of a trial created before the driver was killed (not in the saved state)."""
        found = self.client.search_runs(
            [self.experiment_id], f"tags.kind = 'trial' and tags.trial_id = '{trial_id}' "
            f"and tags.method = '{self.method}'", max_results=1)
        return found[0].info.run_id if found else None

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        from mlflow.entities import Metric

        step = int(result.get("step", result.get("training_iteration", 0)))
        ts = int(result.get("timestamp", time.time()) * 1000)
        metrics = [Metric(k, v, ts, step) for k, v in numeric_metrics(result).items()]
        self._queue(f"metrics of trial {trial.trial_id} at step {step}",
                    lambda: self.client.log_batch(self.runs[trial.trial_id], metrics=metrics))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        last = dict(trial.last_result or {})
        status = "FAILED" if last.get("failure") else "FINISHED"
        self._queue(f"end of trial {trial.trial_id}", lambda: self._close(trial.trial_id, last, status))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        last = dict(trial.last_result or {})
        self._queue(f"end of trial {trial.trial_id}", lambda: self._close(trial.trial_id, last, "FAILED"))

    def _close(self, trial_id: str, last: dict, status: str) -> None:
        from mlflow.entities import RunTag

        run_id = self.runs[trial_id]
        early = status == "FINISHED" and int(last.get("training_iteration", 0)) < self.max_t
        tags = [RunTag("stopped_early", str(early).lower())]
        if last.get("failure"):
            tags.append(RunTag("failure", str(last["failure"])))
        if "node_id" in last:
            tags.append(RunTag("node_id", str(last["node_id"])))
        self.client.log_batch(run_id, tags=tags)
        self.client.set_terminated(run_id, status)
