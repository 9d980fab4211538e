"""How sure a score is: intervals over training seeds and over evaluation rows.

A confirmed config has been trained with N seeds and each model scored on the same rows. Two
things move its score and both are reported, at 95%:

- **seeds**: the spread of the N seed scores, as a Student-t interval of their mean;
- **rows**: which examples happen to be in the evaluation set, as a percentile bootstrap that
  resamples each task's rows (the same resample for every seed) and recomputes the score
  formula (accuracy, Pearson r mapped to (r + 1) / 2, mean over tasks).

The two are independent sources of error, so the combined interval adds their half-widths in
quadrature. A difference between two configs scored on the same rows is bootstrapped paired
(the same resampled rows for both), which is far tighter than comparing two intervals.

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
    """The seed-mean score of each of ``outs`` (scored on the same rows) under the same
    ``resamples`` row resamples, each of shape (resamples,); drawn in chunks so a large dev set
    does not need seeds x resamples x rows in memory at once."""
    rng = np.random.default_rng(seed)
    first = outs[0]
    results: list[list[np.ndarray]] = [[] for _ in outs]
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        draws = {t: rng.integers(0, len(first.labels[t]), size=(size, len(first.labels[t])))
                 for t in first.kinds}
        for i, out in enumerate(outs):
            parts = [_part(out.kinds[t], out.preds[t][:, idx], out.labels[t][idx]).mean(0)
                     for t, idx in draws.items()]  # preds[:, idx]: (seeds, size, rows)
            results[i].append(np.mean(parts, axis=0))
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
    """A mean with its 95% intervals: over seeds, over rows, and both together."""

    mean: float
    lo: float
    hi: float
    seed_half: float
    """Half-width over seeds (NaN with one seed: then lo/hi cover rows only)."""
    row_lo: float
    row_hi: float
    seeds: int
    rows: int

    @property
    def half(self) -> float:
        return (self.hi - self.lo) / 2

    def overlaps(self, other: Interval) -> bool:
        return self.lo <= other.hi and other.lo <= self.hi

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def _combine(mean: float, seed_half: float, row_lo: float, row_hi: float, seeds: int,
             rows: int) -> Interval:
    row_half = (row_hi - row_lo) / 2
    half = math.hypot(row_half, 0.0 if math.isnan(seed_half) else seed_half)
    centre = (row_lo + row_hi) / 2
    return Interval(mean, centre - half, centre + half, seed_half, row_lo, row_hi, seeds, rows)


def interval(out: Outputs, *, level: float = LEVEL, resamples: int = RESAMPLES,
             seed: int = 0) -> Interval:
    """The seed-mean score of ``out`` with its intervals."""
    scores = seed_scores(out)
    (boot,) = _bootstrap([out], seed, resamples)
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return _combine(float(scores.mean()), t_half_width(scores, level), float(lo), float(hi),
                    out.seeds, out.rows)


def difference(a: Outputs, b: Outputs, *, level: float = LEVEL, resamples: int = RESAMPLES,
               seed: int = 0) -> Interval:
    """``mean(a) - mean(b)`` with its intervals: rows resampled paired (a and b must be scored
    on the same rows), seeds as a Welch t interval of the two seed means."""
    from scipy.stats import t

    for task in a.kinds:
        if task not in b.labels or not np.array_equal(a.labels[task], b.labels[task]):
            raise ValueError(f"task {task}: the two configs were not scored on the same rows")
    sa, sb = seed_scores(a), seed_scores(b)
    boot_a, boot_b = _bootstrap([a, b], seed, resamples)
    boot = boot_a - boot_b
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    va = np.var(sa, ddof=1) / len(sa) if len(sa) > 1 else math.nan
    vb = np.var(sb, ddof=1) / len(sb) if len(sb) > 1 else math.nan
    seed_half = math.nan
    if not (math.isnan(va) or math.isnan(vb)) and va + vb > 0:
        df = (va + vb) ** 2 / (va**2 / (len(sa) - 1) + vb**2 / (len(sb) - 1))  # Welch-Satterthwaite
        seed_half = float(t.ppf((1 + level) / 2, df) * math.sqrt(va + vb))
    elif va + vb == 0:
        seed_half = 0.0
    return _combine(float(sa.mean() - sb.mean()), seed_half, float(lo), float(hi),
                    min(a.seeds, b.seeds), a.rows)


def separable(diff: Interval) -> bool:
    """The difference's interval excludes zero."""
    return diff.lo > 0 or diff.hi < 0
