"""Few-shot transfer to a new task: transfer from trained checkpoints against a tuned
from-scratch baseline, at K labelled examples of cfimdb (binary movie-review sentiment).

    python -m benchmarks.few_shot --data-dir ../shared/data/cs224n            # K = 64, seeds 0-4

**Sources** (``SOURCES``; trained here when missing under ``--sources``): each method on one of
three task sets, ``--source-steps`` steps of batch 16 at max length 64, seed 0, its default rate:

- ``<method>``: sst, quora, sts. sst is movie-review sentiment, the target's own task type;
- ``<method>_lto`` (leave type out): quora, sts only, so no source task is sentiment;
- ``adapter_sst``: sst alone (a single-task source: does the multitask training add anything?).

**Target runs** (cfimdb, never seen by a source): ``--val-from-train 0.3`` (a seeded stratified
validation set of 512 rows carved from cfimdb's train file; the 112-row dev file is the test
split), a class-stratified K-shot sample of the remaining rows, ``sample_seed`` = ``seed`` = the
run's seed, max length 96, batch 16, ``STEPS[K]`` steps, one evaluation at the end.

**Arms** (``ARMS``):

- ``*_transfer``: ``--init-from`` the source with the transfer's defaults (the new task's own
  parameters from the nearest trained task, everything else frozen, the method's default rate);
- ``*_transfer_tuned`` (hypernetworks): the product's transfer search with the hypernetwork
  trained together with the new task's embedding (``unfreeze=shared``) and the rate searched;
- ``*_scratch_tuned``: the method on cfimdb alone, configured by the product's own search on
  cfimdb's carved validation rows.

A searched arm runs one search (``SEARCH``: the same number of trials and steps for every searched
arm) on seed 0's sample and validation rows, then its pick is trained with every seed: the pick
saw seed 0's validation rows, never the test split. Nothing else is tuned.

Each finished run is one line of ``runs.jsonl``, each search one JSON under ``searches/``
(resumable: done work is skipped); the tables go to stdout, ``tables.md`` and ``summary.json``.
The run of 2026-12-02 (three seeds, default-rate scratch arms, the same-type source only) is kept
under ``2026-12-02/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("benchmarks/results/transfer")
STEPS = {"16": 30, "64": 50, "256": 80, "all": 120}
SOURCE_SETS = {"": "sst,quora,sts", "_lto": "quora,sts", "_sst": "sst"}
SOURCES = {f"{m}{suffix}": (m, SOURCE_SETS[suffix]) for m in ("adapter", "pha", "hyperformer")
           for suffix in ("", "_lto")} | {"adapter_sst": ("adapter", "sst")}
SOURCE = {"eval_every": 100000, "batch_size": 16, "max_length": 64, "seed": 0, "log_every": 250}
SEARCH = {"num_samples": 6, "eval_every": 25}
"""Every searched arm: 6 trials of up to ``STEPS[K]`` steps, the product's scheduler and searcher."""


@dataclass(frozen=True)
class Arm:
    kind: str  # transfer | tuned transfer | tuned scratch
    method: str
    source: str | None = None

    @property
    def searched(self) -> bool:
        return self.kind.startswith("tuned")


ARMS = {
    "adapter_transfer": Arm("transfer", "adapter", "adapter"),
    "adapter_transfer_lto": Arm("transfer", "adapter", "adapter_lto"),
    "adapter_transfer_sst": Arm("transfer", "adapter", "adapter_sst"),
    "pha_transfer": Arm("transfer", "pha", "pha"),
    "pha_transfer_lto": Arm("transfer", "pha", "pha_lto"),
    "hyperformer_transfer": Arm("transfer", "hyperformer", "hyperformer"),
    "hyperformer_transfer_lto": Arm("transfer", "hyperformer", "hyperformer_lto"),
    "pha_transfer_tuned": Arm("tuned transfer", "pha", "pha"),
    "hyperformer_transfer_tuned": Arm("tuned transfer", "hyperformer", "hyperformer"),
    "adapter_scratch_tuned": Arm("tuned scratch", "adapter"),
    "full_scratch_tuned": Arm("tuned scratch", "full"),
    "lora_scratch_tuned": Arm("tuned scratch", "lora"),
}
ORDER = ["adapter_transfer", "adapter_transfer_lto", "adapter_scratch_tuned", "full_scratch_tuned",
         "adapter_transfer_sst", "pha_transfer", "pha_transfer_tuned", "hyperformer_transfer",
         "hyperformer_transfer_tuned", "pha_transfer_lto", "lora_scratch_tuned", "hyperformer_transfer_lto"]
"""The default run order: the headline comparison first, so a run cut short still answers it."""
COMPARISONS = [  # (label, a, b): a − b paired by seed
    ("same-type source: adapter transfer − best tuned scratch", "adapter_transfer", "best scratch"),
    ("no sentiment source: adapter transfer (quora, sts) − best tuned scratch", "adapter_transfer_lto",
     "best scratch"),
    ("the source's task type: adapter from sst,quora,sts − from quora,sts", "adapter_transfer",
     "adapter_transfer_lto"),
    ("multitask vs single-task source: adapter from sst,quora,sts − from sst alone", "adapter_transfer",
     "adapter_transfer_sst"),
    ("pha: tuned (hypernetwork trained, rate searched) − defaults", "pha_transfer_tuned", "pha_transfer"),
    ("hyperformer: tuned − defaults", "hyperformer_transfer_tuned", "hyperformer_transfer"),
    ("pha transfer − best tuned scratch", "pha_transfer", "best scratch"),
    ("pha, no sentiment source − best tuned scratch", "pha_transfer_lto", "best scratch"),
    ("hyperformer transfer − best tuned scratch", "hyperformer_transfer", "best scratch"),
]


def quiet(message: str) -> None:
    pass


def ensure_source(name: str, args) -> Path:
    """The source checkpoint ``name``, trained if missing."""
    from trainers.config import TrainConfig
    from trainers.loop import train

    out = args.sources / name
    if not (out / "result.json").is_file():
        method, tasks = SOURCES[name]
        print(f"[few_shot] training source {name} ({method} on {tasks}, {args.source_steps} steps)", flush=True)
        flat = {**SOURCE, "method": method, "tasks": tasks, "max_steps": args.source_steps,
                "data_dir": args.data_dir}
        train(TrainConfig.from_flat(flat), out=out, log=quiet)
    return out / "checkpoint"


def target_flat(k: str, seed: int, args) -> dict:
    steps = args.steps[k]
    return {"tasks": "cfimdb", "data_dir": args.data_dir, "val_from_train": 0.3,
            "max_train_samples": None if k == "all" else int(k), "sample_seed": seed, "seed": seed,
            "max_length": 96, "batch_size": 16, "max_steps": steps, "eval_every": steps, "log_every": 1000}


def search_pick(arm: str, k: str, args) -> dict:
    """The searched arm's pick: the product's search on seed 0's sample (cached under searches/)."""
    path = ROOT / "searches" / f"{arm}-{k}.json"
    if path.is_file():
        return json.loads(path.read_text())
    a = ARMS[arm]
    out = ROOT / "searches" / f"{arm}-{k}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "search/run.py", "--tasks", "cfimdb", "--data-dir", args.data_dir,
           "--val-from-train", "0.3", "--max-steps", str(args.steps[k]),
           "--eval-every", str(SEARCH["eval_every"]), "--num-samples", str(SEARCH["num_samples"]),
           "--seed", "0", "--set", "sample_seed=0", "--set", "batch_size=16", "--set", "max_length=96",
           "--out", str(out), "--mlflow-uri", f"sqlite:///{out}/mlflow.db", "--experiment", arm,
           "--storage-path", str((out / "tune").resolve())]
    if k != "all":
        cmd += ["--max-train-samples", k]
    if a.source:
        cmd += ["--transfer-from", str(ensure_source(a.source, args)),
                "--set", "unfreeze=shared", "--set", "transfer_init=nearest"]
    else:
        cmd += ["--method", a.method]
    print(f"[few_shot] searching {arm} K={k}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": "."})
    wall = time.perf_counter() - t0
    best = next(out.glob("*/best_config.json"))
    rows = list(json.loads((best.parent / "trials.json").read_text())["trials"].values())
    trial_s = sum(r.get("setup_s", 0.0) + r.get("train_s", 0.0) + r.get("eval_s", 0.0) for r in rows)
    pick = {"config": json.loads(best.read_text()), "wall_s": wall, "trials": len(rows),
            "trial_s": trial_s, "command": " ".join(cmd[1:])}
    path.write_text(json.dumps(pick, indent=2))
    shutil.rmtree(out / "tune", ignore_errors=True)
    for ckpt in out.glob("*/best_checkpoint"):
        shutil.rmtree(ckpt, ignore_errors=True)
    return pick


def run_one(arm: str, k: str, seed: int, args) -> dict:
    """One target run: train, score validation (in train) and test; the run's JSON line."""
    import torch

    from trainers.checkpoint import load_checkpoint
    from trainers.config import TrainConfig
    from trainers.data import prepare_data
    from trainers.loop import evaluate, train
    from trainers.transfer import inherit

    a = ARMS[arm]
    flat = target_flat(k, seed, args)
    if a.searched:
        picked = {key: v for key, v in search_pick(arm, k, args)["config"].items() if v is not None}
        keep = {"sample_seed", "seed", "data_dir", "eval_every", "log_every"}
        flat = {**picked, **{key: flat[key] for key in keep}}
        flat["eval_every"] = flat["max_steps"]
    elif a.source:
        flat["init_from"] = str(ensure_source(a.source, args))
    else:
        flat["method"] = a.method
    if a.source and not a.searched:
        flat = inherit(flat)
    cfg = TrainConfig.from_flat(flat)
    out = ROOT / "runs" / f"{arm}-{k}-{seed}"
    t0 = time.perf_counter()
    result = train(cfg, out=out, log=quiet)
    wall = time.perf_counter() - t0
    model, tcfg, tokenizer = load_checkpoint(out / "checkpoint", tasks="cfimdb")
    data = prepare_data(tcfg, tokenizer, log=quiet, splits=("test",))
    device = torch.device("cpu")
    test = evaluate(model.to(device), data, tcfg, device)["cfimdb"]
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    init = result.get("transfer", {}).get("init", {}).get("cfimdb", {})
    return {"arm": arm, "kind": a.kind, "method": a.method, "source": a.source, "k": k, "seed": seed,
            "steps": cfg.max_steps, "lr": cfg.lr, "unfreeze": cfg.unfreeze,
            "val": result["metrics"]["cfimdb"], "test": test, "wall_s": wall,
            "pct": result["params"]["per_task_pct"]["cfimdb"],
            "trainable": result["params"]["trainable"], "from": init.get("from"), "scores": init.get("scores")}


# ---- tables ------------------------------------------------------------------------------------

T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
"""Student t, two-sided 95%, by degrees of freedom (seeds − 1)."""


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * sd:.1f}"


def paired(a: dict[int, float], b: dict[int, float]) -> dict | None:
    """a − b over the seeds both have, in points: mean, 95% t interval, per seed."""
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return None
    d = [100 * (a[s] - b[s]) for s in seeds]
    mean = statistics.mean(d)
    half = T975.get(len(d) - 1, 1.96) * statistics.stdev(d) / math.sqrt(len(d))
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "n": len(d), "per_seed": d}


def tables(runs: list[dict], searches: dict[str, dict], sources: dict[str, dict]) -> tuple[str, dict]:
    unique: dict[tuple, dict] = {}
    for r in runs:  # a run logged twice (an interrupted resume) counts once: its last line
        unique[(r["arm"], r["k"], r["seed"])] = r
    runs = list(unique.values())
    lines: list[str] = []
    summary: dict = {"cells": {}, "comparisons": {}, "searches": searches, "sources": sources}
    if sources:
        lines += ["**Sources** (seed 0, batch 16, max length 64; score on the dev files of their tasks)\n",
                  "| source | tasks | steps | score | sst acc | quora acc | sts r | s |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, r in sources.items():
            m = r["metrics"]
            cols = " | ".join(f"{m[t]:.3f}" if t in m else "-" for t in ("sst", "quora", "sts"))
            lines.append(f"| {name} | {SOURCES.get(name, ('', '?'))[1]} | {r['steps']} | {r['score']:.4f} | "
                         f"{cols} | {r['wall_s']:.0f} |")
    if searches:
        lines += ["\n**Searches** (one per searched arm, on seed 0's sample and validation rows)\n",
                  "| arm | K | trials | trial-s | wall s | picked lr | steps | unfreeze | other picks |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for key, s in searches.items():
            c = s["config"]
            other = ", ".join(f"{n}={c[n]:.3g}" if isinstance(c[n], float) else f"{n}={c[n]}"
                              for n in ("lr_schedule", "weight_decay", "warmup_ratio", "bottleneck", "r")
                              if c.get(n) is not None)
            arm, k = key.rsplit("-", 1)
            lines.append(f"| {arm} | {k} | {s['trials']} | {s['trial_s']:.0f} | {s['wall_s']:.0f} | "
                         f"{c['lr']:.2e} | {c['max_steps']} | {c.get('unfreeze', '-')} | {other} |")
    for k in [k for k in STEPS if any(r["k"] == k for r in runs)]:
        lines += [f"\n**K = {k}**\n",
                  "| arm | kind | source tasks | val acc % (mean ± sd) | test acc % (mean ± sd) | seeds | "
                  "% params trained | median s / run | started from |", "|---|---|---|---|---|---|---|---|---|"]
        cells = {}
        for arm, a in ARMS.items():
            rows = sorted((r for r in runs if r["arm"] == arm and r["k"] == k), key=lambda r: r["seed"])
            if not rows:
                continue
            froms = [r["from"] for r in rows if r["from"]]
            started = ", ".join(f"{t} {froms.count(t)}/{len(rows)}" for t in sorted(set(froms))) or "-"
            cell = {"val": {r["seed"]: r["val"] for r in rows}, "test": {r["seed"]: r["test"] for r in rows},
                    "pct": statistics.mean(r["pct"] for r in rows),
                    "wall_s": statistics.median(r["wall_s"] for r in rows), "from": froms}
            cells[arm] = cell
            summary["cells"][f"{arm}@{k}"] = cell
            src = SOURCES[a.source][1] if a.source else "-"
            lines.append(f"| {arm} | {a.kind} | {src} | {_ms(list(cell['val'].values()))} | "
                         f"{_ms(list(cell['test'].values()))} | {len(rows)} | {cell['pct']:.3f} | "
                         f"{cell['wall_s']:.0f} | {started} |")
        scratch = [a for a in cells if ARMS[a].kind == "tuned scratch"]
        best = max(scratch, key=lambda a: statistics.mean(cells[a]["val"].values())) if scratch else None
        if best:
            lines.append(f"\nBest tuned scratch arm by mean validation accuracy: **{best}**.")
        lines += ["\n| comparison (a − b, paired by seed) | validation, points [95% t] | test, points [95% t] | seeds |",
                  "|---|---|---|---|"]
        for label, x, y in COMPARISONS:
            y = best if y == "best scratch" else y
            if x not in cells or y not in cells:
                continue
            v, t = paired(cells[x]["val"], cells[y]["val"]), paired(cells[x]["test"], cells[y]["test"])
            if v is None:
                continue
            summary["comparisons"][f"{x} - {y}@{k}"] = {"val": v, "test": t}
            lines.append(f"| {label} ({y}) | {v['mean']:+.1f} [{v['lo']:+.1f}, {v['hi']:+.1f}] | "
                         f"{t['mean']:+.1f} [{t['lo']:+.1f}, {t['hi']:+.1f}] | {v['n']} |")
    return "\n".join(lines), summary


def _sources(args) -> dict[str, dict]:
    out = {}
    for name in SOURCES:
        path = args.sources / name / "result.json"
        if path.is_file():
            r = json.loads(path.read_text())
            out[name] = {"score": r["score"], "metrics": r["metrics"], "wall_s": r["wall_s"],
                         "steps": r.get("config", {}).get("max_steps", args.source_steps)}
    return out


def main(argv: list[str] | None = None) -> int:
    global ROOT
    p = argparse.ArgumentParser(prog="python -m benchmarks.few_shot", description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default="../shared/data/cs224n")
    p.add_argument("--root", type=Path, default=ROOT, help="where runs, searches and tables go")
    p.add_argument("--sources", type=Path, default=None, help="source checkpoints (default ROOT/sources)")
    p.add_argument("--source-steps", type=int, default=500)
    p.add_argument("--ks", default="64")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--arms", default=",".join(ORDER))
    p.add_argument("--steps", dest="steps_override", default="", help="K:steps overrides, e.g. 16:3,64:3")
    p.add_argument("--keep", action="store_true", help="keep each run's folder")
    p.add_argument("--table-only", action="store_true")
    args = p.parse_args(argv)
    ROOT = args.root
    args.sources = args.sources or ROOT / "sources"
    args.steps = dict(STEPS)
    args.steps.update({k: int(v) for k, v in (x.split(":") for x in args.steps_override.split(",") if x)})
    unknown = [a for a in args.arms.split(",") if a not in ARMS]
    if unknown:
        p.error(f"--arms {','.join(unknown)}: unknown (known: {', '.join(ARMS)})")
    (ROOT / "searches").mkdir(parents=True, exist_ok=True)
    log = ROOT / "runs.jsonl"
    done = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    keys = {(r["arm"], r["k"], r["seed"]) for r in done}
    if not args.table_only:
        seeds = [int(s) for s in args.seeds.split(",")]
        for arm in args.arms.split(","):
            for k in args.ks.split(","):
                for seed in seeds:
                    if (arm, k, seed) in keys:
                        continue
                    try:
                        row = run_one(arm, k, seed, args)
                    except subprocess.CalledProcessError as e:  # a failed search: the other arms go on
                        print(f"[few_shot] {arm} K={k}: its search failed ({e.returncode}); skipped, "
                              "rerun to retry", flush=True)
                        break
                    done.append(row)
                    with log.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                    print(f"[few_shot] {arm} K={k} seed={seed}: val {row['val']:.4f} test {row['test']:.4f} "
                          f"({row['wall_s']:.0f} s, from {row['from']})", flush=True)
    searches = {p.stem: json.loads(p.read_text()) for p in sorted((ROOT / "searches").glob("*.json"))}
    text, summary = tables(done, searches, _sources(args))
    print(text)
    (ROOT / "tables.md").write_text(text + "\n")
    (ROOT / "summary.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
