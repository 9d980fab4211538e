"""Trainer step time against a bare forward + backward + AdamW step of the same model.

    python benchmarks/trainer_overhead.py --methods lora,adapter --steps 30 --repeats 3

Both sides use the same MultitaskModel (packaged MiniLM + method + heads), batch size and
sequence length (every example exactly ``--seq-len`` tokens, so padding plays no part).
The bare loop feeds one pre-built tensor batch; the trainer samples tasks, builds padded
batches, clips gradients and steps the LR schedule. Runs alternate (bare, trainer) and the
median over ``--repeats`` is reported, so background load hits both alike.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainers.config import TrainConfig  # noqa: E402
from trainers.data import PreparedData, TokenizedSplit, data_key  # noqa: E402
from trainers.methods import METHODS  # noqa: E402
from trainers.model import MultitaskModel, load_backbone  # noqa: E402
from trainers.tasks import CS224N  # noqa: E402
from trainers.train import make_optimizer, task_loss, train  # noqa: E402


def fixed_length_data(cfg: TrainConfig, n: int, seq_len: int, vocab: int) -> PreparedData:
    rng = np.random.default_rng(0)
    split = TokenizedSplit(ids=rng.integers(1000, vocab, n * seq_len).astype(np.int32),
                           types=np.zeros(n * seq_len, np.int8),
                           offsets=np.arange(0, (n + 1) * seq_len, seq_len),
                           labels=rng.integers(0, 5, n).astype(np.float32))
    return PreparedData(specs=[CS224N["sst"]], train={"sst": split}, dev={"sst": split}, pad_id=0,
                        synthetic=True, key=data_key(cfg))


def bare_step_time(cfg: TrainConfig, data: PreparedData, steps: int) -> float:
    backbone, _ = load_backbone(cfg.model)
    torch.manual_seed(0)
    model = MultitaskModel(backbone, data.specs, cfg)
    model.train()
    opt, _ = make_optimizer(model, cfg)
    b = {k: torch.from_numpy(v) for k, v in data.train["sst"].batch(np.arange(cfg.batch_size), 0).items()}
    spec = data.specs[0]
    t0 = time.perf_counter()
    for _ in range(steps):
        out = model("sst", b["input_ids"], b["attention_mask"], b["token_type_ids"])
        task_loss(spec, out, b["labels"]).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return (time.perf_counter() - t0) / steps


def trainer_step_time(cfg: TrainConfig, data: PreparedData) -> float:
    res = train(cfg, data=data, log=lambda s: None)
    return res["train_s_per_step"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--json", type=Path, default=Path("benchmarks/results/trainer_overhead.json"))
    args = p.parse_args()
    rows = []
    print("| method | bare s/step | trainer s/step | ratio |\n|---|---|---|---|")
    for method in args.methods.split(","):
        # One eval at the end over a tiny dev set: train_s_per_step excludes evaluation anyway.
        cfg = TrainConfig(method=method, tasks=("sst",), max_steps=args.steps, eval_every=args.steps,
                          batch_size=args.batch_size, max_eval_samples=32, head_dropout=0.1)
        data = fixed_length_data(cfg, n=args.batch_size * (args.steps + 1), seq_len=args.seq_len, vocab=30000)
        data.dev = {"sst": fixed_length_data(cfg, 32, args.seq_len, 30000).train["sst"]}
        bare, trainer = [], []
        for _ in range(args.repeats):
            bare.append(bare_step_time(cfg, data, args.steps))
            trainer.append(trainer_step_time(cfg, data))
        row = {"method": method, "bare_s": statistics.median(bare), "trainer_s": statistics.median(trainer),
               "bare_all": bare, "trainer_all": trainer}
        row["ratio"] = row["trainer_s"] / row["bare_s"]
        rows.append(row)
        print(f"| {method} | {row['bare_s']:.3f} | {row['trainer_s']:.3f} | {row['ratio']:.3f} |", flush=True)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "threads": torch.get_num_threads(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
