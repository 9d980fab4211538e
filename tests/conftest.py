"""Shared test fixtures: a tiny random BERT and a word-level tokenizer, built in code."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(1)


def tiny_config(**overrides):
    from transformers import BertConfig

    kw = dict(vocab_size=256, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
              intermediate_size=64, max_position_embeddings=128, type_vocab_size=2)
    kw.update(overrides)
    return BertConfig(**kw)


def tiny_backbone(seed: int = 0, **overrides):
    from transformers import BertModel

    torch.manual_seed(seed)
    return BertModel(tiny_config(**overrides)).eval()


def write_tiny_model_dir(path, seed: int = 0) -> str:
    """Save a tiny random BERT + tokenizer as an HF model directory (for CLI and Ray tests)."""
    from trainers.demo import tokenizer_vocab

    backbone = tiny_backbone(seed, vocab_size=len(tokenizer_vocab()))
    backbone.save_pretrained(path)
    tiny_tokenizer_obj(path)
    return str(path)


def tiny_tokenizer_obj(save_dir=None):
    """A word-level BERT tokenizer over the demo suite's words."""
    import tempfile

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


@pytest.fixture
def tiny_tokenizer():
    return tiny_tokenizer_obj()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    return write_tiny_model_dir(tmp_path_factory.mktemp("tiny-bert"))
