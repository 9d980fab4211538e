"""Confidence intervals against distributions whose truth is known: the crossed seeds x rows
interval covers the truth and calls no-difference "separable" at most 5% of the time over
1,000 simulated draws (``crossed``), and still finds a real difference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from crossed import Noise, binary, correct

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


def test_the_interval_counts_the_seed_x_row_interaction_once():
    """Seeds whose models flip a coin on every row (pure interaction: no seed or row effect). The
    seed scores' spread already holds that noise; the rows add only what seeds share (nothing
    here), so the interval is the seed part alone, not the seed part and a rows-only interval
    in quadrature."""
    rng = np.random.default_rng(3)
    halves, rows_only, seed_halves, shared = [], [], [], []
    for i in range(40):
        iv = interval(_binary(rng.random((8, 500)) < 0.7), resamples=300, seed=i)
        halves.append(iv.half)
        rows_only.append((iv.row_hi - iv.row_lo) / 2)
        seed_halves.append(iv.seed_half)
        shared.append(iv.rows_half)
        assert iv.mean == pytest.approx(iv.lo + iv.half)
    halves, rows_only, seed_halves = map(np.array, (halves, rows_only, seed_halves))
    assert np.median(np.array(shared) / rows_only) < 0.35
    assert np.median(halves / seed_halves) < 1.05
    # what adding the rows-only interval would have given: 30% wider (t at 7 df, 1.96 on rows)
    assert np.median(np.hypot(seed_halves, rows_only) / halves) > 1.2


def _simulated(truths, draws, rng, seeds=3, rows=200):
    """``draws`` draws spread over the regimes of REGIMES: (regime, right/wrong of each config)."""
    per = draws // len(REGIMES)
    for k, noise in enumerate(REGIMES):
        right = correct(rng, truths, per, seeds, rows, noise)
        for i in range(per):
            yield k, right[:, i]


REGIMES = [Noise(), Noise(seed=0.03, config_seed=0.03), Noise(seed=0.15, config_seed=0.15),
           Noise(seed=0.0, config_seed=0.0), Noise(row=0.5, cross=1.0, config_row=0.1, seed=0.03,
                                                   config_seed=0.03)]
"""Seeds and rows both matter; rows dominate (seed sd ~1 point); seeds dominate; no seed effect
at all; seeds disagree on many rows (interaction-heavy)."""


def test_the_interval_covers_the_true_score_95_percent_of_1000_simulated_draws():
    rng = np.random.default_rng(11)
    hits = np.zeros(len(REGIMES))
    for k, right in _simulated([0.7], 1000, rng):
        iv = interval(binary(right[0]), resamples=100, seed=int(hits.sum()))
        hits[k] += iv.lo <= 0.7 <= iv.hi
    share = hits / (1000 // len(REGIMES))
    assert 0.93 <= share.mean() <= 0.99, share
    assert share.min() >= 0.90, share


def test_no_difference_is_called_separable_in_at_most_5_percent_of_1000_simulated_draws():
    rng = np.random.default_rng(12)
    calls = np.zeros(len(REGIMES))
    for i, (k, right) in enumerate(_simulated([0.7, 0.7], 1000, rng)):
        calls[k] += separable(difference(binary(right[0]), binary(right[1]), resamples=100, seed=i))
    share = calls / (1000 // len(REGIMES))
    assert share.mean() <= 0.05, share
    assert share.max() <= 0.08, share  # 200 draws each: a 5% rule lands above 8% 1 time in 40


def test_a_real_difference_is_separable_most_of_the_time():
    """Power: 12 points apart on 200 rows with 3 seeds each (seed sd ~1 point)."""
    rng = np.random.default_rng(5)
    right = correct(rng, [0.82, 0.70], 300, 3, 200, REGIMES[1])
    found = [difference(binary(right[0, i]), binary(right[1, i]), resamples=100, seed=i)
             for i in range(300)]
    assert np.mean([separable(d) and d.lo > 0 for d in found]) >= 0.75


def test_a_difference_pairs_seed_i_with_seed_i():
    """Seeds that move both configs alike (the same seed id): the paired interval of the
    difference drops that shared spread; the same outputs with one config's seeds out of order
    cannot, and are much wider."""
    rng = np.random.default_rng(8)
    right = correct(rng, [0.72, 0.70], 1, 4, 500, Noise(seed=0.4, config_seed=0.02, cross=0.2))[:, 0]
    paired = difference(binary(right[0]), binary(right[1]), resamples=300)
    shuffled = difference(binary(right[0]), binary(right[1][::-1]), resamples=300)
    assert paired.mean == pytest.approx(shuffled.mean)
    assert paired.half < shuffled.half / 2


def test_one_seed_gives_a_rows_only_interval_and_no_verdict():
    rng = np.random.default_rng(9)
    one = _binary(rng.random((1, 400)) < 0.9)
    iv = interval(one, resamples=200)
    assert math.isnan(iv.lo) and math.isnan(iv.hi) and iv.row_lo < iv.mean < iv.row_hi
    d = difference(one, _binary(rng.random((1, 400)) < 0.5), resamples=200)
    assert d.row_lo > 0.2 and not separable(d)  # ~40 points apart on rows alone, still no verdict


def test_configs_with_different_seed_counts_fall_back_to_welch():
    rng = np.random.default_rng(10)
    a, b = _binary(rng.random((3, 300)) < 0.8), _binary(rng.random((5, 300)) < 0.6)
    d = difference(a, b, resamples=300)
    assert d.mean == pytest.approx(seed_scores(a).mean() - seed_scores(b).mean())
    assert separable(d) and 0 < d.lo < d.mean < d.hi


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
