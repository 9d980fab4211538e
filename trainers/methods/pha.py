"""Prototype-based HyperAdapter (PHA; Zhao et al., Findings of EMNLP 2023).

A hypernetwork generates a parallel feed-forward adapter for every layer from the
concatenation of a learned *task prototype* and a layer embedding. The prototypes are
shaped by two contrastive losses on a cheap per-instance embedding ``z``, so that tasks
with similar inputs get nearby prototypes (and therefore similar generated adapters), and
an unseen input can be routed to the prototype nearest to its ``z``:

- ``L_IR`` (instance-dense retriever): InfoNCE where the positives of an instance are the
  other instances of the batch (a batch holds one task) and the negatives are detached
  embeddings of *other* tasks from earlier batches, kept in a small FIFO memory bank;
- ``L_Pro`` (prototypical): cross-entropy over cosine similarities between ``z`` and all
  prototypes (divided by ``pha_temperature``) with the batch's task as the target.

``Applied.aux_loss`` returns ``pha_lambda * (L_IR + L_Pro)`` of the last training forward.

The instance embedding: as in the paper, the retriever reads the encoder's hidden states
``h_i`` of the instance: the masked mean of the last hidden state of the *pretrained* encoder
(a second, gradient-free pass with every generated adapter bypassed and dropout off: one more
forward pass per training step, none at evaluation). ``retriever_input="words"`` is the cheaper variant of
earlier versions (the masked mean of the frozen input word embeddings, no second pass, nothing
contextual), kept for the measured comparison in BENCHMARKS.md §12.

A new task (``trainers/transfer.py``): its prototype starts from the prototype its training
examples retrieve (each example votes for the nearest prototype, ``nearest_task``), and the
hypernetwork generates its adapters; only the new prototype (and the new head) is trained.

Other choices made here:

- the generated adapter sits in parallel to each layer's FFN with GELU in its bottleneck,
  ``LN(dropout(dense(h)) + A(x) + x)`` with ``x`` the FFN input (no scale);
- training uses the true task's prototype to generate adapters (the batch's task is
  known); ``nearest_task(z)`` is the retrieval a new task starts from;
- the memory bank is a plain tensor attribute, not a buffer: it is scratch state of the
  current run, not something to checkpoint or to count;
- losses are computed (and the bank updated) only in training mode, so evaluation batches
  do not leak into the bank.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from trainers.methods._base import (
    Applied,
    TaskEmbeddings,
    TaskRouter,
    check_min,
    check_positive,
)
from trainers.methods._bottleneck import (
    FFN_OUTPUT,
    PARALLEL,
    AdapterHeads,
    BottleneckWeights,
    GeneratedAdapterOutput,
    NormOffsets,
    check_adapter,
    check_hypernet,
    encoder_layers,
    hidden_size,
    inject,
)

DEFAULT_LR = 1e-3
IDENTITY_AT_INIT = True
"""Generated up-projections start at zero (the retriever only adds a loss term)."""
ACTIVATION = "gelu"
"""The generated bottleneck's nonlinearity: GELU, as in the paper."""
BANK_SIZE = 256
"""Instance embeddings kept as negatives for L_IR (FIFO, all tasks; filtered at use)."""
RETRIEVER_INPUTS = ("hidden", "words")


@dataclass
class Config:
    adapter_size: int = 64
    """Bottleneck width a of each generated adapter."""
    task_emb_dim: int = 64
    """Size t of instance embeddings, prototypes and layer embeddings."""
    hyper_hidden: int = 128
    """Hidden width of the retriever and hypernetwork MLPs."""
    pha_lambda: float = 0.1
    """Weight of L_IR + L_Pro in the training loss."""
    pha_temperature: float = 0.1
    """Temperature of both contrastive losses (cosine similarities / temperature)."""
    adapter_dropout: float = 0.0
    retriever_input: str = "hidden"
    """What the retriever reads: hidden (the pretrained encoder's mean last hidden state, as in
    the paper) or words (the mean of the input word embeddings: no second pass)."""

    def __post_init__(self) -> None:
        check_adapter(self.adapter_size, self.adapter_dropout)
        check_hypernet(self.task_emb_dim, self.hyper_hidden)
        check_min("pha_lambda", self.pha_lambda, 0)
        check_positive("pha_temperature", self.pha_temperature)
        if self.retriever_input not in RETRIEVER_INPUTS:
            raise ValueError(f"retriever_input must be one of {', '.join(RETRIEVER_INPUTS)}, "
                             f"got {self.retriever_input!r}")


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


def info_nce(z: torch.Tensor, negatives: torch.Tensor, temperature: float) -> torch.Tensor:
    """Multi-positive InfoNCE: each row's positives are the other rows of ``z``.

    ``z`` [B, t] and ``negatives`` [N, t] are L2-normalised. Zero when there is no
    positive (B < 2) or no negative: without both, the term has nothing to contrast.
    """
    b = z.shape[0]
    if b < 2 or negatives.shape[0] == 0:
        return z.new_zeros(())
    self_mask = torch.eye(b, dtype=torch.bool, device=z.device)
    logits = torch.cat([(z @ z.T).masked_fill(self_mask, float("-inf")), z @ negatives.T], 1)
    log_prob = F.log_softmax(logits / temperature, dim=1)[:, :b].masked_fill(self_mask, 0.0)
    return -(log_prob.sum(1) / (b - 1)).mean()


class PHANet(nn.Module):
    """Retriever, prototypes and the adapter hypernetwork, shared by all tasks."""

    def __init__(self, tasks: list[str], n_layers: int, hidden_size: int, cfg: Config,
                 backbone: nn.Module) -> None:
        super().__init__()
        t = cfg.task_emb_dim
        self.cfg = cfg
        words = backbone.get_input_embeddings()
        width = hidden_size if cfg.retriever_input == "hidden" else words.embedding_dim
        self.retriever = _mlp(width, cfg.hyper_hidden, t)
        self.prototype = TaskEmbeddings(tasks, t)
        self.layer_emb = nn.Embedding(n_layers, t)
        self.hyper = _mlp(2 * t, cfg.hyper_hidden, t)
        self.heads = AdapterHeads(t, hidden_size, cfg.adapter_size)
        # The backbone owns (and freezes) the encoder and its word embeddings: unregistered
        # references, so neither is saved or counted twice.
        object.__setattr__(self, "_words", words)
        object.__setattr__(self, "_encoder", backbone)
        self.bypass = False
        """True during the retriever's own pass: the generated adapters step aside."""
        self.bank_z = torch.empty(0, t)
        self.bank_task = torch.empty(0, dtype=torch.long)
        self.last_ir: torch.Tensor | None = None
        self.last_pro: torch.Tensor | None = None

    def __getstate__(self) -> dict:
        """Drop the last losses (graph tensors) so the model can be deep-copied or pickled."""
        state = dict(super().__getstate__())
        state.update(last_ir=None, last_pro=None)
        return state

    @property
    def prototypes(self) -> torch.Tensor:
        """Every task's prototype, ``[n_tasks, t]`` in the router's task order."""
        return self.prototype.table()

    # ---- adapters --------------------------------------------------------------------------
    def generate(self, task_id: int, layer: int) -> BottleneckWeights:
        cond = torch.cat([self.prototype.row(task_id), self.layer_emb.weight[layer]])
        return self.heads(self.hyper(cond))

    def adapter_weights(self, task_id: int, layer: int,
                        pos: int) -> tuple[BottleneckWeights, NormOffsets | None]:
        """What a ``GeneratedAdapterOutput`` asks for (one position per layer, the frozen LN)."""
        return self.generate(task_id, layer), None

    # ---- retrieval -------------------------------------------------------------------------
    def instance_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                          token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """What the retriever reads, without gradient: the masked mean of the pretrained
        encoder's last hidden state (``hidden``; adapters bypassed, dropout off) or of the
        input word embeddings (``words``)."""
        with torch.no_grad():
            if self.cfg.retriever_input == "words":
                emb = self._words(input_ids)
            else:
                emb = self._encoder_pass(input_ids, attention_mask, token_type_ids)
            m = attention_mask.unsqueeze(-1).to(emb.dtype)
            return (emb * m).sum(1) / m.sum(1).clamp_min(1.0)

    def _encoder_pass(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      token_type_ids: torch.Tensor | None) -> torch.Tensor:
        encoder, was_training = self._encoder, self._encoder.training
        kwargs = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        self.bypass = True
        encoder.eval()
        try:
            return encoder(input_ids=input_ids, attention_mask=attention_mask,
                           **kwargs).last_hidden_state
        finally:
            self.bypass = False
            encoder.train(was_training)

    def instance_embedding(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                           token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """``z`` [B, t]: the retriever over ``instance_features``."""
        return self.retriever(self.instance_features(input_ids, attention_mask, token_type_ids))

    def similarities(self, z: torch.Tensor, among: list[int] | None = None) -> torch.Tensor:
        """Cosine similarity [B, k] of each row of ``z`` to the prototypes of the task ids
        ``among`` (all tasks when None)."""
        protos = self.prototypes if among is None else self.prototypes[among]
        return F.normalize(z.float(), dim=-1) @ F.normalize(protos.float(), dim=-1).T

    def nearest_task(self, z: torch.Tensor, among: list[int] | None = None) -> torch.Tensor:
        """Index (into ``among``, or the task id) of the prototype closest (cosine) to each row
        of ``z``: the retrieval a new task's prototype starts from."""
        return self.similarities(z, among).argmax(-1)

    def observe(self, task_id: int, context: dict[str, torch.Tensor]) -> None:
        """Compute L_IR and L_Pro for the current batch, then push it into the memory bank."""
        if not self.training:
            self.last_ir = self.last_pro = None
            return
        if "input_ids" not in context or "attention_mask" not in context:
            raise RuntimeError("pha needs router.context with input_ids and attention_mask")
        z = F.normalize(self.instance_embedding(context["input_ids"], context["attention_mask"],
                                                context.get("token_type_ids")).float(), dim=-1)
        tau = self.cfg.pha_temperature
        bank_z, bank_task = self.bank_z.to(z.device), self.bank_task.to(z.device)
        self.last_ir = info_nce(z, bank_z[bank_task != task_id], tau)
        logits = z @ F.normalize(self.prototypes, dim=-1).T / tau
        target = torch.full((z.shape[0],), task_id, dtype=torch.long, device=z.device)
        self.last_pro = F.cross_entropy(logits, target)
        self._push(z.detach(), task_id)

    def _push(self, z: torch.Tensor, task_id: int) -> None:
        tasks = torch.full((z.shape[0],), task_id, dtype=torch.long, device=z.device)
        self.bank_z = torch.cat([self.bank_z.to(z.device), z])[-BANK_SIZE:]
        self.bank_task = torch.cat([self.bank_task.to(z.device), tasks])[-BANK_SIZE:]

    def aux_loss(self) -> torch.Tensor | None:
        """``pha_lambda * (L_IR + L_Pro)`` of the last training forward; None in eval."""
        if self.last_ir is None or self.last_pro is None:
            return None
        return self.cfg.pha_lambda * (self.last_ir + self.last_pro)


class PHAOutput(GeneratedAdapterOutput):
    """The generated parallel adapter of one layer's FFN; the first layer's wrapper also runs
    the retriever losses, once per backbone call."""

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        if self._net.bypass:  # the retriever's pass reads the pretrained encoder
            return self.base(hidden_states, input_tensor)
        return super().forward(hidden_states, input_tensor)

    def delta(self, z: torch.Tensor) -> tuple[torch.Tensor, NormOffsets | None]:
        if self.layer == 0:
            self._net.observe(self.router.task_id, self.router.context)
        return super().delta(z)


def apply(backbone: nn.Module, cfg: Config, tasks: list[str], router: TaskRouter) -> Applied:
    layers = encoder_layers(backbone, "pha")
    net = PHANet(tasks, len(layers), hidden_size(backbone, "pha"), cfg, backbone)

    def wrap(block: nn.Module, layer: int, path: str) -> PHAOutput:
        return PHAOutput(block, PARALLEL, net, router, layer, 0, ACTIVATION, cfg.adapter_dropout)

    inject(backbone, "pha", (FFN_OUTPUT,), wrap)
    return Applied(backbone=backbone, extra=net, aux_loss=net.aux_loss)
