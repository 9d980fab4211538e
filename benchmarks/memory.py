"""Memory over a long search (issue 24): a reused trial worker and the driver, sampled.

    python -m benchmarks.memory                         # 40 MiniLM trials, one worker
    python -m benchmarks.memory --trials 12 --tag short
    python -m benchmarks.scale --parts search           # the driver over 1,000 tiny trials

``search/run.py`` itself: ``lora`` on the CS224N ``sst,sts`` files (``--data-dir``; the synthetic
demo suite when the folder is missing), the packaged all-MiniLM-L6-v2, ``--trials`` trials of
``--steps`` steps, FIFO (every trial runs to the end), one trial at a time, so one Ray worker
process hosts trial after trial (``reuse_actors``). Every ``--every`` seconds the private
anonymous memory (``Pss_Anon`` of ``/proc/PID/smaps_rollup``: the heap, not the shared libraries
or the object store's shared memory) of each trial worker (``ray::ImplicitFunc``) and of the
driver is read. The table gives, for each trial (its window ends at its end in ``<out>/lora/trials.json``), the
lowest and highest worker memory sampled while it ran and the driver's at its end; the JSON keeps
every sample. The target: the worker's peak in the last trial within 10% of its peak in the
second (the first also pays the worker's imports and warm-up).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from searchkit import MemorySampler, per_trial  # noqa: E402 - the tests' sampler of a search's processes

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks/results/memory"
DATA = ROOT.parent / "shared/data/cs224n"


def command(out: Path, trials: int, steps: int, data_dir: Path | None) -> list[str]:
    cmd = [sys.executable, str(ROOT / "search/run.py"), "--method", "lora", "--tasks", "sst,sts",
           "--num-samples", str(trials), "--max-steps", str(steps), "--eval-every", str(max(1, steps // 2)),
           "--scheduler", "fifo", "--max-concurrent", "1", "--confirm", "0",
           "--experiment", out.name, "--out", str(out), "--storage-path", str(out / "tune"),
           "--mlflow-uri", f"sqlite:///{out}/mlflow.db"]
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    return cmd


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--steps", type=int, default=20, help="training steps per trial (2 evaluations)")
    p.add_argument("--data-dir", type=Path, default=DATA if DATA.is_dir() else None)
    p.add_argument("--every", type=float, default=1.0, help="seconds between samples")
    p.add_argument("--tag", default="worker", help="the run's folder and JSON key")
    p.add_argument("--json", type=Path, default=WORK / "memory.json")
    args = p.parse_args(argv)
    out = WORK / args.tag
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cmd = command(out, args.trials, args.steps, args.data_dir)
    print("running:", " ".join(cmd[1:]), flush=True)
    t0 = time.time()
    with open(out / "search.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        sampler = MemorySampler(proc.pid, args.every)
        rc = proc.wait()
    samples = sampler.stop()
    if rc != 0:
        raise SystemExit(f"the search failed (exit {rc}); see {out / 'search.log'}")
    info = json.loads((out / "lora" / "trials.json").read_text())
    timing = info["trials"].values()
    ends = [t["ended_at"] for t in timing if "ended_at" in t]
    rows = per_trial(samples, ends)
    workers = {pid for s in samples for pid, v in s["workers"].items() if v is not None}
    # The first trial also pays the worker's imports and warm-up: the growth is counted from the
    # second (the memory the worker holds once it has hosted one trial).
    second, last = rows[1]["worker_peak_gb"], rows[-1]["worker_peak_gb"]
    result = {"trials": len(ends), "steps": args.steps, "data": str(args.data_dir or "synthetic demo"),
              "wall_s": time.time() - t0, "started_at": t0, "worker_processes": len(workers),
              "worker_peak_gb_trial_2": second, "worker_peak_gb_last_trial": last,
              "worker_growth": last / second - 1,
              "worker_growth_gb_per_trial": (last - second) / max(1, len(rows) - 2),
              "per_trial": rows,
              "samples": [{"t_s": round(s["t"] - t0, 1), "driver_gb": s["driver_gb"],
                           "workers": s["workers"]} for s in samples]}
    print(f"\n{result['trials']} trials of {args.steps} steps on {result['data']}, "
          f"{len(workers)} trial worker process(es), {result['wall_s']:.0f} s")
    print("| trial | s since start | worker min GB | worker peak GB | driver GB |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['trial']} | {r['t_s']:.0f} | {r['worker_min_gb']:.3f} | {r['worker_peak_gb']:.3f} | "
              f"{r['driver_gb'] or float('nan'):.3f} |")
    verdict = "met" if result["worker_growth"] <= 0.10 else "missed"
    print(f"worker peak, trial {rows[-1]['trial']} vs trial 2: {second:.3f} -> {last:.3f} GB "
          f"({100 * result['worker_growth']:+.1f}%, {1000 * result['worker_growth_gb_per_trial']:+.1f} MB "
          f"per trial; target within 10%: {verdict})")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    figures = json.loads(args.json.read_text()) if args.json.exists() else {}
    figures[args.tag] = result
    args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
