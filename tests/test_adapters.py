"""Bottleneck adapter methods: identity at init, exact parameter counts, isolation, routing."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_backbone, tiny_config

from trainers.config import TrainConfig
from trainers.methods import get_method
from trainers.methods._bottleneck import SERIAL, Bottleneck, add_adapters
from trainers.model import MultitaskModel
from trainers.params import count_params
from trainers.tasks import TaskSpec

METHODS = ("adapter", "parallel_adapter", "lora_adapter")
D, LAYERS = tiny_config().hidden_size, tiny_config().num_hidden_layers
SPECS = [TaskSpec("a", "classification", "text", "label", num_labels=3),
         TaskSpec("b", "regression", "text", "label")]


def build(method: str, **method_kw) -> MultitaskModel:
    cfg = TrainConfig(method=method, tasks=("a", "b"),
                      method_cfg=get_method(method).Config(**method_kw))
    return MultitaskModel(tiny_backbone(0), SPECS, cfg).eval()


def batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 256, (2, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def hidden(model: MultitaskModel, task: str) -> torch.Tensor:
    model.router.set(task)
    with torch.no_grad():
        return model.backbone(**batch()).last_hidden_state


def adapter_params(model: MultitaskModel, task: str) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.backbone.named_parameters() if f"by_task.{task}." in n}


def perturb_adapters(model: MultitaskModel) -> None:
    """Give every up-projection non-zero weights so the adapters (and their downs) matter."""
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in model.backbone.named_parameters():
            if ".up." in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("method", METHODS)
def test_identity_at_init(method: str) -> None:
    ref = tiny_backbone(0)
    with torch.no_grad():
        expected = ref(**batch()).last_hidden_state
    model = build(method)
    for task in ("a", "b"):
        assert torch.equal(hidden(model, task), expected)


@pytest.mark.parametrize(
    ("method", "per_layer", "shared"),
    [
        ("adapter", 2 * (2 * 64 * D + 64 + D), 0),
        ("parallel_adapter", 2 * 64 * D + 64 + D, 0),
        ("lora_adapter", 2 * (2 * 64 * D + 64 + D), LAYERS * 3 * 8 * 2 * D),
    ],
)
def test_param_counts_closed_form(method: str, per_layer: int, shared: int) -> None:
    model = build(method)
    counts = count_params(model)
    head_a = D * 3 + 3
    assert counts.shared == shared
    assert counts.per_task["a"] - counts.shared - head_a == per_layer * LAYERS
    assert sum(p.numel() for p in adapter_params(model, "a").values()) == per_layer * LAYERS
    assert counts.trainable == shared + 2 * per_layer * LAYERS + head_a + (D + 1)


def test_adapter_count_other_size() -> None:
    model = build("adapter", adapter_size=5)
    a = 5
    assert count_params(model).per_task["a"] - (D * 3 + 3) == 2 * (2 * a * D + a + D) * LAYERS


@pytest.mark.parametrize("method", METHODS)
def test_step_on_a_leaves_b_and_backbone_untouched(method: str) -> None:
    model = build(method)
    perturb_adapters(model)
    frozen = {n: p.detach().clone() for n, p in model.backbone.named_parameters()
              if not p.requires_grad}
    before_a = {n: p.detach().clone() for n, p in adapter_params(model, "a").items()}
    before_b = {n: p.detach().clone() for n, p in adapter_params(model, "b").items()}
    assert frozen and before_a and before_b
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(2):
        loss = torch.nn.functional.cross_entropy(model("a", **batch()), torch.tensor([0, 2]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    for n, p in model.backbone.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
    for n, p in adapter_params(model, "b").items():
        assert torch.equal(p, before_b[n]), n
    for n, p in adapter_params(model, "a").items():
        assert not torch.equal(p, before_a[n]), n


@pytest.mark.parametrize("method", METHODS)
def test_routing_picks_the_task_adapter(method: str) -> None:
    model = build(method)
    perturb_adapters(model)
    out_a, out_b = hidden(model, "a"), hidden(model, "b")
    assert not torch.allclose(out_a, out_b)
    with torch.no_grad():
        for name, p in adapter_params(model, "a").items():
            if ".up." in name:
                p.zero_()
        expected = tiny_backbone(0)(**batch()).last_hidden_state
    # Zeroing a's up-projections brings a back to the plain backbone; b is unaffected.
    assert torch.equal(hidden(model, "a"), expected)
    assert torch.equal(hidden(model, "b"), out_b)


def test_original_names_kept_under_base() -> None:
    names = {n for n, _ in build("adapter").backbone.named_parameters()}
    assert "encoder.layer.0.attention.output.base.dense.weight" in names
    assert "encoder.layer.1.output.base.LayerNorm.bias" in names
    assert "encoder.layer.1.output.by_task.b.up.weight" in names
    peft_names = {n for n, _ in build("lora_adapter").backbone.named_parameters()}
    assert any(".by_task.a.down." in n and n.startswith("base_model.model.") for n in peft_names)


def test_parallel_adapter_scale_multiplies_delta() -> None:
    outs = {}
    for s in (1.0, 4.0):
        model = build("parallel_adapter", adapter_scale=s, adapter_size=4)
        perturb_adapters(model)
        outs[s] = model.backbone.encoder.layer[0].output
    block1, block4 = outs[1.0], outs[4.0]
    block1.router.set("a")
    block4.router.set("a")
    x, h = torch.randn(2, 3, D), torch.randn(2, 3, 64)
    with torch.no_grad():
        base = block1.sublayer(h)
        d1 = block1.adapter()(x)
        d4 = block4.adapter()(x)
        assert torch.allclose(d1, d4)
        assert torch.allclose(block4(h, x), block4.base.LayerNorm(base + 4.0 * d4 + x), atol=1e-6)


def test_bottleneck_is_zero_at_init() -> None:
    b = Bottleneck(D, 4, 0.0, "relu")
    assert torch.equal(b(torch.randn(3, D)), torch.zeros(3, D))


@pytest.mark.parametrize(
    ("method", "kw", "msg"),
    [
        ("adapter", {"adapter_size": 0}, "adapter_size"),
        ("adapter", {"adapter_dropout": 1.0}, "adapter_dropout"),
        ("parallel_adapter", {"adapter_scale": 0.0}, "adapter_scale"),
        ("lora_adapter", {"r": 0}, "r must be"),
        ("lora_adapter", {"adapter_size": -1}, "adapter_size"),
    ],
)
def test_config_validation(method: str, kw: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        get_method(method).Config(**kw)


def test_flat_keys() -> None:
    flat = TrainConfig(method="lora_adapter", tasks=("a",)).to_flat()
    assert {"r", "alpha", "lora_dropout", "target_modules", "adapter_size",
            "adapter_dropout"} <= set(flat)
    assert TrainConfig.from_flat(flat).method_cfg == get_method("lora_adapter").Config()


def test_rejects_non_bert_backbone_and_double_injection() -> None:
    def add(model: torch.nn.Module) -> None:
        add_adapters(model, "adapter", SERIAL, size=4, dropout=0.0, activation="relu", tasks=None,
                     router=None)

    with pytest.raises(ValueError, match="adapter needs a BERT-style encoder"):
        add(torch.nn.Linear(2, 2))
    model = tiny_backbone(0)
    add(model)
    with pytest.raises(ValueError, match="already holds"):
        add(model)


def test_serial_adapter_sits_before_residual_and_layernorm() -> None:
    model = build("adapter", adapter_size=4)
    perturb_adapters(model)
    block = model.backbone.encoder.layer[0].attention.output
    block.router.set("b")
    h, x = torch.randn(2, 3, D), torch.randn(2, 3, D)
    with torch.no_grad():
        sub = block.base.dropout(block.base.dense(h))
        expected = block.base.LayerNorm(sub + block.by_task["b"](sub) + x)
        assert torch.allclose(block(h, x), expected, atol=1e-6)
