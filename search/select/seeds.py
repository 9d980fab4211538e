"""The confirmation seed blocks, Ray-free: racing (``search.select.racing``) draws its seeds here.

The scheme is ``search.confirm.confirm_seeds``'s (a block of ``SEED_BLOCK`` seeds per search
seed; selection seeds from the block's start, fresh seeds from its middle), repeated here because
``search.confirm`` imports Ray. ``tests/test_racing.py`` checks that the two agree seed for seed;
``search.confirm`` may import this one instead of keeping its own.
"""

from __future__ import annotations

SEED_BLOCK = 1000


def confirm_seeds(search_seed: int, n: int, fresh: bool = False) -> list[int]:
    """N seeds no trial of the search used, in a block of their own per search seed; ``fresh``:
    the block's second half, for the runs that report the pick (never the seeds that chose it)."""
    half = SEED_BLOCK // 2
    if not 0 < n < half - 1:
        raise ValueError(f"confirmation seeds: 1 to {half - 2} per candidate, not {n}")
    return [SEED_BLOCK * (search_seed + 1) + (half if fresh else 0) + i for i in range(n)]
