"""Parameter accounting as the PEFT papers tabulate it.

Three views of the same trainable parameters, because the papers disagree on which to print:

- per task (``<task>_pct``): what one task's forward pass updates, shared modules included.
  Honest for per-task methods; for a shared hypernetwork every task's figure holds all of it;
- amortised (``amortised_pct``): everything stored divided by the number of tasks, the figure
  Hyperformer and PHA tabulate as "parameters per task" for their shared generators;
- adapter-equivalent (``adapter_equiv_pct``): what plain per-task bottleneck adapters of the
  same width at the same places would store for all tasks. A generator that stores more than
  that (``over_adapter``) costs more than the adapters it writes, whatever the amortised
  figure says.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

from torch import nn

from trainers.methods import task_of_by_name
from trainers.methods._bottleneck import (
    AdapterHeads,
    AdapterOutput,
    Bottleneck,
    GeneratedAdapterOutput,
)
from trainers.model import MultitaskModel


@dataclass
class ParamCounts:
    total: int
    """Parameters of the pretrained backbone (the denominator of every percentage)."""
    trainable: int
    """Every trainable parameter: method modules of all tasks, shared modules and heads."""
    shared: int
    """Trainable parameters used by every task."""
    per_task: dict[str, int]
    """Trainable parameters used by one task: shared + that task's own (head included)."""
    per_task_pct: dict[str, float]
    """``per_task`` as % of the backbone: what one task updates."""
    stored_pct: float
    """All trainable parameters as % of the backbone: what is stored for all tasks."""
    adapter_equiv: int | None = None
    """What plain per-task bottleneck adapters would store for all tasks in place of the
    method's adapters (see ``adapter_equivalent``), heads included; None for a method with no
    bottleneck adapter."""

    @property
    def amortised_pct(self) -> float:
        """``stored_pct`` / number of tasks: the papers' per-task figure for a shared
        hypernetwork (defined for every method; for per-task methods it is their own share)."""
        return self.stored_pct / len(self.per_task)

    @property
    def adapter_equiv_pct(self) -> float:
        """``adapter_equiv`` as % of the backbone; NaN when the method has no bottleneck."""
        return math.nan if self.adapter_equiv is None else 100.0 * self.adapter_equiv / self.total

    @property
    def over_adapter(self) -> float:
        """1.0 when the method trains more than plain per-task adapters of the same width would
        store, 0.0 when not, NaN when there is no bottleneck to compare with. A float so that
        it travels as a metric (and averages into "share of trials flagged")."""
        if self.adapter_equiv is None:
            return math.nan
        return float(self.trainable > self.adapter_equiv)

    def metrics(self) -> dict[str, float]:
        """The counts every evaluation reports (MLflow metrics of each trial). The keys are the
        same for every method (NaN where undefined: the search's results drop non-finite
        values), so a search over several methods reports one set of columns."""
        return {"stored_pct": self.stored_pct, "trainable_params": float(self.trainable),
                **{f"{t}_pct": pct for t, pct in self.per_task_pct.items()},
                "amortised_pct": self.amortised_pct, "adapter_equiv_pct": self.adapter_equiv_pct,
                "over_adapter": self.over_adapter}

    def summary(self) -> dict:
        """The ``params`` block of result.json (trainer and evaluate write the same shape).
        Undefined comparisons are None (JSON null), never NaN, which strict JSON lacks."""
        defined = self.adapter_equiv is not None
        return {"total": self.total, "trainable": self.trainable,
                "per_task_pct": self.per_task_pct, "stored_pct": self.stored_pct,
                "amortised_pct": self.amortised_pct, "adapter_equiv": self.adapter_equiv,
                "adapter_equiv_pct": self.adapter_equiv_pct if defined else None,
                "over_adapter": bool(self.over_adapter) if defined else None}


def task_of(model: MultitaskModel, name: str) -> str | None:
    """Which task owns parameter ``name`` (None = shared by all tasks)."""
    tasks = model.router.tasks
    if name.startswith("heads."):
        return name.split(".")[1]
    if name.startswith("backbone.") and model.applied.task_of is not None:
        return model.applied.task_of(name[len("backbone."):])
    return task_of_by_name(name, tasks)


def bottleneck_shape(wrapper: AdapterOutput) -> tuple[int, int]:
    """``(d, a)``, model width and bottleneck width, of the adapter at one position. Read off
    the modules that hold or generate its weights (an owned ``Bottleneck``, gated or not, or a
    hypernetwork's ``AdapterHeads``), so the accounting needs the model alone, not its config."""
    source: nn.Module = wrapper._net if isinstance(wrapper, GeneratedAdapterOutput) else wrapper
    for m in source.modules():
        if isinstance(m, Bottleneck):
            return m.down.in_features, m.down.out_features
        if isinstance(m, AdapterHeads):
            return m.d, m.a
    raise ValueError(f"{type(wrapper).__name__} holds no bottleneck to measure")


def adapter_equivalent(model: MultitaskModel) -> int | None:
    """What plain per-task adapters in place of the method's would store for all tasks.

    One Houlsby bottleneck (down ``a·d + a``, up ``a·d + d``: the ``adapter`` method's count,
    LayerNorms frozen) per task at every position where the method computes a bottleneck, so
    two per layer for Hyperformer (as Houlsby), one per layer, at the FFN, for PHA and UniPELT,
    only the selected layers with ``layers``; plus the task heads, which every method trains
    alike. Hyperformer's generated LayerNorm offsets and PHA's retriever have no counterpart:
    they are what the generator costs on top. For ``adapter`` and ``parallel_adapter`` this is
    exactly what they train. None when the model has no bottleneck adapter.
    """
    wrappers = [m for m in model.backbone.modules() if isinstance(m, AdapterOutput)]
    if not wrappers:
        return None
    per_task = sum(2 * a * d + a + d for d, a in map(bottleneck_shape, wrappers))
    heads = sum(p.numel() for p in model.heads.parameters() if p.requires_grad)
    return len(model.router.tasks) * per_task + heads


def count_params(model: MultitaskModel) -> ParamCounts:
    tasks = model.router.tasks
    own = {t: 0 for t in tasks}
    shared = 0
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        owner = task_of(model, name)
        if owner is None:
            shared += p.numel()
        else:
            own[owner] += p.numel()
    per_task = {t: shared + own[t] for t in tasks}
    total = model.backbone_params
    return ParamCounts(
        total=total,
        trainable=shared + sum(own.values()),
        shared=shared,
        per_task=per_task,
        per_task_pct={t: 100.0 * n / total for t, n in per_task.items()},
        stored_pct=100.0 * (shared + sum(own.values())) / total,
        adapter_equiv=adapter_equivalent(model),
    )


def count_for_config(cfg, specs, model_config=None) -> ParamCounts:
    """The counts a training run of ``cfg`` would report, without loading or allocating weights:
    the backbone is built from its config on PyTorch's meta device and the method applied to it.
    ``model_config`` (a transformers config) saves re-reading it for many configs."""
    import torch
    from transformers import AutoConfig, AutoModel

    from trainers.model import default_model_path

    if model_config is None:
        model_config = AutoConfig.from_pretrained(cfg.model or default_model_path())
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notes of peft/transformers internals
        backbone = AutoModel.from_config(model_config)
        return count_params(MultitaskModel(backbone, specs, cfg))
