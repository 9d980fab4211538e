"""Bounded disk (search.pruning): a trial keeps its latest checkpoint while it runs; ended
trials keep theirs only while among the best ``keep``, ranked as the search picks its best
(further evaluations first, then the score); nothing is deleted before two saves of the
experiment state have begun since it became deletable, and a checkpoint written again after a
resume is never deleted for an earlier reason."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest
from ray import tune

from search.pruning import CheckpointPruner, rank


@dataclass
class Trial:
    """What the pruner reads of a Tune trial."""

    trial_id: str
    last_result: dict
    checkpoint: tune.Checkpoint | None = None
    status: str = "TERMINATED"


def save(tmp_path: Path, trial: Trial, index: int, size: int = 1000) -> tune.Checkpoint:
    """A checkpoint folder as Tune writes it (trial folder / checkpoint_00000i)."""
    folder = tmp_path / trial.trial_id / f"checkpoint_{index:06d}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "state.pt").write_bytes(b"x" * size)
    trial.checkpoint = tune.Checkpoint.from_directory(str(folder))
    return trial.checkpoint


def ended(tmp_path: Path, trial_id: str, iterations: int, score: float) -> Trial:
    trial = Trial(trial_id, {"training_iteration": iterations, "score": score})
    save(tmp_path, trial, iterations - 1)
    return trial


def on_disk(tmp_path: Path, trial: Trial) -> list[str]:
    return sorted(p.name for p in (tmp_path / trial.trial_id).glob("checkpoint_*"))


def names(*indices: int) -> list[str]:
    return [f"checkpoint_{i:06d}" for i in indices]


def test_rank_puts_further_trials_first_and_non_finite_scores_last():
    assert rank({"training_iteration": 3, "score": 0.1}) > rank({"training_iteration": 2, "score": 0.9})
    assert rank({"training_iteration": 3, "score": 0.5}) > rank({"training_iteration": 3, "score": 0.4})
    assert rank({"training_iteration": 3, "score": math.nan}) < rank({"training_iteration": 3, "score": 0.0})
    assert rank({}) == (0, -math.inf)


def test_ended_trials_outside_the_best_lose_their_checkpoints(tmp_path):
    pruner = CheckpointPruner(keep=2)
    trials = [ended(tmp_path, "a", 1, 0.9), ended(tmp_path, "b", 3, 0.2), ended(tmp_path, "c", 3, 0.6),
              ended(tmp_path, "d", 3, math.nan), ended(tmp_path, "e", 3, 0.4)]
    for i, t in enumerate(trials):
        pruner.on_trial_complete(i, trials, t)
    assert all(on_disk(tmp_path, t) for t in trials)  # no save of the experiment state yet
    pruner.on_experiment_end(trials)
    # 'a' scored best but stopped at the first rung: full-budget trials outrank it
    assert {t.trial_id for t in trials if on_disk(tmp_path, t)} == {"c", "e"}
    assert pruner.pushed_out == 3 and pruner.deleted == 3 and pruner.freed == 3000
    assert set(pruner.kept) == {"c", "e"}


def test_a_running_trial_keeps_its_latest_and_deletions_wait_for_two_state_saves(tmp_path):
    pruner = CheckpointPruner(keep=1)
    running = Trial("r", {}, status="RUNNING")
    trials = [running]
    for i in range(3):
        pruner.on_checkpoint(i, trials, running, save(tmp_path, running, i))
    assert on_disk(tmp_path, running) == names(0, 1, 2)
    pruner.get_state()  # this save points at checkpoint 2; the one before may point at 0 or 1
    assert on_disk(tmp_path, running) == names(0, 1, 2)
    pruner.get_state()  # two saves since they were superseded: they go
    assert on_disk(tmp_path, running) == names(2)
    pruner.on_checkpoint(3, trials, running, save(tmp_path, running, 3))
    pruner.get_state()
    pruner.get_state()
    assert on_disk(tmp_path, running) == names(3)  # the latest, always
    pruner.on_experiment_end(trials)  # interrupted: the running trial's latest stays for --resume
    assert on_disk(tmp_path, running) == names(3)


def test_a_resumed_trial_writing_old_names_again_never_loses_its_latest(tmp_path):
    """A killed driver's saved state knew checkpoint 1 of a trial that had written up to 4; the
    resumed trial restores from 1 and writes 2, 3, 4 again while the driver prunes."""
    pruner = CheckpointPruner(keep=1)
    trial = Trial("t", {"training_iteration": 5, "score": 0.5}, status="RUNNING")
    for i in range(5):
        save(tmp_path, trial, i)  # left by the killed driver's search
    pruner.on_checkpoint(0, [trial], trial, save(tmp_path, trial, 2))  # the resumed trial's first
    pruner.get_state()
    pruner.get_state()
    assert on_disk(tmp_path, trial) == names(2, 3, 4)  # 0 and 1 superseded; 3 and 4 may be written now
    pruner.on_checkpoint(0, [trial], trial, save(tmp_path, trial, 3))
    pruner.get_state()
    pruner.on_checkpoint(0, [trial], trial, save(tmp_path, trial, 4))
    pruner.get_state()
    assert names(4)[0] in on_disk(tmp_path, trial)
    pruner.get_state()
    assert on_disk(tmp_path, trial) == names(4)
    trial.status = "TERMINATED"
    pruner.on_trial_complete(0, [trial], trial)
    pruner.on_experiment_end([trial])
    assert on_disk(tmp_path, trial) == names(4)  # the kept trial's latest


def test_a_kept_trial_that_ended_early_loses_its_newer_leftovers(tmp_path):
    pruner = CheckpointPruner(keep=1)
    trial = Trial("t", {"training_iteration": 2, "score": 0.5})
    for i in range(4):
        save(tmp_path, trial, i)  # a killed driver's search had written up to 3
    pruner.on_checkpoint(0, [trial], trial, save(tmp_path, trial, 1))  # the resumed run stops at 1
    pruner.on_trial_complete(0, [trial], trial)
    pruner.on_experiment_end([trial])
    assert on_disk(tmp_path, trial) == names(1)


def test_pruner_state_survives_a_resume_and_keeps_counting(tmp_path):
    trials = [ended(tmp_path, t, 2, s) for t, s in (("a", 0.5), ("b", 0.7), ("c", 0.1))]
    first = CheckpointPruner(keep=2)
    for t in trials[:2]:
        first.on_trial_complete(0, trials, t)
    resumed = CheckpointPruner(keep=2)  # a new driver, Tune's saved callback state set on it
    resumed.set_state(first.get_state())
    resumed.on_trial_complete(0, trials, trials[2])  # the worst: its own checkpoint goes
    more = ended(tmp_path, "d", 2, 0.9)
    trials.append(more)
    resumed.on_trial_complete(0, trials, more)  # pushes out 'a', which ended before the resume
    resumed.on_experiment_end(trials)
    assert {t.trial_id for t in trials if on_disk(tmp_path, t)} == {"b", "d"}
    assert resumed.pushed_out == 2 and set(resumed.get_state()["kept"]) == {"b", "d"}


def test_keep_zero_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        CheckpointPruner(keep=0)
