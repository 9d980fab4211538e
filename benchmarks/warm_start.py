"""Warm start: trials a search on a new task set needs to reach the cold search's best score,
started with the best config of an earlier search (``--warm-start``) and without it.

    python -m benchmarks.warm_start --data-dir ../shared/data/cs224n --record-source 16
    python -m benchmarks.warm_start --data-dir ../shared/data/cs224n --no-default-trial \
        --json benchmarks/results/warm_start_nodefault.json

The source is a finished search of the same method in its own MLflow store (``--source-dir``, by
default ``benchmarks/results/replay_table``: the scheduler_replay table, adapter on sst, quora,
sts). ``--record-source N`` records one there first when the folder has no store: the product's
default search (PASHA, Optuna, dev subsets) of ``--method`` on sst, quora, sts, N trials of
``--max-steps``, seed ``--source-seed`` (100: a seed the compared searches do not use; with the
same seed the cold search draws the source's own configs in the same order). Both searches (cold
and warm) use that same store, the same searcher seed, FIFO (every trial's score is a full-budget,
whole-dev score) and the product's default first trial (the method's defaults;
``--no-default-trial`` drops it from both, to see warm start's own effect); the warm one adds
``--warm-start``. Per seed: the trial (in the order trials started; the first two start together)
at which each search first reached the cold search's best, and the ratio warm / cold. Prints a
table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import ROOT


def run(out: Path, uri: str, flags: list[str]) -> tuple[list[float], float]:
    """One search; its trials' final scores in the order they started, and the wall seconds."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cmd = [sys.executable, str(ROOT / "search/run.py"), *flags, "--experiment", out.name, "--out", str(out),
           "--mlflow-uri", uri]
    print("running:", " ".join(cmd[1:]), flush=True)
    t0 = time.time()
    with open(out / "search.log", "w") as log:
        if subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
            raise SystemExit(f"search failed; see {out / 'search.log'}")
    wall = time.time() - t0
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(out.name)
    # in the order they started (with 2 at once, the first two start together)
    runs = client.search_runs([exp.experiment_id], "tags.kind = 'trial'", max_results=1000,
                              order_by=["attributes.start_time ASC"])
    return [r.data.metrics.get("score", float("nan")) for r in runs], wall


def first_reaching(scores: list[float], target: float) -> int | None:
    return next((i + 1 for i, s in enumerate(scores) if s >= target - 1e-12), None)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--source-dir", type=Path, default=ROOT / "benchmarks/results/replay_table",
                   help="folder of the earlier search (its mlflow.db and experiment name = folder name)")
    p.add_argument("--method", default="adapter")
    p.add_argument("--tasks", default="sst,cfimdb")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--num-samples", type=int, default=8)
    p.add_argument("--max-steps", type=int, default=60)
    p.add_argument("--eval-every", type=int, default=30)
    p.add_argument("--set", action="append", default=["max_length=64"])
    p.add_argument("--no-default-trial", action="store_true",
                   help="both searches without the default first trial (warm start's own effect)")
    p.add_argument("--record-source", type=int, default=0, metavar="N",
                   help="record the source search (N trials) first when --source-dir has no mlflow.db")
    p.add_argument("--source-seed", type=int, default=100,
                   help="the recorded source search's seed: not one of --seeds, or the cold search of "
                        "that seed draws the source's own configs in the same order")
    p.add_argument("--work", type=Path, default=ROOT / "benchmarks/results/warm_start_runs")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/warm_start.json")
    a = p.parse_args()
    uri = f"sqlite:///{a.source_dir.resolve() / 'mlflow.db'}"
    base = ["--method", a.method, "--tasks", a.tasks, "--scheduler", "fifo", "--num-samples", str(a.num_samples),
            "--max-steps", str(a.max_steps), "--eval-every", str(a.eval_every)]
    base += ["--data-dir", a.data_dir] if a.data_dir else []
    base += ["--no-default-trial"] if a.no_default_trial else []
    for item in a.set:
        base += ["--set", item]
    if not (a.source_dir / "mlflow.db").exists():
        if not a.record_source:
            raise SystemExit(f"{a.source_dir}: no mlflow.db; record the source search with --record-source N")
        source = [x for x in base if x != "--no-default-trial"]
        source[source.index("--tasks") + 1] = "sst,quora,sts"
        source[source.index("--scheduler") + 1] = "pasha"
        source[source.index("--num-samples") + 1] = str(a.record_source)
        _, wall = run(a.source_dir, uri, source + ["--seed", str(a.source_seed)])
        print(f"source search recorded in {a.source_dir} ({wall:.0f} s)", flush=True)
    rows = []
    tag = "nodefault-" if a.no_default_trial else ""  # experiment names must be new in the store
    for seed in [int(x) for x in a.seeds.split(",")]:
        cold, cold_wall = run(a.work / f"cold-{tag}{seed}", uri, base + ["--seed", str(seed)])
        warm, warm_wall = run(a.work / f"warm-{tag}{seed}", uri,
                              base + ["--seed", str(seed), "--warm-start", a.source_dir.name])
        target = max(cold)
        row = {"seed": seed, "cold_best": target, "warm_best": max(warm), "cold_scores": cold,
               "warm_scores": warm, "cold_trials": first_reaching(cold, target),
               "warm_trials": first_reaching(warm, target), "cold_wall_s": cold_wall, "warm_wall_s": warm_wall}
        row["ratio"] = (row["warm_trials"] / row["cold_trials"]) if row["warm_trials"] else None
        rows.append(row)
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "rows": rows}, indent=2))
    print(f"\n{a.method} on {a.tasks}, {a.num_samples} trials x {a.max_steps} steps, FIFO; warm start from "
          f"{a.source_dir.name}\n")
    print("| seed | cold best | cold: trials to its best | warm best | warm: trials to cold's best | warm / cold |\n"
          "|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "never"
        print(f"| {r['seed']} | {r['cold_best']:.4f} | {r['cold_trials']} | {r['warm_best']:.4f} | "
              f"{r['warm_trials'] or 'never'} | {ratio} |")
    ratios = [r["ratio"] for r in rows if r["ratio"] is not None]
    if ratios:
        print(f"\nmedian warm / cold: {statistics.median(ratios):.2f} (target <= 0.5); wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
