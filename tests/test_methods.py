"""Every method, one table: forward/backward, what a step may change, counts, save/load."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_backbone

from trainers.checkpoint import load_weights, save_checkpoint
from trainers.config import TrainConfig
from trainers.methods import METHODS, get_method
from trainers.model import MultitaskModel
from trainers.params import count_params
from trainers.tasks import TaskSpec
from trainers.loop import task_loss

CASES: dict[str, dict] = {
    "full": {},
    "frozen": {},
    "lora": {"r": 4},
    "dora": {"r": 4},
    "task_lora": {"r": 4},
    "adapter": {"adapter_size": 8},
    "parallel_adapter": {"adapter_size": 8},
    "lora_adapter": {"r": 4, "adapter_size": 8},
    "hyperformer": {"adapter_size": 8, "task_emb_dim": 8, "hyper_hidden": 16},
    "pha": {"adapter_size": 8, "task_emb_dim": 8, "hyper_hidden": 16},
    "prefix": {"num_virtual_tokens": 4},
    "prompt": {"num_virtual_tokens": 4},
    "ptuning": {"num_virtual_tokens": 4, "encoder_hidden_size": 8},
    "unipelt": {"adapter_size": 8, "prefix_length": 3, "r": 2},
}
SPECS = [TaskSpec("a", "classification", "text", "label", num_labels=3),
         TaskSpec("b", "regression", "text", "label")]
L, D = 2, 32  # tiny_backbone: layers, hidden size


def test_table_covers_every_method():
    assert set(CASES) == set(METHODS)


def build(method: str, seed: int = 0) -> MultitaskModel:
    torch.manual_seed(seed)
    cfg = TrainConfig.from_flat({"method": method, "tasks": "a,b", "head_dropout": 0.0, **CASES[method]})
    return MultitaskModel(tiny_backbone(seed), SPECS, cfg)


def batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 200, (4, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    return ids, mask, torch.zeros_like(ids)


def loss_of(model: MultitaskModel, task: str) -> torch.Tensor:
    ids, mask, types = batch()
    out = model(task, ids, mask, types)
    labels = torch.tensor([0, 1, 2, 1]) if task == "a" else torch.tensor([0.5, 1.0, 3.0, 4.0])
    loss = task_loss(model.specs[task], out, labels.float())
    aux = model.aux_loss()
    return loss if aux is None else loss + aux


def frozen_state(model: MultitaskModel) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}


def perturb(model: MultitaskModel) -> None:
    """Make zero-initialised method weights non-zero so outputs depend on them."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad and not name.startswith("heads."):
                p.add_(0.05 * torch.randn_like(p))


@pytest.mark.parametrize("method", list(CASES))
def test_step_changes_only_method_and_heads(method):
    model = build(method)
    model.train()
    before_frozen = frozen_state(model)
    before_trainable = {n: p.detach().clone() for n, p in model.trainable_state().items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        loss_of(model, "a").backward()
        opt.step()
        opt.zero_grad()
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
    plain = tiny_backbone(0).eval()
    ids, mask, types = batch()
    with torch.no_grad():
        for task in ("a", "b"):
            model.router.set(task)
            model.router.context = {"input_ids": ids, "attention_mask": mask}
            kwargs = {"input_ids": ids, "attention_mask": mask}
            got = model.backbone(**kwargs).last_hidden_state
            want = plain(**kwargs).last_hidden_state
            same = got.shape == want.shape and torch.allclose(got, want, rtol=0, atol=1e-6)
            assert same == declared, f"{method}.IDENTITY_AT_INIT = {declared} but same = {same}"


@pytest.mark.parametrize("method", list(CASES))
def test_save_then_load_gives_identical_outputs(method, tmp_path):
    model = build(method).eval()
    perturb(model)
    save_checkpoint(tmp_path, model, model_cfg(method), step=3)
    fresh = build(method, seed=0).eval()
    load_weights(fresh, tmp_path)
    ids, mask, types = batch()
    with torch.no_grad():
        for task in ("a", "b"):
            torch.testing.assert_close(fresh(task, ids, mask, types), model(task, ids, mask, types),
                                       rtol=0, atol=0)
    size = (tmp_path / "trainable.safetensors").stat().st_size
    if method != "full":
        assert size < 4 * model.backbone_params, "checkpoint holds more than the trainable weights"


def model_cfg(method: str) -> TrainConfig:
    return TrainConfig.from_flat({"method": method, "tasks": "a,b", **CASES[method]})


@pytest.mark.parametrize("method,shared_formula", [
    ("lora", lambda r: L * 3 * (2 * r * D)),
    ("dora", lambda r: L * 3 * (2 * r * D + D)),
])
def test_lora_counts_match_closed_form(method, shared_formula):
    counts = count_params(build(method))
    assert counts.shared == shared_formula(4)
    heads = {"a": D * 3 + 3, "b": D + 1}
    assert counts.per_task == {t: counts.shared + heads[t] for t in ("a", "b")}
    assert counts.stored_pct == pytest.approx(100 * counts.trainable / counts.total)


def test_task_lora_counts_and_routing():
    model = build("task_lora")
    counts = count_params(model)
    per_adapter = L * 3 * (2 * 4 * D)
    assert counts.shared == 0
    assert counts.per_task["a"] == per_adapter + D * 3 + 3
    assert counts.trainable == 2 * per_adapter + (D * 3 + 3) + (D + 1)
    perturb(model)
    model.eval()
    ids, mask, types = batch()
    with torch.no_grad():
        model.router.set("a")
        out_a = model.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        model.router.set("b")
        out_b = model.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
    assert not torch.allclose(out_a, out_b), "the task switch did not change the active adapter"
    assert all(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)


def test_full_and_frozen_counts():
    full, frozen = count_params(build("full")), count_params(build("frozen"))
    assert full.trainable == full.total + (D * 3 + 3) + (D + 1)
    assert full.per_task_pct["a"] > 100.0
    assert frozen.trainable == (D * 3 + 3) + (D + 1)


@pytest.mark.parametrize("method", ["prompt", "ptuning"])
def test_prompt_tuning_skips_virtual_tokens(method):
    model = build(method).eval()
    ids, mask, types = batch()
    assert model.applied.virtual_tokens == 4
    assert model("a", ids, mask, types).shape == (4, 3)


def test_ptuning_trains_its_prompt_encoder():
    model = build("ptuning")
    names = [n for n, p in model.named_parameters() if p.requires_grad and not n.startswith("heads.")]
    assert names and all("prompt_encoder" in n for n in names)
    assert any("mlp" in n for n in names), "the MLP reparameterisation is trained (and counted)"


def test_unipelt_gates_scale_each_part():
    """Closing a gate removes its part: with every gate shut the model is the backbone again."""
    model = build("unipelt").eval()
    plain = tiny_backbone(0).eval()
    ids, mask, _ = batch()
    gates = [m for n, m in model.named_modules() if n.endswith(".gate")]
    assert len(gates) == L * 4  # LoRA on query and value, prefix, adapter per layer
    perturb(model)  # LoRA B and adapter up-projections non-zero: every part changes the output
    with torch.no_grad():
        model.router.set("a")
        opened = model.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        want = plain(input_ids=ids, attention_mask=mask).last_hidden_state
        assert (opened - want).abs().max() > 1e-3
        for g in gates:  # sigmoid(-1e4) = 0
            g.weight.zero_()
            g.bias.fill_(-1e4)
        shut = model.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(shut, want, rtol=0, atol=1e-5)
