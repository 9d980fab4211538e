"""Checkpoints: the method's parameters and the heads (safetensors) plus the resolved config
and the task specs (JSON).

Never the frozen backbone: a checkpoint is kilobytes to megabytes and is applied on top of the
pretrained weights named in its config. ``tasks`` in ``config.json`` lists every task the model
has a head for (the tasks it was trained on, with a transfer's added ones); a transfer also
writes where it came from (``transfer``). ``trainer_state.pt`` (optimizer, scheduler, step) is
written only for resumable checkpoints.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from trainers.config import TrainConfig
from trainers.model import MultitaskModel, load_backbone
from trainers.tasks import TaskSpec

WEIGHTS = "trainable.safetensors"
CONFIG = "config.json"
STATE = "trainer_state.pt"


def save_checkpoint(path: str | os.PathLike, model: MultitaskModel, cfg: TrainConfig,
                    step: int, optimizer=None, scheduler=None, transfer: dict | None = None) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {n: t.detach().to("cpu").contiguous() for n, t in model.stored_state().items()}
    save_file(tensors, str(path / WEIGHTS))
    meta = {"config": cfg.to_flat(), "tasks": [asdict(s) for s in model.specs.values()],
            "step": step, "format": 2}
    if transfer is not None:
        meta["transfer"] = transfer
    tmp = path / (CONFIG + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, path / CONFIG)
    if optimizer is not None:
        torch.save({"optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "step": step}, path / STATE)
    if model.applied.is_peft and hasattr(model.backbone, "save_pretrained"):
        # Also peft's own format, so LoRA/DoRA/prefix/prompt load with PeftModel.from_pretrained.
        model.backbone.save_pretrained(str(path / "peft"))
    return path


def read_meta(path: str | os.PathLike) -> dict:
    file = Path(path) / CONFIG
    if not file.is_file():
        raise FileNotFoundError(f"{path}: not a checkpoint (no {CONFIG})")
    return json.loads(file.read_text())


_TABLES = {".task_emb.weight": ".task_emb.by_task.", ".prototypes": ".prototype.by_task."}
"""Format-1 checkpoints stored Hyperformer's task embeddings and PHA's prototypes as one
``[n_tasks, t]`` table each; since format 2 each task's row is its own parameter."""


def _upgrade(tensors: dict[str, torch.Tensor], tasks: list[str]) -> dict[str, torch.Tensor]:
    out = {}
    for name, value in tensors.items():
        suffix = next((s for s in _TABLES if name.endswith(s)), None)
        if suffix is None or value.ndim != 2 or value.shape[0] != len(tasks):
            out[name] = value
            continue
        stem = name[: -len(suffix)] + _TABLES[suffix]
        out.update({stem + task: value[i] for i, task in enumerate(tasks)})
    return out


def load_weights(model: MultitaskModel, path: str | os.PathLike,
                 new: Callable[[str], bool] | None = None) -> None:
    """Load a checkpoint's weights into a freshly built model; every key must match, except the
    model's keys ``new(key)`` accepts (a transfer's added tasks), which keep their init."""
    tensors = _upgrade(load_file(str(Path(path) / WEIGHTS)), model.router.tasks)
    expected = set(model.stored_state())
    missing, unexpected = expected - set(tensors), set(tensors) - expected
    if new is not None:
        missing = {k for k in missing if not new(k)}
    if missing or unexpected:
        raise ValueError(f"{path}: checkpoint does not fit the model: missing {sorted(missing)[:3]}, "
                         f"unexpected {sorted(unexpected)[:3]}")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))


def trained_tasks(meta: dict) -> list[str]:
    """The tasks a checkpoint has heads for (in the model's task order)."""
    return [s["name"] for s in meta["tasks"]]


def load_checkpoint(path: str | os.PathLike, **overrides) -> tuple[MultitaskModel, TrainConfig, object]:
    """Rebuild model (pretrained backbone + method + heads), config and tokenizer. ``tasks`` in
    ``overrides`` picks which of the checkpoint's tasks the config names (what evaluation
    scores); a task the checkpoint was not trained on is refused with a pointer to transfer."""
    meta = read_meta(path)
    known = trained_tasks(meta)
    tasks = overrides.get("tasks")
    if isinstance(tasks, str):
        tasks = [t for t in tasks.split(",") if t]
    unknown = [t for t in tasks or () if t not in known]
    if unknown:
        raise ValueError(
            f"{path}: the checkpoint was trained on {', '.join(known)} and has no head for "
            f"{', '.join(unknown)}; add a new task with python -m trainers.train --init-from "
            f"{path} --tasks {','.join(unknown)} (README: New task, few labels)")
    cfg = TrainConfig.from_flat({**meta["config"], **overrides})
    specs = [TaskSpec(**s) for s in meta["tasks"]]
    backbone, tokenizer = load_backbone(cfg.model)
    model = MultitaskModel(backbone, specs, cfg)
    load_weights(model, path)
    return model, cfg, tokenizer
