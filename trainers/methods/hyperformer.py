"""Hyperformer++ (Karimi Mahabadi et al., ACL 2021): one hypernetwork writes every adapter.

Instead of storing an adapter per task and layer, a single shared hypernetwork *generates*
the weights of each bottleneck adapter (and of a task-conditional layer norm) from a small
embedding of (task, layer, position). Tasks share what they can through the generator, so a
new task costs one new task embedding: ``trainers/transfer.py`` adds it to a trained model,
starting from the embedding of the trained task that fits the new task's examples best, with
the hypernetwork frozen. Adapters sit where Houlsby puts them: after the attention output
projection and after the feed-forward output projection of every layer, with GELU in the
bottleneck as in the paper.

Conditional layer norm: the paper generates gamma/beta for the layer norms. Here the
generated values are *offsets* on top of the frozen pretrained LayerNorm of the sublayer
(``LN(x) * (w + dgamma) + b + dbeta``) so that, with zero offsets and zero up-projections
at initialisation, the model computes exactly what the pretrained backbone computes.

Parameter accounting: the whole hypernetwork lives in ``Applied.extra`` and counts as shared,
so every task's figure includes all of it ("shared + head"); only the task's embedding
(``task_emb.by_task.<task>``) is its own. The paper tabulates something else: the
hypernetwork amortised over the tasks (total / T), which is smaller by about a factor T.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from trainers.methods._base import Applied, TaskEmbeddings, TaskRouter
from trainers.methods._bottleneck import (
    FFN_OUTPUT,
    SELF_OUTPUT,
    SERIAL,
    AdapterHeads,
    BottleneckWeights,
    GeneratedAdapterOutput,
    NormOffsets,
    check_adapter,
    check_hypernet,
    encoder_layers,
    hidden_size,
    inject,
    zero_linear,
)

DEFAULT_LR = 1e-3
IDENTITY_AT_INIT = True
"""Generated up-projections and layer-norm offsets start at zero."""
ACTIVATION = "gelu"
"""The generated bottleneck's nonlinearity: GELU, as in the paper."""

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
        check_adapter(self.adapter_size, self.adapter_dropout)
        check_hypernet(self.task_emb_dim, self.hyper_hidden)


class LayerWeights(NamedTuple):
    """Everything generated for one (task, layer, position)."""

    adapter: BottleneckWeights
    d_gamma: torch.Tensor
    """[d] offset added to the frozen LayerNorm weight."""
    d_beta: torch.Tensor
    """[d] offset added to the frozen LayerNorm bias."""


class HyperNet(nn.Module):
    """The shared generator: (task, layer, position) -> adapter + layer-norm offsets."""

    def __init__(self, tasks: list[str], n_layers: int, hidden_size: int, cfg: Config) -> None:
        super().__init__()
        t = cfg.task_emb_dim
        self.task_emb = TaskEmbeddings(tasks, t)
        self.layer_emb = nn.Embedding(n_layers, t)
        self.pos_emb = nn.Embedding(2, t)
        # Paper's "task projector": mixes the three embeddings into one conditioning vector.
        self.projector = nn.Sequential(
            nn.Linear(3 * t, cfg.hyper_hidden), nn.ReLU(), nn.Linear(cfg.hyper_hidden, t)
        )
        self.adapter = AdapterHeads(t, hidden_size, cfg.adapter_size)
        self.ln_gamma = zero_linear(t, hidden_size)
        self.ln_beta = zero_linear(t, hidden_size)

    def embed(self, task_id: int, layer: int, pos: int) -> torch.Tensor:
        """The conditioning vector [t]; plain row indexing avoids building index tensors."""
        parts = (self.task_emb.row(task_id), self.layer_emb.weight[layer],
                 self.pos_emb.weight[pos])
        return self.projector(torch.cat(parts))

    def generate(self, task_id: int, layer: int, pos: int) -> LayerWeights:
        cond = self.embed(task_id, layer, pos)
        return LayerWeights(self.adapter(cond), self.ln_gamma(cond), self.ln_beta(cond))

    def adapter_weights(self, task_id: int, layer: int,
                        pos: int) -> tuple[BottleneckWeights, NormOffsets | None]:
        """What a ``GeneratedAdapterOutput`` asks for: the adapter and the LayerNorm offsets."""
        w = self.generate(task_id, layer, pos)
        return w.adapter, (w.d_gamma, w.d_beta)


def apply(backbone: nn.Module, cfg: Config, tasks: list[str], router: TaskRouter) -> Applied:
    layers = encoder_layers(backbone, "hyperformer")
    hyper = HyperNet(tasks, len(layers), hidden_size(backbone, "hyperformer"), cfg)

    def wrap(block: nn.Module, layer: int, path: str) -> GeneratedAdapterOutput:
        pos = ATTENTION if path == SELF_OUTPUT else FFN
        return GeneratedAdapterOutput(block, SERIAL, hyper, router, layer, pos, ACTIVATION,
                                      cfg.adapter_dropout)

    inject(backbone, "hyperformer", (SELF_OUTPUT, FFN_OUTPUT), wrap)
    return Applied(backbone=backbone, extra=hyper)
