"""Cost of a training step per method, and the trainer against a bare training loop.

    python -m benchmarks.step_cost --steps 30                        # every method
    python -m benchmarks.step_cost --methods full,lora,adapter

Two tables from one run, each method measured in its own process (so peak memory is that
method's alone):

1. trainer overhead: the trainer's step against a bare forward + backward + AdamW step of
   the same MultitaskModel (packaged MiniLM + method + heads), batch and sequence length.
   Every example is exactly ``--seq-len`` tokens, so padding plays no part. The trainer also
   samples a task, builds the padded batch, clips gradients and steps the LR schedule.
2. method cost: seconds per step, samples per second, peak resident memory, trainable
   parameters, each also as a ratio to ``full``.

Both sides run on one model in one process, step by step interleaved (trainer step, bare
step, bare step, trainer step, ...) after a few warm-up steps, and the medians are compared:
drift of a shared machine hits both sides alike and one-off stalls do not move a median.
(Whole runs alternated, as the first version of this script did, differed by +-15% between
repeats on this VM: too coarse to resolve a 5% overhead.)
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from trainers.config import TrainConfig
from trainers.data import PreparedData, TaskSampler, TokenizedSplit, data_key, train_batches
from trainers.loop import make_optimizer, task_loss, to_device, train, train_step
from trainers.methods import METHODS
from trainers.model import MultitaskModel, load_backbone
from trainers.tasks import CS224N

ROOT = Path(__file__).resolve().parents[1]


def fixed_length_split(n: int, seq_len: int, vocab: int, seed: int) -> TokenizedSplit:
    rng = np.random.default_rng(seed)
    return TokenizedSplit(ids=rng.integers(1000, vocab, n * seq_len).astype(np.int32),
                          types=np.zeros(n * seq_len, np.int8),
                          offsets=np.arange(0, (n + 1) * seq_len, seq_len),
                          labels=rng.integers(0, 5, n).astype(np.float32))


def bench_config(method: str, steps: int, batch_size: int) -> TrainConfig:
    # One evaluation at the end over 32 examples; evaluation is not part of a step's time.
    return TrainConfig(method=method, tasks=("sst",), max_steps=steps, eval_every=steps,
                       log_every=10**9, batch_size=batch_size, head_dropout=0.1)


def paired_step_times(cfg: TrainConfig, data: PreparedData, steps: int) -> tuple[list[float], list[float]]:
    """``steps`` pairs of (trainer step, bare step) on one model, interleaved.

    The trainer step is the trainer's own code path: draw a task (``TaskSampler``), draw and pad
    a batch (``train_batches``, ``TokenizedSplit.batch``), move it (``to_device``) and run
    ``train_step`` (forward, loss, backward, clipping, AdamW, LR schedule, NaN check). The bare
    step is forward, loss, backward, AdamW and zeroing on a ready tensor batch, nothing else.
    Pairs alternate which side goes first, so drift of the machine hits both sides alike.
    """
    backbone, _ = load_backbone(cfg.model)
    torch.manual_seed(cfg.seed)
    model = MultitaskModel(backbone, data.specs, cfg)
    model.train()
    optimizer, scheduler = make_optimizer(model, cfg)
    trainable = [p for p in model.parameters() if p.requires_grad]
    device = torch.device("cpu")
    spec, split = data.specs[0], data.train["sst"]
    rng = np.random.default_rng(cfg.seed)
    sampler = TaskSampler({spec.name: len(split)}, cfg.sampler, cfg.temperature, seed=cfg.seed)
    batches = train_batches(split, cfg.batch_size, rng, cfg.bucket)
    ready = {k: torch.from_numpy(v) for k, v in split.batch(np.arange(cfg.batch_size), data.pad_id).items()}

    def trainer_step() -> None:
        task = next(sampler)
        b = to_device(data.train[task].batch(next(batches), data.pad_id), device)
        train_step(model, model.specs[task], b, optimizer, scheduler, trainable, cfg, device)

    def bare_step() -> None:
        out = model(spec.name, ready["input_ids"], ready["attention_mask"], ready["token_type_ids"])
        task_loss(spec, out, ready["labels"]).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):  # warm-up: the first steps of a process allocate and pick kernels
        trainer_step()
        bare_step()
    trainer, bare = [], []
    for i in range(steps):
        for side in ((trainer_step, trainer), (bare_step, bare))[:: 1 if i % 2 == 0 else -1]:
            t0 = time.perf_counter()
            side[0]()
            side[1].append(time.perf_counter() - t0)
    return trainer, bare


def measure(method: str, steps: int, batch_size: int, seq_len: int) -> dict:
    """One method, in this process: peak memory of the trainer, then paired steps."""
    cfg = bench_config(method, steps, batch_size)
    data = PreparedData(specs=[CS224N["sst"]],
                        train={"sst": fixed_length_split(batch_size * (steps + 8), seq_len, 30000, 0)},
                        dev={"sst": fixed_length_split(32, seq_len, 30000, 1)},
                        pad_id=0, synthetic=True, key=data_key(cfg))
    # The trainer itself for a few steps: this method's peak resident memory in training.
    short = bench_config(method, 4, batch_size)
    res = train(short, data=data, log=lambda s: None)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    trainer, bare = paired_step_times(cfg, data, steps)
    trainer_s, bare_s = statistics.median(trainer), statistics.median(bare)
    pair_ratio = statistics.median(t / b for t, b in zip(trainer, bare, strict=True))
    return {"method": method, "trainer_s": trainer_s, "bare_s": bare_s, "ratio": trainer_s / bare_s,
            "pair_ratio_median": pair_ratio, "trainer_steps": trainer, "bare_steps": bare,
            "samples_per_s": batch_size / trainer_s, "peak_rss_mb": peak_mb,
            "trainable_params": res["params"]["trainable"], "stored_pct": res["params"]["stored_pct"],
            "threads": torch.get_num_threads()}


def run_isolated(method: str, args) -> dict:
    cmd = [sys.executable, __file__, "--one", method, "--steps", str(args.steps),
           "--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"step_cost: {method} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--steps", type=int, default=30, help="timed (trainer step, bare step) pairs")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/step_cost.json")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one method, print JSON
    args = p.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.steps, args.batch_size, args.seq_len)))
        return 0
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        p.error(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
    rows = []
    for method in methods:
        rows.append(run_isolated(method, args))
        r = rows[-1]
        print(f"  {method}: trainer {r['trainer_s']:.3f} s/step, bare {r['bare_s']:.3f}, "
              f"ratio {r['ratio']:.3f}, peak {r['peak_rss_mb']:.0f} MB", flush=True)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "machine": f"{platform.machine()}, {platform.processor() or '?'}, torch {torch.__version__}",
            "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))
    full = next((r for r in rows if r["method"] == "full"), None)
    print(f"\nbatch {args.batch_size} x {args.seq_len} tokens, median of {args.steps} interleaved "
          f"(trainer, bare) step pairs, {rows[0]['threads']} torch threads\n")
    print("| method | bare s/step | trainer s/step | trainer / bare | median pair ratio |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['bare_s']:.3f} | {r['trainer_s']:.3f} | {r['ratio']:.3f} | "
              f"{r['pair_ratio_median']:.3f} |")
    print("\n| method | s/step | samples/s | peak RSS MB | trainable params | stored % |"
          + (" step vs full | memory vs full | params vs full |\n|---|---|---|---|---|---|---|---|---|"
             if full else "\n|---|---|---|---|---|---|"))
    for r in rows:
        line = (f"| {r['method']} | {r['trainer_s']:.3f} | {r['samples_per_s']:.1f} | {r['peak_rss_mb']:.0f} "
                f"| {r['trainable_params']:,} | {r['stored_pct']:.3f} |")
        if full:
            line += (f" {r['trainer_s'] / full['trainer_s']:.2f} | {r['peak_rss_mb'] / full['peak_rss_mb']:.2f} "
                     f"| {r['trainable_params'] / full['trainable_params']:.4f} |")
        print(line)
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
