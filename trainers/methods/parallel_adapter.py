"""Parallel adapters (He et al., 2022, "Towards a Unified View of Parameter-Efficient
Transfer Learning"), one set per task.

The paper finds that an adapter placed *in parallel* to the FFN and scaled by a constant ``s``
beats the sequential Houlsby placement at similar size. Per layer:
``out = LayerNorm(dropout(dense(ffn_hidden)) + s·A(x) + x)`` with ``x`` the FFN input.
Only the FFN gets one (the paper's best single-location variant), so per task and layer this
trains ``2·a·d + a + d`` parameters; the backbone, LayerNorms included, stays frozen.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from trainers.methods._base import Applied, TaskRouter, check_layers, check_positive
from trainers.methods._bottleneck import PARALLEL, add_adapters, check_adapter

DEFAULT_LR = 1e-3
IDENTITY_AT_INIT = True
"""The adapters' up-projections start at zero: the injected model is the pretrained one."""
ACTIVATION = "relu"
"""The bottleneck's nonlinearity: ReLU, as in He et al. (2022)."""


@dataclass
class Config:
    adapter_size: int = 64
    """Bottleneck width ``a``."""
    adapter_scale: float = 4.0
    """Constant ``s`` multiplying the adapter output (He et al. use 4)."""
    adapter_dropout: float = 0.0
    """Dropout on the bottleneck activation."""
    layers: str = "all"
    """Which layers get adapters: all, top_half, bottom_half, every_other."""

    def __post_init__(self) -> None:
        check_adapter(self.adapter_size, self.adapter_dropout)
        check_positive("adapter_scale", self.adapter_scale)
        check_layers(self.layers)


def apply(backbone: nn.Module, cfg: Config, tasks: list[str], router: TaskRouter) -> Applied:
    add_adapters(backbone, "parallel_adapter", PARALLEL, size=cfg.adapter_size,
                 dropout=cfg.adapter_dropout, activation=ACTIVATION, tasks=tasks, router=router,
                 layers=cfg.layers, scale=cfg.adapter_scale)
    return Applied(backbone=backbone)
