"""Evaluation as a fidelity: stratified nested subsets, growing with the rung, the last
evaluation on the whole dev set, the same rows after a resume."""

from __future__ import annotations

import numpy as np
import pytest
from test_train import run, small

from trainers.fidelity import rows_at, subset_order
from trainers.tasks import TaskSpec

CLS = TaskSpec("c", "classification", "text", "label", num_labels=3)
REG = TaskSpec("r", "regression", "text", "label")


def test_every_prefix_is_stratified_and_the_order_is_fixed():
    rng = np.random.default_rng(5)
    labels = rng.choice(3, size=900, p=[0.6, 0.3, 0.1]).astype(np.float32)
    order = subset_order(CLS, labels)
    assert sorted(order.tolist()) == list(range(900))  # a permutation
    share = np.bincount(labels.astype(int), minlength=3) / 900
    for n in (30, 64, 100, 333):
        counts = np.bincount(labels[order[:n]].astype(int), minlength=3)
        # each class within one row of its proportional share (a random draw of 30 rows of a
        # 10% class is 0 or 6+ rows about a quarter of the time)
        assert np.all(np.abs(counts - n * share) <= 1.5), (n, counts, n * share)
    assert np.array_equal(order, subset_order(CLS, labels.copy())), "same rows every call"
    other = TaskSpec("d", "classification", "text", "label", num_labels=3)
    assert not np.array_equal(order, subset_order(other, labels)), "seeded per task name"


def test_regression_prefixes_cover_the_label_range():
    labels = np.linspace(0, 5, 500).astype(np.float32)[np.random.default_rng(1).permutation(500)]
    order = subset_order(REG, labels)
    first = labels[order[:50]]
    # 5 quantile bins of a uniform range: 10 rows in each fifth
    counts = np.histogram(first, bins=[0, 1, 2, 3, 4, 5.01])[0]
    assert np.all(np.abs(counts - 10) <= 1), counts


def test_rows_grow_with_the_evaluation():
    assert [rows_at(i, 64, 2.0) for i in (1, 2, 3, 4)] == [64, 128, 256, 512]
    assert rows_at(3, 10, 1.5) == 23
    assert rows_at(5, None, 2.0) is None


def test_trainer_scores_subsets_then_the_whole_dev_set_at_the_last_step():
    rows = []
    run(small(max_steps=40, eval_every=10, eval_rows=20, max_eval_samples=100),
        report=lambda m, save: rows.append(m))
    # 3 tasks: 20, 40, 80 rows each, then all 100 at the last step
    assert [r["eval_rows"] for r in rows] == [60, 120, 240, 300]
    assert [r["eval_full"] for r in rows] == [0, 0, 0, 1]
    assert "score_sub" in rows[-1] and "score_sub" not in rows[0]


def test_eval_full_scores_everything_and_the_subset_beside_it():
    # The same checkpoints, scored both ways: score_sub of the eval_full run must equal the
    # subset score of the plain run (same seed, same training), and score the whole dev set.
    sub, full = [], []
    cfg = dict(max_steps=30, eval_every=10, eval_rows=16, max_eval_samples=100)
    run(small(**cfg), report=lambda m, save: sub.append(m))
    run(small(**cfg, eval_full=True), report=lambda m, save: full.append(m))
    assert [r["eval_full"] for r in full] == [1, 1, 1]
    assert [r["score_sub"] for r in full[:2]] == pytest.approx([r["score"] for r in sub[:2]])
    assert full[-1]["score"] == pytest.approx(sub[-1]["score"])  # both whole at the last step
    assert full[0]["score"] != pytest.approx(full[0]["score_sub"])


def test_a_resumed_trial_scores_the_rows_of_its_rung(tmp_path):
    first = []

    def report(metrics, save):
        first.append(metrics)
        if metrics["step"] == 20:
            save(tmp_path / "ck")

    cfg = dict(max_steps=40, eval_every=10, eval_rows=10, max_eval_samples=100)
    run(small(**cfg), report=report)
    again = []
    run(small(**cfg), resume=tmp_path / "ck", report=lambda m, s: again.append(m))
    # resumed at step 20: evaluations 3 and 4, with their rows (40 per task, then all 100)
    assert [r["step"] for r in again] == [30, 40]
    assert [r["eval_rows"] for r in again] == [r["eval_rows"] for r in first[2:]] == [120, 300]


def test_bad_fidelity_settings_fail():
    with pytest.raises(ValueError, match="eval_rows"):
        small(eval_rows=0)
    with pytest.raises(ValueError, match="eval_growth"):
        small(eval_growth=0.5)
