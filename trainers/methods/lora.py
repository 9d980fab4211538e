"""LoRA (Hu et al., 2021) through peft: one low-rank update shared by all tasks."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from trainers.methods._base import Applied, TaskRouter

DEFAULT_LR = 5e-4


@dataclass
class Config:
    r: int = 8
    alpha: float = 16.0
    lora_dropout: float = 0.05
    target_modules: str = "query,key,value"
    """Comma list of module-name suffixes that get a LoRA update."""

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"r must be >= 1, got {self.r}")
        if self.alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not self.targets():
            raise ValueError("target_modules is empty")

    def targets(self) -> list[str]:
        return [t.strip() for t in self.target_modules.split(",") if t.strip()]


def peft_config(cfg: Config, use_dora: bool):
    from peft import LoraConfig

    return LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.targets(), use_dora=use_dora, bias="none")


def wrap(backbone: nn.Module, cfg: Config, use_dora: bool) -> Applied:
    from peft import get_peft_model

    model = get_peft_model(backbone, peft_config(cfg, use_dora))
    return Applied(backbone=model, is_peft=True)


def apply(backbone: nn.Module, cfg: Config, tasks: list[str], router: TaskRouter) -> Applied:
    return wrap(backbone, cfg, use_dora=False)
