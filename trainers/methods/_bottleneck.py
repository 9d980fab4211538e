"""Bottleneck adapters and their injection into BERT-style encoders (shared by adapter methods).

Why module replacement rather than forward hooks: the Houlsby adapter must sit *between* the
sublayer's dropout and its residual add + LayerNorm, a point no hook can reach. So each
``BertSelfOutput`` / ``BertOutput`` is replaced (``setattr`` on its parent) by a wrapper that
keeps the original module as ``.base`` (frozen, its parameters still named ``...base.dense``
etc.) and re-runs its three steps with the adapter in between.

Convention used throughout: a ``Bottleneck`` returns only the *delta* ``up(act(down(x)))``;
the caller adds it where the method says (onto ``h`` for Houlsby, scaled onto the FFN output
for the parallel adapter). The up-projection starts at zero, so the delta is exactly zero and
an injected model computes exactly what the pretrained one did until training moves it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from trainers.methods._base import TaskRouter, layer_indices

SELF_OUTPUT = "attention.output"
"""Path, inside one encoder layer, of the attention sublayer's output block (BertSelfOutput)."""
FFN_OUTPUT = "output"
"""Path, inside one encoder layer, of the feed-forward sublayer's output block (BertOutput)."""


def check_adapter_size(size: int) -> None:
    if size < 1:
        raise ValueError(f"adapter_size must be >= 1, got {size}")


def check_adapter_dropout(p: float) -> None:
    if not 0 <= p < 1:
        raise ValueError(f"adapter_dropout must be in [0, 1), got {p}")


class Bottleneck(nn.Module):
    """``x -> up(dropout(relu(down(x))))``: d -> a -> d, returning the delta (no residual).

    ReLU follows He et al. (2022); Houlsby et al. leave the nonlinearity open. ``down`` keeps
    PyTorch's default init (so the first step already has a non-zero signal for ``up``);
    ``up`` is zero so the adapter contributes nothing at initialisation.
    """

    def __init__(self, hidden: int, size: int, dropout: float = 0.0) -> None:
        super().__init__()
        check_adapter_size(size)
        check_adapter_dropout(dropout)
        self.down = nn.Linear(hidden, size)
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(size, hidden)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.dropout(self.act(self.down(x))))


def _check_task_names(tasks: list[str]) -> None:
    """Task names become ``ModuleDict`` keys and parameter-name segments, so they must be plain."""
    if not tasks:
        raise ValueError("adapters need at least one task")
    probe = nn.ModuleDict()
    for t in tasks:
        if not t or "." in t or hasattr(probe, t):
            raise ValueError(f"task name {t!r} cannot key an adapter (empty, '.' or reserved)")


class _AdapterSlot(nn.Module):
    """Base of the wrappers: holds the frozen original block and the adapter(s) to route.

    Per-task adapters live in ``self.by_task`` (the name the parameter accounting keys on);
    a shared adapter lives in ``self.shared``. The router is a plain attribute, not a
    submodule, so it adds no parameters and is not saved.
    """

    def __init__(self, base: nn.Module, make: Callable[[], nn.Module], tasks: list[str] | None,
                 router: TaskRouter | None) -> None:
        super().__init__()
        for part in ("dense", "dropout", "LayerNorm"):
            if not hasattr(base, part):
                raise ValueError(f"{type(base).__name__} has no .{part}: not a BERT output block")
        self.base = base
        self.router = router
        if tasks is None:
            self.shared = make()
        else:
            if router is None:
                raise ValueError("per-task adapters need a TaskRouter")
            _check_task_names(tasks)
            self.by_task = nn.ModuleDict({t: make() for t in tasks})

    def adapter(self) -> nn.Module:
        """The adapter for the current task (or the shared one)."""
        if hasattr(self, "by_task"):
            return self.by_task[self.router.task]
        return self.shared

    def sublayer(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The original block's ``dropout(dense(h))``, before its residual and LayerNorm."""
        return self.base.dropout(self.base.dense(hidden_states))


class SerialAdapterOutput(_AdapterSlot):
    """Houlsby placement: ``h = dropout(dense(x)); h = h + A(h); out = LN(h + input)``."""

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        h = self.sublayer(hidden_states)
        h = h + self.adapter()(h)
        return self.base.LayerNorm(h + input_tensor)


class ParallelAdapterOutput(_AdapterSlot):
    """He et al. placement on ``BertOutput``: ``out = LN(dropout(dense(x)) + s·A(input) + input)``.

    ``input_tensor`` of ``BertOutput`` is the attention output, i.e. exactly the FFN's input,
    so the adapter runs in parallel to the whole FFN without any hook.
    """

    def __init__(self, base: nn.Module, make: Callable[[], nn.Module], tasks: list[str] | None,
                 router: TaskRouter | None, scale: float) -> None:
        super().__init__(base, make, tasks, router)
        self.scale = float(scale)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        h = self.sublayer(hidden_states) + self.scale * self.adapter()(input_tensor)
        return self.base.LayerNorm(h + input_tensor)


def encoder_layers(backbone: nn.Module) -> nn.ModuleList:
    """The transformer layers of a BERT-family encoder (``backbone.encoder.layer``)."""
    layers = getattr(getattr(backbone, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise ValueError(
            f"{type(backbone).__name__} has no encoder.layer list: adapters support BERT-family "
            "encoders (BertModel, MiniLM)"
        )
    return layers


def hidden_size(backbone: nn.Module) -> int:
    """The model width ``d`` from the Hugging Face config (checked after the layer list)."""
    encoder_layers(backbone)
    size = getattr(getattr(backbone, "config", None), "hidden_size", None)
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"{type(backbone).__name__} has no config.hidden_size")
    return size


def _resolve(root: nn.Module, path: str) -> tuple[nn.Module, str, nn.Module]:
    """``(parent, attribute, module)`` for a dotted ``path`` below ``root``."""
    parent_path, _, attr = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    child = getattr(parent, attr, None)
    if not isinstance(child, nn.Module):
        raise ValueError(f"encoder layer has no module at {path!r}")
    return parent, attr, child


def inject(backbone: nn.Module, paths: tuple[str, ...],
           wrap: Callable[[nn.Module], _AdapterSlot], layers: str = "all") -> list[_AdapterSlot]:
    """Replace the block at each ``path`` of the ``layers`` (see ``layer_indices``) by
    ``wrap(block)``. Refuses to wrap a block twice, which would silently stack two adapters.
    """
    wrappers: list[_AdapterSlot] = []
    all_layers = encoder_layers(backbone)
    for i in layer_indices(layers, len(all_layers)):
        layer = all_layers[i]
        for path in paths:
            parent, attr, block = _resolve(layer, path)
            if isinstance(block, _AdapterSlot):
                raise ValueError(f"{path!r} already holds an adapter")
            wrapper = wrap(block)
            setattr(parent, attr, wrapper)
            wrappers.append(wrapper)
    return wrappers


def add_serial_adapters(backbone: nn.Module, size: int, dropout: float,
                        tasks: list[str] | None, router: TaskRouter | None,
                        layers: str = "all") -> list[_AdapterSlot]:
    """Houlsby adapters after the attention and the FFN sublayer of every layer.

    ``tasks=None`` gives one adapter shared by all tasks; otherwise one per task.
    """
    hidden = hidden_size(backbone)

    def wrap(block: nn.Module) -> _AdapterSlot:
        return SerialAdapterOutput(block, lambda: Bottleneck(hidden, size, dropout), tasks, router)

    return inject(backbone, (SELF_OUTPUT, FFN_OUTPUT), wrap, layers)


def add_parallel_adapters(backbone: nn.Module, size: int, dropout: float, scale: float,
                          tasks: list[str] | None, router: TaskRouter | None,
                          layers: str = "all") -> list[_AdapterSlot]:
    """A scaled adapter parallel to the FFN of every layer (one per task unless ``tasks=None``)."""
    hidden = hidden_size(backbone)

    def wrap(block: nn.Module) -> _AdapterSlot:
        return ParallelAdapterOutput(block, lambda: Bottleneck(hidden, size, dropout), tasks,
                                     router, scale)

    return inject(backbone, (FFN_OUTPUT,), wrap, layers)
