"""Racing confirmation (``search.selection.racing``) on simulated outputs with known truth.

    python -m benchmarks.racing [--draws 1000]

The crossed seeds x rows simulator (``benchmarks.simulate``) at BENCHMARKS §11's noise: one
binary task of 900 validation rows (§11: 300 per task, 3 tasks), ``Noise(seed=0.03,
config_seed=0.03)``, which gives seed scores an sd of ~1.7 points and paired seed differences
~2.0 points (§11's confirmed intervals imply 1.5-3 and 1.3-2); true scores near 0.5 (§11:
0.45-0.53). Per scenario: the rate at which a race drops a candidate truly equal to the best
(false "separable"), how often its leader (winner or first of a tie) is the true best, how often
it decides (one left), runs used (distribution) against confirming every candidate with 3 seeds,
and how often that confirm-all pick is the true best on the same draws. With no difference the races run without the futility stop (every planned look: the
worst case for false "separable"). Writes ``benchmarks/results/racing.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.simulate import Noise, racing_outcomes

NOISE = Noise(seed=0.03, config_seed=0.03)
ROWS = 900
SCENARIOS = {
    "no difference, 4": [0.5] * 4,
    "no difference, 8": [0.5] * 8,
    "2-point lead, 4 (the rest level)": [0.52, 0.5, 0.5, 0.5],
    "2-point lead, 4 (the rest spread behind)": [0.52, 0.50, 0.47, 0.44],
    "2-point lead, 8 (4 leaders + 4 defaults, §11-like)": [0.53, 0.51, 0.51, 0.49, 0.505, 0.50, 0.45, 0.45],
}


def summarise(truths: list[float], draws: int, seed: int, futility: bool) -> dict:
    start = time.perf_counter()
    outs = racing_outcomes(truths, draws, ROWS, NOISE, seed=seed, futility=futility)
    best = {i for i, t in enumerate(truths) if t == max(truths)}
    runs = np.array([o.runs for o in outs])
    return {
        "truths": truths, "draws": draws, "futility": futility,
        "false_separable": float(np.mean([any(i in best for i in o.dropped) for o in outs])),
        "leader_is_best": float(np.mean([o.leader in best for o in outs])),
        "decided": float(np.mean([o.winner is not None for o in outs])),
        "winner_is_best": float(np.mean([o.winner in best for o in outs])),
        "confirm_all_is_best": float(np.mean([o.confirm_pick in best for o in outs])),
        "runs_mean": float(runs.mean()), "confirm_all_runs": 3 * len(truths),
        "runs_quantiles": {q: float(np.quantile(runs, q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9)},
        "seconds": time.perf_counter() - start}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rows = []
    for name, truths in SCENARIOS.items():
        for futility in ((False,) if name.startswith("no difference") else (True, False)):
            rows.append({"scenario": name, **summarise(truths, args.draws, args.seed, futility)})
            r = rows[-1]
            print(f"| {name} | {'on' if futility else 'off'} | {r['false_separable']:.3f} | "
                  f"{r['leader_is_best']:.3f} | {r['decided']:.3f} | {r['confirm_all_is_best']:.3f} | "
                  f"{r['runs_mean']:.1f} | {r['confirm_all_runs']} | "
                  f"{r['runs_quantiles'][0.1]:.0f}/{r['runs_quantiles'][0.5]:.0f}/{r['runs_quantiles'][0.9]:.0f} "
                  f"| {r['seconds']:.0f} |", flush=True)
    out = Path("benchmarks/results/racing.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"noise": NOISE.__dict__, "rows": ROWS, "max_rounds": 10, "alpha": 0.05,
                               "results": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    print("| scenario | futility | false separable | leader is best | decided | confirm-all 3 is best | "
          "runs (mean) | confirm-all runs | runs p10/p50/p90 | s |\n|---|---|---|---|---|---|---|---|---|---|")
    main()
