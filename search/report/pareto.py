"""The Pareto front of trials scored on two objectives: score (higher is better) and the share
of parameters trained (lower is better). Plain Python: the driver and the report share it."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def pareto_front(items: Sequence[T], score: Callable[[T], float],
                 cost: Callable[[T], float]) -> list[T]:
    """Items no other item beats on both objectives (higher ``score``, lower ``cost``), by
    ascending cost. Items with a non-finite score or cost are never on the front; of items with
    equal score and cost, the first is kept.

        >>> pts = [(0.5, 1.0), (0.7, 3.0), (0.6, 3.0), (0.4, 2.0)]
        >>> pareto_front(pts, score=lambda p: p[0], cost=lambda p: p[1])
        [(0.5, 1.0), (0.7, 3.0)]
    """
    finite = [x for x in items if math.isfinite(score(x)) and math.isfinite(cost(x))]
    # Cheapest first (best score first among equal costs): an item is on the front exactly when
    # it scores above every item before it.
    finite.sort(key=lambda x: (cost(x), -score(x)))
    front: list[T] = []
    for x in finite:
        if not front or score(x) > score(front[-1]):
            front.append(x)
    return front
