"""Shared LoRA in attention plus task-specific Houlsby adapters.

The mix splits the work: one low-rank attention update (peft LoRA, as in ``lora``) learns
what all tasks have in common, and a small Houlsby adapter per task (as in ``adapter``, the
LayerNorms frozen) learns what is task-specific. Parameter names keep ``by_task.<task>.`` so
the accounting sees the adapters as per-task and the LoRA weights as shared.

Order matters: peft's ``get_peft_model`` freezes everything that is not LoRA, so the adapters
are injected *after* it, into the peft model's underlying encoder. The adapter wrappers touch
only the output blocks (``BertSelfOutput``/``BertOutput``), which are not LoRA targets by
default; if ``target_modules`` names their ``dense``, the LoRA-wrapped dense is simply kept
inside the adapter wrapper.

``layers`` selects the encoder layers of both parts: the shared LoRA (peft's
``layers_to_transform``, as in ``lora``) and the per-task adapters.

Note: a peft-style save of this backbone holds only the LoRA weights; the adapters are in
the model's trainable state like any other method's.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from trainers.methods import lora
from trainers.methods._base import Applied, TaskRouter
from trainers.methods._bottleneck import SERIAL, add_adapters, check_adapter

DEFAULT_LR = 1e-3
IDENTITY_AT_INIT = True
"""LoRA's ``B`` and the adapters' up-projections start at zero."""
ACTIVATION = "relu"
"""The per-task adapters' nonlinearity: ReLU, as in ``adapter``."""


@dataclass
class Config:
    r: int = 8
    alpha: float = 16.0
    lora_dropout: float = 0.05
    target_modules: str = "query,key,value"
    """Comma list of module-name suffixes that get the shared LoRA update."""
    adapter_size: int = 64
    """Bottleneck width ``a`` of the per-task adapters."""
    adapter_dropout: float = 0.0
    """Dropout on the adapters' bottleneck activation."""
    layers: str = "all"
    """Which layers get LoRA and adapters: all, top_half, bottom_half, every_other."""

    def __post_init__(self) -> None:
        self.lora_config()  # validates the LoRA fields and layers with lora.Config's own messages
        check_adapter(self.adapter_size, self.adapter_dropout)

    def lora_config(self) -> lora.Config:
        """The LoRA part, as the ``lora`` method's config (same keys, same meaning)."""
        return lora.Config(r=self.r, alpha=self.alpha, lora_dropout=self.lora_dropout,
                           target_modules=self.target_modules, layers=self.layers)


def apply(backbone: nn.Module, cfg: Config, tasks: list[str], router: TaskRouter) -> Applied:
    from peft import get_peft_model

    n_layers = backbone.config.num_hidden_layers
    peft_model = get_peft_model(backbone, lora.peft_config(cfg.lora_config(), False, n_layers))
    add_adapters(peft_model.get_base_model(), "lora_adapter", SERIAL, size=cfg.adapter_size,
                 dropout=cfg.adapter_dropout, activation=ACTIVATION, tasks=tasks, router=router,
                 layers=cfg.layers)
    return Applied(backbone=peft_model, is_peft=True)
