"""Bounded disk: the checkpoints of ended trials that can no longer be the search's pick are
deleted as trials end, so a search's storage grows with the trials kept, not with the trials
run.

A trial that ended (finished, or stopped by the scheduler: ASHA's and PASHA's stops are final)
is ranked as ``search.results.pick_best`` ranks the search's trials: further evaluations first,
then the better last score. The best ``keep`` ended trials keep their checkpoint (the pick is
one of them, and the whole-dev rescoring of a pick stopped early reads it); each trial pushed
out of that set loses its checkpoint at once. Running, paused and errored trials are never
touched: ``--resume`` restarts them from their checkpoints. The kept set is part of the Tune
experiment's state, so a resumed search goes on with it.
"""

from __future__ import annotations

import math
from typing import Any

from ray import tune

from search.searchers import METRIC


def rank(last: dict[str, Any]) -> tuple[int, float]:
    """An ended trial's place in the search (higher is better): evaluations run, last score
    (a missing or non-finite score ranks below every finite one)."""
    score = float(last.get(METRIC, math.nan))
    return int(last.get("training_iteration", 0)), score if math.isfinite(score) else -math.inf


def delete_checkpoint(checkpoint) -> int:
    """Delete a Tune ``Checkpoint``'s folder on its filesystem (local or cloud); its bytes
    (0 when it was already gone)."""
    import pyarrow.fs as pafs

    fs, path = checkpoint.filesystem, checkpoint.path
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return 0
    size = sum(f.size or 0 for f in fs.get_file_info(pafs.FileSelector(path, recursive=True))
               if f.type == pafs.FileType.File)
    fs.delete_dir(path)
    return size


class CheckpointPruner(tune.Callback):
    """Keeps the checkpoints of the ``keep`` best ended trials and deletes the others'."""

    def __init__(self, keep: int, method: str = "") -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1 (the search's pick), not {keep}")
        self.keep = keep
        self.method = method
        self.kept: dict[str, tuple[int, float]] = {}  # trial id -> rank
        self.deleted = 0
        self.freed = 0

    def get_state(self) -> dict:
        return {"kept": {t: list(r) for t, r in self.kept.items()}, "deleted": self.deleted,
                "freed": self.freed}

    def set_state(self, state: dict) -> None:
        self.kept = {t: (int(r[0]), float(r[1])) for t, r in state.get("kept", {}).items()}
        self.deleted = int(state.get("deleted", 0))
        self.freed = int(state.get("freed", 0))

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self.kept[trial.trial_id] = rank(trial.last_result or {})
        if len(self.kept) <= self.keep:
            return
        worst = min(self.kept, key=lambda t: (self.kept[t], t))
        del self.kept[worst]
        checkpoint = next((t.checkpoint for t in trials if t.trial_id == worst), None)
        if checkpoint is not None:
            self.freed += delete_checkpoint(checkpoint)
            self.deleted += 1

    def on_experiment_end(self, trials: list, **info) -> None:
        if self.deleted:
            name = f"[{self.method}] " if self.method else ""
            print(f"{name}disk: deleted the checkpoints of {self.deleted} ended trials "
                  f"({self.freed / 2**20:.1f} MiB), kept the best {len(self.kept)}", flush=True)
