"""Time to a good config: a FIFO table of real trials, every scheduler replayed over it.

    python -m benchmarks.scheduler_replay --data-dir ../shared/data/cs224n --real-check 16  # all of it
    python -m benchmarks.scheduler_replay --table-dir benchmarks/results/replay_table      # reuse a table
    python -m benchmarks.scheduler_replay --from-json benchmarks/results/scheduler_replay.json  # re-run
    python -m benchmarks.scheduler_replay --synthetic 10      # synthetic tables, no training at all

1. The table: ``search/run.py --method adapter --scheduler fifo --searcher random --eval-full``
   (32 trials, every trial to the full budget, each evaluation scored on the whole dev sets and,
   from the same predictions, on that rung's stratified subset). Skipped when it exists.
2. Fidelity: Kendall tau, at each rung, between the subset scores and the whole-dev scores of the
   same checkpoints; and between each rung's whole-dev score and the final one.
3. Replays (``search.schedule.replay``) of every scheduler over ``--orders`` random trial orders, 2 trials
   at once: compute until the search holds a config within 0.5 points of the table's best (its
   pick trained to the end, kept to the end; see ``search.schedule.replay``), the share of orders that
   held, per-order ratios to FIFO and to ASHA scoring the whole dev set, the share of replays
   that end within 0.5 points, and per order PASHA against ASHA and PASHA against PASHA without
   its leader rule (``search.schedule.policies.Pasha``).
4. ``--real-check N``: real ASHA and PASHA searches over the table's first N configs (the same
   random searcher and seed draw them again) against the simulator's prediction for that order:
   steps, which trial stopped at which evaluation, and the pick.

Prints the tables and writes the raw records, ``benchmarks/results/scheduler_replay.json``:
the table's curves (what ``--from-json`` replays again), the fidelity rows, every scenario's
summary with its per-order hold seconds and ratios (null: never held), the paired comparisons
and the real checks. It is small; commit it with ``git add -f`` (``benchmarks/results/`` is
ignored for everything else).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
from dataclasses import asdict
from pathlib import Path

from benchmarks.common import ROOT, run_search
from search.report.replay import load_curves
from search.results import json_safe
from search.schedule.replay import (
    Replay,
    Scenario,
    hold_ratios,
    orders,
    paired_shares,
    quartiles,
    simulate,
    summarize,
    table_best,
)
from search.schedule.replay_table import Curve, curves_from_records

TOLERANCE = 0.005
NO_LEADER = (("leader", False),)
SCENARIOS = [Scenario("fifo", "full"), Scenario("asha", "full"), Scenario("fifo", "subset"),
             Scenario("asha", "subset"), Scenario("hyperband", "subset"), Scenario("pasha", "subset"),
             Scenario("pasha", "subset", options=NO_LEADER),
             Scenario("asha", "subset", rf=3.0), Scenario("pasha", "subset", rf=3.0)]
PAIRS = [(Scenario("pasha", "subset"), Scenario("asha", "subset")),
         (Scenario("pasha", "subset"), Scenario("pasha", "subset", options=NO_LEADER))]
"""(scenario, reference): per order, did the scenario hold no later than the reference?"""


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


def synthetic_table(seed: int, subset_sd: float = 0.05, trials: int = 32, evaluations: int = 4) -> list[Curve]:
    """A made-up table shaped like §9's: final scores around 0.49 (sd 0.05), curves that rise at
    different rates (so they cross), a subset score whose noise halves as its rows quadruple
    (``subset_sd`` at the first evaluation), seconds like §9's per evaluation and set-up."""
    rng = random.Random(seed)
    curves = []
    for c in range(trials):
        final, rate = rng.gauss(0.49, 0.05), rng.uniform(0, 0.04)
        score = [final - (evaluations - 1 - k) * rate + rng.gauss(0, 0.004) for k in range(evaluations)]
        sub_rows = [192.0 * 2 ** k for k in range(evaluations - 1)] + [3010.0]
        noise = [subset_sd * math.sqrt(192.0 / r) for r in sub_rows[:-1]] + [0.0]
        curves.append(Curve(
            f"s{seed}_{c:02d}", [30 * (k + 1) for k in range(evaluations)],
            [rng.uniform(15, 30) for _ in score], [rng.uniform(20, 32) for _ in score], score,
            [s + rng.gauss(0, sd) for s, sd in zip(score, noise, strict=True)], [3010.0] * evaluations,
            sub_rows, setup_s=rng.uniform(3, 8)))
    return curves


def replay_rows(curves: list[Curve], count: int, seed: int, concurrency: int) -> tuple[list[dict], list[dict]]:
    """``search.schedule.replay.summarize`` of every scenario against FIFO, plus the ratio to ASHA scoring
    the whole dev set and the share of orders meeting both targets; and the paired comparisons."""
    best = table_best(curves)
    plans = orders(len(curves), count, seed)
    runs: dict[Scenario, list[Replay]] = {
        sc: [simulate(curves, o, Scenario(sc.scheduler, sc.fidelity, sc.grace, sc.rf, concurrency, sc.options),
                      TOLERANCE, best) for o in plans] for sc in SCENARIOS}
    fifo, asha_full = runs[SCENARIOS[0]], runs[SCENARIOS[1]]
    rows = []
    for sc, reps in runs.items():
        row = summarize(reps, sc, fifo)
        vs_asha = hold_ratios(reps, asha_full)
        row["vs_asha_orders"] = vs_asha
        row["vs_asha_q1_median_q3"] = quartiles(vs_asha)
        row["target_share"] = sum(r.within and vf <= 0.3 and va <= 0.6 for r, vf, va in
                                  zip(reps, row["ratio_orders"], vs_asha, strict=True)) / len(reps)
        rows.append(row)
    pairs = [{"scenario": a.label, "reference": b.label, **paired_shares(runs[a], runs[b])} for a, b in PAIRS]
    return rows, pairs


def real_check(args, curves: list[Curve], n: int, scheduler: str) -> dict:
    """A real search over the table's first ``n`` configs vs the simulator's prediction for that
    order: steps, the evaluations each trial ran (matched by position in the order) and the pick."""
    out = args.work / f"real_{scheduler}_{n}"
    flags = ["--method", "adapter", "--scheduler", scheduler, "--searcher", "random", "--num-samples", str(n),
             "--max-steps", str(args.max_steps), "--eval-every", str(args.eval_every), "--seed", str(args.seed),
             "--eval-rows", str(args.eval_rows), "--no-default-trial"] + (
        ["--data-dir", args.data_dir] if args.data_dir else [])
    res, wall = run_search(out, flags, args.set, quiet=True)
    m = res["methods"][0]
    order = sorted(range(len(curves)), key=lambda i: curves[i].trial_id)[:n]
    predicted = simulate(curves, order, Scenario(scheduler, "subset", concurrency=2), TOLERANCE)
    clock = json.loads((out / "adapter" / "trials.json").read_text())["trials"]
    real_ids = sorted(clock)
    real_evals = [int(clock[t].get("training_iteration", 0)) for t in real_ids]
    predicted_evals = [predicted.stopped.get(curves[i].trial_id, 0) for i in order]
    train = sum(t.get("train_s", 0) for t in clock.values())
    evals = sum(t.get("eval_s", 0) for t in clock.values())
    real_pick = real_ids.index(m["best_trial_id"]) if m.get("best_trial_id") in real_ids else None
    predicted_pick = next((k for k, i in enumerate(order) if curves[i].trial_id == predicted.final_trial), None)
    return {"scheduler": scheduler, "trials": n, "eval_share": evals / (train + evals),
            "real_steps": m["evals_run"] * args.eval_every, "predicted_steps": predicted.steps,
            "real_evaluations": real_evals, "predicted_evaluations": predicted_evals,
            "same_evaluations": sum(a == b for a, b in zip(real_evals, predicted_evals, strict=False)),
            "real_pick": real_pick, "predicted_pick": predicted_pick,
            "real_best": m["best_score"], "predicted_final_true": predicted.final_true, "wall_s": wall}


def _fmt(q: tuple[float, float, float], digits: int = 0) -> str:
    return " / ".join("never" if math.isinf(x) else f"{x:.{digits}f}" for x in q)


def print_report(name: str, curves: list[Curve], fid: list[dict], rows: list[dict], pairs: list[dict],
                 orders_count: int, concurrency: int) -> None:
    best = table_best(curves)
    finals = sorted((c.final for c in curves), reverse=True)
    near = sum(f >= best - TOLERANCE for f in finals)
    print(f"table {name}: {len(curves)} trials x {len(curves[0].score)} evaluations; best {best:.4f}, "
          f"{near} config(s) within 0.5 points; median {statistics.median(finals):.4f}\n")
    print("| evaluation | step | subset rows | whole-dev rows | tau subset vs whole | tau whole vs final "
          "| tau subset vs final |\n|---|---|---|---|---|---|---|")
    for r in fid:
        print(f"| {r['evaluation']} | {r['step']} | {r['sub_rows']:.0f} | {r['rows']:.0f} | "
              f"{r['tau_subset_vs_full']:.3f} | {r['tau_full_vs_final']:.3f} | {r['tau_subset_vs_final']:.3f} |")
    print(f"\n{orders_count} random orders, {concurrency} at once; compute = trial-seconds (set-up, training, "
          "evaluation) until the search's pick is a config within 0.5 points of the table's best, trained to "
          "the end and kept to the end (q1 / median / q3; 'never': that share of orders never held)\n")
    print("| scheduler/fidelity | held | compute to hold, s | of which training s (median) | of which eval s "
          "(median) | vs FIFO (median, q1-q3) | vs ASHA whole-dev (median) | ends within 0.5 pts | meets both "
          "targets | total compute s (set-up + train + eval) | total steps |\n|" + "---|" * 11)
    for r in rows:
        vf, va = r["hold_ratio_q1_median_q3"], r["vs_asha_q1_median_q3"]
        print(f"| {r['scenario']} | {100 * r['held_share']:.1f}% | {_fmt(r['hold_s_q1_median_q3'])} | "
              f"{_fmt((r['hold_train_s_median'],))} | {_fmt((r['hold_eval_s_median'],))} | "
              f"{_fmt(vf[1:2], 2)} ({_fmt((vf[0],), 2)}-{_fmt((vf[2],), 2)}) | {_fmt(va[1:2], 2)} | "
              f"{100 * r['within_share']:.1f}% | {100 * r['target_share']:.1f}% | {r['compute_s_median']:.0f} "
              f"({r['setup_s_median']:.0f} + {r['train_s_median']:.0f} + {r['eval_s_median']:.0f}) | "
              f"{r['steps_median']:.0f} |")
    for p in pairs:
        print(f"\n{p['scenario']} held no later than {p['reference']} in {100 * p['at_most']:.1f}% of the orders "
              f"(strictly earlier in {100 * p['less']:.1f}%; neither held in {100 * p['neither_held']:.1f}%)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None, help="unset: the synthetic demo suite")
    p.add_argument("--table-dir", type=Path, default=ROOT / "benchmarks/results/replay_table")
    p.add_argument("--from-json", type=Path, default=None,
                   help="replay the curves of an earlier run's raw records instead of a table")
    p.add_argument("--synthetic", type=int, default=0,
                   help="replay N made-up tables (synthetic_table, seeds 0..N-1) and summarize them")
    p.add_argument("--subset-sd", type=float, default=0.05, help="--synthetic: subset noise at rung 1")
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
    if args.synthetic:
        return synthetic(args)
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        name, method, curves = saved["table"], saved.get("method"), curves_from_records(saved["curves"])
    else:
        name = args.table_dir.name
        if not (args.table_dir / "results.json").exists():
            flags = ["--method", "adapter", "--scheduler", "fifo", "--searcher", "random", "--num-samples",
                     str(args.num_samples), "--max-steps", str(args.max_steps), "--eval-every",
                     str(args.eval_every), "--eval-rows", str(args.eval_rows), "--eval-full",
                     "--no-default-trial", "--seed", str(args.seed)]
            flags += ["--data-dir", args.data_dir] if args.data_dir else []
            run_search(args.table_dir, flags, args.set, quiet=True)
        method, curves = load_curves(f"sqlite:///{args.table_dir / 'mlflow.db'}", name)
    fid = fidelity_rows(curves)
    rows, pairs = replay_rows(curves, args.orders, args.seed, args.concurrency)
    print_report(name, curves, fid, rows, pairs, args.orders, args.concurrency)
    checks = [real_check(args, curves, args.real_check, sch) for sch in args.real_schedulers.split(",")
              ] if args.real_check and not args.from_json else []
    for c in checks:
        print(f"\nreal {c['scheduler']} over the first {c['trials']} configs: {c['real_steps']} steps, simulator "
              f"{c['predicted_steps']}; evaluations per trial the same for {c['same_evaluations']} of {c['trials']} "
              f"(real {c['real_evaluations']}, simulated {c['predicted_evaluations']}); pick: position "
              f"{c['real_pick']} real, {c['predicted_pick']} simulated; best {c['real_best']:.4f}; evaluation "
              f"{100 * c['eval_share']:.1f}% of trial time")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(json_safe({
        "table": name, "method": method, "best": table_best(curves), "tolerance": TOLERANCE, "curves": [asdict(c) for c in curves],
        "fidelity": fid, "replays": rows, "paired": pairs, "real_checks": checks,
        "args": {k: str(v) for k, v in vars(args).items()}}), indent=1))
    print(f"\nwrote {args.json} (raw records: commit with git add -f)")
    return 0


def synthetic(args) -> int:
    """Replays over ``args.synthetic`` made-up tables: per scenario, the mean over tables of the
    share held, of the median hold ratio to FIFO and of the share ending within 0.5 points."""
    per: dict[str, list[tuple[float, float, float]]] = {}
    paired: dict[str, list[float]] = {}
    for seed in range(args.synthetic):
        rows, pairs = replay_rows(synthetic_table(seed, args.subset_sd), args.orders, seed, args.concurrency)
        for r in rows:
            per.setdefault(r["scenario"], []).append(
                (r["held_share"], r["hold_ratio_q1_median_q3"][1], r["within_share"]))
        for q in pairs:
            paired.setdefault(f"{q['scenario']} <= {q['reference']}", []).append(q["at_most"])
    print(f"{args.synthetic} synthetic tables (subset sd {args.subset_sd:g} at rung 1), {args.orders} orders each\n")
    print("| scheduler/fidelity | held (mean) | hold ratio to FIFO (median of medians) | ends within 0.5 pts |\n"
          "|---|---|---|---|")
    for label, xs in per.items():
        held, ratio, within = zip(*xs, strict=True)
        print(f"| {label} | {100 * statistics.mean(held):.1f}% | {_fmt((statistics.median(ratio),), 2)} | "
              f"{100 * statistics.mean(within):.1f}% |")
    for label, xs in paired.items():
        print(f"{label}: {100 * statistics.mean(xs):.1f}% of orders")
    return 0


if __name__ == "__main__":
    sys.exit(main())
