"""Full fine-tuning: every backbone weight is trained, shared by all tasks."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from trainers.methods._base import Applied, TaskRouter

DEFAULT_LR = 2e-5
IDENTITY_AT_INIT = True
"""Nothing is injected: training starts from the pretrained weights."""


@dataclass
class Config:
    pass


def apply(backbone: nn.Module, cfg: Config, tasks: list[str], router: TaskRouter) -> Applied:
    for p in backbone.parameters():
        p.requires_grad_(True)
    return Applied(backbone=backbone)
