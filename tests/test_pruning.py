"""Bounded disk (search.pruning): ended trials keep their checkpoint only while among the best
``keep``, ranked as the search picks its best (further evaluations first, then the score)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest
from ray import tune

from search.pruning import CheckpointPruner, rank


@dataclass
class Ended:
    """What the pruner reads of a Tune trial that ended."""

    trial_id: str
    last_result: dict
    checkpoint: tune.Checkpoint | None


def _trial(tmp_path: Path, trial_id: str, iterations: int, score: float, size: int = 1000) -> Ended:
    folder = tmp_path / trial_id / "checkpoint_000000"
    folder.mkdir(parents=True)
    (folder / "state.pt").write_bytes(b"x" * size)
    return Ended(trial_id, {"training_iteration": iterations, "score": score},
                 tune.Checkpoint.from_directory(str(folder)))


def test_rank_puts_further_trials_first_and_non_finite_scores_last():
    assert rank({"training_iteration": 3, "score": 0.1}) > rank({"training_iteration": 2, "score": 0.9})
    assert rank({"training_iteration": 3, "score": 0.5}) > rank({"training_iteration": 3, "score": 0.4})
    assert rank({"training_iteration": 3, "score": math.nan}) < rank({"training_iteration": 3, "score": 0.0})
    assert rank({}) == (0, -math.inf)


def test_pruner_keeps_the_best_ended_trials_and_deletes_the_rest(tmp_path):
    pruner = CheckpointPruner(keep=2)
    trials = [_trial(tmp_path, "a", 1, 0.9), _trial(tmp_path, "b", 3, 0.2), _trial(tmp_path, "c", 3, 0.6),
              _trial(tmp_path, "d", 3, math.nan), _trial(tmp_path, "e", 3, 0.4)]
    for i, t in enumerate(trials):
        pruner.on_trial_complete(i, trials, t)
    on_disk = {t.trial_id for t in trials if Path(t.checkpoint.path).exists()}
    # 'a' scored best but stopped at the first rung: a full-budget trial outranks it
    assert on_disk == {"c", "e"}
    assert pruner.deleted == 3 and pruner.freed == 3000
    assert set(pruner.kept) == {"c", "e"}


def test_pruner_state_survives_a_resume_and_keeps_counting(tmp_path):
    trials = [_trial(tmp_path, t, 2, s) for t, s in (("a", 0.5), ("b", 0.7), ("c", 0.1))]
    first = CheckpointPruner(keep=2)
    for t in trials[:2]:
        first.on_trial_complete(0, trials, t)
    resumed = CheckpointPruner(keep=2)  # a new driver, Tune's saved callback state set on it
    resumed.set_state(first.get_state())
    resumed.on_trial_complete(0, trials, trials[2])  # the worst: its own checkpoint goes
    assert not Path(trials[2].checkpoint.path).exists()
    assert all(Path(t.checkpoint.path).exists() for t in trials[:2])
    more = _trial(tmp_path, "d", 2, 0.9)
    trials.append(more)
    resumed.on_trial_complete(0, trials, more)  # pushes out 'a', ended before the resume
    assert not Path(trials[0].checkpoint.path).exists() and resumed.deleted == 2


def test_pruner_leaves_running_trials_alone_and_refuses_keep_zero(tmp_path):
    running = _trial(tmp_path, "r", 1, 0.0)
    ended = [_trial(tmp_path, t, 3, 0.5) for t in "xy"]
    pruner = CheckpointPruner(keep=1)
    for t in ended:
        pruner.on_trial_complete(0, [running, *ended], t)
    assert Path(running.checkpoint.path).exists()  # never completed: --resume restarts it from there
    assert sum(Path(t.checkpoint.path).exists() for t in ended) == 1
    with pytest.raises(ValueError, match="at least 1"):
        CheckpointPruner(keep=0)
