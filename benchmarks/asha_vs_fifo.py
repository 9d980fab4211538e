"""ASHA against FIFO: training steps consumed and best dev score, same searcher and seeds.

    python -m benchmarks.asha_vs_fifo --data-dir ../shared/data/cs224n --seeds 0,1,2

For each seed, two searches with identical settings (Optuna searcher, seed, trials, maximum
steps, data) except the scheduler: ``asha`` (stops weak trials at its rungs) and ``fifo``
(every trial runs to the end). Steps consumed = evaluations reported x ``--eval-every``, as
the search's own results table counts them. Target: ASHA <= 0.35 x FIFO's steps with a best
score within 0.5 points (score x 100).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from benchmarks.common import run_search

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None, help="unset: the synthetic demo suite")
    p.add_argument("--method", default="adapter")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--num-samples", type=int, default=9)
    p.add_argument("--max-steps", type=int, default=90)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--grace-period", type=int, default=1)
    p.add_argument("--reduction-factor", type=float, default=3)
    p.add_argument("--max-eval-samples", type=int, default=200)
    p.add_argument("--set", action="append", default=["max_length=64", "batch_size=16"])
    p.add_argument("--work", type=Path, default=ROOT / "benchmarks/results/asha_vs_fifo_runs")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/asha_vs_fifo.json")
    args = p.parse_args()
    base = ["--method", args.method, "--num-samples", str(args.num_samples), "--max-steps",
            str(args.max_steps), "--eval-every", str(args.eval_every), "--grace-period",
            str(args.grace_period), "--reduction-factor", str(args.reduction_factor),
            "--max-eval-samples", str(args.max_eval_samples)]
    base += ["--data-dir", args.data_dir] if args.data_dir else []
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        row: dict = {"seed": seed}
        for scheduler in ("asha", "fifo"):
            res, wall = run_search(args.work / f"{scheduler}-seed{seed}",
                                   base + ["--scheduler", scheduler, "--seed", str(seed)], args.set, quiet=True)
            m = res["methods"][0]
            row[scheduler] = {"best_score": m["best_score"], "steps": m["evals_run"] * args.eval_every,
                              "steps_if_all_ran": m["evals_if_no_stopping"] * args.eval_every,
                              "stopped_early": m["stopped_early"], "wall_s": wall}
            print(f"  seed {seed} {scheduler}: best {m['best_score']:.4f}, {row[scheduler]['steps']} steps, "
                  f"{wall:.0f} s", flush=True)
        row["step_ratio"] = row["asha"]["steps"] / row["fifo"]["steps"]
        row["score_gap_points"] = 100 * (row["fifo"]["best_score"] - row["asha"]["best_score"])
        rows.append(row)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows},
                                        indent=2))
    print(f"\n{args.method}: {args.num_samples} trials x {args.max_steps} steps (eval every {args.eval_every}), "
          f"ASHA grace {args.grace_period} reduction {args.reduction_factor:g}, sets {' '.join(args.set)}\n")
    print("| seed | ASHA steps | FIFO steps | ASHA / FIFO | ASHA best | FIFO best | FIFO - ASHA (points) "
          "| ASHA wall s | FIFO wall s |\n|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        a, f = r["asha"], r["fifo"]
        print(f"| {r['seed']} | {a['steps']} | {f['steps']} | {r['step_ratio']:.2f} | {a['best_score']:.4f} | "
              f"{f['best_score']:.4f} | {r['score_gap_points']:+.2f} | {a['wall_s']:.0f} | {f['wall_s']:.0f} |")
    ratio = sum(r["asha"]["steps"] for r in rows) / sum(r["fifo"]["steps"] for r in rows)
    gap = statistics.mean(r["score_gap_points"] for r in rows)
    print(f"| all | | | {ratio:.2f} | | | {gap:+.2f} (mean) | | |")
    print(f"\ntargets: steps ratio <= 0.35 ({'met' if ratio <= 0.35 else 'missed'}), mean gap <= 0.5 points "
          f"({'met' if gap <= 0.5 else 'missed'}); wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
