"""Terminal progress of a search: one line per finished trial, a status line every few seconds.

Tune's own table lists every metric of every trial; this prints what a person watches: how
many trials run, were stopped early, are done, and the best score so far.
"""

from __future__ import annotations

import time

from ray import tune


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
        """The best last-reported score: how the search picks its best trial."""
        if not self.latest:
            return "best: none yet"
        trial_id, (score, step) = max(self.latest.items(), key=lambda kv: kv[1][0])
        return f"best {score:.4f} ({trial_id} at step {step})"

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        # A restored trial starts again: its clock restarts with the new process.
        self.timing[trial.trial_id] = {"scheduled_at": time.time()}

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        clock = self.timing.setdefault(trial.trial_id, {})
        for key in ("first_step_at", "train_s", "eval_s", "setup_s", "step", "training_iteration"):
            if isinstance(result.get(key), (int, float)):
                clock[key] = float(result[key])
        score = result.get("score")
        if isinstance(score, (int, float)) and score == score:  # not NaN
            self.latest[trial.trial_id] = (float(score), int(result.get("step", 0)))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.timing.setdefault(trial.trial_id, {})["ended_at"] = time.time()
        last = trial.last_result or {}
        if last.get("failure"):
            self._say(f"trial {trial.trial_id} FAILED: {last.get('error', last['failure'])} (not "
                      f"retried, never the best); {self._counts(trials, ending=trial, failed=True)}")
            return
        done = int(last.get("training_iteration", 0))
        how = "finished" if done >= self.max_t else "stopped early"
        score = last.get("score")
        score_text = f"{score:.4f}" if isinstance(score, (int, float)) else "n/a"
        self._say(f"trial {trial.trial_id} {how} at eval {done}/{self.max_t}: score {score_text}; "
                  f"{self._counts(trials, ending=trial)}; {self._best()}")

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

        def status(t) -> str:
            if t is ending:
                return "ERROR" if failed else "TERMINATED"
            if t.status == "TERMINATED" and (t.last_result or {}).get("failure"):
                return "ERROR"
            return t.status

        running = sum(status(t) == "RUNNING" for t in trials)
        pending = sum(status(t) in ("PENDING", "PAUSED") for t in trials) + self.num_samples - len(trials)
        failed_n = sum(status(t) == "ERROR" for t in trials)
        ended = [t for t in trials if status(t) == "TERMINATED"]
        early = sum(int((t.last_result or {}).get("training_iteration", 0)) < self.max_t for t in ended)
        return (f"{running} running, {max(pending, 0)} pending, {early} stopped early, "
                f"{len(ended) - early} finished, {failed_n} failed")
