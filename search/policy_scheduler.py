"""``PolicyScheduler``: a ``search.policies`` stopping rule run as a Ray Tune scheduler.

After every result of a trial the policy answers go on or stop; trials start in the order
the searcher proposes them (FIFO). A module of its own so the class pickles with the Tuner
(``--resume``) and ``search.schedulers`` can stay free of Ray until one is built.
"""

from __future__ import annotations

import pickle

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from search.policies import STOP, Policy
from search.searchers import METRIC

TIME = "training_iteration"  # one report of the trainer = one evaluation


class PolicyScheduler(FIFOScheduler):
    def __init__(self, policy: Policy) -> None:
        super().__init__()
        self.policy = policy

    def on_trial_add(self, tune_controller, trial) -> None:
        self.policy.add(trial.trial_id)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if TIME not in result or METRIC not in result:
            return TrialScheduler.CONTINUE
        action = self.policy.on_result(trial.trial_id, int(result[TIME]), float(result[METRIC]))
        return TrialScheduler.STOP if action == STOP else TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        if result and TIME in result and METRIC in result:
            self.policy.on_complete(trial.trial_id, int(result[TIME]), float(result[METRIC]))

    def on_trial_remove(self, tune_controller, trial) -> None:
        self.policy.remove(trial.trial_id)

    def debug_string(self) -> str:
        return f"Using {self.policy.name} (search.policies)"

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.policy, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.policy = pickle.load(f)
