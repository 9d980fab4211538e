"""The confirmation seed blocks, Ray-free: racing (``search.selection.racing``) draws its seeds here.

A block of ``SEED_BLOCK`` seeds per search seed: selection seeds from the block's start, fresh
seeds from its middle. Here, not in ``search.confirm`` (which imports Ray), so the race can use it;
``search.confirm`` imports it from here.
"""

from __future__ import annotations

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
