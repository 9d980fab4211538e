"""Parameter accounting of the bottleneck methods: per task (what the leaderboard shows),
amortised (what the hypernetwork papers tabulate) and against plain per-task adapters.

    python -m benchmarks.param_accounting [--json benchmarks/results/param_accounting.json]

For each method, its defaults and the largest corner of its search space (the corner of the
size dims that trains the most), on the packaged MiniLM and on a BERT-base-sized config, for
the three CS224N tasks. Counting builds every model on PyTorch's meta device (no weights, no
data), so the whole table takes seconds.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from spaces import get_space
from spaces.common import Space
from trainers.config import TrainConfig, method_fields
from trainers.params import ParamCounts, count_for_config
from trainers.tasks import CS224N, TaskSpec

METHODS = ("adapter", "hyperformer", "pha", "lora_adapter", "unipelt")
TASKS = ("sst", "quora", "sts")
SHAPE_KINDS = ("int", "logint", "choice", "fixed")
"""Dim kinds that can change a parameter count: sizes and structural choices. Float dims
(rates, scales, dropouts) never change a shape, so their corners are not enumerated; nor are
the common dims (learning rate, schedule, sampler...), which no method's count depends on."""


def backbones() -> dict[str, Any]:
    """Name -> transformers config of each backbone counted (configs only: nothing is loaded)."""
    from transformers import AutoConfig, BertConfig

    from trainers.model import default_model_path

    return {"MiniLM": AutoConfig.from_pretrained(default_model_path()), "bert-base": BertConfig()}


def shape_corners(space: Space) -> Iterator[dict[str, Any]]:
    """Every combination of the extreme values of the dims that can change a count: what a
    search can reach at most (and least) in parameters."""
    own = set(method_fields(space.method))
    dims = [d for d in space.dims if d.kind in SHAPE_KINDS and d.name in own]
    for values in itertools.product(*(d.corners() for d in dims)):
        yield dict(zip((d.name for d in dims), values, strict=True))


def config(method: str, values: dict[str, Any]) -> TrainConfig:
    return TrainConfig.from_flat({**values, "method": method, "tasks": ",".join(TASKS)})


def largest_corner(method: str, specs: list[TaskSpec],
                   model_config: Any) -> tuple[dict[str, Any], ParamCounts]:
    """The corner of ``method``'s space that trains the most, with its counts."""
    counted = [(c, count_for_config(config(method, c), specs, model_config))
               for c in shape_corners(get_space(method))]
    return max(counted, key=lambda item: item[1].trainable)


SIZES = {"adapter_size": "a", "task_emb_dim": "t", "hyper_hidden": "h", "r": "r",
         "prefix_length": "p"}
"""The size keys a row records, with their short names in the printed table."""


def row(backbone: str, method: str, where: str, values: dict[str, Any], c: ParamCounts) -> dict:
    """One table line; ``per_task_pct`` is the largest task's (its head is the widest)."""
    return {"backbone": backbone, "method": method, "config": where,
            "sizes": {k: values[k] for k in SIZES if k in values},
            "backbone_params": c.total, "trainable": c.trainable, "stored_pct": c.stored_pct,
            "per_task_pct": max(c.per_task_pct.values()), "amortised_pct": c.amortised_pct,
            "adapter_equiv_pct": c.adapter_equiv_pct,
            "over_adapter": None if c.adapter_equiv is None else bool(c.over_adapter)}


def table(rows: list[dict]) -> str:
    head = (f"{'backbone':<10}{'method':<14}{'config':<9}{'sizes':<24}{'trainable':>12}"
            f"{'% stored':>10}{'% task':>9}{'% amort.':>10}{'% adapter':>11}  over")
    lines = [head, "-" * len(head)]
    for r in rows:
        sizes = " ".join(f"{SIZES[k]}={v}" for k, v in r["sizes"].items())
        lines.append(f"{r['backbone']:<10}{r['method']:<14}{r['config']:<9}{sizes:<24}"
                     f"{r['trainable']:>12,}{r['stored_pct']:>10.2f}{r['per_task_pct']:>9.2f}"
                     f"{r['amortised_pct']:>10.2f}{r['adapter_equiv_pct']:>11.2f}  "
                     f"{'yes' if r['over_adapter'] else 'no'}")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", type=Path, default=Path("benchmarks/results/param_accounting.json"))
    args = p.parse_args()
    specs = [CS224N[t] for t in TASKS]
    rows = []
    for name, model_config in backbones().items():
        for method in METHODS:
            defaults = config(method, {}).to_flat()
            rows.append(row(name, method, "default", defaults,
                            count_for_config(config(method, {}), specs, model_config)))
            corner, counts = largest_corner(method, specs, model_config)
            rows.append(row(name, method, "largest", corner, counts))
    print(table(rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"tasks": list(TASKS), "rows": rows}, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
