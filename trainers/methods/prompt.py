"""Prompt tuning (Lester et al., 2021) through peft: learned input embeddings prepended to
every input, shared by all tasks (each task keeps its own head)."""

from __future__ import annotations

from torch import nn

from trainers.methods._base import Applied, TaskRouter
from trainers.methods.prefix import Config

DEFAULT_LR = 1e-2
IDENTITY_AT_INIT = False
"""Random virtual tokens join the sequence from the start."""
__all__ = ["Config", "DEFAULT_LR", "IDENTITY_AT_INIT", "apply"]


def apply(backbone: nn.Module, cfg: Config, tasks: list[str], router: TaskRouter) -> Applied:
    from peft import PromptTuningConfig, get_peft_model

    peft_cfg = PromptTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=cfg.num_virtual_tokens)
    # The virtual tokens come first in the sequence output; pooling must skip them.
    return Applied(backbone=get_peft_model(backbone, peft_cfg), is_peft=True,
                   virtual_tokens=cfg.num_virtual_tokens, token_type_ids=False)
