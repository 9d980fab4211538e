"""Padding efficiency of the trainer's batching on real data, and what it buys in samples/s.

    python -m benchmarks.padding --data-dir ../shared/data/cs224n

Efficiency = real tokens / tokens in the padded batches, over ``--batches`` training batches
per task drawn exactly as the trainer draws them (``train_batches``), for three ways of
padding: length bucketing (the default, ``bucket=True``), dynamic padding of random batches
(``bucket=False``) and padding every batch to ``--max-length``. The speed part trains LoRA on
each task's batches in each mode (same model, same steps) and reports samples per second.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from trainers.config import TrainConfig
from trainers.data import TokenizedSplit, prepare_data, train_batches
from trainers.loop import make_optimizer, task_loss
from trainers.model import MultitaskModel, load_backbone

ROOT = Path(__file__).resolve().parents[1]


MODES = ("bucketed", "random", "fixed")


def batches(split: TokenizedSplit, mode: str, batch_size: int, n: int, seed: int) -> list[np.ndarray]:
    it = train_batches(split, batch_size, np.random.default_rng(seed), bucket=mode == "bucketed")
    return [next(it) for _ in range(n)]


def efficiency(split: TokenizedSplit, idx_batches: list[np.ndarray], mode: str, max_length: int) -> float:
    real = padded = 0
    for idx in idx_batches:
        lens = split.lengths[idx]
        real += int(lens.sum())
        padded += len(idx) * (max_length if mode == "fixed" else int(lens.max()))
    return real / padded


def padded_batch(split: TokenizedSplit, idx: np.ndarray, mode: str, max_length: int, pad_id: int):
    b = split.batch(idx, pad_id)
    if mode == "fixed":
        extra = max_length - b["input_ids"].shape[1]
        for k in ("input_ids", "attention_mask", "token_type_ids"):
            fill = pad_id if k == "input_ids" else 0
            b[k] = np.pad(b[k], ((0, 0), (0, extra)), constant_values=fill)
    return {k: torch.from_numpy(v) for k, v in b.items()}


def samples_per_s(cfg: TrainConfig, data, task: str, mode: str, steps: int) -> float:
    backbone, _ = load_backbone(cfg.model)
    torch.manual_seed(0)
    model = MultitaskModel(backbone, data.specs, cfg)
    model.train()
    optimizer, _ = make_optimizer(model, cfg)
    spec, split = model.specs[task], data.train[task]
    times, n = [], 0
    for idx in batches(split, mode, cfg.batch_size, steps + 1, seed=1):
        b = padded_batch(split, idx, mode, cfg.max_length, data.pad_id)
        t0 = time.perf_counter()
        out = model(task, b["input_ids"], b["attention_mask"], b["token_type_ids"])
        task_loss(spec, out, b["labels"]).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
        n = len(idx)
    return n / statistics.median(times[1:])  # the first step allocates


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--tasks", default="sst,quora,sts")
    p.add_argument("--max-length", type=int, default=TrainConfig.max_length)
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--batches", type=int, default=500, help="batches per task for the token counts")
    p.add_argument("--speed-steps", type=int, default=8, help="timed LoRA steps per task and mode (0: skip)")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/padding.json")
    args = p.parse_args()
    cfg = TrainConfig(method="lora", tasks=tuple(args.tasks.split(",")), data_dir=args.data_dir,
                      max_length=args.max_length, batch_size=args.batch_size)
    _, tokenizer = load_backbone(cfg.model)
    data = prepare_data(cfg, tokenizer, log=lambda s: None, splits=("train",))
    rows = []
    for spec in data.specs:
        split = data.train[spec.name]
        row = {"task": spec.name, "examples": len(split), "mean_len": float(split.lengths.mean()),
               "max_len": int(split.lengths.max())}
        for mode in MODES:
            row[f"eff_{mode}"] = efficiency(split, batches(split, mode, args.batch_size, args.batches, 0),
                                            mode, args.max_length)
            if args.speed_steps:
                row[f"sps_{mode}"] = samples_per_s(cfg, data, spec.name, mode, args.speed_steps)
        rows.append(row)
        print(f"  {spec.name}: " + ", ".join(f"{m} {row[f'eff_{m}']:.3f}" for m in MODES), flush=True)
    print(f"\nbatch {args.batch_size}, max length {args.max_length}, {args.batches} batches per task; "
          f"samples/s: LoRA train step, median of {args.speed_steps}, {torch.get_num_threads()} threads\n")
    print("| task | examples | mean tokens | efficiency bucketed | random batches | fixed length "
          "| samples/s bucketed | random | fixed | bucketed vs fixed |\n|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        speed = (f"{r['sps_bucketed']:.1f} | {r['sps_random']:.1f} | {r['sps_fixed']:.1f} | "
                 f"{r['sps_bucketed'] / r['sps_fixed']:.2f}x" if args.speed_steps else "- | - | - | -")
        print(f"| {r['task']} | {r['examples']} | {r['mean_len']:.1f} | {r['eff_bucketed']:.3f} | "
              f"{r['eff_random']:.3f} | {r['eff_fixed']:.3f} | {speed} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                     "threads": torch.get_num_threads(), "rows": rows}, indent=2))
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
