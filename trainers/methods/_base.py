"""What every method shares: the task router, the result of ``apply``, config checks, layer
selection and freezing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


class TaskRouter:
    """Carries the current task id from the multitask model down to injected modules.

    Hugging Face encoders do not pass extra arguments through their layers, so the model
    sets the task here before each backbone call and injected modules read it. The router
    belongs to one model instance (no module-level state); listeners let a method react to a
    task switch (e.g. activate that task's peft adapter) without touching ``requires_grad``.
    """

    def __init__(self, tasks: list[str]) -> None:
        self.tasks = list(tasks)
        self.index = {t: i for i, t in enumerate(self.tasks)}
        self._task: str | None = None
        self.listeners: list[Callable[[str], None]] = []
        # Per-forward extras a method may stash (e.g. PHA's instance embedding input).
        self.context: dict[str, torch.Tensor] = {}

    @property
    def task(self) -> str:
        if self._task is None:
            raise RuntimeError("no task selected: call the model with task=...")
        return self._task

    @property
    def task_id(self) -> int:
        return self.index[self.task]

    def set(self, task: str) -> None:
        if task not in self.index:
            raise KeyError(f"unknown task {task!r}; model was built for {self.tasks}")
        if task != self._task:
            self._task = task
            for listener in self.listeners:
                listener(task)


class TaskEmbeddings(nn.Module):
    """One learned vector per task (a hypernetwork's task embedding, PHA's prototype), each its
    own parameter ``by_task.<task>``: the name the parameter accounting attributes to the task,
    and what a transfer adds for a new task while every trained task's vector stays frozen."""

    def __init__(self, tasks: list[str], dim: int) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.by_task = nn.ParameterDict({t: nn.Parameter(torch.randn(dim)) for t in self.tasks})

    def row(self, task_id: int) -> torch.Tensor:
        """The vector of the task with index ``task_id`` (the router's order)."""
        return self.by_task[self.tasks[task_id]]

    def table(self) -> torch.Tensor:
        """Every task's vector stacked in task order, ``[n_tasks, dim]``."""
        return torch.stack([self.by_task[t] for t in self.tasks])


def task_of_by_name(name: str, tasks: list[str]) -> str | None:
    """Default ownership rule: a parameter under ``by_task.<task>.`` belongs to that task."""
    parts = name.split(".")
    for i in range(len(parts) - 1):
        if parts[i] == "by_task" and parts[i + 1] in tasks:
            return parts[i + 1]
    return None


@dataclass
class Applied:
    """What a method's ``apply`` hands back to the multitask model."""

    backbone: nn.Module
    """The backbone to call: the same module, or a wrapper such as a peft model."""
    extra: nn.Module | None = None
    """Shared trainable modules that live outside the backbone (hypernetworks, retrievers)."""
    aux_loss: Callable[[], torch.Tensor | None] | None = None
    """Extra loss term of the last forward (e.g. PHA's contrastive losses), or None."""
    virtual_tokens: int = 0
    """Tokens the method prepends to the sequence output (prompt tuning); pooling skips them."""
    task_of: Callable[[str], str | None] | None = None
    """Maps a parameter name (relative to the backbone) to its task; default ``by_task.<t>``."""
    is_peft: bool = False
    """True when ``backbone`` is a ``peft.PeftModel`` (its adapter is also saved peft-style)."""
    token_type_ids: bool = True
    """False when the wrapped backbone cannot take token type ids (peft prompt learning)."""


def check_min(name: str, value: float, low: float = 1) -> None:
    """``value >= low``, e.g. a width or a count (``adapter_size``, ``task_emb_dim``, ``r``)."""
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")


def check_positive(name: str, value: float) -> None:
    """``value > 0``, e.g. a scale or a temperature."""
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def check_rate(name: str, value: float) -> None:
    """A dropout probability: ``0 <= value < 1``."""
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value}")


LAYER_CHOICES = ("all", "top_half", "bottom_half", "every_other")
"""Which encoder layers get a method's modules (AutoPEFT searches this): every layer, the upper
or lower half, or every second layer counted from the top."""


def check_layers(spec: str) -> None:
    if spec not in LAYER_CHOICES:
        raise ValueError(f"layers must be one of {', '.join(LAYER_CHOICES)}, got {spec!r}")


def layer_indices(spec: str, n: int) -> list[int]:
    """Indices of the layers ``spec`` selects out of ``n`` (never empty)."""
    check_layers(spec)
    if spec == "top_half":
        return list(range(n // 2, n))
    if spec == "bottom_half":
        return list(range(0, max(1, n // 2)))
    if spec == "every_other":
        return list(range(n - 1, -1, -2))[::-1]
    return list(range(n))


def freeze(module: nn.Module) -> None:
    """Freeze every parameter of ``module``: the one place where methods start from."""
    for p in module.parameters():
        p.requires_grad_(False)
