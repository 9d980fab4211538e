"""The learning-rate schedule at a short budget: the by-hand peer's best LoRA config in our
trainer, constant vs linear vs cosine after warmup, every run scored on the same dev rows.

    python -m benchmarks.lr_schedule --data-dir ../shared/data/cs224n

Issue 14: the peer's best config (lr 6.1e-4, r 32, constant rate) scored 0.550 after 60 steps
in its own loop and 0.480 in our trainer with linear decay, on different 400-row dev subsets.
This separates the two causes: each (schedule, seed) run trains once, then its model scores

- ``whole dev``: every dev row of the three tasks (3,010 rows);
- ``peer 400``: the peer's rows (``benchmarks.peer_search.peer_load_data``, 400 seeded random
  rows per task), found among our dev rows by their text;
- ``stratified 400``: the trainer's own 400-row subset per task (``trainers.fidelity``'s fixed
  stratified order: the rows a search's ``--eval-rows`` evaluations score).

Setup (the peer's, ``benchmarks/peer_search.py``): lora, r 32 with alpha 64 (the peer's
alpha = 2 r), lr 6.1e-4, 60 steps of batch 16, max length 128, sst + quora + sts, the packaged
MiniLM. Everything else at the trainer's defaults (which differ from the peer's loop: warmup
6% = 3 steps, LoRA on query/key/value, temperature task sampling, LoRA dropout 0.05, weight
decay 0.01). One torch thread, runs one after another. Each run's model is saved at its last
step and rebuilt, its per-row outputs computed once on the whole dev set, each row set scored
from them; the trainer's own score of the peer's rows is checked against the rebuilt model's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from trainers.checkpoint import load_checkpoint
from trainers.config import TrainConfig
from trainers.data import PreparedData, prepare_data, split_examples
from trainers.fidelity import subset_order
from trainers.loop import _predict, train
from trainers.metrics import overall_score, task_metric
from trainers.model import load_tokenizer
from trainers.tasks import TaskSpec

ROOT = Path(__file__).resolve().parents[1]
SCHEDULES = ("constant", "linear", "cosine")
PEER_CONFIG = {"method": "lora", "r": 32, "alpha": 64.0, "lr": 6.1e-4, "max_steps": 60,
               "batch_size": 16, "max_length": 128, "tasks": "sst,quora,sts"}
"""The peer's best config and its loop's batch and length; the rest at the trainer's defaults."""
SUBSET = 400
ROW_SETS = ("whole dev", "peer 400", "stratified 400")
Rows = dict[str, np.ndarray]
"""task -> dev row indices."""


# ---- the row sets ---------------------------------------------------------------------------------
def _key(text: object, pair: object, label: object) -> tuple:
    """A row as text: whitespace collapsed (the peer's pandas keeps a leading space the
    trainer's reader strips; the tokenizer ignores both)."""
    return (" ".join(str(text).split()), None if pair is None else " ".join(str(pair).split()),
            round(float(label), 6))


def _dev_keys(spec: TaskSpec, cfg: TrainConfig) -> list[tuple]:
    """Each dev row of ``spec`` as the trainer reads it, by ``_key``."""
    return [_key(*e) for e in split_examples(spec, "dev", cfg, log=lambda s: None)]


def _find(dev: list[tuple], wanted: list[tuple]) -> np.ndarray:
    """The dev indices of the ``wanted`` rows, sorted; a row twice in dev (sst holds one such
    pair) is taken once per time it is wanted."""
    where: dict[tuple, list[int]] = {}
    for i, k in enumerate(dev):
        where.setdefault(k, []).append(i)
    return np.sort(np.array([where[k].pop(0) for k in wanted]))


def peer_rows(cfg: TrainConfig, specs: list[TaskSpec]) -> Rows:
    """Each task's dev row indices (in our dev order) of the peer's 400-row subset."""
    from benchmarks.peer_search import FILES, peer_load_data

    peer = peer_load_data(cfg.data_dir, SUBSET)["dev"]
    out: Rows = {}
    for spec in specs:
        _, _, text, pair, label = FILES[spec.name]
        wanted = [_key(r[text], r[pair] if pair else None, r[label]) for _, r in peer[spec.name].iterrows()]
        out[spec.name] = _find(_dev_keys(spec, cfg), wanted)
    return out


def capped_rows(cfg: TrainConfig, specs: list[TaskSpec]) -> Rows:
    """The rows the trainer's own ``--max-eval-samples 400`` cap keeps, as dev indices."""
    capped = dataclasses.replace(cfg, max_eval_samples=SUBSET)
    return {s.name: _find(_dev_keys(s, cfg), _dev_keys(s, capped)) for s in specs}


def row_sets(cfg: TrainConfig, data: PreparedData) -> dict[str, Rows]:
    """The three row sets of the module doc, as each task's dev indices."""
    return {"whole dev": {s.name: np.arange(len(data.dev[s.name])) for s in data.specs},
            "peer 400": peer_rows(cfg, data.specs),
            "stratified 400": {s.name: np.sort(subset_order(s, data.dev[s.name].labels)[:SUBSET])
                               for s in data.specs}}


def same_rows(a: Rows, b: Rows) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def with_dev(data: PreparedData, rows: Rows) -> PreparedData:
    """``data`` whose evaluation scores only ``rows`` of each dev split."""
    return dataclasses.replace(data, dev={k: v.subset(rows[k]) for k, v in data.dev.items()})


# ---- one run ------------------------------------------------------------------------------------
def score(specs: list[TaskSpec], outputs: dict[str, np.ndarray], labels: dict[str, np.ndarray],
          rows: Rows) -> dict[str, float]:
    """Each task's metric and the overall score of ``rows`` from per-row ``outputs``."""
    metrics = {s.name: task_metric(s, outputs[s.name][rows[s.name]], labels[s.name][rows[s.name]])
               for s in specs}
    return {**metrics, "score": overall_score(specs, metrics)}


def run_one(cfg: TrainConfig, data: PreparedData, sets: dict[str, Rows], tokenizer) -> dict:
    """Train ``cfg`` (its evaluation: the peer's rows), rebuild its last model and score every
    row set from one pass over the whole dev set."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        last = Path(tmp) / "last"

        def report(metrics: dict, save) -> None:
            if metrics["step"] == cfg.max_steps:
                save(last)

        result = train(cfg, report, data=with_dev(data, sets["peer 400"]), tokenizer=tokenizer,
                       log=lambda s: None)
        model, _, _ = load_checkpoint(last)
    train_s = time.perf_counter() - t0
    device = torch.device("cpu")
    model.to(device).eval()
    with torch.inference_mode():
        outputs = {s.name: _predict(model, s, data.dev[s.name], data.pad_id, cfg, device) for s in data.specs}
    labels = {s.name: data.dev[s.name].labels for s in data.specs}
    scores = {name: score(data.specs, outputs, labels, rows) for name, rows in sets.items()}
    drift = abs(scores["peer 400"]["score"] - result["score"])
    # Batches of other lengths pad differently, so a near-tie row may flip (1 sst row = 0.0008);
    # more than a few rows would mean the rebuilt model is not the trained one.
    if drift > 0.003:
        raise RuntimeError(f"rebuilt model scores the peer's rows {scores['peer 400']['score']:.6f}, "
                           f"the trainer scored {result['score']:.6f}")
    return {"schedule": cfg.lr_schedule, "seed": cfg.seed, "scores": scores,
            "trainer_peer_score": result["score"], "rebuilt_drift": drift, "train_s": train_s,
            "wall_s": time.perf_counter() - t0}


# ---- summary ------------------------------------------------------------------------------------
def stats(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.mean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def summarize(runs: list[dict]) -> dict:
    """Mean, sd and range per (schedule, row set), and each schedule minus linear, paired by seed."""
    by = {(r["schedule"], r["seed"]): r for r in runs}
    seeds = sorted({r["seed"] for r in runs})
    out: dict = {"per_schedule": {}, "minus_linear": {}}
    for sched in SCHEDULES:
        out["per_schedule"][sched] = {name: stats([by[sched, s]["scores"][name]["score"] for s in seeds])
                                      for name in ROW_SETS}
        if sched != "linear":
            out["minus_linear"][sched] = {
                name: stats([by[sched, s]["scores"][name]["score"] - by["linear", s]["scores"][name]["score"]
                             for s in seeds]) for name in ROW_SETS}
    return out


def cell(st: dict[str, float], signed: bool = False) -> str:
    fmt = "+.4f" if signed else ".4f"
    return f"{st['mean']:{fmt}} ± {st['sd']:.4f} ({st['min']:{fmt}} .. {st['max']:{fmt}})"


def table(summary: dict, seeds: list[int]) -> str:
    head = "| schedule | " + " | ".join(ROW_SETS) + " |\n|---|" + "---|" * len(ROW_SETS)
    lines = [head]
    for sched in SCHEDULES:
        lines.append(f"| {sched} | " + " | ".join(cell(summary["per_schedule"][sched][n]) for n in ROW_SETS) + " |")
    for sched, diff in summary["minus_linear"].items():
        lines.append(f"| {sched} − linear (paired) | " + " | ".join(cell(diff[n], signed=True) for n in ROW_SETS)
                     + " |")
    note = (f"\nmean ± sd (min .. max) over seeds {','.join(map(str, seeds))}; score = (sst acc + quora acc "
            "+ (sts r + 1) / 2) / 3")
    return "\n".join(lines) + note


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared/data/cs224n"), help="the CS224N data folder")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--schedules", default=",".join(SCHEDULES))
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/lr_schedule.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    schedules = [s for s in args.schedules.split(",") if s]
    base = TrainConfig.from_flat({**PEER_CONFIG, "data_dir": str(Path(args.data_dir).resolve()),
                                  "eval_every": PEER_CONFIG["max_steps"], "num_threads": 1})
    tokenizer = load_tokenizer(base.model)
    t0 = time.perf_counter()
    data = prepare_data(base, tokenizer, log=lambda s: None)
    sets = row_sets(base, data)
    cap_is_peer = same_rows(sets["peer 400"], capped_rows(base, data.specs))
    print(f"data ready in {time.perf_counter() - t0:.0f} s; rows: "
          + ", ".join(f"{n} {sum(len(v) for v in r.values())}" for n, r in sets.items())
          + f"; the peer's rows {'are' if cap_is_peer else 'are NOT'} the trainer's --max-eval-samples "
          f"{SUBSET} rows", flush=True)
    runs = []
    for sched in schedules:
        for seed in seeds:
            cfg = dataclasses.replace(base, lr_schedule=sched, seed=seed)
            run = run_one(cfg, data, sets, tokenizer)
            runs.append(run)
            print(f"  {sched:8s} seed {seed}: " + ", ".join(f"{n} {run['scores'][n]['score']:.4f}" for n in ROW_SETS)
                  + f" ({run['wall_s']:.0f} s)", flush=True)
    summary = summarize(runs) if set(schedules) == set(SCHEDULES) else None
    print(f"\nlora r 32 alpha 64 lr 6.1e-4, {base.max_steps} steps of batch {base.batch_size}, max length "
          f"{base.max_length}, warmup {base.warmup_ratio:g}, CS224N sst,quora,sts\n")
    if summary:
        print(table(summary, seeds))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "config": base.to_flat(), "seeds": seeds, "schedules": schedules,
        "rows": {n: {k: len(v) for k, v in r.items()} for n, r in sets.items()},
        "peer_rows_are_trainer_cap": cap_is_peer, "runs": runs, "summary": summary,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "threads": 1},
        "wall_s": time.perf_counter() - t0}, indent=2))
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
