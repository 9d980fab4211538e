"""PEFT methods, one file each, chosen by name from `METHODS`.

Every method module exposes:

- ``Config``: a dataclass of its hyperparameters (field names are the trial-config keys);
- ``DEFAULT_LR``: the learning rate used when the user gives none;
- ``apply(backbone, cfg, tasks, router) -> Applied``: inject the method into a *frozen*
  backbone (``freeze`` has already run) and say which parameters belong to which task.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from trainers.methods._base import Applied, TaskRouter, freeze, task_of_by_name

METHODS: dict[str, str] = {
    "full": "trainers.methods.full",
    "frozen": "trainers.methods.frozen",
    "lora": "trainers.methods.lora",
    "dora": "trainers.methods.dora",
    "task_lora": "trainers.methods.task_lora",
    "adapter": "trainers.methods.adapter",
    "parallel_adapter": "trainers.methods.parallel_adapter",
    "lora_adapter": "trainers.methods.lora_adapter",
    "hyperformer": "trainers.methods.hyperformer",
    "pha": "trainers.methods.pha",
    "prefix": "trainers.methods.prefix",
    "prompt": "trainers.methods.prompt",
    "ptuning": "trainers.methods.ptuning",
    "unipelt": "trainers.methods.unipelt",
}


def get_method(name: str) -> ModuleType:
    """Return the method module registered as ``name``; unknown names fail with the choices."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}")
    return importlib.import_module(METHODS[name])


__all__ = ["METHODS", "Applied", "TaskRouter", "freeze", "get_method", "task_of_by_name"]
