"""LoRA family (lora, dora, task_lora) and the two baselines: counts in closed form and
task_lora's switch of the active adapter. The shared checks are in test_methods."""

from __future__ import annotations

import pytest
import torch
from tiny import hidden_states, tiny_batch, tiny_model

from trainers.params import count_params

L, D = 2, 32  # tiny_backbone: layers, hidden size
R = 4


def build(method: str):
    return tiny_model(method) if method in ("full", "frozen") else tiny_model(method, r=R)
HEADS = {"a": D * 3 + 3, "b": D + 1}


@pytest.mark.parametrize("method,shared_formula", [
    ("lora", lambda r: L * 3 * (2 * r * D)),
    ("dora", lambda r: L * 3 * (2 * r * D + D)),
])
def test_lora_counts_match_closed_form(method, shared_formula):
    counts = count_params(build(method))
    assert counts.shared == shared_formula(R)
    assert counts.per_task == {t: counts.shared + HEADS[t] for t in ("a", "b")}


def test_task_lora_counts_one_adapter_per_task():
    counts = count_params(build("task_lora"))
    per_adapter = L * 3 * (2 * R * D)
    assert counts.shared == 0
    assert counts.per_task["a"] == per_adapter + HEADS["a"]
    assert counts.trainable == 2 * per_adapter + HEADS["a"] + HEADS["b"]


def test_task_lora_switches_the_active_adapter_without_touching_requires_grad():
    model = build("task_lora").eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1)
    x = tiny_batch()
    assert not torch.allclose(hidden_states(model, "a", x), hidden_states(model, "b", x))
    assert all(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)


def test_full_and_frozen_counts():
    full, frozen = count_params(build("full")), count_params(build("frozen"))
    assert full.trainable == full.total + HEADS["a"] + HEADS["b"]
    assert full.per_task_pct["a"] > 100.0
    assert frozen.trainable == HEADS["a"] + HEADS["b"]
