"""Simulated confirmation outputs whose true score is known: the crossed seeds x rows design.

A model of config ``c`` trained with seed ``s`` gets row ``r`` of a binary task right when
``m_c + z_r + u_cr + a_s + v_cs + e_csr > 0``, every term but ``m_c`` normal with mean 0:

- ``z_r``: how easy the row is, for every config (rows drawn from a population);
- ``u_cr``: how easy it is for config ``c`` in particular;
- ``a_s``: what seed ``s`` does to every config trained with it (shared seed ids);
- ``v_cs``: what it does to config ``c`` only;
- ``e_csr``: the seed x row interaction.

Over the populations of seeds and rows config ``c`` scores ``Phi(m_c / sd)``, ``sd`` the square
root of the sum of the variances: the truth an interval must cover (``m_c`` is set from it).
Arrays are (draws, seeds, rows), so a thousand draws cost a few numpy calls.

Moved here from ``tests/crossed.py`` (which re-exports it) so that benchmarks import it too;
``racing_outcomes`` and ``exact_difference`` simulate ``search.selection.racing`` races over many draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from search.selection.racing import Candidate, Race
from search.stats import Interval, Outputs, _crossed, difference, seed_scores


@dataclass(frozen=True)
class Noise:
    row: float = 1.0
    config_row: float = 0.3
    seed: float = 0.1
    config_seed: float = 0.1
    cross: float = 0.5

    @property
    def sd(self) -> float:
        return float(np.sqrt(self.row**2 + self.config_row**2 + self.seed**2 + self.config_seed**2
                             + self.cross**2))


def rows_of(rng: np.random.Generator, configs: int, draws: int, rows: int, noise: Noise) -> np.ndarray:
    """The rows' part ``z_r + u_cr`` of each config, (configs, draws, 1, rows): one evaluation set
    per draw, to score several sets of seeds on."""
    z = rng.normal(0, noise.row, (1, draws, 1, rows))
    return z + rng.normal(0, noise.config_row, (configs, draws, 1, rows))


def correct(rng: np.random.Generator, truths: list[float], draws: int, seeds: int, rows: int,
            noise: Noise = Noise(), on: np.ndarray | None = None) -> np.ndarray:
    """Right/wrong of each config (true scores ``truths``), (configs, draws, seeds, rows): the
    configs of one draw share its rows and its seed ids. ``on``: the rows (``rows_of``) to score
    these new seeds on, instead of new rows."""
    part = rows_of(rng, len(truths), draws, rows, noise) if on is None else on
    a = rng.normal(0, noise.seed, (1, draws, seeds, 1))
    v = rng.normal(0, noise.config_seed, (len(truths), draws, seeds, 1))
    e = rng.normal(0, noise.cross, (len(truths), draws, seeds, part.shape[-1]))
    m = np.array([noise.sd * norm.ppf(t) for t in truths]).reshape(-1, 1, 1, 1)
    return m + part + a + v + e > 0


def binary(right: np.ndarray) -> Outputs:
    """One draw's (seeds, rows) right/wrong as one binary task whose labels are all 1."""
    return Outputs({"b": "binary"}, {"b": np.ones(right.shape[-1], dtype=np.float32)},
                   {"b": right.astype(np.float32)})


# ---- races ------------------------------------------------------------------------------------
def exact_difference(a: Outputs, b: Outputs, *, level: float = 0.95, **_: object) -> Interval:
    """``stats.difference`` of two configs with as many seeds, classification tasks only, with the
    rows part in closed form: the between-seed covariance of the row bootstrap is, without the
    resampling noise, ``sum_t cov_r(d_i, d_j) / rows_t / tasks^2`` (d: a's right minus b's, per
    seed and row). The same interval as the bootstrap's at infinite resamples (checked in
    ``tests/test_racing.py``), a hundred times faster: what lets a thousand races run in seconds."""
    sa, sb = seed_scores(a), seed_scores(b)
    n, tasks = len(sa), len(a.kinds)
    if len(sb) != n or n < 2 or any(k == "regression" for k in a.kinds.values()):
        return difference(a, b, level=level)
    rows_var = 0.0
    for t in a.kinds:
        d = (a.preds[t] == a.labels[t]).astype(np.float64) - (b.preds[t] == b.labels[t])
        d -= d.mean(1, keepdims=True)
        cov = d @ d.T / d.shape[1] ** 2
        rows_var += (cov.sum() - np.trace(cov)) / (n * (n - 1)) / tasks**2
    mean = float(sa.mean() - sb.mean())
    seed_var = float(np.var(sa - sb, ddof=1)) / n
    lo, hi, seed_half, rows_half = _crossed(mean, seed_var, n - 1, float(rows_var), level)
    return Interval(mean, lo, hi, seed_half, math.nan, math.nan, n, a.rows, rows_half)


@dataclass
class Outcome:
    """One simulated race, and what confirming every candidate with ``confirm_seeds`` seeds would
    have picked on the same draws."""

    winner: int | None
    leader: int | None
    dropped: list[int]
    """Dropped as separably behind (a claim; halving cuts and failures are not)."""
    runs: int
    confirm_pick: int
    cut: list[int]
    """Cut by halving (behind by mean; no claim)."""


def racing_outcomes(truths: list[float], draws: int, rows: int, noise: Noise, *, seed: int = 0,
                    max_rounds: int = 10, reserve_runs: float | None = None, min_seeds: int = 2,
                    alpha: float = 0.05, futility: bool = True, halving: bool = True, confirm_seeds: int = 3,
                    compare=exact_difference, chunk: int = 100) -> list[Outcome]:
    """``draws`` races over configs with true scores ``truths`` (one shared set of ``rows``
    validation rows per draw, seed ids shared by round); the reserve is ``reserve_runs`` runs of
    1 s (default: enough for ``max_rounds`` rounds of every candidate)."""
    rng = np.random.default_rng(seed)
    k = len(truths)
    rounds = max(max_rounds, confirm_seeds)
    reserve = float(k * max_rounds if reserve_runs is None else reserve_runs)
    out: list[Outcome] = []
    for start in range(0, draws, chunk):
        size = min(chunk, draws - start)
        right = correct(rng, truths, size, rounds, rows, noise)
        scores = right.mean(-1)  # (configs, draws, seeds)
        for d in range(size):
            race = Race([Candidate(str(i), "m") for i in range(k)], reserve_s=reserve, cost_per_run_s=1.0,
                        min_seeds=min_seeds, max_rounds=max_rounds, alpha=alpha,
                        futility=futility, halving=halving, compare=compare)
            while batch := race.next_round():
                for cand, s in batch:
                    i, r = int(cand.name), race.round - 1
                    race.record(cand, s, binary(right[i, d, r:r + 1]))
            res = race.result()
            out.append(Outcome(None if res.winner is None else int(res.winner),
                               None if res.leader is None else int(res.leader),
                               [int(x.name) for x in res.drops if x.separable], res.runs,
                               int(np.argmax(scores[:, d, :confirm_seeds].mean(-1))),
                               [int(x.name) for x in res.drops if not x.separable]))
    return out
