"""P-tuning (Liu et al., 2021, "GPT Understands, Too") through peft: virtual token embeddings
produced by a small prompt encoder (an MLP over learned inputs), prepended to every input and
shared by all tasks (each task keeps its own head).

The encoder reparameterises the prompt during training; peft counts its weights as trainable,
so they are in the parameter accounting (what a training run updates and stores).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from trainers.methods import prefix
from trainers.methods._base import Applied, TaskRouter, check_min

DEFAULT_LR = 1e-2
IDENTITY_AT_INIT = False
"""The prompt encoder's virtual tokens join the sequence from the start."""


@dataclass
class Config(prefix.Config):
    """``num_virtual_tokens`` as prefix and prompt tuning, plus the prompt encoder's width."""

    encoder_hidden_size: int = 128
    """Width of the prompt encoder's MLP."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_min("encoder_hidden_size", self.encoder_hidden_size)


def apply(backbone: nn.Module, cfg: Config, tasks: list[str], router: TaskRouter) -> Applied:
    from peft import PromptEncoderConfig, get_peft_model

    peft_cfg = PromptEncoderConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=cfg.num_virtual_tokens,
                                   encoder_hidden_size=cfg.encoder_hidden_size,
                                   encoder_reparameterization_type="MLP")
    # As prompt tuning: the virtual tokens come first in the sequence output; pooling skips them.
    return Applied(backbone=get_peft_model(backbone, peft_cfg), is_peft=True,
                   virtual_tokens=cfg.num_virtual_tokens, token_type_ids=False)
