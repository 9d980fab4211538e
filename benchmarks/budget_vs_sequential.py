"""``--budget B`` against today's sequential per-method search sized to the same trial-time B
(issue 26, "Live, >= 3 search seeds"; CS224N, MiniLM).

    python -m benchmarks.budget_vs_sequential                    # 3 seeds: ~3.5-4 h on this 2-core VM
    python -m benchmarks.budget_vs_sequential --quick            # smoke: demo suite, 1 seed, ~10 min
    python -m benchmarks.budget_vs_sequential --dry-run          # print the commands only
    python -m benchmarks.budget_vs_sequential --reuse            # read finished runs again

Per search seed S, two runs of the product itself (``search/run.py`` as a subprocess, each into
its own ``--out`` with its own MLflow SQLite store and Tune storage under ``--work``), with the
same data, methods, steps, evaluation rows and ``--set`` (batch, max length):

1. **Sequential** (today): ``--method lora,dora,adapter,lora_adapter --num-samples N --confirm 2:3
   --seed S``: each method's search in turn, then its confirmation and its fresh seeds.
   **B** = its *trial-time*: the seconds its trials and confirmation runs held a slot. Measured from
   Tune's own records: every ``result.json`` under the search's storage path (its per-method
   searches, ``-confirm`` and ``-fresh`` experiments), per run the sum of ``time_this_iter_s`` over
   its distinct ``training_iteration`` (the first record of each; a run without it counts its last
   ``time_total_s``). That is exactly what ``--budget``'s ledger charges (``search.schedule.pool``
   charges each pool report's ``time_this_iter_s`` keyed by iteration; ``search.selection.confirm`` and
   race rounds charge a run's ``time_total_s``), so both arms are measured alike. Not
   ``<method>/trials.json``: it holds only the search trials (no confirmation runs) and driver
   clock stamps that include queueing. The same files of the budget run are summed as well, as an
   independent check of its ledger (the first ``--quick`` run found them apart: ledger 0.86 B,
   files 1.82 B; the pool's ledger missed each trial's last report, which Tune hands the searcher
   only through ``on_trial_complete``).
   Its pick: the method with the best confirmed score (the report's rank 1; ``results.json``
   rows' ``confirmed_score``, cross-checked against ``report/leaderboard.json``), reported with
   its ``test_score`` [``test_lo``, ``test_hi``] (fresh seeds, the test split).
2. **Budget**: the same flags with ``--budget <B>s`` instead of ``--num-samples``/``--confirm``.
   Read from ``answer.json``: the winner's test score with its interval, ``used_s`` (the ledger,
   ``budget.json``, by kind and method).
3. **Peer** (``--peer``, ``peer_at_b``): ``benchmarks/peer_search.py``, the Ray Tune script a
   user writes by hand (LoRA only), with Tune's own wall-clock stop at B / slots, validation from
   the train files, and its best config trained again with 3 new seeds and scored on the test
   split (outside B). Its test score is compared unpaired (its seeds and rows are its own).

Per seed: both picks with their test scores, the difference in points (with the paired interval
over fresh seeds and test rows when both arms wrote ``test_outputs.npz``: the two arms' fresh
seeds are the same ids, ``confirm_seeds(S, n, fresh=True)``), B, used/B, wall times and slot use
(trial-time / (trials at once x wall): what the clock cost beyond the charged runs). Then the
medians over seeds with their range, and the two checks of the issue: median budget test >=
median sequential test, and used <= 1.05 B on every run (by the ledger and by the files).

Full defaults (BENCHMARKS §11's budget): 6 trials per method of 60 steps evaluated every 20,
<= 300 validation rows per task, ``--set batch_size=16 --set max_length=64``. Time on this 2-core
VM: a sequential 4-method search with ``--confirm 2:3`` is 84 runs of 60 steps, ~35-40 min; the
budget run spends the same trial-time on 2 slots, ~B/2 plus Ray and experiment start-ups, ~35-45 min
(``--quick`` measured slot use 0.5-0.7); so ~75-85 min per seed, ~4 h for 3 seeds (more while other
jobs share the cores; up to ~6 h while the budget run overspends as above).

``--quick``: the synthetic demo suite (no ``--data-dir``), lora and adapter, 3 trials of 20 steps
(evaluated every 10) on 64 train and 32 validation rows per task, ``--confirm 2:2``, seed 0: the
whole path in minutes; its numbers say nothing about the methods. Writes
``benchmarks/results/budget_vs_sequential.json`` (``-quick.json``), records only, no checkpoints
(``benchmarks/results/`` is git-ignored: ``git add -f``).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1.05
"""The issue's bound: a budget run uses at most 5% more than its budget."""
FULL = {"methods": "lora,dora,adapter,lora_adapter", "seeds": "0,1,2", "num_samples": 6, "steps": 60,
        "eval_every": 20, "confirm": "2:3", "val_rows": 300, "max_train_samples": None,
        "data_dir": str(ROOT.parent / "shared/data/cs224n"),
        "work": ROOT / "benchmarks/results/budget_vs_sequential",
        "json": ROOT / "benchmarks/results/budget_vs_sequential.json"}
QUICK = {"methods": "lora,adapter", "seeds": "0", "num_samples": 3, "steps": 20, "eval_every": 10,
         "confirm": "2:2", "val_rows": 32, "max_train_samples": 64, "data_dir": None,
         "work": ROOT / "benchmarks/results/budget_vs_sequential-quick",
         "json": ROOT / "benchmarks/results/budget_vs_sequential-quick.json"}


# ---- trial-time from Tune's records ---------------------------------------------------------
def run_seconds(lines: list[str]) -> float:
    """One run's slot-seconds from its ``result.json`` lines: ``time_this_iter_s`` summed over
    distinct ``training_iteration`` (first record of each, as the ledger charges once per report
    index); without ``time_this_iter_s``, the largest ``time_total_s``. A torn line is skipped."""
    seen: set[int] = set()
    total, found, last_total = 0.0, False, 0.0
    for line in lines:
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(r.get("time_total_s"), (int, float)):
            last_total = max(last_total, float(r["time_total_s"]))
        it = r.get("training_iteration")
        if not isinstance(r.get("time_this_iter_s"), (int, float)) or it is None or int(it) in seen:
            continue
        seen.add(int(it))
        total += float(r["time_this_iter_s"])
        found = True
    return total if found else last_total


def trial_time(storage: Path) -> dict:
    """Trial-time of every Tune experiment under ``storage``: ``{"total_s", "runs", "by_experiment":
    {name: seconds}}`` from each ``<experiment>/<trial>/result.json``."""
    by_exp: dict[str, float] = {}
    runs = 0
    for path in sorted(Path(storage).glob("*/*/result.json")):
        text = path.read_text().strip()
        if not text:
            continue
        runs += 1
        exp = path.parent.parent.name
        by_exp[exp] = by_exp.get(exp, 0.0) + run_seconds(text.splitlines())
    return {"total_s": sum(by_exp.values()), "runs": runs, "by_experiment": by_exp}


def by_stage(by_experiment: dict[str, float], experiment: str) -> dict[str, float]:
    """Experiment names (``<experiment>-<method>[-confirm|-fresh]``, ``-pool``, ``-race-<k>``) to
    seconds per stage: ``search``, ``confirm``, ``fresh``, ``pool``, ``race``."""
    out: dict[str, float] = {}
    for name, s in by_experiment.items():
        rest = name[len(experiment) + 1:] if name.startswith(experiment + "-") else name
        stage = ("pool" if rest == "pool" else "race" if rest.startswith("race-") else
                 "confirm" if rest.endswith("-confirm") else "fresh" if rest.endswith("-fresh") else "search")
        out[stage] = out.get(stage, 0.0) + s
    return out


# ---- the picks ------------------------------------------------------------------------------
def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def sequential_pick(results: dict, report: dict | None = None) -> dict | None:
    """The cross-method winner of a sequential search: the method with the best confirmed score
    (``results.json`` rows), with its test score and interval; ``report_first``: the report's rank
    1 (``report/leaderboard.json``), which should be the same method. None when no method was
    confirmed."""
    rows = [r for r in results.get("methods", []) if _num(r.get("confirmed_score")) is not None]
    if not rows:
        return None
    r = max(rows, key=lambda r: r["confirmed_score"])
    first = ((report or {}).get("methods") or [{}])[0].get("method")
    return {"method": r["method"], "confirmed": _num(r["confirmed_score"]), "test": _num(r.get("test_score")),
            "lo": _num(r.get("test_lo")), "hi": _num(r.get("test_hi")), "report_first": first}


def budget_pick(answer: dict) -> dict:
    """What a ``--budget`` run answered: the winner's score on its split with its interval, the
    verdict, the budget and what it used (the ledger)."""
    w = answer.get("winner") or {}
    return {"method": w.get("method"), "test": _num(w.get("score")), "lo": _num(w.get("lo")),
            "hi": _num(w.get("hi")), "split": answer.get("split"), "verdict": answer.get("verdict"),
            "race_leader": (answer.get("race") or {}).get("leader"),
            "budget_s": _num(answer.get("budget_s")), "used_s": _num(answer.get("used_s")),
            "by_kind_s": answer.get("by_stage_s"),
            "by_method_s": {m: r.get("trial_time_s") for m, r in (answer.get("methods") or {}).items()}}


def paired_difference(seq_file: Path, budget_file: Path) -> dict | None:
    """Budget minus sequential on the test split, paired by seed id and row (``search.stats``),
    in points; None unless both picks' ``test_outputs.npz`` exist."""
    if not (seq_file.exists() and budget_file.exists()):
        return None
    from search.stats import Outputs, difference

    d = difference(Outputs.load(budget_file), Outputs.load(seq_file))
    return {"points": 100 * d.mean, "lo": 100 * d.lo, "hi": 100 * d.hi}


# ---- the summary ----------------------------------------------------------------------------
def spread(values: list[float]) -> dict | None:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)} if values else None


def _or_inf(v) -> float:
    return math.inf if v is None else float(v)


def used_ok(row: dict, tolerance: float = TOLERANCE) -> bool:
    """The budget run used <= tolerance x B, by its ledger and by Tune's files."""
    b, used, files = row.get("B_s"), row["budget"].get("used_s"), row["budget"].get("files_s")
    return bool(b) and used is not None and files is not None and max(used, files) <= tolerance * b


def summarize(rows: list[dict], tolerance: float = TOLERANCE) -> dict:
    """Medians over seeds with their range, and the issue's two checks (each False when a seed
    has no figure: a missing answer is not a pass)."""
    both = [r for r in rows if r["sequential"].get("test") is not None and r["budget"].get("test") is not None]
    seq = [r["sequential"]["test"] for r in both]
    bud = [r["budget"]["test"] for r in both]
    diff = [100 * (b - s) for s, b in zip(seq, bud, strict=True)]
    used = [max(_or_inf(r["budget"].get("used_s")), _or_inf(r["budget"].get("files_s"))) / r["B_s"]
            for r in rows if r.get("B_s")]
    complete = len(both) == len(rows) and bool(rows)
    return {"seeds": len(rows), "complete": complete,
            "sequential_test": spread(seq), "budget_test": spread(bud), "difference_points": spread(diff),
            "used_over_B": spread(used), "B_s": spread([r["B_s"] for r in rows if r.get("B_s")]),
            "budget_test_ge_sequential_median": complete and statistics.median(bud) >= statistics.median(seq),
            "used_within_tolerance_every_run": bool(rows) and all(used_ok(r, tolerance) for r in rows),
            "tolerance": tolerance}


# ---- running the product ----------------------------------------------------------------------
def common_flags(args, seed: int) -> list[str]:
    flags = ["--method", args.methods, "--val-from-train", str(args.val_from_train),
             "--max-eval-samples", str(args.val_rows), "--max-steps", str(args.steps),
             "--eval-every", str(args.eval_every), "--seed", str(seed)]
    if args.max_train_samples:
        flags += ["--max-train-samples", str(args.max_train_samples)]
    if args.data_dir:
        flags += ["--data-dir", str(Path(args.data_dir).resolve())]
    if args.max_concurrent:
        flags += ["--max-concurrent", str(args.max_concurrent)]
    return flags


def command(out: Path, flags: list[str], sets: list[str]) -> list[str]:
    return [sys.executable, str(ROOT / "search/run.py"), *flags, "--experiment", out.name, "--out", str(out),
            "--mlflow-uri", f"sqlite:///{out}/mlflow.db", *[x for s in sets for x in ("--set", s)]]


def run_arm(out: Path, cmd: list[str], needs: str) -> dict:
    """Run one search into ``out`` (wiped first); ``{"command", "rc", "wall_s"}``, also saved as
    ``out/bench_run.json`` for ``--reuse``. A non-zero exit is kept when ``needs`` was written
    (e.g. a method that got no trial makes the product exit 1), else it stops the benchmark."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    print(f"running: {shlex.join(cmd)}", flush=True)
    t0 = time.time()
    with open(out / "search.log", "w") as log:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    run = {"command": shlex.join(cmd), "rc": rc, "wall_s": time.time() - t0}
    (out / "bench_run.json").write_text(json.dumps(run, indent=1))
    if rc != 0 and not (out / needs).exists():
        raise SystemExit(f"search failed (exit {rc}) without {needs}; see {out / 'search.log'}")
    print(f"  exit {rc}, {run['wall_s'] / 60:.1f} min wall", flush=True)
    return run


def finished(out: Path, needs: str) -> dict | None:
    """A run already in ``out`` (``--reuse``): its ``bench_run.json``, or None."""
    path = out / "bench_run.json"
    if not ((out / needs).exists() and path.exists()):
        return None
    return json.loads(path.read_text())


def slots(log: Path) -> int | None:
    """Trials at once, as the search printed it (``..., 2 at once; MLflow ...``)."""
    found = re.search(r", (\d+) at once;", log.read_text(errors="replace")) if log.exists() else None
    return int(found[1]) if found else None


def utilisation(trial_s: float, wall_s: float, n: int | None) -> float | None:
    """Trial-time over what the slots offered on the clock (``slots x wall``): how much of the
    command's time its slots spent in a charged run (start-ups, between-run gaps and the test
    split are not charged)."""
    return trial_s / (n * wall_s) if n and wall_s > 0 else None


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def one_seed(args, seed: int, sets: list[str]) -> dict:
    seq_out, bud_out = args.work / f"seed{seed}-sequential", args.work / f"seed{seed}-budget"
    base = common_flags(args, seed)
    seq_cmd = command(seq_out, base + ["--num-samples", str(args.num_samples), "--confirm", args.confirm], sets)
    run = (args.reuse and finished(seq_out, "results.json")) or run_arm(seq_out, seq_cmd, "results.json")
    results = read_json(seq_out / "results.json")
    spent = trial_time(Path(results.get("storage_path") or seq_out / "tune"))
    b = round(spent["total_s"], 1)
    seq = sequential_pick(results, read_json(seq_out / "report/leaderboard.json")) or {}
    seq.update(wall_s=run["wall_s"], rc=run["rc"], command=run["command"], files_s=spent["total_s"],
               runs=spent["runs"], by_stage_s=by_stage(spent["by_experiment"], seq_out.name),
               slots=slots(seq_out / "search.log"))
    seq["utilisation"] = utilisation(spent["total_s"], run["wall_s"], seq["slots"])
    print(f"seed {seed} sequential: pick {seq.get('method')} test {_f(seq.get('test'))}; trial-time B = "
          f"{b:.1f} s over {spent['runs']} runs", flush=True)

    bud_cmd = command(bud_out, base + ["--budget", f"{b:.1f}s"], sets)
    run = args.reuse and finished(bud_out, "answer.json")
    if run and abs((read_json(bud_out / "answer.json").get("budget_s") or 0) - b) > 0.5:
        print(f"  {bud_out.name}: its budget is not this B (the sequential run changed): running it again")
        run = None
    run = run or run_arm(bud_out, bud_cmd, "answer.json")
    bud = budget_pick(read_json(bud_out / "answer.json"))
    bud_results = read_json(bud_out / "results.json")
    spent_b = trial_time(Path(bud_results.get("storage_path") or bud_out / "tune"))
    bud.update(wall_s=run["wall_s"], rc=run["rc"], command=run["command"], files_s=spent_b["total_s"],
               runs=spent_b["runs"], by_stage_s=by_stage(spent_b["by_experiment"], bud_out.name),
               answer_in_results=bool(bud_results.get("answer")), slots=slots(bud_out / "search.log"))
    bud["utilisation"] = utilisation(spent_b["total_s"], run["wall_s"], bud["slots"])
    print(f"seed {seed} budget: pick {bud.get('method')} test {_f(bud.get('test'))}; used "
          f"{_f(bud.get('used_s'), '.1f')} s (ledger), {spent_b['total_s']:.1f} s (files) of B", flush=True)
    diff = None
    if seq.get("method") and bud.get("method") and bud.get("split") == "test":
        diff = paired_difference(seq_out / seq["method"] / "test_outputs.npz",
                                 bud_out / bud["method"] / "test_outputs.npz")
    return {"seed": seed, "B_s": b, "sequential": seq, "budget": bud, "difference": diff}


def peer_at_b(args, row: dict, sets: list[str]) -> dict:
    """The by-hand peer (``benchmarks/peer_search.py``, LoRA only) given this seed's B: Tune's
    wall-clock stop at B / slots (its trials hold at most B of slot-time), validation from the
    train files as the product's, then its best config trained with 3 new seeds and scored on the
    test split (outside B: more search time than the budget arm had, never less)."""
    seed, b = row["seed"], row["B_s"]
    n = row["budget"].get("slots") or row["sequential"].get("slots") or 2
    kv = dict(x.split("=", 1) for x in sets)
    out = args.work / f"seed{seed}-peer.json"
    cmd = [sys.executable, "-m", "benchmarks.peer_search", "--peer-only", "--seed", str(seed),
           "--data-dir", str(Path(args.data_dir).resolve()), "--num-samples", "10000",
           "--max-steps", str(args.steps), "--eval-every", str(args.eval_every),
           "--max-eval-samples", str(args.val_rows), "--batch-size", kv.get("batch_size", "16"),
           "--max-length", kv.get("max_length", "128"), "--val-from-train", str(args.val_from_train),
           "--time-budget-s", f"{b / n:.1f}", "--test-seeds", "3", "--work", str(args.work / "peer"),
           "--json", str(out)]
    wall = None
    if not (args.reuse and out.exists()):
        out.unlink(missing_ok=True)
        print(f"running: {shlex.join(cmd)}", flush=True)
        t0 = time.time()
        with open(args.work / f"seed{seed}-peer.log", "w") as log:
            rc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
        wall = time.time() - t0
        if rc != 0:
            return {"seed": seed, "failed": f"exit {rc}; see {args.work / f'seed{seed}-peer.log'}"}
    peer = json.loads(out.read_text())
    test = peer.get("test") or {}
    return {"seed": seed, "B_s": b, "time_budget_s": b / n, "command": shlex.join(cmd),
            "wall_s": wall, "trials": len(peer["trials"]), "trial_time_s": peer.get("trial_time_s"),
            "best_val": peer["best_score"], "best_config": peer["best_config"], "test": test.get("score"),
            "lo": test.get("lo"), "hi": test.get("hi"), "test_scores": test.get("scores"),
            "test_trial_time_s": test.get("trial_time_s"),
            "budget_minus_peer_points": (100 * (row["budget"]["test"] - test["score"])
                                         if test.get("score") is not None and row["budget"].get("test") is not None
                                         else None)}


# ---- output -----------------------------------------------------------------------------------
def _f(v, spec: str = ".4f") -> str:
    return format(v, spec) if isinstance(v, (int, float)) and math.isfinite(v) else "-"


def _score(p: dict) -> str:
    text = _f(p.get("test"))
    if p.get("lo") is not None and p.get("hi") is not None:
        text += f" [{_f(p['lo'])}, {_f(p['hi'])}]"
    return text


def print_table(rows: list[dict], summary: dict) -> None:
    print("\n| seed | sequential pick | its test [95%] | budget pick | its test [95%] | budget − sequential "
          "(points) [paired 95%] | B (s) | used/B (ledger, files) | wall min (seq, budget) | slot use (seq, budget) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        s, b, d = r["sequential"], r["budget"], r["difference"]
        gap = (f"{100 * (b['test'] - s['test']):+.2f}" if s.get("test") is not None and b.get("test") is not None
               else "-")
        if d:
            gap += f" [{d['lo']:+.2f}, {d['hi']:+.2f}]"
        used = "/".join(_f((b.get(k) or math.nan) / r["B_s"], ".3f") for k in ("used_s", "files_s"))
        print(f"| {r['seed']} | {s.get('method') or '-'} | {_score(s)} | {b.get('method') or '-'} | {_score(b)} | "
              f"{gap} | {r['B_s']:.0f} | {used} | {s['wall_s'] / 60:.1f}, {b['wall_s'] / 60:.1f} | "
              f"{_f(s.get('utilisation'), '.2f')}, {_f(b.get('utilisation'), '.2f')} |")

    def med(key: str, spec: str) -> str:
        v = summary[key]
        return f"{v['median']:{spec}} ({v['min']:{spec}}..{v['max']:{spec}})" if v else "-"

    print(f"| median (range) | | {med('sequential_test', '.4f')} | | {med('budget_test', '.4f')} | "
          f"{med('difference_points', '+.2f')} | {med('B_s', '.0f')} | {med('used_over_B', '.3f')} | | |")
    print("(used/B in the median row: the larger of the ledger's and the files' per run)")
    mark = {True: "holds", False: "does not hold"}
    print(f"\nbudget test >= sequential test (median over {summary['seeds']} seed(s)"
          f"{'' if summary['complete'] else ', some seeds have no figure'}): "
          f"{mark[summary['budget_test_ge_sequential_median']]}")
    print(f"used <= {summary['tolerance']:g} B on every run (ledger and files): "
          f"{mark[summary['used_within_tolerance_every_run']]}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m benchmarks.budget_vs_sequential",
                                description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="the demo-suite smoke (see the module doc)")
    p.add_argument("--data-dir", default=None, help=f"default {FULL['data_dir']} (--quick: the demo suite)")
    p.add_argument("--methods", default=None)
    p.add_argument("--seeds", default=None, help="search seeds, default 0,1,2")
    p.add_argument("--num-samples", type=int, default=None, help="sequential: trials per method (default 6)")
    p.add_argument("--steps", type=int, default=None, help="--max-steps (default 60)")
    p.add_argument("--eval-every", type=int, default=None, help="default 20")
    p.add_argument("--confirm", default=None, help="sequential: --confirm K:N (default 2:3)")
    p.add_argument("--val-from-train", type=float, default=0.05)
    p.add_argument("--val-rows", type=int, default=None, help="--max-eval-samples (default 300)")
    p.add_argument("--max-train-samples", type=int, default=None)
    p.add_argument("--max-concurrent", type=int, default=None, help="trials at once (unset: the product's)")
    p.add_argument("--set", action="append", default=None, help="default batch_size=16, max_length=64")
    p.add_argument("--work", type=Path, default=None, help="the runs' folder")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--reuse", action="store_true", help="read finished runs instead of running them again")
    p.add_argument("--peer", action="store_true", help="also the by-hand peer at B (see the module doc)")
    p.add_argument("--dry-run", action="store_true", help="print the commands and stop")
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.quick:
        args.data_dir = None
    args.work = args.work.resolve()
    sets = args.set or ["batch_size=16", "max_length=64"]
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"command: {shlex.join(['python', '-m', 'benchmarks.budget_vs_sequential', *argv])}", flush=True)
    if args.dry_run:
        for seed in seeds:
            base = common_flags(args, seed)
            for name, extra in (("sequential", ["--num-samples", str(args.num_samples), "--confirm", args.confirm]),
                                ("budget", ["--budget", "<B of the sequential run>s"])):
                print(shlex.join(command(args.work / f"seed{seed}-{name}", base + extra, sets)))
        return 0

    rows = [one_seed(args, seed, sets) for seed in seeds]
    summary = summarize(rows)
    print("\nthe runs:")
    for r in rows:
        print(f"  {r['sequential']['command']}\n  {r['budget']['command']}")
    print_table(rows, summary)
    mismatch = [r["seed"] for r in rows if r["sequential"].get("report_first") not in (None, r["sequential"]["method"])]
    if mismatch:
        print(f"note: the report's rank 1 is not the best confirmed score at seeds {mismatch}")
    peer = None
    if args.peer:
        peer = [peer_at_b(args, r, sets) for r in rows]
        print("\n| seed | peer (LoRA, by hand) trials | its trial-time / B | its test [95%, 3 seeds] "
              "| budget pick's test | budget − peer (points) |\n|---|---|---|---|---|---|")
        for r, q in zip(rows, peer, strict=True):
            if "failed" in q:
                print(f"| {q['seed']} | failed: {q['failed']} | | | | |")
                continue
            print(f"| {q['seed']} | {q['trials']} | {_f((q['trial_time_s'] or math.nan) / q['B_s'], '.2f')} | "
                  f"{_score(q)} | {_f(r['budget'].get('test'))} | {_f(q['budget_minus_peer_points'], '+.2f')} |")
        ok = [q for q in peer if q.get("test") is not None]
        if ok:
            print(f"median test: peer {statistics.median(q['test'] for q in ok):.4f}, budget "
                  f"{statistics.median(r['budget']['test'] for r in rows if r['budget'].get('test') is not None):.4f} "
                  "(unpaired: the peer's seeds and validation rows are its own)")
    record = {"quick": args.quick, "settings": {k: str(v) for k, v in vars(args).items()} | {"set": sets},
              "rows": rows, "summary": summary, "peer": peer}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    from search.results import json_safe

    args.json.write_text(json.dumps(json_safe(record), indent=1, default=str))
    print(f"\nwrote {args.json} (records only, no checkpoints; benchmarks/results/ is git-ignored: git add -f)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
