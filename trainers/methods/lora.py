"""LoRA (Hu et al., 2021) through peft: one low-rank update shared by all tasks."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from trainers.methods._base import (
    Applied,
    TaskRouter,
    check_layers,
    check_min,
    check_positive,
    check_rate,
    layer_indices,
)

DEFAULT_LR = 5e-4
IDENTITY_AT_INIT = True
"""peft starts LoRA's ``B`` at zero."""


@dataclass
class Config:
    r: int = 8
    alpha: float = 16.0
    lora_dropout: float = 0.05
    target_modules: str = "query,key,value"
    """Comma list of module-name suffixes that get a LoRA update."""
    layers: str = "all"
    """Which encoder layers get LoRA: all, top_half, bottom_half, every_other."""

    def __post_init__(self) -> None:
        check_min("r", self.r)
        check_positive("alpha", self.alpha)
        check_rate("lora_dropout", self.lora_dropout)
        if not self.targets():
            raise ValueError("target_modules is empty")
        check_layers(self.layers)

    def targets(self) -> list[str]:
        return [t.strip() for t in self.target_modules.split(",") if t.strip()]


def peft_config(cfg: Config, use_dora: bool, n_layers: int | None = None):
    """peft's LoraConfig; ``n_layers`` (the encoder's depth) is needed when ``cfg.layers`` is
    not "all"."""
    from peft import LoraConfig

    subset = None
    if cfg.layers != "all":
        if n_layers is None:
            raise ValueError("layers other than 'all' need the encoder's number of layers")
        subset = layer_indices(cfg.layers, n_layers)
    return LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.targets(), use_dora=use_dora, bias="none",
                      layers_to_transform=subset, layers_pattern="layer" if subset else None)


def wrap(backbone: nn.Module, cfg: Config, use_dora: bool) -> Applied:
    from peft import get_peft_model

    model = get_peft_model(backbone, peft_config(cfg, use_dora, backbone.config.num_hidden_layers))
    return Applied(backbone=model, is_peft=True)


def apply(backbone: nn.Module, cfg: Config, tasks: list[str], router: TaskRouter) -> Applied:
    return wrap(backbone, cfg, use_dora=False)
