"""The bottleneck stack (adapter, parallel_adapter, lora_adapter, unipelt): closed-form counts,
where the adapter sits, the parallel scale, the bottleneck itself and its activation.
The shared checks (identity at init, isolation, routing, save/load) are in test_methods."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny import hidden_states, tiny_backbone, tiny_batch, tiny_config, tiny_model

from trainers.config import TrainConfig
from trainers.methods import get_method
from trainers.methods._bottleneck import (
    SERIAL,
    AdapterOutput,
    Bottleneck,
    BottleneckWeights,
    add_adapters,
    bottleneck,
)
from trainers.params import count_params

D, LAYERS = tiny_config().hidden_size, tiny_config().num_hidden_layers
HEAD_A = D * 3 + 3


def perturb_up(model) -> None:
    """Give every up-projection non-zero weights so the adapters (and their downs) matter."""
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in model.backbone.named_parameters():
            if ".up." in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize(
    ("method", "per_layer", "shared"),
    [
        ("adapter", 2 * (2 * 64 * D + 64 + D), 0),
        ("parallel_adapter", 2 * 64 * D + 64 + D, 0),
        ("lora_adapter", 2 * (2 * 64 * D + 64 + D), LAYERS * 3 * 8 * 2 * D),
    ],
)
def test_param_counts_closed_form(method: str, per_layer: int, shared: int) -> None:
    counts = count_params(tiny_model(method))  # the methods' defaults: a = 64, r = 8
    assert counts.shared == shared
    assert counts.per_task["a"] - counts.shared - HEAD_A == per_layer * LAYERS
    assert counts.trainable == shared + 2 * per_layer * LAYERS + HEAD_A + (D + 1)


def test_adapter_count_other_size() -> None:
    a = 5
    counts = count_params(tiny_model("adapter", adapter_size=a))
    assert counts.per_task["a"] - HEAD_A == 2 * (2 * a * D + a + D) * LAYERS


def test_original_names_kept_under_base() -> None:
    names = {n for n, _ in tiny_model("adapter").backbone.named_parameters()}
    assert "encoder.layer.0.attention.output.base.dense.weight" in names
    assert "encoder.layer.1.output.base.LayerNorm.bias" in names
    assert "encoder.layer.1.output.by_task.b.up.weight" in names
    peft_names = {n for n, _ in tiny_model("lora_adapter").backbone.named_parameters()}
    assert any(".by_task.a.down." in n and n.startswith("base_model.model.") for n in peft_names)


def test_serial_adapter_sits_before_residual_and_layernorm() -> None:
    model = tiny_model("adapter", adapter_size=4)
    perturb_up(model)
    block = model.backbone.encoder.layer[0].attention.output
    block.router.set("b")
    h, x = torch.randn(2, 3, D), torch.randn(2, 3, D)
    with torch.no_grad():
        sub = block.base.dropout(block.base.dense(h))
        expected = block.base.LayerNorm(sub + block.by_task["b"](sub) + x)
        assert torch.allclose(block(h, x), expected, atol=1e-6)


def test_parallel_adapter_reads_the_ffn_input_and_scales_its_delta() -> None:
    blocks = {}
    for s in (1.0, 4.0):
        model = tiny_model("parallel_adapter", adapter_scale=s, adapter_size=4)
        perturb_up(model)
        blocks[s] = model.backbone.encoder.layer[0].output
        blocks[s].router.set("a")
    x, h = torch.randn(2, 3, D), torch.randn(2, 3, 64)
    with torch.no_grad():
        d1, d4 = blocks[1.0].adapter()(x), blocks[4.0].adapter()(x)
        assert torch.allclose(d1, d4) and d4.abs().max() > 0
        sub = blocks[4.0].sublayer(h)
        assert torch.allclose(blocks[4.0](h, x), blocks[4.0].base.LayerNorm(sub + 4.0 * d4 + x),
                              atol=1e-6)


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_bottleneck_matches_its_formula_for_owned_and_generated_weights(activation) -> None:
    g = torch.Generator().manual_seed(0)
    w = BottleneckWeights(*(torch.randn(shape, generator=g) for shape in ((4, D), (4,), (D, 4), (D,))))
    x = torch.randn(3, D, generator=g)
    act = torch.relu if activation == "relu" else F.gelu
    want = act(x @ w.down_w.T + w.down_b) @ w.up_w.T + w.up_b
    torch.testing.assert_close(bottleneck(x, w, activation, torch.nn.Identity()), want)
    owned = Bottleneck(D, 4, 0.0, activation)
    with torch.no_grad():
        for lin, (weight, bias) in ((owned.down, w[:2]), (owned.up, w[2:])):
            lin.weight.copy_(weight)
            lin.bias.copy_(bias)
        torch.testing.assert_close(owned(x), want)


def test_bottleneck_is_zero_at_init_and_rejects_unknown_activations() -> None:
    assert torch.equal(Bottleneck(D, 4, 0.0, "relu")(torch.randn(3, D)), torch.zeros(3, D))
    with pytest.raises(ValueError, match="activation must be one of relu, gelu"):
        Bottleneck(D, 4, 0.0, "tanh")


@pytest.mark.parametrize("method", ["adapter", "parallel_adapter", "lora_adapter", "unipelt"])
def test_every_adapter_uses_the_activation_its_method_declares(method) -> None:
    model = tiny_model(method, **({"prefix_length": 3, "r": 2} if method == "unipelt" else {}))
    adapters = [m for m in model.modules() if isinstance(m, Bottleneck)]
    declared = get_method(method).ACTIVATION
    assert declared == "relu" and adapters
    assert all(a.activation == declared for a in adapters)


def test_conditional_layer_norm_offsets() -> None:
    block = tiny_backbone(0).encoder.layer[0].output
    wrapper = AdapterOutput(block, SERIAL)
    y = torch.randn(2, 3, D)
    d_gamma, d_beta = torch.randn(D), torch.randn(D)
    ln = block.LayerNorm
    normalised = (y - y.mean(-1, keepdim=True)) / torch.sqrt(y.var(-1, unbiased=False, keepdim=True) + ln.eps)
    with torch.no_grad():
        torch.testing.assert_close(wrapper.residual_norm(y, None), ln(y))
        zero = (torch.zeros(D), torch.zeros(D))
        torch.testing.assert_close(wrapper.residual_norm(y, zero), ln(y), rtol=0, atol=0)
        torch.testing.assert_close(wrapper.residual_norm(y, (d_gamma, d_beta)),
                                   normalised * (ln.weight + d_gamma) + ln.bias + d_beta)


@pytest.mark.parametrize(
    ("method", "kw", "msg"),
    [
        ("adapter", {"adapter_size": 0}, "adapter_size"),
        ("adapter", {"adapter_dropout": 1.0}, "adapter_dropout"),
        ("parallel_adapter", {"adapter_scale": 0.0}, "adapter_scale"),
        ("lora_adapter", {"r": 0}, "r must be"),
        ("lora_adapter", {"adapter_size": -1}, "adapter_size"),
        ("lora_adapter", {"layers": "middle"}, "layers must be one of"),
    ],
)
def test_config_validation(method: str, kw: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        get_method(method).Config(**kw)


def test_flat_keys() -> None:
    flat = TrainConfig(method="lora_adapter", tasks=("a",)).to_flat()
    assert {"r", "alpha", "lora_dropout", "target_modules", "adapter_size",
            "adapter_dropout", "layers"} <= set(flat)
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


def test_lora_adapter_layer_subset_leaves_the_other_layers_pretrained() -> None:
    model = tiny_model("lora_adapter", layers="top_half")
    layer0 = model.backbone.get_base_model().encoder.layer[0]
    assert not isinstance(layer0.output, AdapterOutput)
    assert not any("lora_" in n for n, _ in layer0.named_parameters())
    assert isinstance(model.backbone.get_base_model().encoder.layer[1].output, AdapterOutput)


def test_unipelt_gates_scale_each_part() -> None:
    """Closing a gate removes its part: with every gate shut the model is the backbone again."""
    model = tiny_model("unipelt", adapter_size=8, prefix_length=3, r=2).eval()
    x = tiny_batch()
    gates = [m for n, m in model.named_modules() if n.endswith(".gate")]
    assert len(gates) == LAYERS * 4  # LoRA on query and value, prefix, adapter per layer
    with torch.no_grad():
        for n, p in model.named_parameters():  # LoRA B and the adapter's up: every part matters
            if p.requires_grad and not n.startswith("heads."):
                p.add_(0.05 * torch.randn_like(p))
        want = tiny_backbone(0)(**x).last_hidden_state
        assert (hidden_states(model, "a", x) - want).abs().max() > 1e-3
        for g in gates:  # sigmoid(-1e4) = 0
            g.weight.zero_()
            g.bias.fill_(-1e4)
    torch.testing.assert_close(hidden_states(model, "a", x), want, rtol=0, atol=1e-5)
