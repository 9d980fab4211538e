"""Which rows a run trains on, selects on and reports as test.

Three roles: ``train`` (what the optimiser sees), ``dev`` (the validation rows every evaluation
scores, so every choice a search makes rests on them) and ``test`` (rows no selection step
reads: the score reported for a search's final pick). Without ``val_from_train`` they are the
task's train, dev and (labelled) test files. With it, a seeded, stratified share of each
task's train file becomes the validation set and the dev file becomes the test set: the
CS224N layout, whose own test files carry no labels.
"""

from __future__ import annotations

import zlib

import numpy as np

from trainers.fidelity import strata, subset_order
from trainers.tasks import TaskSpec

SPLITS = ("train", "dev", "test")
CARVE_SEED = 7919
"""The constant seed of the carved validation rows: every trial and run of a search (whatever
its training seed) holds out the same rows."""


def carve(spec: TaskSpec, labels: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """``(train_rows, validation_rows)``: about ``fraction`` of each stratum (class, or label
    quintile for regression) goes to validation, at least one row of a task and never all.
    Both index arrays are sorted (file order)."""
    n = len(labels)
    rng = np.random.default_rng([CARVE_SEED, zlib.crc32(spec.name.encode())])
    groups = strata(spec, labels)
    take: list[np.ndarray] = []
    for c in np.unique(groups):
        members = rng.permutation(np.flatnonzero(groups == c))
        take.append(members[:int(round(fraction * len(members)))])
    val = np.sort(np.concatenate(take)) if take else np.zeros(0, dtype=np.int64)
    if len(val) == 0 and n > 1:  # a tiny task: one row rather than none
        val = np.array([int(rng.integers(n))])
    if len(val) >= n:
        raise ValueError(f"task {spec.name}: --val-from-train {fraction:g} leaves no training rows "
                         f"of its {n}")
    train = np.setdiff1d(np.arange(n), val)
    return train, val


SHOT_SEED = 104729
"""Mixed with ``sample_seed`` into the K-shot order (not the subset order of evaluations)."""


def k_shot(spec: TaskSpec, labels: np.ndarray, k: int, sample_seed: int = 0) -> np.ndarray:
    """A seeded, class-stratified sample of ``k`` train rows (label quintiles for regression),
    in file order: the first ``k`` of a stratified order, so a smaller K's rows are part of a
    larger K's and every run with the same ``sample_seed`` trains on the same rows."""
    if k >= len(labels):
        return np.arange(len(labels))
    return np.sort(subset_order(spec, labels, seed=SHOT_SEED + sample_seed)[:k])


def source(spec: TaskSpec, split: str, val_from_train: float | None) -> str:
    """The file split a run's ``split`` is read from: with ``val_from_train`` both ``train``
    and ``dev`` come from the train file and ``test`` is the dev file."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; one of {SPLITS}")
    if val_from_train is None:
        return split
    return {"train": "train", "dev": "train", "test": "dev"}[split]


def has_test_split(specs: list[TaskSpec], val_from_train: float | None) -> bool:
    """A test split exists for every task: the dev files under ``val_from_train``, else each
    task names a (labelled) ``test`` split."""
    return val_from_train is not None or all(s.test is not None for s in specs)
