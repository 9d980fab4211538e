"""Score a checkpoint on any data directory:

    python -m trainers.evaluate --checkpoint OUT/checkpoint --data-dir DIR --split dev --out RES.json

Writes the same JSON shape as ``result.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from trainers.checkpoint import load_checkpoint, read_meta
from trainers.data import DataError, prepare_data
from trainers.loop import evaluate, pick_device
from trainers.params import count_params


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainers.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--data-dir", default=None, help="CS224N-style folder (default: the synthetic demo suite)")
    p.add_argument("--split", default="dev", choices=["dev", "train", "test"],
                   help="dev = the validation rows the run selected on; test = the task's test "
                        "split (the dev files when the run used --val-from-train)")
    p.add_argument("--out", type=Path, default=None, help="where to write the JSON result")
    p.add_argument("--max-eval-samples", type=int, default=None)
    p.add_argument("--tasks", default=None,
                   help="comma list of the checkpoint's tasks to score (default: the tasks its run "
                        "trained); a task it has no head for is refused")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        step = read_meta(args.checkpoint)["step"]
        tasks = {} if args.tasks is None else {"tasks": args.tasks}
        model, cfg, tokenizer = load_checkpoint(args.checkpoint, data_dir=args.data_dir,
                                                max_eval_samples=args.max_eval_samples, **tasks)
        data = prepare_data(cfg, tokenizer, splits=(args.split,))
    except (FileNotFoundError, ValueError, RuntimeError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.split == "train":
        data.dev = data.train
    device = pick_device(cfg)
    metrics = evaluate(model.to(device), data, cfg, device)
    params = count_params(model)
    result = {"method": cfg.method, "score": metrics["score"],
              "metrics": {s.name: metrics[s.name] for s in data.specs},
              "params": params.summary(),
              "steps": step, "wall_s": time.perf_counter() - t0, "split": args.split,
              "config": cfg.to_flat()}
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
