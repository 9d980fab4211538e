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

from trainers.methods._base import Applied, TaskRouter, check_layers
from trainers.methods._bottleneck import (
    add_parallel_adapters,
    check_adapter_dropout,
    check_adapter_size,
)

DEFAULT_LR = 1e-3


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
        check_adapter_size(self.adapter_size)
        if not self.adapter_scale > 0:
            raise ValueError(f"adapter_scale must be > 0, got {self.adapter_scale}")
        check_adapter_dropout(self.adapter_dropout)
        check_layers(self.layers)


def apply(backbone: nn.Module, cfg: Config, tasks: list[str], router: TaskRouter) -> Applied:
    add_parallel_adapters(backbone, cfg.adapter_size, cfg.adapter_dropout, cfg.adapter_scale,
                          tasks, router, cfg.layers)
    return Applied(backbone=backbone)
