"""``peft-search replay``: schedulers replayed (``search.schedule.replay``) over the curves of a
finished ``--scheduler fifo --eval-full`` search read from MLflow, printed as a table.

    peft-search replay --experiment NAME [--mlflow-uri URI] [--orders 200] [--concurrency 2]
    python -m search.report.replay --experiment NAME ...
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from search.results import json_safe
from search.schedule.policies import POLICIES
from search.schedule.replay import FIDELITIES, Scenario, replay_all, table_best
from search.schedule.replay_table import Curve, method_curves


def load_curves(uri: str, experiment: str, method: str | None = None) -> tuple[str, list[Curve]]:
    """The (method, curves) of a finished FIFO search: every trial that ran every evaluation.
    ValueError naming what is missing."""
    from search.report.data import load_experiment

    record = load_experiment(uri, experiment)
    methods = [m for m in record.methods if method is None or m.method == method]
    if not methods:
        raise ValueError(f"--method {method}: not searched in {experiment!r} "
                         f"(methods: {', '.join(m.method for m in record.methods)})")
    return methods[0].method, method_curves(uri, methods[0], experiment)


def format_table(rows: list[dict[str, Any]], baseline: str) -> str:
    head = ("| scheduler/fidelity | held | compute to hold, s: q1 / median / q3 | vs "
            f"{baseline}: median ratio (q1-q3) | ends within tol. | total compute s (set-up + train + eval) "
            "| steps | dev rows scored |")
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        q = r["hold_s_q1_median_q3"]
        ratio = r.get("hold_ratio_q1_median_q3", (math.nan,) * 3)
        lines.append(
            f"| {r['scenario']} | {100 * r['held_share']:.0f}% | {q[0]:.0f} / {q[1]:.0f} / {q[2]:.0f} | "
            f"{ratio[1]:.2f} ({ratio[0]:.2f}-{ratio[2]:.2f}) | {100 * r['within_share']:.0f}% | "
            f"{r['compute_s_median']:.0f} ({r['setup_s_median']:.0f} + {r['train_s_median']:.0f} + "
            f"{r['eval_s_median']:.0f}) | {r['steps_median']:.0f} | {r['eval_rows_median']:.0f} |")
    lines.append("(held: orders whose pick was a good config trained to the end, kept to the end; "
                 "an order never held counts as inf in the quartiles)")
    return "\n".join(lines)


DEFAULT_SCENARIOS = ("fifo/full", "asha/full", "asha/subset", "hyperband/subset", "pasha/subset",
                     "fifo/subset")


def parse_scenarios(text: str, concurrency: int, grace: int, rf: float) -> list[Scenario]:
    out = []
    for item in [x.strip() for x in text.split(",") if x.strip()]:
        name, _, fidelity = item.partition("/")
        fidelity = fidelity or "subset"
        if name not in POLICIES or fidelity not in FIDELITIES:
            raise ValueError(f"--scenarios {item!r}: expected SCHEDULER/FIDELITY with a scheduler "
                             f"of {', '.join(POLICIES)} and a fidelity of {', '.join(FIDELITIES)}")
        out.append(Scenario(name, fidelity, grace, rf, concurrency))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="peft-search replay", description=__doc__.split("\n")[0])
    p.add_argument("--experiment", required=True, help="a finished --scheduler fifo search")
    p.add_argument("--mlflow-uri", default=None, help="unset = sqlite:///$PWD/mlflow.db")
    p.add_argument("--method", default=None, help="which method of the search (unset: the first)")
    p.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS),
                   help="comma list of SCHEDULER/FIDELITY (fidelity: subset or full)")
    p.add_argument("--baseline", default="fifo/full", help="ratios are against this scenario")
    p.add_argument("--orders", type=int, default=200, help="random trial orders replayed")
    p.add_argument("--trials", type=int, default=None, help="trials per replayed search (unset: all)")
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--grace-period", type=int, default=1)
    p.add_argument("--reduction-factor", type=float, default=2.0)
    p.add_argument("--tolerance", type=float, default=0.005, help="score distance to the table's best")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    a = p.parse_args(argv)
    try:
        if a.orders < 1 or a.concurrency < 1 or (a.trials is not None and a.trials < 1):
            raise ValueError("--orders, --concurrency and --trials must be >= 1")
        scenarios = parse_scenarios(a.scenarios, a.concurrency, a.grace_period, a.reduction_factor)
        baseline = parse_scenarios(a.baseline, a.concurrency, a.grace_period, a.reduction_factor)[0]
        uri = a.mlflow_uri or f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"
        method, curves = load_curves(uri, a.experiment, a.method)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = replay_all(curves, scenarios, a.orders, a.seed, a.trials, a.tolerance, baseline)
    best = table_best(curves)
    print(f"{a.experiment} ({method}): {len(curves)} trials x {len(curves[0].score)} evaluations, "
          f"best full-budget score {best:.4f}; {a.orders} random orders, {a.concurrency} at once, "
          f"tolerance {a.tolerance:g}\n")
    print(format_table(rows, baseline.label))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(json_safe({"experiment": a.experiment, "method": method, "best": best,
                                                "rows": rows}), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
