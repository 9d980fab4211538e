"""Hypernetwork methods (Hyperformer++, PHA): what is generated per task, layer and position,
where gradients go, and PHA's retriever losses and routing, checked against plain loops.
The shared checks (identity at init, save/load, a step's reach) are in test_methods."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from tiny import hidden_states, tiny_batch, tiny_model
from torch import nn

from trainers.config import TrainConfig
from trainers.methods import hyperformer, pha
from trainers.methods._base import TaskEmbeddings
from trainers.methods._bottleneck import GeneratedAdapterOutput
from trainers.model import MultitaskModel
from trainers.params import count_params

SMALL = dict(adapter_size=4, task_emb_dim=8, hyper_hidden=16)


def build(method: str, **kw) -> MultitaskModel:
    return tiny_model(method, **SMALL, **kw)


def task_loss(model: MultitaskModel, task: str, x: dict[str, torch.Tensor]) -> torch.Tensor:
    out = model(task, **x)
    if task == "a":
        loss = nn.functional.cross_entropy(out, torch.arange(out.shape[0]) % 3)
    else:
        loss = nn.functional.mse_loss(out, torch.ones_like(out))
    aux = model.aux_loss()
    return loss if aux is None else loss + aux


def first_up(model: MultitaskModel, method: str) -> torch.Tensor:
    """Generated up-projection of task a, layer 0 (attention position for Hyperformer)."""
    m = model.extra
    return m.generate(0, 0, 0).adapter.up_w if method == "hyperformer" else m.generate(0, 0).up_w


# ---- both methods --------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["hyperformer", "pha"])
def test_wrappers_injected_and_params_registered_once(method, tmp_path):
    model = build(method)
    layers = model.backbone.encoder.layer
    assert all(isinstance(lay.output, GeneratedAdapterOutput) for lay in layers)
    assert all(isinstance(lay.attention.output, GeneratedAdapterOutput) == (method == "hyperformer")
               for lay in layers)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    extra = [n for n in trainable if n.startswith("extra.")]
    assert len(extra) == len(list(model.extra.parameters())) > 0
    assert {n for n in trainable if not n.startswith(("extra.", "heads."))} == set()
    counts = count_params(model)
    heads = sum(p.numel() for p in model.heads.parameters())
    # Each task's embedding (prototype) is its own; everything else in the generator is shared.
    rows = model.extra.task_emb if method == "hyperformer" else model.extra.prototype
    own = sum(p.numel() for p in rows.parameters())
    assert own == 2 * SMALL["task_emb_dim"]
    assert counts.shared == counts.trainable - heads - own
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "m.st")


@pytest.mark.parametrize("method", ["hyperformer", "pha"])
def test_generated_adapters_use_gelu(method):
    model = build(method)
    assert (hyperformer if method == "hyperformer" else pha).ACTIVATION == "gelu"
    wrappers = [m for m in model.modules() if isinstance(m, GeneratedAdapterOutput)]
    assert wrappers and all(w.activation == "gelu" for w in wrappers)


@pytest.mark.parametrize("method", ["hyperformer", "pha"])
def test_training_step_reaches_hypernet_and_keeps_backbone(method):
    model = build(method).train()
    frozen = {n: p.detach().clone() for n, p in model.backbone.named_parameters()}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x = tiny_batch(0, n=7)
    before_up = first_up(model, method).detach().clone()
    for _ in range(2):  # step 1 makes up-weights nonzero; step 2's grads reach everything
        opt.zero_grad()
        task_loss(model, "a", x).backward()
        opt.step()
    for n, p in model.backbone.named_parameters():
        assert not p.requires_grad and torch.equal(p, frozen[n]), n
    m = model.extra
    if method == "hyperformer":
        rows = m.task_emb.by_task
        assert rows["a"].grad.abs().sum() > 0 and rows["b"].grad is None  # only task a's row
        for mod in (m.projector[0], m.adapter.down_w, m.adapter.up_w, m.ln_gamma):
            assert mod.weight.grad.abs().sum() > 0
    else:
        assert m.prototype.by_task["a"].grad.abs().sum() > 0
        for mod in (m.retriever[0], m.hyper[0], m.heads.down_w, m.heads.up_w):
            assert mod.weight.grad.abs().sum() > 0
    assert not torch.allclose(first_up(model, method), before_up)


@pytest.mark.parametrize("method", ["hyperformer", "pha"])
def test_deepcopy_after_training_forward_keeps_sharing(method):
    model = build(method).train()
    model("a", **tiny_batch())
    assert method == "hyperformer" or model.extra.last_ir is not None
    clone = copy.deepcopy(model)
    assert clone.backbone.encoder.layer[1].output._net is clone.extra
    x = tiny_batch(3)
    torch.testing.assert_close(hidden_states(clone.eval(), "b", x), hidden_states(model.eval(), "b", x))


@pytest.mark.parametrize(("method", "kw"), [
    ("hyperformer", {"adapter_size": 0}), ("hyperformer", {"task_emb_dim": 0}),
    ("hyperformer", {"adapter_dropout": 1.0}), ("pha", {"pha_temperature": 0.0}),
    ("pha", {"pha_lambda": -1.0}), ("pha", {"hyper_hidden": 0}),
])
def test_config_validation(method, kw):
    mod = hyperformer if method == "hyperformer" else pha
    with pytest.raises(ValueError, match=next(iter(kw))):
        mod.Config(**kw)


def test_flat_config_keys():
    cfg = TrainConfig.from_flat({"method": "pha", "tasks": "a,b", "adapter_size": 8,
                                 "pha_lambda": 0.2})
    assert cfg.method_cfg.adapter_size == 8 and cfg.method_cfg.pha_lambda == 0.2


def test_rejects_non_bert_backbone():
    with pytest.raises(ValueError, match="hyperformer needs a BERT-style encoder"):
        hyperformer.apply(nn.Linear(2, 2), hyperformer.Config(), ["a"], None)


# ---- Hyperformer ---------------------------------------------------------------------------------
def test_hyperformer_generates_per_task_layer_position():
    model = build("hyperformer")
    hyper = model.extra
    w0 = hyper.generate(0, 0, hyperformer.ATTENTION)
    assert torch.count_nonzero(w0.adapter.up_w) == 0 and torch.count_nonzero(w0.d_gamma) == 0
    with torch.no_grad():
        for lin in (hyper.adapter.up_w, hyper.ln_gamma):
            nn.init.normal_(lin.weight, std=0.1)

        def up(t, lay, pos):
            return hyper.generate(t, lay, pos).adapter.up_w

        base = up(0, 0, 0)
        for other in (up(1, 0, 0), up(0, 1, 0), up(0, 0, 1)):
            assert not torch.allclose(base, other, atol=1e-4)
        assert not torch.allclose(hyper.generate(0, 0, 0).d_gamma, hyper.generate(1, 0, 0).d_gamma)
    x = tiny_batch()
    assert not torch.allclose(hidden_states(model, "a", x), hidden_states(model, "b", x), atol=1e-4)


# ---- PHA -----------------------------------------------------------------------------------------
def test_pha_generates_per_task_and_layer():
    m = build("pha").extra
    with torch.no_grad():
        nn.init.normal_(m.heads.up_w.weight, std=0.1)
        base = m.generate(0, 0).up_w
        assert torch.count_nonzero(base) > 0
        assert not torch.allclose(base, m.generate(1, 0).up_w, atol=1e-4)
        assert not torch.allclose(base, m.generate(0, 1).up_w, atol=1e-4)


def test_pha_aux_loss_and_grads():
    model = build("pha", pha_lambda=0.5).train()
    m = model.extra
    model("a", **tiny_batch())
    aux = model.aux_loss()
    assert aux is not None and torch.isfinite(aux) and aux > 0
    torch.testing.assert_close(aux, 0.5 * (m.last_ir + m.last_pro))
    aux.backward()
    assert all(p.grad.abs().sum() > 0 for p in m.prototype.by_task.values())
    assert m.retriever[0].weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        model("a", **tiny_batch())
    assert model.aux_loss() is None


def test_pha_instance_loss_needs_other_task_in_bank():
    model = build("pha").train()
    m = model.extra
    model("a", **tiny_batch(0))
    assert m.last_ir.item() == 0.0
    model("a", **tiny_batch(1))  # bank holds task a only: still no negatives
    assert m.last_ir.item() == 0.0 and m.bank_z.shape[0] == 8
    model("b", **tiny_batch(2))
    assert m.last_ir.item() > 0
    m.last_ir.backward()
    assert m.retriever[0].weight.grad.abs().sum() > 0
    assert set(m.bank_task.tolist()) == {0, 1}


def test_pha_bank_is_fifo_and_not_state():
    model = build("pha").train()
    m = model.extra
    for i in range(pha.BANK_SIZE // 4 + 3):
        with torch.no_grad():
            model("ab"[i % 2], **tiny_batch(i))
    assert m.bank_z.shape == (pha.BANK_SIZE, 8)
    assert m.bank_task[-4:].tolist() == [(pha.BANK_SIZE // 4 + 2) % 2] * 4  # the newest batch last
    assert not any("bank" in k for k in model.state_dict())


# The references below are written from the formulas with Python floats and loops, not with the
# tensor expressions of pha.py.
def _unit(v: list[float]) -> list[float]:
    norm = math.sqrt(sum(a * a for a in v))
    return [a / norm for a in v]


def _dot(u: list[float], v: list[float]) -> float:
    return sum(a * b for a, b in zip(u, v, strict=True))


def _info_nce_reference(z: list[list[float]], negatives: list[list[float]], tau: float) -> float:
    """Each row i: mean over positives j != i of -log(e^{s_ij} / sum_{k != i} e^{s_ik}), where k
    runs over the other rows and the negatives; then the mean over rows."""
    if len(z) < 2 or not negatives:
        return 0.0
    total = 0.0
    for i, zi in enumerate(z):
        others = [_dot(zi, zj) / tau for j, zj in enumerate(z) if j != i]
        denominator = sum(math.exp(s) for s in others) + sum(math.exp(_dot(zi, n) / tau)
                                                             for n in negatives)
        total += sum(-(s - math.log(denominator)) for s in others) / len(others)
    return total / len(z)


def _cross_entropy_reference(z: list[list[float]], prototypes: list[list[float]], target: int,
                             tau: float) -> float:
    """Mean over rows of -log softmax(cos(z_i, p_k) / tau)[target]."""
    total = 0.0
    for zi in z:
        logits = [_dot(_unit(zi), _unit(p)) / tau for p in prototypes]
        total += -logits[target] + math.log(sum(math.exp(s) for s in logits))
    return total / len(z)


def _rows(t: torch.Tensor) -> list[list[float]]:
    return t.double().tolist()


@pytest.mark.parametrize(("b", "n"), [(2, 3), (5, 7), (4, 0), (1, 4)])
def test_info_nce_matches_its_formula(b, n):
    g = torch.Generator().manual_seed(b * 10 + n)
    z = nn.functional.normalize(torch.randn(b, 6, generator=g), dim=-1)
    negatives = nn.functional.normalize(torch.randn(n, 6, generator=g), dim=-1)
    for tau in (0.1, 0.7):
        got = pha.info_nce(z, negatives, tau).item()
        assert got == pytest.approx(_info_nce_reference(_rows(z), _rows(negatives), tau), rel=1e-5,
                                    abs=1e-6)


def test_pha_losses_in_training_match_their_formulas():
    """L_IR against the bank's other-task rows (multi-positive: 4 rows of one task per batch)
    and L_Pro against all prototypes, on the retriever's own embeddings of the batch."""
    model = build("pha", pha_temperature=0.3).train()
    m = model.extra
    with torch.no_grad():
        for p in m.prototype.by_task.values():
            p.normal_()
        model("a", **tiny_batch(0))
        model("b", **tiny_batch(1, b=3))
        bank_z, bank_task = m.bank_z.clone(), m.bank_task.clone()
        x = tiny_batch(2, b=5)
        model("a", **x)
        z = _rows(m.instance_embedding(x["input_ids"], x["attention_mask"]))
    unit = [_unit(row) for row in z]
    negatives = [row for row, t in zip(_rows(bank_z), bank_task.tolist(), strict=True) if t != 0]
    assert len(negatives) == 3
    assert m.last_ir.item() == pytest.approx(_info_nce_reference(unit, negatives, 0.3), rel=1e-5)
    want_pro = _cross_entropy_reference(z, _rows(m.prototypes), 0, 0.3)
    assert m.last_pro.item() == pytest.approx(want_pro, rel=1e-5)


def test_pha_nearest_task_is_the_cosine_nearest_prototype():
    m = build("pha").extra
    g = torch.Generator().manual_seed(0)
    protos = torch.randn(5, 8, generator=g)
    # A long prototype between the others: the largest dot product, not always the nearest.
    protos[3] = 50.0 * nn.functional.normalize(protos.sum(0), dim=0)
    m.prototype = TaskEmbeddings(list("abcde"), 8)  # five tasks' prototypes
    with torch.no_grad():
        for row, p in zip(protos, m.prototype.by_task.values(), strict=True):
            p.copy_(row)
    unit = [_unit(p) for p in _rows(protos)]
    # Near prototype k but leaning towards the long one: cosine picks k, a plain dot product 3.
    queries = [[7.0 * (u + 0.3 * v) for u, v in zip(unit[k], unit[3], strict=True)] for k in (0, 1, 2, 4)]
    queries += _rows(torch.randn(20, 8, generator=g))
    want = [max(range(5), key=lambda k: _dot(_unit(q), unit[k])) for q in queries]
    got = m.nearest_task(torch.tensor(queries)).tolist()
    assert got == want
    assert want[:4] == [0, 1, 2, 4]
    by_dot = (torch.tensor(queries) @ protos.T).argmax(-1).tolist()
    assert by_dot[:4] == [3, 3, 3, 3]  # the test tells cosine from dot product
