"""Search overhead: how much of a search's wall time is not training steps, and where it goes.

    python -m benchmarks.search_overhead --data-dir ../shared/data/cs224n --num-samples 16

Runs ``search/run.py`` (FIFO, so every trial runs to the end) and reads the per-trial clock the
search writes (``<out>/<method>/trials.json``): when Tune started each trial (driver clock), when
its first training step began, the seconds it spent in training steps and in evaluation, and
when it ended. Reported:

- startup: trial started by Tune -> its first training step (worker, model build, data);
- per trial: share of its lifetime outside training steps, and outside training + evaluation;
- whole search: share of the trial slots' time (concurrency x wall) not in training steps.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from benchmarks.common import run_search

ROOT = Path(__file__).resolve().parents[1]


def analyse(trials_file: Path, command_wall: float) -> dict:
    info = json.loads(trials_file.read_text())
    trials = [t for t in info["trials"].values() if "ended_at" in t and "first_step_at" in t]
    start, end = info["search_started_at"], max(t["ended_at"] for t in trials)
    wall = end - start
    per = []
    for t in trials:
        life = t["ended_at"] - t["scheduled_at"]
        per.append({"startup_s": t["first_step_at"] - t["scheduled_at"], "life_s": life,
                    "train_s": t["train_s"], "eval_s": t["eval_s"],
                    "outside_train": 1 - t["train_s"] / life,
                    "outside_train_eval": 1 - (t["train_s"] + t["eval_s"]) / life})
    slots = info["concurrency"] * wall
    return {"trials": len(trials), "concurrency": info["concurrency"], "search_wall_s": wall,
            "command_wall_s": command_wall, "per_trial": per,
            "train_s_total": sum(p["train_s"] for p in per), "eval_s_total": sum(p["eval_s"] for p in per),
            "slot_outside_train": 1 - sum(p["train_s"] for p in per) / slots,
            "slot_outside_train_eval": 1 - sum(p["train_s"] + p["eval_s"] for p in per) / slots}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None, help="unset: the synthetic demo suite")
    p.add_argument("--method", default="adapter")
    p.add_argument("--num-samples", type=int, default=16)
    p.add_argument("--max-steps", type=int, default=60)
    p.add_argument("--eval-every", type=int, default=30)
    p.add_argument("--max-eval-samples", type=int, default=100)
    p.add_argument("--set", action="append", default=["max_length=64"], help="passed to search/run.py")
    p.add_argument("--work", type=Path, default=ROOT / "benchmarks/results/search_overhead_run")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/search_overhead.json")
    args = p.parse_args()
    flags = ["--method", args.method, "--scheduler", "fifo", "--num-samples", str(args.num_samples),
             "--max-steps", str(args.max_steps), "--eval-every", str(args.eval_every),
             "--max-eval-samples", str(args.max_eval_samples)]
    flags += ["--data-dir", args.data_dir] if args.data_dir else []
    _, command_wall = run_search(args.work, flags, args.set)
    result = analyse(args.work / args.method / "trials.json", command_wall)
    per = result["per_trial"]

    def stat(key: str, pct: bool = False) -> str:
        vals = [x[key] * (100 if pct else 1) for x in per]
        unit = "%" if pct else " s"
        return (f"{statistics.median(vals):.1f}{unit} | {min(vals):.1f}{unit} | {max(vals):.1f}{unit}")

    print(f"\n{result['trials']} trials of {args.method}, {args.max_steps} steps each, "
          f"{result['concurrency']} at once; search {result['search_wall_s']:.0f} s, whole command "
          f"{result['command_wall_s']:.0f} s\n")
    print("| per trial | median | min | max |\n|---|---|---|---|")
    print(f"| trial lifetime | {stat('life_s')} |")
    print(f"| scheduled -> first training step | {stat('startup_s')} |")
    print(f"| share outside training steps | {stat('outside_train', True)} |")
    print(f"| share outside training steps and evaluation | {stat('outside_train_eval', True)} |")
    print(f"\nwhole search: {100 * result['slot_outside_train']:.1f}% of the trial slots' time "
          f"outside training steps, {100 * result['slot_outside_train_eval']:.1f}% outside training "
          "and evaluation")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **result}, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
