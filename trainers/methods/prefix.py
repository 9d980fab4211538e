"""Prefix tuning (Li & Liang, 2021) through peft: learned key/value prefixes in every layer,
shared by all tasks (each task keeps its own head)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from trainers.methods._base import Applied, TaskRouter, check_min

DEFAULT_LR = 5e-3
IDENTITY_AT_INIT = False
"""Random prefixes join every attention from the start."""


@dataclass
class Config:
    num_virtual_tokens: int = 20

    def __post_init__(self) -> None:
        check_min("num_virtual_tokens", self.num_virtual_tokens)


def apply(backbone: nn.Module, cfg: Config, tasks: list[str], router: TaskRouter) -> Applied:
    from peft import PrefixTuningConfig, get_peft_model

    peft_cfg = PrefixTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=cfg.num_virtual_tokens)
    # Prefixes extend keys/values only: the sequence output keeps its length.
    return Applied(backbone=get_peft_model(backbone, peft_cfg), is_peft=True, token_type_ids=False)
