"""The plan of a race that halves its field: sequential halving (Karnin, Koren & Somekh 2013) over
the race's candidates, in seed rounds.

Fixed-budget best-arm identification: with ``runs`` runs and ``k`` candidates, split the runs
evenly over ``ceil(log2 k)`` phases; in each phase every survivor gets the same number of new
seeds (at least one), and at the phase's end the better half by mean over the shared seeds goes
on. The last phase leaves two, which get whatever the earlier phases' rounding left over. Unlike
a drop by the race's interval, a cut here claims nothing about separability: it says where the
runs are best spent, and the race's reported verdict rests on its intervals only.

Why in a race: at §11's noise (seed scores spread ~2 points, validation sets of a few hundred
rows) a 2-point lead is separable after many seeds only, so a race that only drops separable
candidates gives every candidate nearly every round; halving gives the runs to the candidates
that still lead (``benchmarks/racing.py`` measures the difference at equal runs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class HalvingPlan:
    rounds: int
    """Rounds of the whole race (the final pair's seeds)."""
    cuts: dict[int, int] = field(default_factory=dict)
    """After round r, keep this many (the better by mean)."""

    def runs_for(self, k: int) -> int:
        """Runs the plan spends on ``k`` candidates when nobody leaves early."""
        total, alive, last = 0, k, 0
        for r in sorted(self.cuts):
            total += (r - last) * alive
            alive, last = self.cuts[r], r
        return total + (self.rounds - last) * alive


def _plan(k: int, runs: int) -> HalvingPlan:
    if k < 2 or runs < k:
        return HalvingPlan(runs // k if k else 0)
    phases = math.ceil(math.log2(k))
    share = runs / phases
    alive, rounds, spent, cuts = k, 0, 0, {}
    for p in range(phases):
        add = max(1, int(share // alive))
        if spent + add * alive > runs:
            add = (runs - spent) // alive
            if add == 0:
                break
        rounds += add
        spent += add * alive
        if p < phases - 1:
            alive = math.ceil(alive / 2)
            cuts[rounds] = alive
    if alive <= 2:
        rounds += (runs - spent) // alive  # the rounding's remainder to the final pair
    return HalvingPlan(rounds, cuts)


def _plan_from(k: int, runs: int, first: int) -> HalvingPlan:
    """``first`` seeds each before the first cut, then the even split over what is left."""
    if first <= 1 or k < 3 or runs < (first + 1) * k:
        return _plan(k, runs)
    half = math.ceil(k / 2)
    rest = _plan(half, runs - first * k)
    return HalvingPlan(first + rest.rounds, {first: half, **{r + first: v for r, v in rest.cuts.items()}})


def halving_plan(k: int, runs: float, max_rounds: int, first: int = 2) -> HalvingPlan:
    """The plan for ``k`` candidates and at most ``runs`` runs, its rounds capped at ``max_rounds``
    (fewer runs then: the largest plan that fits). ``first`` seeds each before the first cut when
    the runs also pay for the survivors to double theirs (``(first + 1) k``): one seed cannot tell
    a leader from rivals level 2 points behind (the even split cut the true best in 15% of such
    races, against 7% with two; ``benchmarks/racing.py``); fewer runs: one seed each."""
    n = int(math.floor(runs + 1e-9))
    plan = _plan_from(k, n, first)
    while plan.rounds > max_rounds and n > 0:
        n -= 1
        plan = _plan_from(k, n, first)
    return plan
