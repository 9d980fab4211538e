"""A tiny random BERT, a multitask model on it, a batch and a word-level tokenizer, built in
code (no network): what every test that needs a model imports (``from tiny import ...``),
the way search tests import ``searchkit``."""

from __future__ import annotations

import os
import tempfile

import torch

from trainers.config import TrainConfig
from trainers.model import MultitaskModel
from trainers.tasks import TaskSpec


def tiny_config(**overrides):
    """A 2-layer, 32-wide BERT config (``overrides`` replace any field)."""
    from transformers import BertConfig

    kw = dict(vocab_size=256, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
              intermediate_size=64, max_position_embeddings=128, type_vocab_size=2)
    kw.update(overrides)
    return BertConfig(**kw)


def tiny_backbone(seed: int = 0, **overrides):
    """A randomly initialised tiny BERT in eval mode, the same weights for the same seed."""
    from transformers import BertModel

    torch.manual_seed(seed)
    return BertModel(tiny_config(**overrides)).eval()


SPECS = [TaskSpec("a", "classification", "text", "label", num_labels=3),
         TaskSpec("b", "regression", "text", "label")]
"""Two tasks: ``a`` with a 3-way head, ``b`` with a 1-output head."""


def tiny_model(method: str, seed: int = 0, **config) -> MultitaskModel:
    """``method`` with its ``config`` keys on ``tiny_backbone(seed)`` for the ``SPECS`` tasks."""
    cfg = TrainConfig.from_flat({"method": method, "tasks": "a,b", "head_dropout": 0.0, **config})
    return MultitaskModel(tiny_backbone(seed), SPECS, cfg)


def tiny_batch(seed: int = 1, b: int = 4, n: int = 9) -> dict[str, torch.Tensor]:
    """Random ``input_ids`` and an ``attention_mask`` with padding in the first row."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 200, (b, n), generator=g)
    mask = torch.ones_like(ids)
    mask[0, -3:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def hidden_states(model: MultitaskModel, task: str, x: dict[str, torch.Tensor]) -> torch.Tensor:
    """The backbone's last hidden state for ``task`` (what the heads pool), without grad."""
    model.router.set(task)
    model.router.context = dict(x)
    with torch.no_grad():
        return model.backbone(**x).last_hidden_state


def write_tiny_model_dir(path, seed: int = 0, **overrides) -> str:
    """Save a tiny random BERT + tokenizer as an HF model directory (for CLI and Ray tests);
    ``overrides`` replace fields of ``tiny_config`` (a wider model for memory tests)."""
    from trainers.demo import tokenizer_vocab

    backbone = tiny_backbone(seed, **{"vocab_size": len(tokenizer_vocab()), **overrides})
    backbone.save_pretrained(path)
    tiny_tokenizer_obj(path)
    return str(path)


def tiny_tokenizer_obj(save_dir=None):
    """A word-level BERT tokenizer over the demo suite's words."""
    from transformers import BertTokenizerFast

    from trainers.demo import tokenizer_vocab

    d = tempfile.mkdtemp()
    with open(os.path.join(d, "vocab.txt"), "w") as f:
        f.write("\n".join(tokenizer_vocab()) + "\n")
    # from_pretrained on a folder reads vocab.txt (the vocab_file= constructor ignores it in v5).
    tok = BertTokenizerFast.from_pretrained(d)
    if save_dir is not None:
        tok.save_pretrained(save_dir)
    return tok
