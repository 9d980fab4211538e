"""Evaluation as a fidelity: early evaluations score a fixed, stratified subset of each dev set.

Each task's dev rows get one order, fixed by a constant seed (every trial of a search, and a
trial resumed from a checkpoint, ranks the same rows) and stratified (by class, or by label
quantile for regression), so that every prefix holds the classes in about their dev-set
proportions. Evaluation ``i`` (1-based) of a trial scores the first
``eval_rows * eval_growth**(i-1)`` rows of each task; the trainer's last evaluation (at
``max_steps``) scores the whole dev set. The subsets are nested: a larger rung's rows contain
a smaller rung's.
"""

from __future__ import annotations

import math
import zlib

import numpy as np

from trainers.tasks import TaskSpec

SUBSET_SEED = 20231
"""The constant seed of the subset order: not the trial seed, so all trials share the rows."""
REGRESSION_BINS = 5


def strata(spec: TaskSpec, labels: np.ndarray) -> np.ndarray:
    """The stratum of each row: its class, or its label's quantile bin for regression."""
    if spec.kind != "regression":
        return labels.astype(np.int64)
    if len(labels) == 0:
        return np.zeros(0, dtype=np.int64)
    edges = np.quantile(labels, np.linspace(0, 1, REGRESSION_BINS + 1)[1:-1])
    return np.searchsorted(edges, labels, side="right").astype(np.int64)


def subset_order(spec: TaskSpec, labels: np.ndarray, seed: int = SUBSET_SEED) -> np.ndarray:
    """A permutation of the rows whose every prefix is a stratified sample (``seed`` and the
    task's name fix it).

    Row ``j`` of stratum ``c`` (after a seeded shuffle within ``c``) gets the key
    ``(j + u) / n_c`` with ``u`` uniform in [0, 1): sorting by the key interleaves the strata in
    proportion, so a prefix of ``n`` rows holds ``n * n_c / N`` rows of ``c`` give or take one.
    """
    rng = np.random.default_rng([seed, zlib.crc32(spec.name.encode())])
    groups = strata(spec, labels)
    keys = np.empty(len(labels), dtype=np.float64)
    for c in np.unique(groups):
        members = rng.permutation(np.flatnonzero(groups == c))
        keys[members] = (np.arange(len(members)) + rng.random(len(members))) / len(members)
    return np.argsort(keys, kind="stable")


def rows_at(evaluation: int, eval_rows: int | None, growth: float) -> int | None:
    """Rows per task scored at evaluation ``evaluation`` (1-based); None = the whole dev set."""
    if eval_rows is None:
        return None
    return int(math.ceil(eval_rows * growth ** (evaluation - 1)))
