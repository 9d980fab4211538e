"""The search's Tune callbacks: terminal progress and the MLflow record of each trial.

``Progress`` prints what a person watches (one line per finished trial, a status line every
30 s: how many trials run, were stopped early, are done, and the best score so far) in place of
Tune's own tables. ``MlflowCallback`` turns Tune's trial events into writes of
``tracking.TrialRuns``, made by a writer thread (``tracking.BackgroundWrites``: queued, in
order, and retried when MLflow fails) so the Tune loop never waits on the tracking store.
``ByMethod`` hands each trial's events to its method's callback in an experiment that holds
several methods (``--budget``'s pool and race rounds).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ray import tune

from search.reported import expand
from search.results import numeric_metrics
from search.tracking import DRAIN_S, RETRY_S, BackgroundWrites, TrialRuns, WriteQueue
from search.trial_outcome import FAILED, FINISHED, STOPPED_EARLY, furthest_best, outcome
from trainers.memory import trim_heap


def result_files() -> list[tune.Callback]:
    """Tune's per-trial ``result.json`` and ``progress.csv``, named here because the search turns
    Tune's automatic loggers off (``driver.start_ray``) to leave out the TensorBoard one: nothing
    reads its event files, and its writer thread took about a tenth of the driver's time in a
    1,000-trial search."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    return [JsonLoggerCallback(), CSVLoggerCallback()]


class DriverMemory(tune.Callback):
    """Keeps the driver's memory to what a search needs (BENCHMARKS.md §14).

    - An ended trial's running windows are dropped: for every numeric key a trial reports, Tune
      keeps two deques (its last 5 and last 10 values) for the whole search, which only serve to
      update "last-5-avg"/"last-10-avg" on the trial's next result; a completed trial gets none
      and is never resumed (``--resume`` restarts unfinished and errored ones). The analysis
      itself (min, max, mean, last and those averages) is kept.
    - Every ``trim_every_s`` seconds glibc is asked to return free pages (``malloc_trim``): the
      experiment-state saves build a JSON text of every trial every ~10 s, and the heap they
      leave behind was not given back.
    """

    def __init__(self, trim_every_s: float = 30.0) -> None:
        self.trim_every_s = trim_every_s
        self._last_trim = time.time()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        trial.run_metadata.metric_n_steps = {}

    def on_step_end(self, iteration, trials, **info) -> None:
        if time.time() - self._last_trim >= self.trim_every_s:
            trim_heap()
            self._last_trim = time.time()


class Progress(tune.Callback):
    def __init__(self, method: str, num_samples: int, max_t: int, every_s: float = 30.0) -> None:
        self.method, self.num_samples, self.max_t, self.every_s = method, num_samples, max_t, every_s
        self.latest: dict[str, tuple[float, int]] = {}  # trial_id -> (last score, its step)
        # trial_id -> when Tune started it (driver clock), when its first training step began
        # (trial clock), when it ended, and the trainer's time split (written as trials.json).
        self.timing: dict[str, dict[str, float]] = {}
        self._start = self._last = time.time()

    def setup(self, **info) -> None:
        self._start = self._last = time.time()

    def _say(self, text: str) -> None:
        print(f"[{self.method} {time.time() - self._start:6.0f}s] {text}", flush=True)

    def _best(self) -> str:
        """The best score among the trials that got furthest: how the search picks its best."""
        if not self.latest:
            return "best: none yet"
        trial_id = furthest_best({t: (step, score) for t, (score, step) in self.latest.items()})
        score, step = self.latest[trial_id]
        return f"best {score:.4f} ({self._label(trial_id)} at step {step})"

    def _label(self, trial_id: str) -> str:
        return trial_id

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        # A restored trial starts again: its clock restarts with the new process.
        self.timing[trial.trial_id] = {"scheduled_at": time.time()}

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        clock = self.timing.setdefault(trial.trial_id, {})
        result = expand(result)
        for key in ("first_step_at", "train_s", "eval_s", "setup_s", "step", "training_iteration"):
            if isinstance(result.get(key), (int, float)):
                clock[key] = float(result[key])
        score = result.get("score")
        if isinstance(score, (int, float)) and score == score:  # not NaN
            self.latest[trial.trial_id] = (float(score), int(result.get("step", 0)))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.timing.setdefault(trial.trial_id, {})["ended_at"] = time.time()
        last = trial.last_result or {}
        fate = outcome(last, self.max_t)
        if fate == FAILED:
            self._say(f"trial {trial.trial_id} FAILED: {last.get('error', last['failure'])} (not "
                      f"retried, never the best); {self._counts(trials, ending=trial, failed=True)}")
            return
        score = last.get("score")
        score_text = f"{score:.4f}" if isinstance(score, (int, float)) else "n/a"
        self._say(f"trial {trial.trial_id} {fate} at eval {int(last.get('training_iteration', 0))}/"
                  f"{self.max_t}: score {score_text}; {self._counts(trials, ending=trial)}; {self._best()}")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.timing.setdefault(trial.trial_id, {})["ended_at"] = time.time()
        where = getattr(trial, "error_file", None) or trial.path
        self._say(f"trial {trial.trial_id} FAILED (see {where}); "
                  f"{self._counts(trials, ending=trial, failed=True)}")

    def on_step_end(self, iteration, trials, **info) -> None:
        if time.time() - self._last >= self.every_s:
            self._last = time.time()
            self._say(f"{self._counts(trials)}; {self._best()}")

    def _counts(self, trials, ending=None, failed: bool = False) -> str:
        """Trial counts by state; ``ending`` is the trial being reported as ended (Tune calls
        the callback before it changes the trial's status)."""

        def fate(t) -> str:
            if t is ending:
                return FAILED if failed else outcome(t.last_result, self.max_t)
            if t.status in ("TERMINATED", "ERROR"):
                return outcome(t.last_result, self.max_t, errored=t.status == "ERROR")
            return t.status

        fates = [fate(t) for t in trials]
        pending = fates.count("PENDING") + fates.count("PAUSED") + self.num_samples - len(trials)
        return (f"{fates.count('RUNNING')} running, {max(pending, 0)} pending, "
                f"{fates.count(STOPPED_EARLY)} stopped early, {fates.count(FINISHED)} finished, "
                f"{fates.count(FAILED)} failed")


class MlflowCallback(tune.Callback):
    """Nested MLflow run per trial: params at start, a batch of metrics per report.

    Every write is queued and a writer thread makes them in order, so the Tune loop never
    waits on the tracking store; when the store fails (a server restarting, a network blip) the
    writes stay queued, training goes on, and the queue is retried every few seconds and at the
    end of the experiment.
    """

    def __init__(self, uri: str, experiment_id: str, parent_run_id: str, method: str, max_t: int,
                 retry_s: float = RETRY_S, starts: list[tuple[str, dict]] | None = None,
                 kind: str = "trial") -> None:
        # starts: the enqueued (origin, point)s; a trial running one gets the tag warm_start.
        # kind: "confirm" records confirmation runs (search.selection.confirm), not search trials.
        self.trial_runs = TrialRuns(uri, experiment_id, parent_run_id, method, max_t, starts, kind)
        self.writes = BackgroundWrites(WriteQueue(uri, retry_s))

    def get_state(self) -> dict:
        with self.writes.lock:  # the writer thread adds runs
            return {"runs": dict(self.trial_runs.runs), "started": sorted(self.trial_runs.started)}

    def set_state(self, state: dict) -> None:
        with self.writes.lock:
            self.trial_runs.runs.update(state.get("runs", {}))
            self.trial_runs.started.update(state.get("started", []))
            self.trial_runs.resumed = True

    def on_experiment_end(self, trials, **info) -> None:
        if not self.writes.drain(DRAIN_S):
            print("[mlflow] those writes are lost from MLflow; every result is still in the Tune "
                  "experiment folder and the search's results.json", flush=True)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        config = dict(trial.config)
        self.writes.add(f"start of trial {trial.trial_id}",
                        lambda: self.trial_runs.start(trial.trial_id, config))

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        step = int(result.get("step", result.get("training_iteration", 0)))
        metrics, ts = numeric_metrics(result), float(result.get("timestamp", time.time()))
        self.writes.add(f"metrics of trial {trial.trial_id} at step {step}",
                        lambda: self.trial_runs.log(trial.trial_id, metrics, step, ts))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        last = dict(trial.last_result or {})
        self.writes.add(f"end of trial {trial.trial_id}",
                        lambda: self.trial_runs.close(trial.trial_id, last, errored=False))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        last = dict(trial.last_result or {})
        self.writes.add(f"end of trial {trial.trial_id}",
                        lambda: self.trial_runs.close(trial.trial_id, last, errored=True))


class ByMethod(tune.Callback):
    """Trial events to the callback of the trial's method; experiment events to all of them."""

    def __init__(self, children: dict[str, tune.Callback]) -> None:
        self.children = children

    def _of(self, trial) -> tune.Callback | None:
        config = trial.config or {}
        run = config.get("run")  # a confirmation run's config: {"run": <flat train config>}
        return self.children.get(config.get("method") or (run or {}).get("method"))

    def _trial_event(name: str) -> Callable:  # noqa: N805 - builds the forwarding methods below
        def forward(self, iteration, trials, trial, *args, **info) -> None:
            child = self._of(trial)
            if child is not None:
                getattr(child, name)(iteration, trials, trial, *args, **info)

        return forward

    on_trial_start = _trial_event("on_trial_start")
    on_trial_result = _trial_event("on_trial_result")
    on_trial_complete = _trial_event("on_trial_complete")
    on_trial_error = _trial_event("on_trial_error")
    on_trial_restore = _trial_event("on_trial_restore")
    on_trial_save = _trial_event("on_trial_save")
    on_checkpoint = _trial_event("on_checkpoint")

    def setup(self, **info) -> None:
        for child in self.children.values():
            child.setup(**info)

    def on_step_end(self, iteration, trials, **info) -> None:
        for child in self.children.values():
            child.on_step_end(iteration, trials, **info)

    def on_experiment_end(self, trials, **info) -> None:
        for child in self.children.values():
            child.on_experiment_end(trials, **info)

    def get_state(self) -> dict | None:
        return {m: c.get_state() for m, c in self.children.items()}

    def set_state(self, state: dict) -> None:
        for m, c in self.children.items():
            if (state or {}).get(m) is not None:
                c.set_state(state[m])
