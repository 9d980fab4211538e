"""Prompt-learning family (prefix, prompt, ptuning, through peft): virtual tokens, the prompt
encoder, and segment ids. The shared checks are in test_methods."""

from __future__ import annotations

import pytest
import torch
from tiny import tiny_batch, tiny_model

SMALL = {"prefix": {"num_virtual_tokens": 4}, "prompt": {"num_virtual_tokens": 4},
         "ptuning": {"num_virtual_tokens": 4, "encoder_hidden_size": 8}, "lora": {"r": 4}}


def build(method: str):
    return tiny_model(method, **SMALL[method])


@pytest.mark.parametrize("method", ["prompt", "ptuning"])
def test_prompt_tuning_skips_virtual_tokens(method):
    model = build(method).eval()
    assert model.applied.virtual_tokens == 4
    assert model("a", **tiny_batch()).shape == (4, 3)


def test_ptuning_trains_its_prompt_encoder():
    model = build("ptuning")
    names = [n for n, p in model.named_parameters() if p.requires_grad and not n.startswith("heads.")]
    assert names and all("prompt_encoder" in n for n in names)
    assert any("mlp" in n for n in names), "the MLP reparameterisation is trained (and counted)"


@pytest.mark.parametrize("method,uses_segments", [
    ("prefix", False), ("prompt", False), ("ptuning", False), ("lora", True),
])
def test_prompt_methods_drop_segment_ids(method, uses_segments):
    """peft's prompt-learning wrappers take no token_type_ids, so a sentence pair's segment ids
    never reach the encoder: both segments get segment embedding 0."""
    model = build(method).eval()
    assert model.applied.token_type_ids is uses_segments
    x = tiny_batch()
    single = torch.zeros_like(x["input_ids"])
    pair = single.clone()
    pair[:, 5:] = 1  # a second sentence from position 5
    with torch.no_grad():
        same = torch.equal(model("a", **x, token_type_ids=single), model("a", **x, token_type_ids=pair))
    assert same is not uses_segments
