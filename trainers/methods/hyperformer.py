"""Hyperformer++ (Karimi Mahabadi et al., ACL 2021): one hypernetwork writes every adapter.

Instead of storing an adapter per task and layer, a single shared hypernetwork *generates*
the weights of each bottleneck adapter (and of a task-conditional layer norm) from a small
embedding of (task, layer, position). Tasks share what they can through the generator, and
adding a task costs one embedding row. Adapters sit where Houlsby puts them: after the
attention output projection and after the feed-forward output projection of every layer.

Conditional layer norm: the paper generates gamma/beta for the layer norms. Here the
generated values are *offsets* on top of the frozen pretrained LayerNorm of the sublayer
(``LN(x) * (w + dgamma) + b + dbeta``) so that, with zero offsets and zero up-projections
at initialisation, the model computes exactly what the pretrained backbone computes.

Parameter accounting: the whole hypernetwork lives in ``Applied.extra`` and counts as
shared. Only one row of ``task_emb`` is truly task-specific; the paper counts loosely in
the same way, so the per-task figure is "shared + head".

The pieces ``Generated``, ``AdapterHeads`` and ``bottleneck`` are reused by ``pha``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from trainers.methods._base import Applied, TaskRouter

DEFAULT_LR = 1e-3

ATTENTION, FFN = 0, 1
"""Adapter positions inside a layer (index of the position embedding)."""


@dataclass
class Config:
    adapter_size: int = 64
    """Bottleneck width a of each generated adapter."""
    task_emb_dim: int = 64
    """Size t of the task, layer and position embeddings and of the projected input."""
    hyper_hidden: int = 128
    """Hidden width of the task projector MLP."""
    adapter_dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.adapter_size < 1:
            raise ValueError(f"adapter_size must be >= 1, got {self.adapter_size}")
        if self.task_emb_dim < 1:
            raise ValueError(f"task_emb_dim must be >= 1, got {self.task_emb_dim}")
        if self.hyper_hidden < 1:
            raise ValueError(f"hyper_hidden must be >= 1, got {self.hyper_hidden}")
        if not 0 <= self.adapter_dropout < 1:
            raise ValueError(f"adapter_dropout must be in [0, 1), got {self.adapter_dropout}")


class Generated(NamedTuple):
    """Weights of one bottleneck adapter, in ``F.linear`` layout."""

    down_w: torch.Tensor
    """[a, d]"""
    down_b: torch.Tensor
    """[a]"""
    up_w: torch.Tensor
    """[d, a]"""
    up_b: torch.Tensor
    """[d]"""


class LayerWeights(NamedTuple):
    """Everything generated for one (task, layer, position)."""

    adapter: Generated
    d_gamma: torch.Tensor
    """[d] offset added to the frozen LayerNorm weight."""
    d_beta: torch.Tensor
    """[d] offset added to the frozen LayerNorm bias."""


def _zero_linear(n_in: int, n_out: int) -> nn.Linear:
    """A generator whose output is exactly zero at init (but whose weight still gets grads)."""
    lin = nn.Linear(n_in, n_out)
    nn.init.zeros_(lin.weight)
    nn.init.zeros_(lin.bias)
    return lin


class AdapterHeads(nn.Module):
    """Linear maps from a conditioning vector of size ``cond`` to one adapter's weights.

    The up-projection generator starts at zero, so every generated adapter is the identity
    at init and training starts from the pretrained model. The down generator has no bias
    offset at init, so down weights depend on the conditioning only (they differ per task and
    layer from step 0) and are scaled to about ``rms(cond) / sqrt(d)`` like a fan-in init.
    """

    def __init__(self, cond: int, hidden_size: int, adapter_size: int) -> None:
        super().__init__()
        self.d, self.a = hidden_size, adapter_size
        self.down_w = nn.Linear(cond, adapter_size * hidden_size)
        nn.init.normal_(self.down_w.weight, std=1.0 / math.sqrt(hidden_size * cond))
        nn.init.zeros_(self.down_w.bias)
        self.down_b = _zero_linear(cond, adapter_size)
        self.up_w = _zero_linear(cond, hidden_size * adapter_size)
        self.up_b = _zero_linear(cond, hidden_size)

    def forward(self, cond: torch.Tensor) -> Generated:
        return Generated(
            down_w=self.down_w(cond).view(self.a, self.d),
            down_b=self.down_b(cond),
            up_w=self.up_w(cond).view(self.d, self.a),
            up_b=self.up_b(cond),
        )


def bottleneck(x: torch.Tensor, w: Generated, dropout: nn.Module) -> torch.Tensor:
    """The adapter's residual branch ``up(dropout(gelu(down(x))))`` (no skip connection)."""
    h = dropout(F.gelu(F.linear(x, w.down_w, w.down_b)))
    return F.linear(h, w.up_w, w.up_b)


class HyperNet(nn.Module):
    """The shared generator: (task, layer, position) -> adapter + layer-norm offsets."""

    def __init__(self, n_tasks: int, n_layers: int, hidden_size: int, cfg: Config) -> None:
        super().__init__()
        t = cfg.task_emb_dim
        self.task_emb = nn.Embedding(n_tasks, t)
        self.layer_emb = nn.Embedding(n_layers, t)
        self.pos_emb = nn.Embedding(2, t)
        # Paper's "task projector": mixes the three embeddings into one conditioning vector.
        self.projector = nn.Sequential(
            nn.Linear(3 * t, cfg.hyper_hidden), nn.ReLU(), nn.Linear(cfg.hyper_hidden, t)
        )
        self.adapter = AdapterHeads(t, hidden_size, cfg.adapter_size)
        self.ln_gamma = _zero_linear(t, hidden_size)
        self.ln_beta = _zero_linear(t, hidden_size)

    def embed(self, task_id: int, layer: int, pos: int) -> torch.Tensor:
        """The conditioning vector [t]; plain row indexing avoids building index tensors."""
        parts = (self.task_emb.weight[task_id], self.layer_emb.weight[layer],
                 self.pos_emb.weight[pos])
        return self.projector(torch.cat(parts))

    def generate(self, task_id: int, layer: int, pos: int) -> LayerWeights:
        cond = self.embed(task_id, layer, pos)
        return LayerWeights(self.adapter(cond), self.ln_gamma(cond), self.ln_beta(cond))


def conditional_layer_norm(x: torch.Tensor, ln: nn.LayerNorm, d_gamma: torch.Tensor,
                           d_beta: torch.Tensor) -> torch.Tensor:
    """The frozen ``ln`` with generated offsets on its affine parameters."""
    weight = ln.weight if ln.weight is not None else torch.ones_like(d_gamma)
    bias = ln.bias if ln.bias is not None else torch.zeros_like(d_beta)
    return F.layer_norm(x, ln.normalized_shape, weight + d_gamma, bias + d_beta, ln.eps)


class HyperSublayer(nn.Module):
    """Replaces a BERT ``*Output`` sublayer: dense -> dropout -> adapter -> +residual -> cLN.

    ``base`` is the original (frozen) sublayer, kept whole so its weights keep their values.
    The hypernetwork is held by a plain, unregistered reference: it is registered once, in
    ``Applied.extra``; registering it under every wrapper too would duplicate its tensors in
    the state dict (which safetensors refuses) and in the parameter counts.
    """

    def __init__(self, base: nn.Module, hyper: HyperNet, router: TaskRouter, layer: int,
                 pos: int, dropout: float) -> None:
        super().__init__()
        self.base = base
        object.__setattr__(self, "_hyper", hyper)
        self.router = router
        self.layer, self.pos = layer, pos
        self.adapter_dropout = nn.Dropout(dropout)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        w = self._hyper.generate(self.router.task_id, self.layer, self.pos)
        h = self.base.dropout(self.base.dense(hidden_states))
        h = h + bottleneck(h, w.adapter, self.adapter_dropout)
        return conditional_layer_norm(h + input_tensor, self.base.LayerNorm, w.d_gamma, w.d_beta)


def _is_output_sublayer(module: object) -> bool:
    return all(isinstance(getattr(module, n, None), nn.Module)
               for n in ("dense", "dropout", "LayerNorm"))


def encoder_layers(backbone: nn.Module, method: str) -> nn.ModuleList:
    """The encoder's layers, checked to have BERT's ``attention.output`` and ``output``."""
    layers = getattr(getattr(backbone, "encoder", None), "layer", None)
    ok = isinstance(layers, nn.ModuleList) and len(layers) > 0 and all(
        _is_output_sublayer(getattr(getattr(lay, "attention", None), "output", None))
        and _is_output_sublayer(getattr(lay, "output", None)) for lay in layers
    )
    if not ok:
        raise ValueError(f"{method} needs a BERT-style encoder (encoder.layer[i].attention.output"
                         f" and .output), got {type(backbone).__name__}")
    return layers


def apply(backbone: nn.Module, cfg: Config, tasks: list[str], router: TaskRouter) -> Applied:
    layers = encoder_layers(backbone, "hyperformer")
    hyper = HyperNet(len(tasks), len(layers), layers[0].output.dense.out_features, cfg)
    for i, layer in enumerate(layers):
        attn = layer.attention
        attn.output = HyperSublayer(attn.output, hyper, router, i, ATTENTION, cfg.adapter_dropout)
        layer.output = HyperSublayer(layer.output, hyper, router, i, FFN, cfg.adapter_dropout)
    return Applied(backbone=backbone, extra=hyper)
