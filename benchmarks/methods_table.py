"""One training run per method at the same step budget; prints a table and writes JSON.

    python -m benchmarks.methods_table --data-dir ../shared/data/cs224n --max-steps 300 \
        --json benchmarks/results/methods_cs224n.json

Every run uses the same backbone, tasks, batch size, seed and step budget; each method uses
its DEFAULT_LR (no tuning: that is what the search is for).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from trainers.config import TrainConfig
from trainers.data import prepare_data
from trainers.loop import train
from trainers.methods import METHODS
from trainers.model import load_tokenizer


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--tasks", default="sst,quora,sts")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--model", default=None)
    p.add_argument("--max-steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=Path("benchmarks/results/methods_table.json"))
    args = p.parse_args()
    rows = []
    base = dict(tasks=args.tasks, data_dir=args.data_dir, model=args.model, max_steps=args.max_steps,
                eval_every=args.max_steps, batch_size=args.batch_size, max_length=args.max_length,
                seed=args.seed)
    data = prepare_data(TrainConfig.from_flat(base), load_tokenizer(args.model))
    for method in args.methods.split(","):
        cfg = TrainConfig.from_flat({**base, "method": method})
        res = train(cfg, data=data, log=lambda s: print(s, flush=True))
        rows.append({"method": method, "score": res["score"], **res["metrics"],
                     "per_task_pct": max(res["params"]["per_task_pct"].values()),
                     "stored_pct": res["params"]["stored_pct"], "trainable": res["params"]["trainable"],
                     "s_per_step": res["train_s_per_step"], "lr": cfg.lr})
        print_table(rows, cfg.tasks)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)},
                                         "machine": machine(), "rows": rows}, indent=2))
    return 0


def machine() -> dict:
    import platform

    import torch
    import transformers

    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
            "transformers": transformers.__version__, "threads": torch.get_num_threads()}


def print_table(rows: list[dict], tasks) -> None:
    head = ["method", "score", *tasks, "%/task", "%stored", "s/step", "lr"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [r["method"], f"{r['score']:.4f}", *(f"{r[t]:.4f}" for t in tasks),
                 f"{r['per_task_pct']:.3f}", f"{r['stored_pct']:.3f}", f"{r['s_per_step']:.3f}",
                 f"{r['lr']:g}"]
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
