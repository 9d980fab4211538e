"""Checkpoints: trainable parameters and heads (safetensors) plus the resolved config (JSON).

Never the backbone: a checkpoint is kilobytes to megabytes and is applied on top of the
pretrained weights named in its config. ``trainer_state.pt`` (optimizer, scheduler, step) is
written only for resumable checkpoints.
"""

from __future__ import annotations

import json
import os
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
                    step: int, optimizer=None, scheduler=None) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {n: t.detach().to("cpu").contiguous() for n, t in model.trainable_state().items()}
    save_file(tensors, str(path / WEIGHTS))
    meta = {"config": cfg.to_flat(), "tasks": [asdict(s) for s in model.specs.values()],
            "step": step, "format": 2}
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


def load_weights(model: MultitaskModel, path: str | os.PathLike) -> None:
    """Load trainable weights into a freshly built model; every key must match."""
    tensors = _upgrade(load_file(str(Path(path) / WEIGHTS)), model.router.tasks)
    expected = set(model.trainable_state())
    missing, unexpected = expected - set(tensors), set(tensors) - expected
    if missing or unexpected:
        raise ValueError(f"{path}: checkpoint does not fit the model: missing {sorted(missing)[:3]}, "
                         f"unexpected {sorted(unexpected)[:3]}")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))


def load_checkpoint(path: str | os.PathLike, **overrides) -> tuple[MultitaskModel, TrainConfig, object]:
    """Rebuild model (pretrained backbone + method + heads), config and tokenizer."""
    meta = read_meta(path)
    cfg = TrainConfig.from_flat({**meta["config"], **overrides})
    specs = [TaskSpec(**s) for s in meta["tasks"]]
    backbone, tokenizer = load_backbone(cfg.model)
    model = MultitaskModel(backbone, specs, cfg)
    load_weights(model, path)
    return model, cfg, tokenizer
