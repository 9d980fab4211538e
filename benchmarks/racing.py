"""Racing confirmation (``search.selection.racing``) on simulated outputs with known truth.

    python -m benchmarks.racing [--draws 1000]

The crossed seeds x rows simulator (``benchmarks.simulate``) at BENCHMARKS §11's noise: one
binary task of 900 validation rows (§11: 300 per task, 3 tasks), ``Noise(seed=0.03,
config_seed=0.03)``, which gives seed scores an sd of ~1.7 points and paired seed differences
~2.0 points (§11's confirmed intervals imply 1.5-3 and 1.3-2); true scores near 0.5 (§11:
0.45-0.53).

- **No difference**: the rate at which a race drops a candidate truly equal to the best as
  separably behind (false "separable"), with and without halving, the futility stop off (every
  planned look: the worst case).
- **A 2-point lead**: how often the race's leader (winner or first of a tie) is the true best,
  against confirming every candidate with 3 seeds (3 x k runs) on the same draws, with the race
  given fewer runs than that (2 x k, 2.5 x k) and as many; paired per draw: the share where only
  the race found it minus the share where only confirm-all did, with a 95% normal interval. The
  race without halving (10 rounds of reserve) is the reference of issue 26's first preview.

Writes ``benchmarks/results/racing.json`` (``--json``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from benchmarks.simulate import Noise, racing_outcomes

NOISE = Noise(seed=0.03, config_seed=0.03)
ROWS = 900
NULL = {"no difference, 4": [0.5] * 4, "no difference, 8": [0.5] * 8}
LEAD = {
    "2-point lead, 4 (the rest level)": [0.52, 0.5, 0.5, 0.5],
    "2-point lead, 4 (the rest spread behind)": [0.52, 0.50, 0.47, 0.44],
    "2-point lead, 8 (4 leaders + 4 defaults, §11-like)": [0.53, 0.51, 0.51, 0.49, 0.505, 0.50, 0.45, 0.45],
}
ARMS = {  # label -> (halving, reserve in runs per candidate or None: 10 rounds, futility stop)
    "halving, 2 x k runs": (True, 2.0, False),
    "halving, 2.5 x k runs": (True, 2.5, False),
    "halving, 3 x k runs": (True, 3.0, False),
    "no halving, 10 rounds, futility stop (the preview)": (False, None, True),
}
"""Halving races have no futility stop (``Race``: the plan bounds their runs)."""


def summarise(truths: list[float], draws: int, seed: int, halving: bool, per: float | None,
              futility: bool) -> dict:
    start = time.perf_counter()
    k = len(truths)
    reserve = None if per is None else per * k
    outs = racing_outcomes(truths, draws, ROWS, NOISE, seed=seed, futility=futility, halving=halving,
                           reserve_runs=reserve)
    best = {i for i, t in enumerate(truths) if t == max(truths)}
    runs = np.array([o.runs for o in outs])
    race_right = np.array([o.leader in best for o in outs], dtype=float)
    confirm_right = np.array([o.confirm_pick in best for o in outs], dtype=float)
    d = race_right - confirm_right
    half = 1.96 * float(d.std(ddof=1)) / math.sqrt(len(d))
    return {
        "truths": truths, "draws": draws, "halving": halving, "reserve_runs": reserve, "futility": futility,
        "false_separable": float(np.mean([any(i in best for i in o.dropped) for o in outs])),
        "leader_is_best": float(race_right.mean()),
        "decided": float(np.mean([o.winner is not None for o in outs])),
        "winner_is_best": float(np.mean([o.winner in best for o in outs])),
        "cut_best": float(np.mean([any(i in best for i in o.cut) for o in outs])),
        "confirm_all_is_best": float(confirm_right.mean()),
        "race_minus_confirm_all": float(d.mean()), "race_minus_confirm_all_half": half,
        "runs_mean": float(runs.mean()), "confirm_all_runs": 3 * k,
        "runs_quantiles": {q: float(np.quantile(runs, q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9)},
        "seconds": time.perf_counter() - start}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=Path("benchmarks/results/racing.json"))
    args = p.parse_args()
    rows = []
    print("| scenario | race | false separable | leader is best | confirm-all 3 is best | race - confirm-all "
          "(95%) | decided | best cut | runs mean (p10/p50/p90) | confirm-all runs |\n"
          "|---|---|---|---|---|---|---|---|---|---|", flush=True)
    jobs = [(n, t, f"{'halving' if h else 'no halving'}, 10 rounds, no futility stop", h, None, False)
            for n, t in NULL.items() for h in (True, False)]
    jobs += [(n, t, label, *arm) for n, t in LEAD.items() for label, arm in ARMS.items()]
    for name, truths, label, halving, per, futility in jobs:
        r = {"scenario": name, "race": label, **summarise(truths, args.draws, args.seed, halving, per, futility)}
        rows.append(r)
        q = r["runs_quantiles"]
        print(f"| {name} | {label} | {r['false_separable']:.3f} | {r['leader_is_best']:.3f} | "
              f"{r['confirm_all_is_best']:.3f} | {100 * r['race_minus_confirm_all']:+.1f} ± "
              f"{100 * r['race_minus_confirm_all_half']:.1f} pts | {r['decided']:.3f} | {r['cut_best']:.3f} | "
              f"{r['runs_mean']:.1f} ({q[0.1]:.0f}/{q[0.5]:.0f}/{q[0.9]:.0f}) | {r['confirm_all_runs']} |",
              flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"noise": NOISE.__dict__, "rows": ROWS, "alpha": 0.05, "draws": args.draws,
                                     "results": rows}, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
