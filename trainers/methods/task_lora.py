"""Task-specific LoRA or DoRA: one peft adapter per task, switched by the task id.

All adapters are trainable from the start; a task switch only changes which adapter the
LoRA layers apply (no ``requires_grad`` flipping). A batch holds one task, so the other
tasks' adapters get no gradient and AdamW leaves them untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from trainers.methods import lora
from trainers.methods._base import Applied, TaskRouter

DEFAULT_LR = lora.DEFAULT_LR
IDENTITY_AT_INIT = True
"""peft starts every task's ``B`` at zero."""
_LORA_PARTS = ("lora_A", "lora_B", "lora_magnitude_vector")


@dataclass
class Config(lora.Config):
    use_dora: bool = False
    """True gives task-specific DoRA (a magnitude vector per task as well)."""


def _activate(model: nn.Module, task: str) -> None:
    # peft's own set_adapter also sets requires_grad on every switch; we only route.
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            module._active_adapter = task


def task_of(name: str, tasks: list[str]) -> str | None:
    parts = name.split(".")
    for i in range(len(parts) - 1):
        if parts[i] in _LORA_PARTS and parts[i + 1] in tasks:
            return parts[i + 1]
    return None


def apply(backbone: nn.Module, cfg: Config, tasks: list[str], router: TaskRouter) -> Applied:
    from peft import get_peft_model

    reserved = {"default", *_LORA_PARTS}
    if reserved & set(tasks):
        raise ValueError(f"task_lora: task names may not be {sorted(reserved)}")
    peft_cfg = lora.peft_config(cfg, cfg.use_dora, backbone.config.num_hidden_layers)
    model = get_peft_model(backbone, peft_cfg, adapter_name=tasks[0])
    for task in tasks[1:]:
        model.add_adapter(task, lora.peft_config(cfg, cfg.use_dora, backbone.config.num_hidden_layers))
    for name, p in model.named_parameters():
        p.requires_grad_(task_of(name, tasks) is not None)
    router.listeners.append(lambda task: _activate(model, task))
    return Applied(backbone=model, is_peft=True, task_of=lambda n: task_of(n, tasks))
