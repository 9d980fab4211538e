"""Confidence intervals against distributions whose truth is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from search.stats import Outputs, difference, interval, seed_scores, separable, t_half_width


def _binary(correct: np.ndarray) -> Outputs:
    """A one-task binary set whose labels are all 1: prediction 1 = correct."""
    return Outputs({"b": "binary"}, {"b": np.ones(correct.shape[-1], dtype=np.float32)},
                   {"b": correct.astype(np.float32)})


def test_t_interval_covers_a_known_mean_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits = 0
    reps = 4000
    for _ in range(reps):
        x = rng.normal(0.7, 0.02, size=3)
        hits += abs(x.mean() - 0.7) <= t_half_width(x)
    assert abs(hits / reps - 0.95) < 0.015
    assert math.isnan(t_half_width(np.array([0.5])))


def test_row_bootstrap_of_an_accuracy_matches_the_binomial_interval_and_covers_p():
    rng = np.random.default_rng(1)
    p, n = 0.7, 600
    hits, halves = 0, []
    reps = 200
    for i in range(reps):
        out = _binary(rng.random((1, n)) < p)
        iv = interval(out, resamples=400, seed=i)
        hits += iv.row_lo <= p <= iv.row_hi
        halves.append((iv.row_hi - iv.row_lo) / 2)
    assert abs(hits / reps - 0.95) < 0.05
    assert np.median(halves) == pytest.approx(1.96 * math.sqrt(p * (1 - p) / n), rel=0.1)


def test_pearson_bootstrap_covers_a_known_correlation():
    rng = np.random.default_rng(2)
    rho, n, hits, reps = 0.6, 300, 0, 150
    for i in range(reps):
        x = rng.normal(size=n)
        y = rho * x + math.sqrt(1 - rho**2) * rng.normal(size=n)
        out = Outputs({"s": "regression"}, {"s": y}, {"s": x[None, :]})
        iv = interval(out, resamples=400, seed=i)
        hits += iv.row_lo <= (rho + 1) / 2 <= iv.row_hi  # the score maps r to (r + 1) / 2
    assert abs(hits / reps - 0.95) < 0.06


def test_seed_scores_follow_the_leaderboard_formula():
    labels = {"c": np.array([0, 1, 2, 1.0]), "r": np.array([0.0, 1, 2, 3])}
    preds = {"c": np.array([[0, 1, 2, 0.0], [0, 0, 0, 0]]), "r": np.array([[0.0, 1, 2, 3], [3, 2, 1, 0]])}
    out = Outputs({"c": "classification", "r": "regression"}, labels, preds)
    np.testing.assert_allclose(seed_scores(out), [(0.75 + 1.0) / 2, (0.25 + 0.0) / 2])


def test_combined_interval_adds_seed_and_row_error_and_the_mean_is_the_seed_mean():
    rng = np.random.default_rng(3)
    out = _binary(rng.random((3, 500)) < np.array([[0.6], [0.7], [0.8]]))
    iv = interval(out, resamples=500)
    assert iv.mean == pytest.approx(seed_scores(out).mean())
    row_half = (iv.row_hi - iv.row_lo) / 2
    assert iv.half == pytest.approx(math.hypot(row_half, iv.seed_half))
    assert iv.seed_half > row_half  # 10-point seed spread dominates 500 rows


def test_paired_difference_separates_what_overlapping_intervals_do_not():
    """Two configs that differ on 3% of the same 400 rows: each interval is about +-4.5 points
    and they overlap, but the paired difference is clearly positive. Seeds of one config agree
    on most rows (a row is hard or easy), as trained models do."""
    rng = np.random.default_rng(4)
    easy = rng.random(400) < 0.7
    base = np.array([easy ^ (rng.random(400) < 0.02) for _ in range(3)])
    better = base.copy()
    for seed in range(3):  # each seed's model gets 12 more of its wrong rows right
        better[seed, rng.choice(np.flatnonzero(~base[seed]), 12, replace=False)] = True
    a, b = _binary(better), _binary(base)
    ia, ib = interval(a, resamples=500), interval(b, resamples=500)
    assert ia.overlaps(ib)
    d = difference(a, b, resamples=500)
    assert d.mean == pytest.approx(12 / 400)
    assert separable(d) and d.lo > 0


def test_no_difference_is_not_separable_and_rows_must_match():
    rng = np.random.default_rng(5)
    a = _binary(rng.random((3, 300)) < 0.7)
    b = _binary(rng.random((3, 300)) < 0.7)
    assert not separable(difference(a, b, resamples=500))
    with pytest.raises(ValueError, match="same rows"):
        difference(a, _binary(rng.random((3, 200)) < 0.7))


def test_outputs_round_trip_and_stack(tmp_path):
    rng = np.random.default_rng(6)
    runs = [Outputs({"c": "classification"}, {"c": np.array([0, 1, 2.0])},
                    {"c": rng.integers(0, 3, (1, 3)).astype(np.float32)}) for _ in range(3)]
    runs[0].save(tmp_path / "o.npz")
    again = Outputs.load(tmp_path / "o.npz")
    assert again.kinds == {"c": "classification"}
    np.testing.assert_array_equal(again.preds["c"], runs[0].preds["c"])
    assert Outputs.stack(runs).seeds == 3
