"""Parameter accounting as the PEFT papers tabulate it."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from trainers.methods import task_of_by_name
from trainers.model import MultitaskModel


@dataclass
class ParamCounts:
    total: int
    """Parameters of the pretrained backbone (the denominator of every percentage)."""
    trainable: int
    """Every trainable parameter: method modules of all tasks, shared modules and heads."""
    shared: int
    """Trainable parameters used by every task."""
    per_task: dict[str, int]
    """Trainable parameters used by one task: shared + that task's own (head included)."""
    per_task_pct: dict[str, float]
    """``per_task`` as % of the backbone: what one task updates."""
    stored_pct: float
    """All trainable parameters as % of the backbone: what is stored for all tasks."""

    def metrics(self) -> dict[str, float]:
        """The counts every evaluation reports (MLflow metrics of each trial)."""
        return {"stored_pct": self.stored_pct, "trainable_params": float(self.trainable),
                **{f"{t}_pct": pct for t, pct in self.per_task_pct.items()}}

    def summary(self) -> dict:
        """The ``params`` block of result.json (trainer and evaluate write the same shape)."""
        return {"total": self.total, "trainable": self.trainable,
                "per_task_pct": self.per_task_pct, "stored_pct": self.stored_pct}


def task_of(model: MultitaskModel, name: str) -> str | None:
    """Which task owns parameter ``name`` (None = shared by all tasks)."""
    tasks = model.router.tasks
    if name.startswith("heads."):
        return name.split(".")[1]
    if name.startswith("backbone.") and model.applied.task_of is not None:
        return model.applied.task_of(name[len("backbone."):])
    return task_of_by_name(name, tasks)


def count_params(model: MultitaskModel) -> ParamCounts:
    tasks = model.router.tasks
    own = {t: 0 for t in tasks}
    shared = 0
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        owner = task_of(model, name)
        if owner is None:
            shared += p.numel()
        else:
            own[owner] += p.numel()
    per_task = {t: shared + own[t] for t in tasks}
    total = model.backbone_params
    return ParamCounts(
        total=total,
        trainable=shared + sum(own.values()),
        shared=shared,
        per_task=per_task,
        per_task_pct={t: 100.0 * n / total for t, n in per_task.items()},
        stored_pct=100.0 * (shared + sum(own.values())) / total,
    )


def count_for_config(cfg, specs, model_config=None) -> ParamCounts:
    """The counts a training run of ``cfg`` would report, without loading or allocating weights:
    the backbone is built from its config on PyTorch's meta device and the method applied to it.
    ``model_config`` (a transformers config) saves re-reading it for many configs."""
    import torch
    from transformers import AutoConfig, AutoModel

    from trainers.model import default_model_path

    if model_config is None:
        model_config = AutoConfig.from_pretrained(cfg.model or default_model_path())
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notes of peft/transformers internals
        backbone = AutoModel.from_config(model_config)
        return count_params(MultitaskModel(backbone, specs, cfg))
