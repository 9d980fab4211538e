"""Frozen backbone, heads only: the papers' "pretrain" baseline."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from trainers.methods._base import Applied, TaskRouter

DEFAULT_LR = 1e-3
IDENTITY_AT_INIT = True
"""Nothing is injected."""


@dataclass
class Config:
    pass


def apply(backbone: nn.Module, cfg: Config, tasks: list[str], router: TaskRouter) -> Applied:
    return Applied(backbone=backbone)
