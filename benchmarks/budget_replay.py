"""``--budget``'s pool vs today's sequential per-method PASHA, replayed over a multi-method FIFO table.

    python -m benchmarks.budget_replay --synthetic 5                     # made-up 4-method tables
    python -m benchmarks.budget_replay --table budget_table              # a recorded table (MLflow)
    python -m benchmarks.budget_replay --record                          # how to record that table

Issue 26's "Replay, >= 200 orders" item: over ``--orders`` random orders (each method's configs in
a random order, the baseline's methods in a random or the given order), the trial-time until each
search holds a config within 0.5 points of the table's best (trained to the full budget, whole
dev, kept to the end; never held = inf), ``search.schedule.budget_replay``. Budget B is a share of
the table's whole FIFO trial-time (``--budget-share``); the pool leaves 30% of it for the race
(not replayed: one seed per config), the baseline spends B/M per method. Target: ratio
budget/baseline <= 0.5 in >= 75% of orders. "Oracle": the same ratio for a pool told which method
holds the table's best config and giving it all of B from the start: in effect a ceiling for
moving budget between methods with the same config orders and PASHA (not a proof: PASHA's cuts
depend on when reports arrive).

Prints one row per table, budget share and method order (and the tables pooled), and writes
``benchmarks/results/budget_replay.json`` (figures and per-order hold seconds, null = never held;
commit it with ``git add -f``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT
from benchmarks.scheduler_replay import synthetic_table
from search.results import json_safe
from search.schedule.budget_replay import (
    Settings,
    Table,
    compare,
    overall_best,
    total_fifo_s,
)
from search.schedule.gate import RESERVE_SHARE
from search.schedule.policies import percentile
from search.schedule.replay_table import Curve

METHODS = ("lora", "dora", "adapter", "lora_adapter")
LEVELS = {"lora": 0.46, "dora": 0.47, "adapter": 0.51, "lora_adapter": 0.49}
"""--synthetic: each method's mean full-budget score (configs spread around it, sd 0.05): adapter
ahead, lora behind by 5 points, roughly as BENCHMARKS §11's defaults (adapter 0.515, lora 0.447)."""
COST = {"lora": 1.0, "dora": 1.3, "adapter": 0.9, "lora_adapter": 1.15}
"""--synthetic: each method's training seconds relative to lora's."""
RECORD = ("peft-search --method lora,dora,adapter,lora_adapter --num-samples 16 --scheduler fifo "
          "--searcher random --eval-full --no-default-trial --confirm 0 --max-steps 40 --eval-every 10 "
          "--val-from-train 0.05 --max-eval-samples 300 --set batch_size=16 --set max_length=64 "
          "--data-dir ../shared/data/cs224n --experiment budget_table")
"""The live comparison's settings (BENCHMARKS §15) at 4 evaluations; ``--confirm 0``: a table needs
no confirmation (with several methods the search would otherwise confirm 2:3). ~25 min here."""


def synthetic_methods(seed: int, configs: int = 16, subset_sd: float = 0.05) -> Table:
    """A 4-method table: per method ``scheduler_replay.synthetic_table``'s curves (§9's shape: 4
    evaluations at 30-step intervals, curves rising at different rates, subset noise ``subset_sd`` at
    rung 1 halving as its rows quadruple, 3 tasks' rows) shifted to the method's level and its
    training seconds scaled by its cost."""
    table: Table = {}
    for k, m in enumerate(METHODS):
        shift = LEVELS[m] - 0.49  # synthetic_table centres finals on 0.49
        curves = synthetic_table(1000 * seed + k, subset_sd, configs, 4)
        table[m] = [Curve(f"{m}_{c.trial_id}", c.steps, [t * COST[m] for t in c.train_s], c.eval_s,
                          [s + shift for s in c.score], [s + shift for s in c.score_sub], c.rows, c.sub_rows,
                          c.setup_s) for c in curves]
    return table


def load_table(uri: str, experiment: str) -> tuple[Table, int]:
    """(method -> curves, tasks) of a recorded FIFO ``--eval-full`` search of several methods."""
    from search.report.data import load_experiment
    from search.schedule.replay_table import method_curves

    record = load_experiment(uri, experiment)
    if len(record.methods) < 2:
        raise ValueError(f"{experiment!r} searched {len(record.methods)} method(s): a budget replay needs "
                         "several (record with --record's command)")
    table = {m.method: method_curves(uri, m, experiment) for m in record.methods}
    lengths = {m: len(cs[0].score) for m, cs in table.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{experiment!r}: methods ran different evaluations ({lengths})")
    tasks = len(record.methods[0].settings.get("tasks", "x").split(","))
    return table, tasks


def pooled_quartiles(rows: list[dict[str, Any]], key: str = "ratio_orders") -> tuple[float, float, float]:
    """Quartiles of a per-order list over several tables' rows together (None: never held, +inf)."""
    xs = [math.inf if x is None else x for r in rows for x in r[key]]
    return percentile(xs, 25), percentile(xs, 50), percentile(xs, 75)


def _q(q: tuple[float, float, float], digits: int = 2) -> str:
    return " / ".join("never" if math.isinf(x) else f"{x:.{digits}f}" for x in q)


def row_line(name: str, share: float, r: dict[str, Any]) -> str:
    elim = ", ".join(f"{m} {100 * v:.0f}%" for m, v in r["eliminated_share"].items() if v) or "none"
    return (f"| {name} | {share:g} | {r['reserve_share']:g} | {r['method_order']} | "
            f"{100 * r['held_share_budget']:.1f}% | "
            f"{100 * r['held_share_baseline']:.1f}% | {_q(r['hold_s_budget_q1_median_q3'], 0)} | "
            f"{_q(r['hold_s_baseline_q1_median_q3'], 0)} | {_q(r['ratio_q1_median_q3'])} | "
            f"{100 * r['ratio_le_half_share']:.1f}% | {100 * r['oracle']['ratio_le_half_share']:.1f}% | "
            f"{100 * r['spent_share_budget_median']:.0f}% / "
            f"{100 * r['spent_share_budget_max']:.0f}% | {100 * r['spent_share_baseline_median']:.0f}% | {elim} |")


HEAD = ("| table | B / FIFO total | pool's reserve | baseline method order | held: budget | held: baseline | budget hold s "
        "q1 / med / q3 | baseline hold s q1 / med / q3 | ratio budget/baseline q1 / med / q3 | ratio <= 0.5 "
        "| oracle: ratio <= 0.5 | budget spent of B (median / max) | baseline spent of B | methods eliminated "
        "(share of orders) |\n"
        "|" + "---|" * 14)


def pooled(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ratios = [math.inf if x is None else x for r in rows for x in r["ratio_orders"]]
    n = len(ratios)
    return {"tables": len(rows), "orders": n, "method_order": rows[0]["method_order"],
            "reserve_share": rows[0]["reserve_share"],
            "held_share_budget": sum(r["held_share_budget"] * r["orders"] for r in rows) / n,
            "held_share_baseline": sum(r["held_share_baseline"] * r["orders"] for r in rows) / n,
            "hold_s_budget_q1_median_q3": pooled_quartiles(rows, "hold_s_budget_orders"),
            "hold_s_baseline_q1_median_q3": pooled_quartiles(rows, "hold_s_baseline_orders"),
            "ratio_q1_median_q3": pooled_quartiles(rows), "ratio_le_half_share": sum(x <= 0.5 for x in ratios) / n,
            "spent_share_budget_median": sorted(r["spent_share_budget_median"] for r in rows)[len(rows) // 2],
            "spent_share_budget_max": max(r["spent_share_budget_max"] for r in rows),
            "spent_share_baseline_median": sorted(r["spent_share_baseline_median"] for r in rows)[len(rows) // 2],
            "eliminated_share": {m: sum(r["eliminated_share"][m] * r["orders"] for r in rows) / n
                                 for m in rows[0]["eliminated_share"]},
            "oracle": {"ratio_le_half_share": sum(r["oracle"]["ratio_le_half_share"] * r["orders"] for r in rows) / n}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--table", default=None,
                     help="MLflow experiment of a FIFO --eval-full search of several methods (--record says how)")
    src.add_argument("--synthetic", type=int, default=0, help="replay N made-up 4-method tables (seeds 0..N-1)")
    src.add_argument("--record", action="store_true",
                     help=f"print the command that records the 4-method table and exit (~25 min on this 2-core VM): {RECORD}")
    p.add_argument("--mlflow-uri", default=None, help="--table's store (unset = sqlite:///$PWD/mlflow.db)")
    p.add_argument("--configs", type=int, default=16, help="--synthetic: configs per method")
    p.add_argument("--subset-sd", type=float, default=0.05, help="--synthetic: subset score noise at rung 1")
    p.add_argument("--orders", type=int, default=200)
    p.add_argument("--budget-share", default="0.25,0.5",
                   help="comma list: B as a share of the table's whole FIFO trial-time")
    p.add_argument("--reserve-share", default=str(RESERVE_SHARE),
                   help="comma list: the share of B the pool leaves for the race (not replayed); 0 shows "
                        "the pool given all of B")
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--method-order", default="random,given",
                   help="comma list: the baseline's method order per replay, random or given (the table's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/budget_replay.json",
                   help="where the figures go (--no-json: nowhere)")
    p.add_argument("--no-json", dest="json", action="store_const", const=None)
    a = p.parse_args(argv)
    if a.record:
        print(f"{RECORD}\npython -m benchmarks.budget_replay --table budget_table")
        return 0
    try:
        shares = [float(x) for x in a.budget_share.split(",") if x.strip()]
        reserves = [float(x) for x in a.reserve_share.split(",") if x.strip()]
        if not reserves or any(not 0 <= r < 1 for r in reserves):
            raise ValueError(f"--reserve-share {a.reserve_share!r}: shares in [0, 1)")
        method_orders = [x.strip() for x in a.method_order.split(",") if x.strip()]
        if a.orders < 1 or a.concurrency < 1 or not shares or any(not 0 < s for s in shares):
            raise ValueError("--orders and --concurrency must be >= 1, --budget-share > 0")
        if any(o not in ("random", "given") for o in method_orders):
            raise ValueError(f"--method-order {a.method_order!r}: random and/or given")
        if a.table:
            uri = a.mlflow_uri or f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"
            table, tasks = load_table(uri, a.table)
            tables = {a.table: table}
        else:
            tables, tasks = {f"synthetic{s}": synthetic_methods(s, a.configs, a.subset_sd)
                             for s in range(a.synthetic)}, 3
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t0 = time.time()
    rows: list[dict[str, Any]] = []
    for name, table in tables.items():
        total = total_fifo_s(table)
        finals = {m: max(c.final for c in cs) for m, cs in table.items()}
        best = overall_best(table)
        near = {m: sum(c.final >= best - 0.005 for c in cs) for m, cs in table.items()}
        print(f"{name}: {', '.join(f'{m} {len(cs)}' for m, cs in table.items())} configs x "
              f"{len(next(iter(table.values()))[0].score)} evaluations; FIFO trial-time {total:.0f} s; best "
              f"{best:.4f}; per method best {', '.join(f'{m} {v:.3f}' for m, v in finals.items())}; "
              f"within 0.5 pts: {', '.join(f'{m} {v}' for m, v in near.items() if v)}")
        for share in shares:
            for reserve in reserves:
                s = Settings(budget_s=share * total, concurrency=a.concurrency, tasks=tasks,
                             reserve_share=reserve)
                for order in method_orders:
                    r = compare(table, s, a.orders, a.seed, order)
                    rows.append({"table": name, "budget_share": share, "reserve_share": reserve, **r})
    print(f"\n{a.orders} orders per table, {a.concurrency} slots; hold = the overall pick is a config "
          "within 0.5 points of the table's best, trained to the full budget, kept to the end (never: inf)\n")
    print(HEAD)
    for r in rows:
        print(row_line(r["table"], r["budget_share"], r))
    print("\nratio <= 0.5 by where the method holding the table's best config stands in the baseline's "
          "order (1 = first):")
    for r in rows:
        pos = ", ".join(f"{k}: {100 * v['ratio_le_half_share']:.0f}% of {v['orders']}"
                        for k, v in r["by_best_position"].items())
        oracle = ", ".join(f"{k}: {100 * v['ratio_le_half_share']:.0f}%" for k, v in r["oracle"]["by_best_position"].items())
        print(f"  {r['table']} B {r['budget_share']:g} reserve {r['reserve_share']:g} {r['method_order']}: {pos}; "
              f"oracle ({r['oracle']['method']} alone, all of B) {oracle}")
    summary = []
    if len(tables) > 1:
        for share in shares:
            for reserve in reserves:
                for order in method_orders:
                    group = [r for r in rows if r["budget_share"] == share and r["method_order"] == order
                             and r["reserve_share"] == reserve]
                    summary.append({"budget_share": share, **pooled(group)})
                    print(row_line(f"all {len(group)} pooled", share, summary[-1]))
    print(f"\n({time.time() - t0:.0f} s)")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(json_safe({
            "source": a.table or f"synthetic x{a.synthetic}", "orders": a.orders, "concurrency": a.concurrency,
            "configs": a.configs, "subset_sd": a.subset_sd, "levels": LEVELS if a.synthetic else None,
            "cost": COST if a.synthetic else None, "tasks": tasks, "pooled": summary, "rows": rows}),
            indent=1, default=str))
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
