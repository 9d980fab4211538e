"""Bounded disk: a search's storage grows with the trials kept, not with trials x evaluations.

Two kinds of checkpoint are deleted:

- superseded: a trial's checkpoints older than the one it saved last (a trial resumes from its
  latest);
- pushed out: every checkpoint of an ended trial (finished, or stopped by the scheduler:
  ASHA's and PASHA's stops are final) that is no longer among the best ``keep`` ended trials,
  ranked as ``search.results.pick_best`` ranks them: further evaluations first, then the better
  last score. The pick is one of the kept (the whole-dev rescoring of a pick stopped early reads
  its checkpoint).

Tune's own ``CheckpointConfig(num_to_keep)`` would do the first, but it saves the whole
experiment state after every trial checkpoint: a cost that grows with the trials of the search,
paid once per checkpoint (the driver slowed down as a search grew: BENCHMARKS.md section 13).
Here the experiment state is saved on Tune's own period, and a checkpoint is deleted only when
two saves of the experiment state have begun since it became deletable, so the state a
``--resume`` (or a restart after a killed driver) reads never points at a deleted checkpoint.

A driver killed between two saves leaves trials whose folders hold checkpoints newer than the
saved state knows; the resumed trial writes those names again. So a checkpoint that is
registered again is never deleted for an earlier reason, only folders older than a trial's
latest count as superseded, and a trial's newer leftovers go when it ends. Running, paused and
errored trials always keep their latest checkpoint. The kept set is part of the experiment
state, so a resumed search goes on with it.
"""

from __future__ import annotations

import math
import posixpath
import re
from typing import Any

from ray import tune

from search.searchers import METRIC

FOLDER = re.compile(r"checkpoint_(\d+)$")  # Tune's checkpoint folders inside a trial's folder


def rank(last: dict[str, Any]) -> tuple[int, float]:
    """An ended trial's place in the search (higher is better): evaluations run, last score
    (a missing or non-finite score ranks below every finite one)."""
    score = float(last.get(METRIC, math.nan))
    return int(last.get("training_iteration", 0)), score if math.isfinite(score) else -math.inf


def _index(path: str) -> int | None:
    m = FOLDER.search(path.rstrip("/"))
    return int(m.group(1)) if m else None


def trial_folders(checkpoint) -> dict[str, int]:
    """Every checkpoint folder of the trial ``checkpoint`` (a Tune ``Checkpoint``) belongs to,
    on its filesystem (local or cloud): path -> index."""
    import pyarrow.fs as pafs

    parent = posixpath.dirname(checkpoint.path.rstrip("/"))
    entries = checkpoint.filesystem.get_file_info(pafs.FileSelector(parent, allow_not_found=True))
    found = {e.path.rstrip("/"): _index(e.path) for e in entries if e.type == pafs.FileType.Directory}
    return {p: i for p, i in found.items() if i is not None}


def delete_folder(fs, path: str) -> int:
    """Delete a folder on ``fs``; its bytes (0 when it was already gone)."""
    import pyarrow.fs as pafs

    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return 0
    size = sum(f.size or 0 for f in fs.get_file_info(pafs.FileSelector(path, recursive=True))
               if f.type == pafs.FileType.File)
    fs.delete_dir(path)
    return size


class CheckpointPruner(tune.Callback):
    """Keeps the latest checkpoint of each trial while it runs and, once trials end, only
    those of the ``keep`` best; deletes the rest (see the module docstring for when)."""

    def __init__(self, keep: int, method: str = "") -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1 (the search's pick), not {keep}")
        self.keep = keep
        self.method = method
        self.kept: dict[str, tuple[int, float]] = {}  # ended trial id -> rank
        self.pushed_out = 0  # ended trials whose checkpoints were deleted
        self.deleted = 0  # checkpoint folders deleted
        self.freed = 0  # their bytes
        self._latest: dict[str, str] = {}  # trial id -> its latest checkpoint's path (never deleted)
        self._pending: dict[str, Any] = {}  # path -> filesystem: deletable since the last save
        self._ready: dict[str, Any] = {}  # deletable since before the last save

    def _queue(self, checkpoint, keep_from: int | None, spare: str | None = None) -> None:
        """Queue the trial's checkpoint folders but ``spare``; with ``keep_from``, only those
        older than it (a folder with a higher index may be the trial's next checkpoint being
        written)."""
        for path, index in trial_folders(checkpoint).items():
            if (keep_from is None or index < keep_from) and path != spare and path not in self._ready:
                self._pending[path] = checkpoint.filesystem

    def _delete(self, folders: dict[str, Any]) -> None:
        live = set(self._latest.values())
        for path, fs in folders.items():
            if path in live:
                continue
            size = delete_folder(fs, path)
            self.freed += size
            self.deleted += 1 if size else 0

    def on_checkpoint(self, iteration: int, trials: list, trial, checkpoint, **info) -> None:
        path = checkpoint.path.rstrip("/")
        self._latest[trial.trial_id] = path
        self._pending.pop(path, None)  # written again (a resumed trial): no earlier reason holds
        self._ready.pop(path, None)
        index = _index(path)
        if index is not None:
            self._queue(checkpoint, keep_from=index)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self.kept[trial.trial_id] = rank(trial.last_result or {})
        if trial.checkpoint is not None:  # newer leftovers of a killed driver: nobody writes them now
            latest = trial.checkpoint.path.rstrip("/")
            self._latest[trial.trial_id] = latest
            self._queue(trial.checkpoint, keep_from=None, spare=latest)
        if len(self.kept) <= self.keep:
            return
        worst = min(self.kept, key=lambda t: (self.kept[t], t))
        del self.kept[worst]
        self.pushed_out += 1
        self._latest.pop(worst, None)
        checkpoint = next((t.checkpoint for t in trials if t.trial_id == worst), None)
        if checkpoint is not None:
            self._queue(checkpoint, keep_from=None)

    def get_state(self) -> dict:
        # Tune asks for this while it saves the experiment state: what was deletable before
        # the previous save began is referenced by neither that save nor this one.
        ready, self._ready, self._pending = self._ready, self._pending, {}
        self._delete(ready)
        return {"kept": {t: list(r) for t, r in self.kept.items()}, "pushed_out": self.pushed_out,
                "deleted": self.deleted, "freed": self.freed}

    def set_state(self, state: dict) -> None:
        self.kept = {t: (int(r[0]), float(r[1])) for t, r in state.get("kept", {}).items()}
        self.pushed_out = int(state.get("pushed_out", 0))
        self.deleted = int(state.get("deleted", 0))
        self.freed = int(state.get("freed", 0))

    def on_experiment_end(self, trials: list, **info) -> None:
        # What is ready goes; what became deletable since the last save goes too when every
        # trial has finished (no resume restarts any of them).
        done = all(t.status == "TERMINATED" for t in trials)
        self._delete({**self._ready, **self._pending} if done else self._ready)
        self._ready, self._pending = {}, {}
        if self.deleted:
            name = f"[{self.method}] " if self.method else ""
            print(f"{name}disk: deleted the checkpoints of {self.pushed_out} ended trials and the "
                  f"superseded ones ({self.deleted} folders, {self.freed / 2**20:.1f} MiB); kept the "
                  f"best {len(self.kept)}", flush=True)
