"""The confirmation seed blocks, and how many seeds would decide a gap (``to_decide``); Ray-free:
``search.selection.confirm`` and the race (``search.selection.racing``) both draw their seeds here.

A block of ``SEED_BLOCK`` seeds per search seed: selection seeds from the block's start, fresh
seeds from its middle. Here, not in ``search.selection.confirm`` (which imports Ray), so the race can use it;
``search.selection.confirm`` imports it from here.
"""

from __future__ import annotations

import math

SEED_BLOCK = 1000


def confirm_seeds(search_seed: int, n: int, fresh: bool = False) -> list[int]:
    """N seeds no trial of the search used (every trial trains with ``search_seed``), in a block of
    their own per search seed: searches with neighbouring ``--seed`` share none, so their
    confirmations are independent. ``fresh``: the block's second half, for the runs that report
    the pick (never the seeds that chose it). Up to 498 seeds each (--seed -2's block ends at -2)."""
    half = SEED_BLOCK // 2
    if not 0 < n < half - 1:
        raise ValueError(f"confirmation seeds: 1 to {half - 2} per candidate, not {n}")
    return [SEED_BLOCK * (search_seed + 1) + (half if fresh else 0) + i for i in range(n)]


def to_decide(gap: float, seed_half: float, rows_half: float, seeds: int, level: float,
              most: int = 497) -> int | None:
    """Seeds per candidate at which the interval of a difference of ``gap`` would exclude 0 at
    ``level``: the seed part's standard error shrinks as 1/sqrt(n) (and its t-quantile with the
    degrees of freedom), the rows part stays; None when even ``most`` seeds would not (the rows
    part alone covers the gap: more validation rows would decide it, not more seeds)."""
    from scipy.stats import t

    if not (math.isfinite(gap) and math.isfinite(seed_half)) or seeds < 2:
        return None
    q = (1 + level) / 2
    seed_se = seed_half / float(t.ppf(q, seeds - 1))
    for n in range(seeds + 1, most + 1):
        if math.hypot(float(t.ppf(q, n - 1)) * seed_se * math.sqrt(seeds / n), rows_half) < abs(gap):
            return n
    return None
