"""How sure a score is: one 95% interval over training seeds and evaluation rows together.

A confirmed config has been trained with N seeds and each model scored on the same rows: a
crossed seeds x rows design. Three things move its mean score: the seed (a model trained with
it is better or worse everywhere), the rows (which examples happen to be in the evaluation set,
the same for every seed), and the seed x row interaction (one seed's model gets rows right that
another's gets wrong). The variance of the mean is estimated once per source:

- **seeds**: the variance of the N seed scores, over N. Each seed score is on the same fixed
  rows, so this holds the interaction (over N x rows) but none of the rows' shared part;
- **rows**: the covariance *between* two seeds' scores under resampling the rows (the same
  resample for every seed, the score formula recomputed: accuracy, Pearson r mapped to
  (r + 1) / 2, mean over tasks): the rows' shared part only. A seed's own variance under the
  resample would count the interaction a second time.

The interval is the mean +- the two parts' half-widths in quadrature: the seed part's with
Student's t at N - 1 degrees of freedom, the rows' with the normal quantile (hundreds of rows).
Exact when one part dominates, a little wide when both matter. Over 1,000 simulated draws per
regime (N=3; ``tests/crossed.py``) it covers the true score 96-99% of the time and calls 2.8-4.8%
of no-differences "separable". Two narrower designs were measured and dropped: one t with
Satterthwaite's degrees of freedom (coverage 92-95%, 6-8% false "separable") and a further split
of the seed part into seed effect (t) and interaction (normal, from the rows) (coverage 95-96%,
5-8% false "separable"). Adding the seed interval to a rows-only interval, as this module did
before, counts the interaction twice (coverage 97-99%, false "separable" 0.3-1.3%: real
differences missed). One seed has no seed part: ``lo``/``hi`` are NaN, only the rows-only
interval is given, and it supports no verdict.

A difference between two configs scored on the same rows is paired twice: by row (the same
resampled rows for both) and by seed (seed i of one against seed i of the other: confirmation
trains every candidate with the same seed ids, and pairs of independent seeds would still be
independent pairs). Pairing gains when a seed moves both configs alike and costs degrees of
freedom when it does not (simulated separable rates, pairs vs Welch: 20% vs 11% for 5 points
apart with shared seed effects; 78% vs 87% for 8 points with seed effects of ~1 point). Configs
with different seed counts fall back to unpaired seeds (Welch). ``tests/test_stats.py``
measures coverage and the false "separable" rate over 1,000 simulated draws whose truth is
known (``tests/crossed.py``).

Ray-free and MLflow-free: the driver, the report and the tests share it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

LEVEL = 0.95
RESAMPLES = 2000


@dataclass
class Outputs:
    """One config's predictions on one split: for each task its labels (rows,) and each seed's
    reduced predictions (seeds, rows): class ids, 0/1, or regression values."""

    kinds: dict[str, str]
    labels: dict[str, np.ndarray]
    preds: dict[str, np.ndarray]

    @property
    def seeds(self) -> int:
        return next(iter(self.preds.values())).shape[0]

    @property
    def rows(self) -> int:
        return sum(len(v) for v in self.labels.values())

    def save(self, path: str | Path) -> None:
        arrays = {}
        for t, kind in self.kinds.items():
            arrays[f"{t}.kind"] = np.array(kind)
            arrays[f"{t}.labels"] = self.labels[t]
            arrays[f"{t}.preds"] = self.preds[t]
        np.savez_compressed(path, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> Outputs:
        with np.load(path, allow_pickle=False) as z:
            tasks = [k[:-len(".kind")] for k in z.files if k.endswith(".kind")]
            return cls({t: str(z[f"{t}.kind"]) for t in tasks}, {t: z[f"{t}.labels"] for t in tasks},
                       {t: z[f"{t}.preds"] for t in tasks})

    @classmethod
    def from_evaluation(cls, specs, rows: dict[str, tuple[np.ndarray, np.ndarray]]) -> Outputs:
        """One run's outputs from what ``trainers.loop.evaluate(outputs=rows)`` filled in."""
        kinds = {spec.name: spec.kind for spec in specs}
        return cls(kinds, {t: rows[t][0] for t in kinds}, {t: rows[t][1][None, :] for t in kinds})

    @classmethod
    def stack(cls, runs: list[Outputs]) -> Outputs:
        """The seeds of several runs of one config on the same rows, as one ``Outputs``."""
        first = runs[0]
        for r in runs[1:]:
            if r.kinds != first.kinds or any(not np.array_equal(r.labels[t], first.labels[t])
                                             for t in first.kinds):
                raise ValueError("outputs scored on different rows cannot be stacked")
        return cls(first.kinds, first.labels,
                   {t: np.concatenate([r.preds[t] for r in runs]) for t in first.kinds})


def _pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r along the last axis (0 where a side is constant)."""
    x = x - x.mean(-1, keepdims=True)
    y = y - y.mean(-1, keepdims=True)
    denom = np.sqrt((x * x).sum(-1) * (y * y).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (x * y).sum(-1) / np.where(denom > 0, denom, 1), 0.0)


def _part(kind: str, preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The task's share of the score along the last axis: accuracy, or (r + 1) / 2."""
    if kind == "regression":
        return (_pearson(preds.astype(np.float64), np.broadcast_to(labels, preds.shape)) + 1) / 2
    return (preds == labels).mean(-1)


def seed_scores(out: Outputs) -> np.ndarray:
    """Each seed's score on all rows, shape (seeds,)."""
    return np.mean([_part(out.kinds[t], out.preds[t], out.labels[t]) for t in out.kinds], axis=0)


def _bootstrap(outs: list[Outputs], seed: int, resamples: int, chunk: int = 200) -> list[np.ndarray]:
    """Each seed's score of each of ``outs`` (scored on the same rows) under the same
    ``resamples`` row resamples, each of shape (resamples, seeds); drawn in chunks so a large
    dev set does not need seeds x resamples x rows in memory at once."""
    rng = np.random.default_rng(seed)
    first = outs[0]
    results: list[list[np.ndarray]] = [[] for _ in outs]
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        draws = {t: rng.integers(0, len(first.labels[t]), size=(size, len(first.labels[t])))
                 for t in first.kinds}
        for i, out in enumerate(outs):
            parts = [_part(out.kinds[t], out.preds[t][:, idx], out.labels[t][idx])
                     for t, idx in draws.items()]  # preds[:, idx]: (seeds, size, rows)
            results[i].append(np.mean(parts, axis=0).T)
    return [np.concatenate(r) for r in results]


def t_half_width(values: np.ndarray, level: float = LEVEL) -> float:
    """Half-width of the Student-t interval of the mean of ``values`` (NaN for one value)."""
    from scipy.stats import t

    n = len(values)
    if n < 2:
        return math.nan
    return float(t.ppf((1 + level) / 2, n - 1) * np.std(values, ddof=1) / math.sqrt(n))


@dataclass
class Interval:
    """A mean with its 95% interval over seeds and rows, and its parts."""

    mean: float
    lo: float
    hi: float
    """The interval over seeds and rows (NaN with one seed: no verdict rests on it)."""
    seed_half: float
    """The seed part's half-width: t over the seed scores, rows fixed (NaN with one seed)."""
    row_lo: float
    row_hi: float
    """Rows alone, these seeds fixed: a percentile bootstrap of the seed mean."""
    seeds: int
    rows: int
    rows_half: float = math.nan
    """The rows' shared part's half-width (normal quantile; what the seed part leaves out)."""

    @property
    def half(self) -> float:
        return (self.hi - self.lo) / 2

    def overlaps(self, other: Interval) -> bool:
        return self.lo <= other.hi and other.lo <= self.hi

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def _between(a: np.ndarray, b: np.ndarray | None = None) -> float:
    """From row resamples of seed scores, each (resamples, seeds): the mean covariance between
    two different seeds of ``a`` (the rows' shared part of a's seed mean), or with ``b`` (another
    config's independent seeds) between any seed of ``a`` and any of ``b``."""
    x = a - a.mean(0)
    if b is not None:
        return float((x.T @ (b - b.mean(0))).mean() / (len(a) - 1))
    cov = x.T @ x / (len(a) - 1)
    n = cov.shape[0]
    return float((cov.sum() - np.trace(cov)) / (n * (n - 1))) if n > 1 else 0.0


def _crossed(mean: float, seed_var: float, seed_df: float, row_var: float, level: float
             ) -> tuple[float, float, float, float]:
    """(lo, hi, seed half, rows half): ``mean`` +- the two parts' half-widths in quadrature, the
    seed part's with Student's t at ``seed_df``, the rows' with the normal quantile; NaN without
    a seed part (one seed)."""
    from scipy.stats import norm, t

    rows_half = float(norm.ppf((1 + level) / 2)) * math.sqrt(max(row_var, 0.0))  # can fall below 0
    if seed_df < 1 or not math.isfinite(seed_var):
        return math.nan, math.nan, math.nan, rows_half
    seed_half = float(t.ppf((1 + level) / 2, seed_df)) * math.sqrt(seed_var)
    half = math.hypot(seed_half, rows_half)
    return mean - half, mean + half, seed_half, rows_half


def _quantiles(boot: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def interval(out: Outputs, *, level: float = LEVEL, resamples: int = RESAMPLES,
             seed: int = 0) -> Interval:
    """The seed-mean score of ``out`` with its interval over seeds and rows."""
    scores = seed_scores(out)
    n = len(scores)
    (boot,) = _bootstrap([out], seed, resamples)
    seed_var = float(np.var(scores, ddof=1)) / n if n > 1 else math.nan
    mean = float(scores.mean())
    lo, hi, seed_half, rows_half = _crossed(mean, seed_var, n - 1, _between(boot), level)
    return Interval(mean, lo, hi, seed_half, *_quantiles(boot.mean(1), level), n, out.rows, rows_half)


def difference(a: Outputs, b: Outputs, *, level: float = LEVEL, resamples: int = RESAMPLES,
               seed: int = 0) -> Interval:
    """``mean(a) - mean(b)`` with its interval over seeds and rows: rows resampled paired (a and
    b must be scored on the same rows); with as many seeds each, seed i of a paired with seed i
    of b (the same seed id in a confirmation), else the two seed means as Welch's."""
    for task in a.kinds:
        if task not in b.labels or not np.array_equal(a.labels[task], b.labels[task]):
            raise ValueError(f"task {task}: the two configs were not scored on the same rows")
    sa, sb = seed_scores(a), seed_scores(b)
    boot_a, boot_b = _bootstrap([a, b], seed, resamples)
    mean = float(sa.mean() - sb.mean())
    row_lo, row_hi = _quantiles(boot_a.mean(1) - boot_b.mean(1), level)
    if len(sa) == len(sb):
        d = sa - sb
        seed_var = float(np.var(d, ddof=1)) / len(d) if len(d) > 1 else math.nan
        lo, hi, seed_half, rows_half = _crossed(mean, seed_var, len(d) - 1, _between(boot_a - boot_b),
                                                level)
    else:
        va, vb = (float(np.var(s, ddof=1)) / len(s) if len(s) > 1 else math.nan for s in (sa, sb))
        df = 0.0  # Welch-Satterthwaite's, of the seed part
        if math.isfinite(va + vb):
            df = (va + vb) ** 2 / (va**2 / (len(sa) - 1) + vb**2 / (len(sb) - 1)) if va + vb > 0 else 1.0
        rows = _between(boot_a) + _between(boot_b) - 2 * _between(boot_a, boot_b)
        lo, hi, seed_half, rows_half = _crossed(mean, va + vb, df, rows, level)
    return Interval(mean, lo, hi, seed_half, row_lo, row_hi, min(a.seeds, b.seeds), a.rows, rows_half)


def separable(diff: Interval) -> bool:
    """The difference's interval over seeds and rows excludes zero (never with one seed: a
    rows-only interval leaves the seeds' part out, so it supports no verdict)."""
    return diff.lo > 0 or diff.hi < 0
