"""Does ``--budget`` end on time when the machine is busy, and does ``--deadline`` hold on real data?
(issue 26, "On time": end within 5% of the budget; never start a run that cannot finish.)

    python -m benchmarks.budget_on_time                       # 6 conditions, ~40 min on this 2-core VM
    python -m benchmarks.budget_on_time --conditions idle,late

Each condition is one run of the product itself (``search/run.py`` as a subprocess, CS224N,
MiniLM, ``--method lora,adapter``, 40-step trials evaluated every 20, <= 300 validation rows per
task carved from train, batch 16, max length 64, 2 trials at once) into its own folder:

- ``idle``: ``--budget B`` on the otherwise idle machine.
- ``loaded``: the same while ``--burners`` busy-loop processes share the cores from the start.
- ``late``: the burners start once the ledger shows half of B used: the pool has measured its
  costs on an idle machine and everything after it runs slower than measured (the case that spent
  153% of a tiny test's budget, BENCHMARKS §15).
- ``deadline``: ``--budget 20xB --deadline D`` on the idle machine: the deadline, not the budget,
  must end it.
- ``race-late``: the burners start when the race does (``race.json`` written): the pool measured
  everything idle, and the race rounds and fresh runs, which report only at their end, slow down.
- ``deadline-late``: ``deadline`` with the burners from D/2 on: runs admitted at idle costs must
  still have ended by the deadline.

Per condition: the ledger's trial-time (``budget.json``) against B and against every second Tune
wrote (``benchmarks.budget_vs_sequential.trial_time``), the command's wall time, and the last run's
end (the newest ``timestamp`` in Tune's ``result.json`` files) from the command's start. Prints a
table and writes ``benchmarks/results/budget_on_time.json`` (``git add -f``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.budget_vs_sequential import trial_time
from benchmarks.common import ROOT
from search.schedule.budget import Ledger

CONDITIONS = ("idle", "loaded", "late", "deadline", "race-late", "deadline-late")
FLAGS = ["--method", "lora,adapter", "--val-from-train", "0.05", "--max-eval-samples", "300",
         "--max-steps", "40", "--eval-every", "20", "--set", "batch_size=16", "--set", "max_length=64",
         "--max-concurrent", "2"]


def burners(n: int) -> list[subprocess.Popen]:
    """``n`` processes that keep a core busy each until killed."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
        p.wait()


def last_end(storage: Path) -> float | None:
    """The newest report timestamp Tune wrote under ``storage`` (epoch seconds)."""
    stamps = []
    for path in storage.glob("*/*/result.json"):
        lines = path.read_text().strip().splitlines()
        if lines:
            stamps.append(float(json.loads(lines[-1])["timestamp"]))
    return max(stamps, default=None)


def run_condition(name: str, a: argparse.Namespace) -> dict[str, Any]:
    out = a.work / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    timed = name.startswith("deadline")
    budget_s = a.budget_s * (20 if timed else 1)
    cmd = [sys.executable, str(ROOT / "search/run.py"), *FLAGS, "--data-dir", str(a.data_dir),
           "--budget", f"{budget_s:g}s", "--experiment", name, "--out", str(out),
           "--mlflow-uri", f"sqlite:///{out}/mlflow.db"]
    if timed:
        cmd += ["--deadline", f"{a.deadline_s:g}s"]
    load: list[subprocess.Popen] = burners(a.burners) if name == "loaded" else []
    print(f"[{name}] {' '.join(cmd[1:])}", flush=True)
    start = time.time()
    with open(out / "search.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        load_at = None
        try:
            while proc.poll() is None:
                time.sleep(1.0)
                if not load and (name == "late" and _used(out) >= budget_s / 2
                                 or name == "race-late" and (out / "race.json").exists()
                                 or name == "deadline-late" and time.time() - start >= a.deadline_s / 2):
                    load, load_at = burners(a.burners), time.time() - start
        finally:
            stop(load)
    wall = time.time() - start
    ledger = Ledger.load(out / "budget.json")
    files = trial_time(out / "tune")["total_s"]
    end = last_end(out / "tune")
    answer_file = out / "answer.json"
    verdict = json.loads(answer_file.read_text())["verdict"] if answer_file.exists() else None
    row = {"condition": name, "exit": proc.returncode, "budget_s": budget_s, "used_s": ledger.used,
           "used_share": ledger.used / budget_s, "files_s": files,
           "by_kind_s": {k: ledger.spent(kind=k) for k in ("setup", "trial", "confirm", "interrupted")},
           "wall_s": wall, "last_end_s": None if end is None else end - start, "load_from_s": load_at,
           "deadline_s": a.deadline_s if timed else None, "verdict": verdict,
           "fresh_note": json.loads(answer_file.read_text()).get("fresh_note") if answer_file.exists() else None,
           "race_stopped": _race_stopped(out)}
    if name == "loaded":
        row["load_from_s"] = 0.0
    print(f"[{name}] exit {proc.returncode}: used {ledger.used:.0f} s of {budget_s:.0f} "
          f"({100 * row['used_share']:.1f}%), files {files:.0f} s, wall {wall:.0f} s", flush=True)
    return row


def _race_stopped(out: Path) -> str | None:
    """Why the race ended (``race.json``), when there was one."""
    try:
        return json.loads((out / "race.json").read_text()).get("stopped")
    except (OSError, ValueError):
        return None


def _used(out: Path) -> float:
    try:
        return Ledger.load(out / "budget.json").used
    except (OSError, ValueError, KeyError):
        return 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared/data/cs224n")
    p.add_argument("--budget-s", type=float, default=480.0, help="B of the idle, loaded and late runs")
    p.add_argument("--deadline-s", type=float, default=240.0, help="--deadline of the deadline run")
    p.add_argument("--burners", type=int, default=2, help="busy processes of the loaded and late runs")
    p.add_argument("--conditions", default=",".join(CONDITIONS))
    p.add_argument("--work", type=Path, default=ROOT / "benchmarks/results/budget_on_time")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/budget_on_time.json",
                   help="where the rows go (a run of some conditions: name another file to keep the rest)")
    a = p.parse_args(argv)
    names = [c.strip() for c in a.conditions.split(",") if c.strip()]
    bad = [c for c in names if c not in CONDITIONS]
    if bad or not names:
        print(f"error: --conditions {a.conditions!r}: choose from {', '.join(CONDITIONS)}", file=sys.stderr)
        return 2
    if not a.data_dir.is_dir():
        print(f"error: --data-dir {a.data_dir}: not a folder", file=sys.stderr)
        return 2
    a.work = a.work.resolve()
    rows = [run_condition(c, a) for c in names]
    print("\n| condition | B s | used s (ledger) | used / B | Tune's files s | wall s | last run ended, s "
          "from start | deadline s | load from s | exit |\n|" + "---|" * 10)
    for r in rows:
        print(f"| {r['condition']} | {r['budget_s']:.0f} | {r['used_s']:.0f} | {r['used_share']:.3f} | "
              f"{r['files_s']:.0f} | {r['wall_s']:.0f} | "
              f"{'-' if r['last_end_s'] is None else format(r['last_end_s'], '.0f')} | "
              f"{r['deadline_s'] or '-'} | {'-' if r['load_from_s'] is None else format(r['load_from_s'], '.0f')} "
              f"| {r['exit']} |")
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps({"flags": FLAGS, "burners": a.burners, "rows": rows}, indent=1))
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
