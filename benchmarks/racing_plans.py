"""Other plans for the race's seeds, on the simulated outputs of ``benchmarks.racing`` (issue 26).

    python -m benchmarks.racing_plans [--draws 1000] [--plans current,rejects,drop-one]

The race spends its reserve by ``search.selection.halving``'s plan ("current": sequential halving,
two seeds each before the first cut when the runs pay three per candidate). Two alternatives from
the fixed-budget best-arm literature, at the same runs, on the same draws (seed 0):

- ``rejects``: successive rejects (Audibert & Bubeck 2010): ``k - 1`` phases, the worst by mean cut
  after each, phase ``j`` ending at ``ceil((runs - k) / (logbar(k) (k + 1 - j)))`` seeds per
  survivor, ``logbar(k) = 1/2 + sum_{i=2..k} 1/i``; phases that end on the same round cut together.
- ``drop-one``: one seed per survivor per round and the worst cut after each round down to two,
  which share what is left; the current plan where the runs do not pay for that.

Only the scenarios with a true leader (``benchmarks.racing.LEAD``), 2, 2.5, 2.75 and 3 runs per
candidate. The plan is swapped in through ``search.selection.racing.halving_plan`` for this process.
Writes ``benchmarks/results/racing_plans.json``.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path

import search.selection.racing as racing
from benchmarks.racing import LEAD, summarise
from search.selection.halving import HalvingPlan, halving_plan

Plan = Callable[[int, int], HalvingPlan]


def rejects(k: int, runs: int) -> HalvingPlan:
    if k < 3 or runs < k:
        return halving_plan(k, runs, 10**6)
    logbar = 0.5 + sum(1 / i for i in range(2, k + 1))
    rounds, spent, cuts = 0, 0, {}
    for j in range(1, k):
        n = max(rounds + (j == 1), math.ceil((runs - k) / (logbar * (k + 1 - j))))
        alive = k - j + 1
        add = min(n - rounds, (runs - spent) // alive)
        rounds, spent = rounds + add, spent + add * alive
        if j < k - 1:
            cuts[rounds] = k - j
    return HalvingPlan(rounds + (runs - spent) // 2, cuts)


def drop_one(k: int, runs: int) -> HalvingPlan:
    rounds, spent, alive, cuts = 0, 0, k, {}
    while alive > 2 and spent + alive <= runs:
        rounds, spent, alive = rounds + 1, spent + alive, alive - 1
        cuts[rounds] = alive
    if k < 3 or alive > 2:
        return halving_plan(k, runs, 10**6)
    return HalvingPlan(rounds + (runs - spent) // 2, cuts)


PLANS: dict[str, Plan | None] = {"current": None, "rejects": rejects, "drop-one": drop_one}


def capped(plan: Plan) -> Callable[..., HalvingPlan]:
    """``plan`` as ``halving_plan`` is called: at most ``runs`` runs, rounds capped (fewer runs then)."""

    def make(k: int, runs: float, max_rounds: int, first: int = 2) -> HalvingPlan:
        n = int(math.floor(runs + 1e-9))
        out = plan(k, n)
        while out.rounds > max_rounds and n > 0:
            n -= 1
            out = plan(k, n)
        return out

    return make


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--plans", default=",".join(PLANS))
    p.add_argument("--json", type=Path, default=Path("benchmarks/results/racing_plans.json"))
    a = p.parse_args()
    rows = []
    print("| plan | scenario | runs per candidate | leader is best | confirm-all is best | race - confirm-all "
          "(95%) | best cut | runs mean |\n|---|---|---|---|---|---|---|---|", flush=True)
    for name in a.plans.split(","):
        plan = PLANS[name]
        racing.halving_plan = halving_plan if plan is None else capped(plan)
        for scenario, truths in LEAD.items():
            for per in (2.0, 2.5, 2.75, 3.0):
                r = summarise(truths, a.draws, 0, True, per, False)
                rows.append({"plan": name, "scenario": scenario, "per_candidate": per, **r})
                print(f"| {name} | {scenario} | {per:g} | {100 * r['leader_is_best']:.1f}% | "
                      f"{100 * r['confirm_all_is_best']:.1f}% | {100 * r['race_minus_confirm_all']:+.1f} ± "
                      f"{100 * r['race_minus_confirm_all_half']:.1f} | {100 * r['cut_best']:.1f}% | "
                      f"{r['runs_mean']:.1f} |", flush=True)
    racing.halving_plan = halving_plan
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps({"draws": a.draws, "seed": 0, "rows": rows}, indent=1))
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
