"""The method harness: every method in ``CASES`` on a tiny BERT, the same checks for each.

One row per method: its config keys for a tiny run and whether it has per-task parameters
(modules of its own for each task, beside the heads). Every method gets: forward and
backward; a step changes only the method's parameters and the batch task's head; identity
at init exactly as the module declares (``IDENTITY_AT_INIT``); save then load gives identical
outputs; the parameter accounting adds up. Methods with per-task parameters also get: a step
on task a leaves task b's own parameters untouched, and each task runs through its own
modules. Family behaviour (closed-form counts, placements, hypernetworks) is in the family
files: test_adapters, test_hyper, test_lora, test_prompts.
"""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch
from tiny import hidden_states, tiny_backbone, tiny_batch, tiny_model

from trainers.checkpoint import load_weights, save_checkpoint
from trainers.config import TrainConfig
from trainers.loop import task_loss
from trainers.methods import METHODS, get_method
from trainers.model import MultitaskModel
from trainers.params import count_params, task_of


class Case(NamedTuple):
    config: dict
    """Method config keys for a tiny, fast model."""
    per_task: bool = False
    """True when each task gets modules of its own (checked against the accounting)."""
    isolated: bool = True
    """A step on one task's batch leaves the other tasks' own parameters untouched (not PHA:
    its prototypical loss moves every prototype)."""


CASES: dict[str, Case] = {
    "full": Case({}),
    "frozen": Case({}),
    "lora": Case({"r": 4}),
    "dora": Case({"r": 4}),
    "task_lora": Case({"r": 4}, per_task=True),
    "adapter": Case({"adapter_size": 8}, per_task=True),
    "parallel_adapter": Case({"adapter_size": 8}, per_task=True),
    "lora_adapter": Case({"r": 4, "adapter_size": 8}, per_task=True),
    "hyperformer": Case({"adapter_size": 8, "task_emb_dim": 8, "hyper_hidden": 16}, per_task=True),
    "pha": Case({"adapter_size": 8, "task_emb_dim": 8, "hyper_hidden": 16}, per_task=True,
                isolated=False),
    "prefix": Case({"num_virtual_tokens": 4}),
    "prompt": Case({"num_virtual_tokens": 4}),
    "ptuning": Case({"num_virtual_tokens": 4, "encoder_hidden_size": 8}),
    "unipelt": Case({"adapter_size": 8, "prefix_length": 3, "r": 2}),
}
PER_TASK = [m for m, case in CASES.items() if case.per_task]
ISOLATED = [m for m in PER_TASK if CASES[m].isolated]


# ---- helpers -------------------------------------------------------------------------------------
def build(method: str, seed: int = 0) -> MultitaskModel:
    return tiny_model(method, seed, **CASES[method].config)


def loss_of(model: MultitaskModel, task: str) -> torch.Tensor:
    out = model(task, **tiny_batch())
    labels = torch.tensor([0, 1, 2, 1]) if task == "a" else torch.tensor([0.5, 1.0, 3.0, 4.0])
    loss = task_loss(model.specs[task], out, labels.float())
    aux = model.aux_loss()
    return loss if aux is None else loss + aux


def train_steps(model: MultitaskModel, task: str, steps: int = 2) -> None:
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        loss_of(model, task).backward()
        opt.step()


def hidden(model: MultitaskModel, task: str) -> torch.Tensor:
    return hidden_states(model, task, tiny_batch())


def own(model: MultitaskModel, task: str) -> dict[str, torch.nn.Parameter]:
    """``task``'s own method parameters (not its head), as the parameter accounting sees them."""
    return {n: p for n, p in model.named_parameters()
            if p.requires_grad and not n.startswith("heads.") and task_of(model, n) == task}


def snapshot(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in params.items()}


def perturb(params) -> None:
    """Make zero-initialised method weights non-zero so outputs depend on them."""
    with torch.no_grad():
        for p in params:
            p.add_(0.05 * torch.randn_like(p))


def method_params(model: MultitaskModel) -> list[torch.nn.Parameter]:
    return [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("heads.")]


# ---- every method --------------------------------------------------------------------------------
def test_table_covers_every_method():
    assert list(CASES) == list(METHODS)


@pytest.mark.parametrize("method", list(CASES))
def test_step_changes_only_method_and_heads(method):
    model = build(method)
    before_frozen = snapshot({n: p for n, p in model.named_parameters() if not p.requires_grad})
    before_trainable = snapshot(model.stored_state())
    train_steps(model, "a")
    after = dict(model.named_parameters())
    for name, value in before_frozen.items():
        assert torch.equal(after[name], value), f"frozen weight {name} changed"
    changed = [n for n, v in before_trainable.items() if not torch.equal(after[n], v)]
    assert any(n.startswith("heads.a.") for n in changed)
    assert not any(n.startswith("heads.b.") for n in changed), "task b's head moved on a task-a batch"
    if method == "frozen":
        assert all(n.startswith("heads.") for n in before_trainable)
    else:
        assert any(not n.startswith("heads.") for n in changed), "no method weight was trained"
    if method == "full":
        assert not before_frozen, "full fine-tuning must train every weight"
    else:
        n_backbone = sum(p.numel() for p in model.parameters() if not p.requires_grad)
        assert n_backbone >= model.backbone_params, "backbone weights became trainable"


@pytest.mark.parametrize("method", list(CASES))
def test_identity_at_init_is_what_the_method_declares(method):
    declared = get_method(method).IDENTITY_AT_INIT
    assert isinstance(declared, bool)
    model = build(method).eval()
    with torch.no_grad():
        want = tiny_backbone(0)(**tiny_batch()).last_hidden_state
    for task in ("a", "b"):
        got = hidden(model, task)
        same = got.shape == want.shape and torch.allclose(got, want, rtol=0, atol=1e-6)
        assert same == declared, f"{method}.IDENTITY_AT_INIT = {declared} but same = {same}"


@pytest.mark.parametrize("method", list(CASES))
def test_save_then_load_gives_identical_outputs(method, tmp_path):
    model = build(method).eval()
    perturb(method_params(model))
    cfg = TrainConfig.from_flat({"method": method, "tasks": "a,b", **CASES[method].config})
    save_checkpoint(tmp_path, model, cfg, step=3)
    fresh = build(method).eval()
    load_weights(fresh, tmp_path)
    x = tiny_batch()
    types = torch.zeros_like(x["input_ids"])
    with torch.no_grad():
        for task in ("a", "b"):
            torch.testing.assert_close(fresh(task, **x, token_type_ids=types),
                                       model(task, **x, token_type_ids=types), rtol=0, atol=0)
    size = (tmp_path / "trainable.safetensors").stat().st_size
    if method != "full":
        assert size < 4 * model.backbone_params, "checkpoint holds more than the trainable weights"


@pytest.mark.parametrize("method", list(CASES))
def test_accounting_adds_up_and_per_task_matches_the_table(method):
    model = build(method)
    counts = count_params(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert counts.trainable == trainable
    own_sizes = {t: sum(p.numel() for p in own(model, t).values()) for t in ("a", "b")}
    heads = {t: sum(p.numel() for p in model.heads[t].parameters()) for t in ("a", "b")}
    for t in ("a", "b"):
        assert counts.per_task[t] == counts.shared + own_sizes[t] + heads[t]
    assert counts.trainable == counts.shared + sum(own_sizes.values()) + sum(heads.values())
    assert (own_sizes["a"] > 0) == CASES[method].per_task, "the table's per_task is wrong"
    assert counts.stored_pct == pytest.approx(100 * counts.trainable / counts.total)


# ---- methods with per-task parameters ------------------------------------------------------------
@pytest.mark.parametrize("method", ISOLATED)
def test_a_step_on_task_a_leaves_task_b_own_parameters_untouched(method):
    model = build(method)
    perturb(method_params(model))  # every part non-zero, so every part gets gradients
    before_a, before_b = snapshot(own(model, "a")), snapshot(own(model, "b"))
    assert before_a and before_b and before_a.keys().isdisjoint(before_b)
    train_steps(model, "a")
    after = dict(model.named_parameters())
    for n, value in before_b.items():
        assert torch.equal(after[n], value), f"task b's {n} moved on a task-a batch"
    for n, value in before_a.items():
        assert not torch.equal(after[n], value), f"task a's {n} was not trained"


@pytest.mark.parametrize("method", PER_TASK)
def test_each_task_runs_through_its_own_modules(method):
    model = build(method).eval()
    perturb(method_params(model))
    out_a, out_b = hidden(model, "a"), hidden(model, "b")
    assert not torch.allclose(out_a, out_b), "both tasks computed the same thing"
    perturb(own(model, "a").values())  # only task a's modules change ...
    assert not torch.allclose(hidden(model, "a"), out_a), "task a does not use its own modules"
    assert torch.equal(hidden(model, "b"), out_b), "task b uses task a's modules"
