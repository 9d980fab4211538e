"""Houlsby adapters (Houlsby et al., 2019), one set per task.

A bottleneck (d -> ``adapter_size`` -> d) sits after the attention output and after the FFN
of every layer, before the residual add and LayerNorm. Each task gets its own adapters
(``by_task.<task>``), so tasks cannot interfere through the encoder; only the frozen backbone
is shared.

Deliberate difference from the paper: Houlsby et al. also train the layer norms. Those would
be shared by all tasks (or need per-task copies), which blurs what "per-task adapter" means in
the parameter counts, so the LayerNorms stay frozen here. Per task and layer this trains
exactly ``2·(2·a·d + a + d)`` parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from trainers.methods._base import Applied, TaskRouter, check_layers
from trainers.methods._bottleneck import SERIAL, add_adapters, check_adapter

DEFAULT_LR = 1e-3
IDENTITY_AT_INIT = True
"""The adapters' up-projections start at zero: the injected model is the pretrained one."""
ACTIVATION = "relu"
"""The bottleneck's nonlinearity: ReLU as in He et al. (2022) (Houlsby et al. leave it open)."""


@dataclass
class Config:
    adapter_size: int = 64
    """Bottleneck width ``a``."""
    adapter_dropout: float = 0.0
    """Dropout on the bottleneck activation."""
    layers: str = "all"
    """Which layers get adapters: all, top_half, bottom_half, every_other."""

    def __post_init__(self) -> None:
        check_adapter(self.adapter_size, self.adapter_dropout)
        check_layers(self.layers)


def apply(backbone: nn.Module, cfg: Config, tasks: list[str], router: TaskRouter) -> Applied:
    add_adapters(backbone, "adapter", SERIAL, size=cfg.adapter_size, dropout=cfg.adapter_dropout,
                 activation=ACTIVATION, tasks=tasks, router=router, layers=cfg.layers)
    return Applied(backbone=backbone)
