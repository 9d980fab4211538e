"""PEFT methods, one file each, chosen by name from `METHODS`.

Every method module ``trainers/methods/<name>.py`` exposes:

- ``Config``: a dataclass of its hyperparameters (field names are the trial-config keys);
- ``DEFAULT_LR``: the learning rate used when the user gives none;
- ``IDENTITY_AT_INIT``: True when the freshly injected backbone computes exactly the
  pretrained backbone's outputs (zero-initialised updates), False when the method changes
  them from the start (prompts, prefixes); the test harness checks it;
- ``apply(backbone, cfg, tasks, router) -> Applied``: inject the method into a *frozen*
  backbone (``freeze`` has already run) and say which parameters belong to which task.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from trainers.methods._base import Applied, TaskRouter, freeze, task_of_by_name

METHODS: tuple[str, ...] = (
    "full",
    "frozen",
    "lora",
    "dora",
    "task_lora",
    "adapter",
    "parallel_adapter",
    "lora_adapter",
    "hyperformer",
    "pha",
    "prefix",
    "prompt",
    "ptuning",
    "unipelt",
)
"""Every method, in the order the CLI and the search list them. ``<name>`` is both
``trainers/methods/<name>.py`` and ``spaces/<name>.py``."""


def get_method(name: str) -> ModuleType:
    """Return the method module registered as ``name``; unknown names fail with the choices."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}")
    return importlib.import_module(f"trainers.methods.{name}")


__all__ = ["METHODS", "Applied", "TaskRouter", "freeze", "get_method", "task_of_by_name"]
