"""A search at cluster size (issue 16): 1,000 short trials on a local multi-raylet Ray cluster.

    python -m benchmarks.scale                      # every part, 1,000 trials
    python -m benchmarks.scale --parts optuna,report --trials 1000
    python -m benchmarks.scale --parts search --steps 160 --tag search-160steps   # 0.83-s trials here

Parts (each writes its table to stdout and its figures to ``--json``):

- ``search``: ``search/run.py`` on a tiny random BERT (2 layers, 32 wide; tests/tiny.py) over
  the synthetic demo suite, ``--trials`` trials of ``--steps`` steps, ASHA + Optuna, MLflow in
  SQLite, on a Ray cluster of ``--raylets`` local raylets of one CPU each (``--address``: an
  existing cluster). Overhead = wall time / (sum of the trials' own time in their trainables,
  Tune's ``time_total_s``, divided by the trials run at once) - 1: the time the search spends on
  anything but running trials (Ray Tune publishes 14% for 10,000 one-second trials). The driver's
  resident memory is read every second and reported at every 100 ended trials, with the slope
  (MB per 10 trials) from the 100th trial on; bytes under the Tune storage path at every 100 ended
  trials; MLflow afterwards: one run per trial, every reported evaluation present.
- ``disk``: two searches of ``--disk-trials`` trials, the default ``--keep-checkpoints 3`` and
  every checkpoint kept: bytes on disk at the end.
- ``optuna``: the search's own Optuna searcher (``search.searchers.make_searcher``, TPE) asked
  and told ``--trials`` times outside Tune, one objective and two (score, stored %): seconds per
  suggestion by hundreds of trials.
- ``report``: ``search.report.make_report`` over the ``search`` part's experiment (seconds), and
  the importance evaluator alone at that size.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks/results/scale"
COUNTS = re.compile(r"(\d+) stopped early, (\d+) finished, (\d+) failed")


def tiny_model(folder: Path) -> str:
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny import write_tiny_model_dir  # the tests' tiny random BERT and word tokenizer

    if not (folder / "config.json").is_file():
        write_tiny_model_dir(folder)
    return str(folder)


def du(path: Path) -> int:
    """Bytes of the files under ``path`` (files deleted while it walks count 0)."""
    total = 0
    for p in path.rglob("*") if path.exists() else ():
        try:
            total += p.stat().st_size if p.is_file() else 0
        except OSError:
            continue
    return total


def search_command(model: str, out: Path, trials: int, steps: int, address: str | None,
                   concurrency: int, keep: int | None = None) -> list[str]:
    cmd = [sys.executable, str(ROOT / "search/run.py"), "--model", model, "--method", "lora",
           "--num-samples", str(trials), "--max-steps", str(steps), "--eval-every", str(max(1, steps // 2)),
           "--max-train-samples", "32", "--max-eval-samples", "16", "--eval-rows", "16",
           "--scheduler", "asha", "--searcher", "optuna", "--confirm", "0",
           "--max-concurrent", str(concurrency), "--experiment", out.name, "--out", str(out),
           "--mlflow-uri", f"sqlite:///{out}/mlflow.db", "--set", "max_length=32", "--set", "batch_size=8"]
    if address:
        cmd += ["--address", address]
    if keep is not None:
        cmd += ["--keep-checkpoints", str(keep)]
    return cmd


class Watch:
    """Runs a search command; samples the driver's RSS and the storage bytes as trials end."""

    def __init__(self, cmd: list[str], storage: Path, log: Path, every: int = 100) -> None:
        import psutil

        self.marks: list[dict] = []
        self.rss: list[tuple[float, int]] = []
        self.ended = 0
        self.every = every
        self.storage = storage
        self.t0 = time.time()
        with open(log, "w") as f:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         text=True)
            self.ps = psutil.Process(self.proc.pid)
            sampler = threading.Thread(target=self._sample, daemon=True)
            sampler.start()
            for line in self.proc.stdout:
                f.write(line)
                m = COUNTS.search(line)
                if m:
                    ended = sum(int(x) for x in m.groups())
                    if ended // self.every > self.ended // self.every:  # crossed a multiple of every
                        self.ended = (ended // self.every) * self.every
                        self.marks.append({"ended": self.ended, "t_s": time.time() - self.t0,
                                           "rss_mb": self._rss_mb(), "storage_bytes": du(storage)})
            self.rc = self.proc.wait()
        self.wall = time.time() - self.t0

    def _rss_mb(self) -> float:
        try:
            return self.ps.memory_info().rss / 2**20
        except Exception:  # noqa: BLE001 - the driver has exited
            return float("nan")

    def _sample(self) -> None:
        while self.proc.poll() is None:
            self.rss.append((time.time() - self.t0, int(self._rss_mb() * 2**20)))
            time.sleep(1.0)


def trial_times(out: Path) -> list[dict]:
    """Each trial's last result row as Tune stored it."""
    rows = []
    for result in (out / "tune").glob("*/trial_*/result.json"):
        lines = [line for line in result.read_text().splitlines() if line.strip()]
        if lines:
            rows.append(json.loads(lines[-1]))
    return rows


def slope_mb_per_10(marks: list[dict]) -> float:
    pts = [(m["ended"], m["rss_mb"]) for m in marks if m["ended"] >= 100 and math.isfinite(m["rss_mb"])]
    if len(pts) < 2:
        return float("nan")
    mx, my = statistics.mean(x for x, _ in pts), statistics.mean(y for _, y in pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return 10 * sum((x - mx) * (y - my) for x, y in pts) / sxx


def mlflow_check(out: Path, trials: list[dict]) -> dict:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{out}/mlflow.db")
    exp = client.get_experiment_by_name(out.name)
    runs, token = [], None
    while True:
        page = client.search_runs([exp.experiment_id], "tags.kind = 'trial'", max_results=1000,
                                  page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            break
    by_trial = {r.data.tags.get("trial_id"): r for r in runs}
    evals = {t["trial_id"]: int(t["training_iteration"]) for t in trials}
    missing_metrics = 0
    sample = random.Random(0).sample(sorted(evals), min(100, len(evals)))
    for tid in sample:  # the score history of a sample of trials: every evaluation present
        run = by_trial.get(tid)
        if run is None or len(client.get_metric_history(run.info.run_id, "score")) != evals[tid]:
            missing_metrics += 1
    return {"trial_runs": len(runs), "distinct_trials": len(by_trial), "trials": len(evals),
            "finished_runs": sum(r.info.status == "FINISHED" for r in runs),
            "sampled_histories": len(sample), "histories_incomplete": missing_metrics}


def start_cluster(raylets: int):
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    for _ in range(raylets - 1):
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, logging_level="ERROR")
    cluster.wait_for_nodes()
    ray.shutdown()
    return cluster


def part_search(args, model: str) -> dict:
    out = WORK / args.tag
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cluster = None if args.address else start_cluster(args.raylets)
    address = args.address or cluster.address
    try:
        watch = Watch(search_command(model, out, args.trials, args.steps, address, args.raylets),
                      out / "tune", out / "search.log")
    finally:
        if cluster is not None:
            cluster.shutdown()
    if watch.rc != 0:
        raise SystemExit(f"the search failed (exit {watch.rc}); see {out / 'search.log'}")
    trials = trial_times(out)
    busy = sum(float(t["time_total_s"]) for t in trials)
    info = json.loads((out / "lora" / "trials.json").read_text())
    start = info["search_started_at"]
    ends = [t["ended_at"] for t in info["trials"].values() if "ended_at" in t]
    wall = max(ends) - start
    ideal = busy / args.raylets
    result = {"trials": len(trials), "raylets": args.raylets, "steps": args.steps,
              "trial_s_median": statistics.median(float(t["time_total_s"]) for t in trials),
              "trial_s_sum": busy, "search_wall_s": wall, "command_wall_s": watch.wall,
              "overhead": wall / ideal - 1, "marks": watch.marks,
              "rss_mb_start": watch.rss[0][1] / 2**20 if watch.rss else None,
              "rss_mb_peak": max(r for _, r in watch.rss) / 2**20 if watch.rss else None,
              "rss_slope_mb_per_10_trials": slope_mb_per_10(watch.marks),
              "storage_bytes_end": du(out / "tune"),
              "stopped_early": sum(int(t["training_iteration"]) < 2 for t in trials),
              "mlflow": mlflow_check(out, trials)}
    log = (out / "search.log").read_text()
    m = re.search(r"disk: deleted the checkpoints of (\d+) ended trials and the superseded ones "
                  r"\((\d+) folders, ([\d.]+) MiB\)", log)
    result["trials_pushed_out"], result["checkpoint_folders_deleted"], result["checkpoint_mib_deleted"] = \
        (int(m.group(1)), int(m.group(2)), float(m.group(3))) if m else (0, 0, 0.0)
    state = sorted((out / "tune").glob("*/experiment_state-*.json"))
    result["experiment_state_bytes"] = state[-1].stat().st_size if state else 0
    print(f"\nsearch: {result['trials']} trials on {args.raylets} raylets in {wall:.0f} s; trial median "
          f"{result['trial_s_median']:.2f} s, sum {busy:.0f} s; overhead {100 * result['overhead']:.1f}% "
          f"(target <= 15%)")
    print("| ended trials | s since start | driver RSS MB | Tune storage MB |\n|---|---|---|---|")
    for mk in watch.marks:
        print(f"| {mk['ended']} | {mk['t_s']:.0f} | {mk['rss_mb']:.0f} | {mk['storage_bytes'] / 2**20:.1f} |")
    print(f"driver memory slope from trial 100: {result['rss_slope_mb_per_10_trials']:.3f} MB per 10 trials "
          f"(target <= 1); MLflow: {result['mlflow']}")
    return result


def part_disk(args, model: str) -> dict:
    result = {}
    for label, keep in (("keep 3 (default)", 3), ("keep all", args.disk_trials)):
        out = WORK / f"disk-{keep}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        cluster = None if args.address else start_cluster(args.raylets)
        try:
            watch = Watch(search_command(model, out, args.disk_trials, args.steps,
                                         args.address or cluster.address, args.raylets, keep=keep),
                          out / "tune", out / "search.log", every=max(1, args.disk_trials // 4))
        finally:
            if cluster is not None:
                cluster.shutdown()
        if watch.rc != 0:
            raise SystemExit(f"the search failed (exit {watch.rc}); see {out / 'search.log'}")
        ckpts = list((out / "tune").glob("*/trial_*/checkpoint_*"))
        result[label] = {"trials": args.disk_trials, "bytes": du(out / "tune"), "checkpoint_dirs": len(ckpts),
                         "checkpoint_bytes": sum(du(c) for c in ckpts), "wall_s": watch.wall,
                         "marks": watch.marks}
    print(f"\ndisk after {args.disk_trials} trials:\n| kept | checkpoint folders | checkpoint MB | "
          "Tune storage MB |\n|---|---|---|---|")
    for label, r in result.items():
        print(f"| {label} | {r['checkpoint_dirs']} | {r['checkpoint_bytes'] / 2**20:.2f} | "
              f"{r['bytes'] / 2**20:.2f} |")
    return result


def part_optuna(args) -> dict:
    from search.searchers import make_searcher
    from spaces import get_space

    space = get_space("lora")
    result = {}
    for label, objectives in (("score", [("score", "max")]),
                              ("score, stored_pct", [("score", "max"), ("stored_pct", "min")])):
        searcher, _ = make_searcher("optuna", space, {"method": "lora"}, seed=0, max_concurrent=4,
                                    num_samples=args.trials, objectives=objectives)
        rng = random.Random(0)
        per, t_all = [], time.perf_counter()
        for i in range(args.trials):
            t0 = time.perf_counter()
            config = searcher.suggest(f"t{i}")
            dt = time.perf_counter() - t0
            lr = float(config.get("lr", 1e-3))
            score = 0.5 + 0.1 * math.exp(-abs(math.log10(lr) + 3)) + rng.gauss(0, 0.02)
            t1 = time.perf_counter()
            searcher.on_trial_complete(f"t{i}", {"score": score, "stored_pct": rng.uniform(0.1, 2.0),
                                                 "training_iteration": 2})
            per.append(dt + time.perf_counter() - t1)
        by_100 = [statistics.mean(per[i:i + 100]) for i in range(0, len(per), 100)]
        result[label] = {"s_per_suggestion_by_100": by_100, "total_s": time.perf_counter() - t_all}
    print("\nOptuna (TPE, the search's searcher) seconds per suggestion + result, by hundreds of trials:")
    print("| trials | " + " | ".join(result) + " |\n|---|" + "---|" * len(result))
    for i in range(len(next(iter(result.values()))["s_per_suggestion_by_100"])):
        cells = " | ".join(f"{r['s_per_suggestion_by_100'][i]:.3f}" for r in result.values())
        print(f"| {100 * i + 1}-{100 * (i + 1)} | {cells} |")
    return result


def part_report(args) -> dict:
    from search.report import make_report
    from search.report.data import load_experiment
    from search.report.doc import importances

    out = WORK / args.tag
    uri = f"sqlite:///{out}/mlflow.db"
    t0 = time.perf_counter()
    make_report(uri, out.name, WORK / f"report-{args.tag}", log=False)
    total = time.perf_counter() - t0
    t0 = time.perf_counter()
    records = load_experiment(uri, out.name)
    load = time.perf_counter() - t0
    imp = {}
    for m in records.methods:
        t0 = time.perf_counter()
        got = importances(m)
        imp[m.method] = {"s": time.perf_counter() - t0, "trials": len(m.finite),
                         "how": got[1] if isinstance(got, tuple) else got}
    result = {"report_s": total, "load_s": load, "importances": imp}
    print(f"\nreport over the search part's trials: {total:.1f} s (target <= 60); reading MLflow "
          f"{load:.1f} s; importances: {imp}")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n")[0])
    p.add_argument("--parts", default="search,disk,optuna,report")
    p.add_argument("--trials", type=int, default=1000)
    p.add_argument("--disk-trials", type=int, default=100)
    p.add_argument("--steps", type=int, default=4, help="training steps per trial (2 evaluations)")
    p.add_argument("--raylets", type=int, default=2, help="local raylets of one CPU each (trials at once)")
    p.add_argument("--address", default=None, help="an existing Ray cluster instead of local raylets")
    p.add_argument("--tag", default="search", help="the search part's folder and JSON key (the report "
                   "part reads that search): e.g. one per --steps")
    p.add_argument("--json", type=Path, default=WORK / "scale.json")
    args = p.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    figures = json.loads(args.json.read_text()) if args.json.exists() else {}
    model = tiny_model(WORK / "tiny-bert")
    for part in args.parts.split(","):
        if part == "search":
            figures[args.tag] = part_search(args, model)
        elif part == "disk":
            figures["disk"] = part_disk(args, model)
        elif part == "optuna":
            figures["optuna"] = part_optuna(args)
        elif part == "report":
            figures[f"report-{args.tag}" if args.tag != "search" else "report"] = part_report(args)
        else:
            raise SystemExit(f"unknown part {part!r}: choose from search, disk, optuna, report")
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
