"""``PolicyScheduler``: a ``search.schedule.policies`` stopping rule run as a Ray Tune scheduler.

After every result of a trial the policy answers go on or stop; trials start in the order
the searcher proposes them (FIFO). A module of its own so the class pickles with the Tuner
(``--resume``) and ``search.schedule.schedulers`` can stay free of Ray until one is built.

Its state survives ``--resume``. Tune saves the searcher's and the callbacks' state with the
experiment, never the scheduler's: a restored Tuner runs the scheduler as it was pickled when the
search started, with empty rungs (ray-project/ray#30838). So after every decision the scheduler
writes its policy and its decisions to ``STATE_FILE`` in the experiment's driver folder; Tune
uploads that folder with each experiment checkpoint and, on restore, downloads its ``.pkl``
files before it adds the restored trials, when this scheduler reads the file back. The file
may be newer than the trial states Tune restores: a trial then reports an evaluation again,
and gets the decision it got the first time.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from search.schedule.policies import STOP, Policy
from search.searchers import METRIC

TIME = "training_iteration"  # one report of the trainer = one evaluation
STATE_FILE = "policy_scheduler.pkl"


class PolicyScheduler(FIFOScheduler):
    def __init__(self, policy: Policy) -> None:
        super().__init__()
        self.policy = policy
        self.decided: dict[tuple[str, int], str] = {}
        """(trial, evaluation) -> the policy's answer: a repeated report gets the same one."""
        self._folder: Path | None = None  # the experiment's driver folder, from the first trial

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_folder": None}

    def on_trial_add(self, tune_controller, trial) -> None:
        self._load_once(trial)
        self.policy.add(trial.trial_id)

    def _load_once(self, trial) -> None:
        """At the first trial: learn the experiment's folder and, in a restored search, read the
        saved state back."""
        if self._folder is None:
            self._folder = Path(trial.storage.experiment_driver_staging_path)
            if (self._folder / STATE_FILE).exists():
                self.restore(str(self._folder / STATE_FILE))

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if TIME not in result or METRIC not in result:
            return TrialScheduler.CONTINUE
        key = (trial.trial_id, int(result[TIME]))
        if key not in self.decided:
            self.decided[key] = self.policy.on_result(key[0], key[1], float(result[METRIC]))
            self._write()
        return TrialScheduler.STOP if self.decided[key] == STOP else TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        if result and TIME in result and METRIC in result:
            self.policy.on_complete(trial.trial_id, int(result[TIME]), float(result[METRIC]))
            self._write()

    def on_trial_remove(self, tune_controller, trial) -> None:
        self.policy.remove(trial.trial_id)

    def debug_string(self) -> str:
        return f"Using {self.policy.name} (search.schedule.policies)"

    def _write(self) -> None:
        """The state to ``STATE_FILE``, written whole beside the folder Tune uploads (which an
        upload may be listing right now), then renamed into it."""
        if self._folder is not None:
            tmp = self._folder.parent / f".{STATE_FILE}.tmp"
            self.save(str(tmp))
            os.replace(tmp, self._folder / STATE_FILE)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump((self.policy, self.decided), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.policy, self.decided = pickle.load(f)
