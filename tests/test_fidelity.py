"""Evaluation as a fidelity: stratified nested subsets, growing with the rung, the last
evaluation on the whole dev set, the same rows after a resume."""

from __future__ import annotations

import numpy as np
import pytest
from test_train import run, small

import trainers.loop
from trainers.data import TokenizedSplit
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


_PREPARE, _PREDICT = trainers.loop.prepare_data, trainers.loop._predict
"""The trainer's own (``scored`` wraps them for one run)."""


class _Spied(TokenizedSplit):
    """A dev split whose subsets remember which of its rows they hold."""

    def subset(self, idx: np.ndarray) -> TokenizedSplit:
        part = super().subset(idx)
        part.rows = np.asarray(idx)
        return part


def scored(monkeypatch, cfg, **kw) -> tuple[list[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Train ``cfg``; for each evaluation, the dev rows (indices, sorted) the model was run on
    for each task, seen where the trainer hands rows to the model; and each task's dev labels."""
    dev: dict[str, TokenizedSplit] = {}
    now: dict[str, np.ndarray] = {}
    evaluations: list[dict[str, np.ndarray]] = []

    def spied_prepare(*args, **kwargs):
        data = _PREPARE(*args, **kwargs)
        data.dev = {name: _Spied(**vars(split)) for name, split in data.dev.items()}
        dev.update(data.dev)
        return data

    def spied_predict(model, spec, split, *args, **kwargs):
        whole = split is dev[spec.name]
        now[spec.name] = np.arange(len(split)) if whole else np.sort(split.rows)
        return _PREDICT(model, spec, split, *args, **kwargs)

    def report(metrics, save):
        evaluations.append(dict(now))
        now.clear()
        if "report" in kw:
            kw["report"](metrics, save)

    monkeypatch.setattr(trainers.loop, "prepare_data", spied_prepare)
    monkeypatch.setattr(trainers.loop, "_predict", spied_predict)
    run(cfg, **{**kw, "report": report})
    return evaluations, {name: split.labels for name, split in dev.items()}


def test_rows_grow_with_the_evaluation(monkeypatch):
    # Rows per task at evaluations 1, 2, 3, ... : 10, 15, 22.5 -> 23 at growth 1.5; 20, 40, 80
    # at growth 2; the last evaluation (max_steps) the whole dev set (100 rows) either way.
    for growth, sizes in ((1.5, [10, 15, 23, 100]), (2.0, [20, 40, 80, 100])):
        cfg = small(max_steps=40, eval_every=10, eval_rows=sizes[0], eval_growth=growth,
                    max_eval_samples=100)
        evaluations, _ = scored(monkeypatch, cfg)
        for task in ("sst", "quora", "sts"):
            assert [len(e[task]) for e in evaluations] == sizes, (growth, task)
    assert rows_at(5, None, 2.0) is None


def test_the_trainer_scores_nested_stratified_rows_shared_by_every_trial(monkeypatch):
    cfg = dict(max_steps=40, eval_every=10, eval_rows=20, max_eval_samples=100)
    evaluations, labels = scored(monkeypatch, small(**cfg))
    for task in ("sst", "quora", "sts"):
        rungs = [e[task] for e in evaluations]
        assert [len(r) for r in rungs] == [20, 40, 80, 100]
        assert np.array_equal(rungs[-1], np.arange(100)), "the whole dev set at the last step"
        for small_rung, big_rung in zip(rungs[:-1], rungs[1:], strict=True):
            assert set(small_rung) < set(big_rung), f"{task}: a rung's rows hold the rung before's"
    for task in ("sst", "quora"):  # classes in their dev-set proportions, give or take one row
        y = labels[task].astype(int)
        share = np.bincount(y) / len(y)
        for rows in (e[task] for e in evaluations[:-1]):
            counts = np.bincount(y[rows], minlength=len(share))
            assert np.all(np.abs(counts - len(rows) * share) <= 1.0), (task, counts, len(rows) * share)
    # Another trial (another seed, rate and method) scores the same rows at every rung.
    other, _ = scored(monkeypatch, small(**cfg, seed=7, lr=3e-3, method="lora"))
    for mine, theirs in zip(evaluations, other, strict=True):
        assert all(np.array_equal(mine[t], theirs[t]) for t in mine)


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


def test_a_resumed_trial_scores_the_rows_of_its_rung(tmp_path, monkeypatch):
    def report(metrics, save):
        if metrics["step"] == 20:
            save(tmp_path / "ck")

    cfg = dict(max_steps=40, eval_every=10, eval_rows=10, max_eval_samples=100)
    first, _ = scored(monkeypatch, small(**cfg), report=report)
    again, _ = scored(monkeypatch, small(**cfg), resume=tmp_path / "ck")
    # resumed at step 20: evaluations 3 and 4, with their rows (40 per task, then all 100)
    assert len(again) == 2
    for mine, before in zip(again, first[2:], strict=True):
        for task in ("sst", "quora", "sts"):
            assert np.array_equal(mine[task], before[task]), task
    assert [len(e["sst"]) for e in again] == [40, 100]


def test_bad_fidelity_settings_fail():
    with pytest.raises(ValueError, match="eval_rows"):
        small(eval_rows=0)
    with pytest.raises(ValueError, match="eval_growth"):
        small(eval_growth=0.5)
