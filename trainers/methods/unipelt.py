"""UniPELT (Mao et al., 2022): a bottleneck adapter, a prefix and LoRA in the same layers, each
scaled by its own gate computed from the hidden state, so training decides per input how much
each submodule contributes. Shared by all tasks; each task keeps its own head.

Per selected layer (``layers``):

- LoRA on query and value: ``W x + g_L(x) · (alpha/r) · B A x``, ``g_L(x) = sigmoid(w_L · x)``;
- prefix: ``prefix_length`` learned key/value vectors per layer. Departure from the paper:
  here they form a second attention branch of each query over the prefix only, *added* to
  the unchanged token attention as ``attn(x) + g_P(x) · attn(q, P_k, P_v)``. The paper puts
  prefix and tokens under one softmax (so attending to the prefix takes weight away from the
  tokens) and gates the prefix part. This is an approximation inspired by He et al.'s
  parallel view of prefix tuning, not equivalent to it: the token attention is never
  renormalised or down-weighted. It needs no change to the encoder's attention masks or
  kernels;
- adapter after the feed-forward block (Houlsby placement): ``h + g_A(h) · A(h)``.

Every gate is one linear unit per token followed by a sigmoid. LoRA's ``B`` and the adapter's
up-projection start at zero, so only the prefix branch changes the output at initialisation
(scaled by its gate, about 0.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from trainers.methods import lora
from trainers.methods._base import (
    Applied,
    TaskRouter,
    check_layers,
    check_min,
    check_rate,
    layer_indices,
)
from trainers.methods._bottleneck import (
    SERIAL,
    Bottleneck,
    OwnedAdapterOutput,
    encoder_layers,
    hidden_size,
)

DEFAULT_LR = 1e-3
IDENTITY_AT_INIT = False
"""The prefix branch adds attention over random prefix vectors from the start (gate about 0.5)."""
ACTIVATION = "relu"
"""The adapter's nonlinearity: ReLU, as in ``adapter``."""


@dataclass
class Config:
    adapter_size: int = 32
    """Bottleneck width of the gated adapter."""
    prefix_length: int = 10
    """Learned key/value vectors per layer."""
    r: int = 8
    """Rank of the gated LoRA on query and value."""
    alpha: float = 16.0
    dropout: float = 0.1
    """Dropout on the adapter's bottleneck and on LoRA's input."""
    layers: str = "all"
    """Which layers get the three modules: all, top_half, bottom_half, every_other."""

    def __post_init__(self) -> None:
        check_min("adapter_size", self.adapter_size)
        check_rate("dropout", self.dropout)
        check_min("prefix_length", self.prefix_length)
        lora.Config(r=self.r, alpha=self.alpha)  # LoRA's own checks and messages for r and alpha
        check_layers(self.layers)


def _gate(hidden: int) -> nn.Linear:
    return nn.Linear(hidden, 1)


class GatedLoRALinear(nn.Module):
    """A frozen linear map plus a gated low-rank update."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float) -> None:
        super().__init__()
        self.base = base
        self.lora_A = nn.Linear(base.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.dropout = nn.Dropout(dropout)
        self.scale = alpha / r
        self.gate = _gate(base.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        delta = self.lora_B(self.lora_A(self.dropout(x))) * self.scale
        return self.base(x) + torch.sigmoid(self.gate(x)) * delta


class GatedPrefixSelfAttention(nn.Module):
    """The layer's self-attention plus a gated attention over learned prefix keys/values."""

    def __init__(self, base: nn.Module, length: int, hidden: int) -> None:
        super().__init__()
        self.base = base
        d = base.num_attention_heads * base.attention_head_size
        self.heads, self.head_size = base.num_attention_heads, base.attention_head_size
        self.prefix_key = nn.Parameter(torch.randn(length, d) * 0.02)
        self.prefix_value = nn.Parameter(torch.randn(length, d) * 0.02)
        self.gate = _gate(hidden)
        # The prefix branch reuses the queries the layer's own attention computes (no second
        # projection): a hook keeps the query module's output for the forward below.
        self._query: torch.Tensor | None = None
        base.query.register_forward_hook(self._keep_query)

    def _keep_query(self, module: nn.Module, args, output: torch.Tensor) -> None:
        self._query = output

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        out, weights = self.base(hidden_states, *args, **kwargs)
        b, n, _ = hidden_states.shape
        query, self._query = self._query, None  # not kept past this call (nor its graph)
        q = query.view(b, n, self.heads, self.head_size).transpose(1, 2)
        k = self.prefix_key.view(-1, self.heads, self.head_size).transpose(0, 1)  # [H, P, h]
        v = self.prefix_value.view(-1, self.heads, self.head_size).transpose(0, 1)
        attn = torch.softmax(q @ k.transpose(-1, -2) * self.head_size ** -0.5, dim=-1)
        prefix = (attn @ v).transpose(1, 2).reshape(b, n, -1)
        return out + torch.sigmoid(self.gate(hidden_states)) * prefix, weights


class GatedBottleneck(nn.Module):
    """``g_A(h) · A(h)``: the adapter's delta scaled by its gate."""

    def __init__(self, hidden: int, size: int, dropout: float) -> None:
        super().__init__()
        self.adapter = Bottleneck(hidden, size, dropout, ACTIVATION)
        self.gate = _gate(hidden)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.gate(h)) * self.adapter(h)


def apply(backbone: nn.Module, cfg: Config, tasks: list[str], router: TaskRouter) -> Applied:
    hidden = hidden_size(backbone, "unipelt")
    layers = encoder_layers(backbone, "unipelt")
    for i in layer_indices(cfg.layers, len(layers)):
        layer = layers[i]
        attention = layer.attention
        self_attn = attention.self
        for name in ("query", "value"):
            setattr(self_attn, name, GatedLoRALinear(getattr(self_attn, name), cfg.r, cfg.alpha, cfg.dropout))
        attention.self = GatedPrefixSelfAttention(self_attn, cfg.prefix_length, hidden)
        layer.output = OwnedAdapterOutput(  # shared by all tasks: no task list, no router
            layer.output, SERIAL, lambda: GatedBottleneck(hidden, cfg.adapter_size, cfg.dropout),
            None, None)
    # The new modules are trainable (created after ``freeze``); the originals under ``.base``
    # stay frozen.
    return Applied(backbone=backbone)
