"""The bottleneck adapter stack shared by adapter, parallel_adapter, lora_adapter, unipelt,
hyperformer and pha: one bottleneck computation, one output-block wrapper, one injector.

Why module replacement rather than forward hooks: an adapter must sit *between* a sublayer's
dropout and its residual add + LayerNorm, a point no hook can reach. So each BERT output
block (``BertSelfOutput`` / ``BertOutput``: ``LN(dropout(dense(h)) + x)``) is replaced
(``setattr`` on its parent) by an ``AdapterOutput`` that keeps the original as ``.base``
(frozen, its parameters still named ``...base.dense`` etc.) and re-runs its steps with the
adapter in between: ``LN(dropout(dense(h)) + s·A(·) + x)``.

The adapter ``A`` is always ``bottleneck(x, weights, activation, dropout)``; its weights are
either owned (``Bottleneck``, plain ``nn.Linear`` layers, one per task or shared) or generated
per call by a hypernetwork (``AdapterHeads``). ``A`` returns only the *delta*; the wrapper
adds it where the placement says: onto the sublayer output (``serial``, Houlsby et al.) or,
reading the sublayer's input and scaled by ``s``, in parallel to it (``parallel``, He et al.).
Every up-projection starts at zero, so an injected model computes exactly what the pretrained
one did until training moves it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from trainers.methods._base import TaskRouter, check_min, check_rate, layer_indices

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"relu": F.relu, "gelu": F.gelu}
"""The bottleneck's nonlinearity, by name. Each method states its paper's choice as a module
constant ``ACTIVATION`` (ReLU: He et al.'s adapters; GELU: Hyperformer and PHA)."""

SELF_OUTPUT = "attention.output"
"""Path, inside one encoder layer, of the attention sublayer's output block (BertSelfOutput)."""
FFN_OUTPUT = "output"
"""Path, inside one encoder layer, of the feed-forward sublayer's output block (BertOutput)."""
SERIAL, PARALLEL = "serial", "parallel"
"""Adapter placements: after the sublayer (reads its output) or beside it (reads its input)."""


def check_adapter(size: int, dropout: float) -> None:
    check_min("adapter_size", size)
    check_rate("adapter_dropout", dropout)


def check_hypernet(task_emb_dim: int, hyper_hidden: int) -> None:
    check_min("task_emb_dim", task_emb_dim)
    check_min("hyper_hidden", hyper_hidden)


def check_activation(name: str) -> None:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {name!r}")


# ---- the bottleneck: one computation, owned or generated weights ---------------------------------
class BottleneckWeights(NamedTuple):
    """Weights of one bottleneck adapter, in ``F.linear`` layout."""

    down_w: torch.Tensor
    """[a, d]"""
    down_b: torch.Tensor
    """[a]"""
    up_w: torch.Tensor
    """[d, a]"""
    up_b: torch.Tensor
    """[d]"""


def bottleneck(x: torch.Tensor, w: BottleneckWeights, activation: str,
               dropout: nn.Module) -> torch.Tensor:
    """``up(dropout(act(down(x))))``: d -> a -> d, the delta only (no skip connection)."""
    h = dropout(ACTIVATIONS[activation](F.linear(x, w.down_w, w.down_b)))
    return F.linear(h, w.up_w, w.up_b)


class Bottleneck(nn.Module):
    """A bottleneck that owns its weights. ``down`` keeps PyTorch's default init (so the first
    step already has a non-zero signal for ``up``); ``up`` starts at zero."""

    def __init__(self, hidden: int, size: int, dropout: float, activation: str) -> None:
        super().__init__()
        check_adapter(size, dropout)
        check_activation(activation)
        self.activation = activation
        self.down = nn.Linear(hidden, size)
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(size, hidden)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = BottleneckWeights(self.down.weight, self.down.bias, self.up.weight, self.up.bias)
        return bottleneck(x, w, self.activation, self.dropout)


def zero_linear(n_in: int, n_out: int) -> nn.Linear:
    """A generator whose output is exactly zero at init (but whose weight still gets grads)."""
    lin = nn.Linear(n_in, n_out)
    nn.init.zeros_(lin.weight)
    nn.init.zeros_(lin.bias)
    return lin


class AdapterHeads(nn.Module):
    """Linear maps from a conditioning vector of size ``cond`` to one bottleneck's weights.

    The up-projection generator starts at zero, so every generated adapter adds nothing at
    init. The down generator has no bias offset at init, so down weights depend on the
    conditioning only (they differ per task and layer from step 0) and are scaled to about
    ``rms(cond) / sqrt(d)`` like a fan-in init.
    """

    def __init__(self, cond: int, hidden_size: int, adapter_size: int) -> None:
        super().__init__()
        self.d, self.a = hidden_size, adapter_size
        self.down_w = nn.Linear(cond, adapter_size * hidden_size)
        nn.init.normal_(self.down_w.weight, std=1.0 / math.sqrt(hidden_size * cond))
        nn.init.zeros_(self.down_w.bias)
        self.down_b = zero_linear(cond, adapter_size)
        self.up_w = zero_linear(cond, hidden_size * adapter_size)
        self.up_b = zero_linear(cond, hidden_size)

    def forward(self, cond: torch.Tensor) -> BottleneckWeights:
        return BottleneckWeights(
            down_w=self.down_w(cond).view(self.a, self.d),
            down_b=self.down_b(cond),
            up_w=self.up_w(cond).view(self.d, self.a),
            up_b=self.up_b(cond),
        )


# ---- the output-block wrapper --------------------------------------------------------------------
NormOffsets = tuple[torch.Tensor, torch.Tensor]
"""``(d_gamma, d_beta)`` added to the frozen LayerNorm's weight and bias (conditional LN)."""


def _is_output_block(module: object) -> bool:
    return isinstance(module, AdapterOutput) or all(
        isinstance(getattr(module, n, None), nn.Module) for n in ("dense", "dropout", "LayerNorm"))


class AdapterOutput(nn.Module):
    """A BERT output block with an adapter: ``LN(dropout(dense(h)) + s·A(z) + x)``, where ``x``
    is the block's residual input and ``z`` is the sublayer output (``serial``) or ``x``
    (``parallel``; for ``BertOutput``, ``x`` is exactly the FFN's input). ``s`` is 1 for serial.

    Subclasses say where ``A`` comes from by defining ``delta(z)``, which may also return
    LayerNorm offsets (Hyperformer's conditional layer norm); otherwise the frozen LN is used.
    """

    def __init__(self, base: nn.Module, placement: str, scale: float = 1.0) -> None:
        super().__init__()
        if not _is_output_block(base) or isinstance(base, AdapterOutput):
            raise ValueError(f"{type(base).__name__} is not a BERT output block "
                             "(.dense, .dropout, .LayerNorm)")
        if placement not in (SERIAL, PARALLEL):
            raise ValueError(f"placement must be {SERIAL!r} or {PARALLEL!r}, got {placement!r}")
        self.base = base
        self.placement = placement
        self.scale = float(scale)

    def delta(self, z: torch.Tensor) -> tuple[torch.Tensor, NormOffsets | None]:
        raise NotImplementedError

    def sublayer(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The original block's ``dropout(dense(h))``, before its residual and LayerNorm."""
        return self.base.dropout(self.base.dense(hidden_states))

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        h = self.sublayer(hidden_states)
        if self.placement == SERIAL:
            delta, offsets = self.delta(h)
            h = h + delta
        else:
            delta, offsets = self.delta(input_tensor)
            h = h + self.scale * delta
        return self.residual_norm(h + input_tensor, offsets)

    def residual_norm(self, y: torch.Tensor, offsets: NormOffsets | None) -> torch.Tensor:
        """The frozen LayerNorm, with generated offsets on its affine parameters if given."""
        ln = self.base.LayerNorm
        if offsets is None:
            return ln(y)
        d_gamma, d_beta = offsets
        weight = ln.weight if ln.weight is not None else torch.ones_like(d_gamma)
        bias = ln.bias if ln.bias is not None else torch.zeros_like(d_beta)
        return F.layer_norm(y, ln.normalized_shape, weight + d_gamma, bias + d_beta, ln.eps)


def _check_task_names(tasks: list[str]) -> None:
    """Task names become ``ModuleDict`` keys and parameter-name segments, so they must be plain."""
    if not tasks:
        raise ValueError("adapters need at least one task")
    probe = nn.ModuleDict()
    for t in tasks:
        if not t or "." in t or hasattr(probe, t):
            raise ValueError(f"task name {t!r} cannot key an adapter (empty, '.' or reserved)")


class OwnedAdapterOutput(AdapterOutput):
    """Adapters with their own weights: one per task in ``by_task`` (the name the parameter
    accounting keys on, routed by the task router) or one ``shared`` by all tasks. The router
    is a plain attribute, not a submodule, so it adds no parameters and is not saved."""

    def __init__(self, base: nn.Module, placement: str, make: Callable[[], nn.Module],
                 tasks: list[str] | None, router: TaskRouter | None, scale: float = 1.0) -> None:
        super().__init__(base, placement, scale)
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

    def delta(self, z: torch.Tensor) -> tuple[torch.Tensor, NormOffsets | None]:
        return self.adapter()(z), None


class WeightSource(Protocol):
    """A hypernetwork as ``GeneratedAdapterOutput`` calls it."""

    def adapter_weights(self, task_id: int, layer: int,
                        pos: int) -> tuple[BottleneckWeights, NormOffsets | None]: ...


class GeneratedAdapterOutput(AdapterOutput):
    """Adapters whose weights a shared hypernetwork generates for (task, layer, position).

    The network is held by a plain, unregistered reference (``_net``): it is registered once,
    in ``Applied.extra``; registering it under every wrapper too would duplicate its tensors in
    the state dict (which safetensors refuses) and in the parameter counts.
    """

    def __init__(self, base: nn.Module, placement: str, net: WeightSource, router: TaskRouter,
                 layer: int, pos: int, activation: str, dropout: float) -> None:
        super().__init__(base, placement)
        check_activation(activation)
        object.__setattr__(self, "_net", net)
        self.router = router
        self.layer, self.pos = layer, pos
        self.activation = activation
        self.adapter_dropout = nn.Dropout(dropout)

    def delta(self, z: torch.Tensor) -> tuple[torch.Tensor, NormOffsets | None]:
        w, offsets = self._net.adapter_weights(self.router.task_id, self.layer, self.pos)
        return bottleneck(z, w, self.activation, self.adapter_dropout), offsets


# ---- injection -----------------------------------------------------------------------------------
def encoder_layers(backbone: nn.Module, method: str) -> nn.ModuleList:
    """The layers of a BERT-style encoder, each checked to have both output blocks."""
    layers = getattr(getattr(backbone, "encoder", None), "layer", None)
    ok = isinstance(layers, nn.ModuleList) and len(layers) > 0 and all(
        _is_output_block(getattr(getattr(lay, "attention", None), "output", None))
        and _is_output_block(getattr(lay, "output", None)) for lay in layers
    )
    if not ok:
        raise ValueError(f"{method} needs a BERT-style encoder (encoder.layer[i].attention.output"
                         f" and .output), got {type(backbone).__name__}")
    return layers


def hidden_size(backbone: nn.Module, method: str) -> int:
    """The model width ``d`` from the Hugging Face config (checked after the layer list)."""
    encoder_layers(backbone, method)
    size = getattr(getattr(backbone, "config", None), "hidden_size", None)
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"{type(backbone).__name__} has no config.hidden_size")
    return size


def inject(backbone: nn.Module, method: str, paths: tuple[str, ...],
           wrap: Callable[[nn.Module, int, str], AdapterOutput],
           layers: str = "all") -> list[AdapterOutput]:
    """Replace the block at each ``path`` of the ``layers`` (see ``layer_indices``) by
    ``wrap(block, layer_index, path)``. Refuses to wrap a block twice, which would silently
    stack two adapters."""
    wrappers: list[AdapterOutput] = []
    all_layers = encoder_layers(backbone, method)
    for i in layer_indices(layers, len(all_layers)):
        for path in paths:
            parent_path, _, attr = path.rpartition(".")
            parent = all_layers[i].get_submodule(parent_path) if parent_path else all_layers[i]
            block = getattr(parent, attr)
            if isinstance(block, AdapterOutput):
                raise ValueError(f"{path!r} already holds an adapter")
            wrapper = wrap(block, i, path)
            setattr(parent, attr, wrapper)
            wrappers.append(wrapper)
    return wrappers


def add_adapters(backbone: nn.Module, method: str, placement: str, *, size: int, dropout: float,
                 activation: str, tasks: list[str] | None, router: TaskRouter | None,
                 layers: str = "all", scale: float = 1.0) -> list[AdapterOutput]:
    """Owned bottleneck adapters in the ``layers``: ``serial`` ones after the attention and the
    FFN sublayer (Houlsby), ``parallel`` ones beside the FFN scaled by ``scale`` (He et al.).
    ``tasks=None`` gives one adapter shared by all tasks; otherwise one per task."""
    hidden = hidden_size(backbone, method)
    paths = (SELF_OUTPUT, FFN_OUTPUT) if placement == SERIAL else (FFN_OUTPUT,)

    def wrap(block: nn.Module, layer: int, path: str) -> AdapterOutput:
        return OwnedAdapterOutput(block, placement,
                                  lambda: Bottleneck(hidden, size, dropout, activation),
                                  tasks, router, scale)

    return inject(backbone, method, paths, wrap, layers)
