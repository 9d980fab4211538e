"""Time to a good config: a FIFO table of real trials, every scheduler replayed over it.

    python -m benchmarks.scheduler_replay --data-dir ../shared/data/cs224n            # all of it
    python -m benchmarks.scheduler_replay --table-dir benchmarks/results/replay_table   # reuse a table

1. The table: ``search/run.py --method adapter --scheduler fifo --searcher random --eval-full``
   (32 trials, every trial to the full budget, each evaluation scored on the whole dev sets and,
   from the same predictions, on that rung's stratified subset). Skipped when it exists.
2. Fidelity: Kendall tau, at each rung, between the subset scores and the whole-dev scores of the
   same checkpoints; and between each rung's whole-dev score and the final one.
3. Replays (``search.replay``) of every scheduler over ``--orders`` random trial orders, 2 trials
   at once: compute until the search holds a config within 0.5 points of the table's best
   (trial-seconds of training and of evaluation), per-order ratios to FIFO and to today's
   default (ASHA scoring the whole dev set), and the share of replays that end within 0.5 points.
4. ``--real-check N``: a real ASHA search over the table's first N configs (the same random
   searcher and seed draw them again) against the simulator's prediction for that order.
Prints the tables and writes ``benchmarks/results/scheduler_replay.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

from benchmarks.common import ROOT, run_search
from search.replay import (
    Curve,
    Scenario,
    hold_ratios,
    load_curves,
    orders,
    quartiles,
    simulate,
    summarize,
    table_best,
)

TOLERANCE = 0.005
SCENARIOS = [Scenario("fifo", "full"), Scenario("asha", "full"), Scenario("fifo", "subset"),
             Scenario("asha", "subset"), Scenario("hyperband", "subset"), Scenario("pasha", "subset"),
             Scenario("asha", "subset", rf=3.0), Scenario("pasha", "subset", rf=3.0)]


def kendall_tau(x: list[float], y: list[float]) -> float:
    """Kendall's tau-b (ties in either list counted as in the tau-b definition)."""
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denom = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denom if denom else math.nan


def fidelity_rows(curves: list[Curve]) -> list[dict]:
    rows = []
    for k in range(len(curves[0].score)):
        sub = [c.score_sub[k] for c in curves]
        full = [c.score[k] for c in curves]
        final = [c.final for c in curves]
        rows.append({"evaluation": k + 1, "step": curves[0].steps[k],
                     "sub_rows": curves[0].sub_rows[k], "rows": curves[0].rows[k],
                     "tau_subset_vs_full": kendall_tau(sub, full),
                     "tau_full_vs_final": kendall_tau(full, final),
                     "tau_subset_vs_final": kendall_tau(sub, final)})
    return rows


def replay_rows(curves: list[Curve], count: int, seed: int, concurrency: int) -> list[dict]:
    """``search.replay.summarize`` of every scenario against FIFO, plus the ratio to today's default
    (ASHA scoring the whole dev set) and the share of orders meeting both targets."""
    best = table_best(curves)
    plans = orders(len(curves), count, seed)
    runs = {sc: [simulate(curves, o, Scenario(sc.scheduler, sc.fidelity, sc.grace, sc.rf, concurrency),
                          TOLERANCE, best) for o in plans] for sc in SCENARIOS}
    fifo, asha_today = runs[SCENARIOS[0]], runs[SCENARIOS[1]]
    rows = []
    for sc, reps in runs.items():
        row = summarize(reps, sc, fifo)
        vs_asha = hold_ratios(reps, asha_today)
        row["vs_asha_q1_median_q3"] = quartiles(vs_asha)
        row["target_share"] = sum(
            r.within and vf is not None and va is not None and vf <= 0.3 and va <= 0.6
            for r, vf, va in zip(reps, row["ratio_orders"], vs_asha, strict=True)) / len(reps)
        rows.append(row)
    return rows


def real_check(args, curves: list[Curve], n: int, scheduler: str = "asha") -> dict:
    """A real search over the table's first ``n`` configs vs the simulator's prediction."""
    out = args.work / f"real_{scheduler}_{n}"
    flags = ["--method", "adapter", "--scheduler", scheduler, "--searcher", "random", "--num-samples", str(n),
             "--max-steps", str(args.max_steps), "--eval-every", str(args.eval_every), "--seed", str(args.seed),
             "--eval-rows", str(args.eval_rows), "--no-default-trial"] + (
        ["--data-dir", args.data_dir] if args.data_dir else [])
    res, wall = run_search(out, flags, args.set, quiet=True)
    m = res["methods"][0]
    order = sorted(range(len(curves)), key=lambda i: curves[i].trial_id)[:n]
    predicted = simulate(curves, order, Scenario(scheduler, "subset", concurrency=2), TOLERANCE)
    real_steps = m["evals_run"] * args.eval_every
    clock = json.loads((out / "adapter" / "trials.json").read_text())["trials"].values()
    train, evals = sum(t.get("train_s", 0) for t in clock), sum(t.get("eval_s", 0) for t in clock)
    return {"scheduler": scheduler, "trials": n, "eval_share": evals / (train + evals), "real_steps": real_steps, "predicted_steps": predicted.steps,
            "ratio": real_steps / predicted.steps, "real_stopped_early": m["stopped_early"],
            "predicted_stopped_early": sum(1 for v in predicted.stopped.values() if v < len(curves[0].score)),
            "real_best": m["best_score"], "predicted_final_true": predicted.final_true, "wall_s": wall}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None, help="unset: the synthetic demo suite")
    p.add_argument("--table-dir", type=Path, default=ROOT / "benchmarks/results/replay_table")
    p.add_argument("--work", type=Path, default=ROOT / "benchmarks/results/replay_runs")
    p.add_argument("--num-samples", type=int, default=32)
    p.add_argument("--max-steps", type=int, default=120)
    p.add_argument("--eval-every", type=int, default=30)
    p.add_argument("--eval-rows", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=["max_length=64"])
    p.add_argument("--orders", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--real-check", type=int, default=0, help="trials of the real searches checked (0: skip)")
    p.add_argument("--real-schedulers", default="asha,pasha")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/scheduler_replay.json")
    args = p.parse_args()
    name = args.table_dir.name
    if not (args.table_dir / "results.json").exists():
        flags = ["--method", "adapter", "--scheduler", "fifo", "--searcher", "random", "--num-samples",
                 str(args.num_samples), "--max-steps", str(args.max_steps), "--eval-every", str(args.eval_every),
                 "--eval-rows", str(args.eval_rows), "--eval-full", "--no-default-trial", "--seed", str(args.seed)]
        flags += ["--data-dir", args.data_dir] if args.data_dir else []
        run_search(args.table_dir, flags, args.set, quiet=True)
    method, curves = load_curves(f"sqlite:///{args.table_dir / 'mlflow.db'}", name)
    best = table_best(curves)
    finals = sorted((c.final for c in curves), reverse=True)
    near = sum(f >= best - TOLERANCE for f in finals)
    print(f"table {name}: {method}, {len(curves)} trials x {len(curves[0].score)} evaluations; best "
          f"{best:.4f}, {near} config(s) within 0.5 points; median {statistics.median(finals):.4f}\n")
    fid = fidelity_rows(curves)
    print("| evaluation | step | subset rows | whole-dev rows | tau subset vs whole | tau whole vs final "
          "| tau subset vs final |\n|---|---|---|---|---|---|---|")
    for r in fid:
        print(f"| {r['evaluation']} | {r['step']} | {r['sub_rows']:.0f} | {r['rows']:.0f} | "
              f"{r['tau_subset_vs_full']:.3f} | {r['tau_full_vs_final']:.3f} | {r['tau_subset_vs_final']:.3f} |")
    rows = replay_rows(curves, args.orders, args.seed, args.concurrency)
    print(f"\n{args.orders} random orders, {args.concurrency} at once; compute = trial-seconds until the "
          "search holds a config within 0.5 points of the table's best (q1 / median / q3)\n")
    print("| scheduler/fidelity | compute to hold, s | of which training s (median) | of which eval s (median) "
          "| vs FIFO (median, q1-q3) | vs ASHA whole-dev (median) | ends within 0.5 pts | meets both targets "
          "| total compute s | total steps |\n|" + "---|" * 10)
    for r in rows:
        h, vf, va = r["hold_s_q1_median_q3"], r["hold_ratio_q1_median_q3"], r["vs_asha_q1_median_q3"]
        print(f"| {r['scenario']} | {h[0]:.0f} / {h[1]:.0f} / {h[2]:.0f} | {r['hold_train_s_median']:.0f} | "
              f"{r['hold_eval_s_median']:.0f} | {vf[1]:.2f} ({vf[0]:.2f}-{vf[2]:.2f}) | {va[1]:.2f} | "
              f"{100 * r['within_share']:.1f}% | {100 * r['target_share']:.1f}% | {r['compute_s_median']:.0f} | "
              f"{r['steps_median']:.0f} |")
    checks = [real_check(args, curves, args.real_check, sch) for sch in args.real_schedulers.split(",")
              ] if args.real_check else []
    for check in checks:
        print(f"\nreal {check['scheduler']} over the first {check['trials']} configs: {check['real_steps']} "
              f"steps, simulator predicted {check['predicted_steps']} (ratio {check['ratio']:.2f}); stopped "
              f"early {check['real_stopped_early']} real vs {check['predicted_stopped_early']} predicted; "
              f"best {check['real_best']:.4f}; evaluation {100 * check['eval_share']:.1f}% of trial time")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"table": name, "method": method, "best": best, "near_best": near,
                                     "fidelity": fid, "replays": rows, "real_checks": checks,
                                     "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
