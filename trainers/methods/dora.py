"""DoRA (Liu et al., 2024): LoRA with a learned magnitude per output feature, via peft."""

from __future__ import annotations

from torch import nn

from trainers.methods import lora
from trainers.methods._base import Applied, TaskRouter

DEFAULT_LR = lora.DEFAULT_LR
IDENTITY_AT_INIT = True
"""peft starts ``B`` at zero and the magnitude at the pretrained weight's norm."""
Config = lora.Config


def apply(backbone: nn.Module, cfg: Config, tasks: list[str], router: TaskRouter) -> Applied:
    return lora.wrap(backbone, cfg, use_dora=True)
