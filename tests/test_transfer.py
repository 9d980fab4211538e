"""Few-shot transfer (issue 15): a new task added to a trained multitask checkpoint trains only
what it owns, the trained tasks' outputs stay bit for bit, the nearest trained task is the
planted one, and the refusals point at transfer. Tiny BERT on the synthetic demo suite
(``cfimdb`` there is written with sst's words: sst is its nearest task by construction)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tiny import SPECS, hidden_states, tiny_backbone, tiny_batch, tiny_model, tiny_tokenizer_obj

from trainers import cli, evaluate, transfer
from trainers.checkpoint import WEIGHTS, load_checkpoint, load_weights, read_meta, save_checkpoint
from trainers.config import TrainConfig
from trainers.data import tokenize
from trainers.demo import demo_examples
from trainers.loop import train
from trainers.model import MultitaskModel
from trainers.params import count_params, task_of
from trainers.tasks import TaskSpec

QUIET = {"log": lambda message: None}
SMALL = {"pha": {"adapter_size": 8, "task_emb_dim": 8, "hyper_hidden": 16},
         "hyperformer": {"adapter_size": 8, "task_emb_dim": 8, "hyper_hidden": 16},
         "adapter": {"adapter_size": 8}, "lora_adapter": {"adapter_size": 8, "r": 4},
         "task_lora": {"r": 4}, "lora": {"r": 4}, "full": {}}
COMMON = {"batch_size": 16, "max_length": 32, "eval_rows": 40, "log_every": 1000}


def train_source(model_dir: str, out: Path, method: str, steps: int = 15, tasks: str = "sst,quora",
                 **kw) -> Path:
    cfg = TrainConfig.from_flat({"method": method, "tasks": tasks, "model": model_dir,
                                 "max_steps": steps, "eval_every": steps, **COMMON,
                                 **SMALL[method], **kw})
    train(cfg, out=out, **QUIET)
    return out / "checkpoint"


def transfer_cfg(source: Path, **kw) -> TrainConfig:
    flat = {"init_from": str(source), "tasks": "cfimdb", "max_steps": 4, "eval_every": 4,
            "max_train_samples": 32, **COMMON, **kw}
    return TrainConfig.from_flat(transfer.inherit(flat))


def outputs(checkpoint: Path, task: str) -> torch.Tensor:
    """The model's outputs for ``task`` on a few demo sentences (pairs for quora)."""
    model, _, tokenizer = load_checkpoint(checkpoint, tasks=task)
    model.eval()
    rows = demo_examples("quora" if task == "quora" else "sst", "dev")[:6]
    pairs = [r[1] for r in rows] if task == "quora" else None
    x = tokenizer([r[0] for r in rows], pairs, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(task, x["input_ids"], x["attention_mask"], x["token_type_ids"])


@pytest.fixture(scope="module")
def sources(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sources")
    return {m: train_source(tiny_model_dir, root / m, m) for m in SMALL}


# ---- what a transfer trains, and what it leaves alone -------------------------------------------
@pytest.mark.parametrize("method", list(SMALL))
def test_new_task_trains_only_its_own_parameters_and_old_outputs_stay_bit_for_bit(
        method, sources, tmp_path):
    source = sources[method]
    result = train(transfer_cfg(source), out=tmp_path / "t", **QUIET)
    after = tmp_path / "t" / "checkpoint"
    old, new = load_file(str(source / WEIGHTS)), load_file(str(after / WEIGHTS))
    # Every trained weight of the source is in the new checkpoint, unchanged.
    assert set(old) < set(new)
    for name, value in old.items():
        assert torch.equal(new[name], value), f"{method}: {name} changed"
    # What the transfer trained is exactly the new task's own parameters and its head.
    model, _, _ = load_checkpoint(after, tasks="cfimdb")
    added = set(new) - set(old)
    assert added == {n for n in model.stored if task_of(model, n) == "cfimdb"}
    assert any(n.startswith("heads.cfimdb.") for n in added)
    assert result["params"]["trainable"] == sum(new[n].numel() for n in added)
    if method in ("lora", "full"):  # nothing task-specific: the new task is its head alone
        assert added == {n for n in new if n.startswith("heads.cfimdb.")}
    else:
        assert transfer.own_names(model, "cfimdb")
    # The trained tasks compute what they computed before, bit for bit.
    for task in ("sst", "quora"):
        assert torch.equal(outputs(after, task), outputs(source, task)), f"{method}: {task}"
    meta = read_meta(after)
    assert [s["name"] for s in meta["tasks"]] == ["sst", "quora", "cfimdb"]
    assert meta["transfer"]["source"] == str(source)
    assert meta["transfer"]["source_tasks"] == ["sst", "quora"]
    assert result["transfer"]["init"]["cfimdb"]["from"] in (
        (None,) if method in ("lora", "full") else ("sst", "quora"))


@pytest.mark.parametrize("method", ["adapter", "hyperformer"])
def test_nearest_init_copies_the_best_scored_task_then_trains_the_copy(method, sources, tmp_path):
    cfg = transfer_cfg(sources[method], max_steps=1)
    backbone = tiny_backbone(vocab_size=len(tiny_tokenizer_obj().vocab))
    from trainers.data import prepare_data

    data = prepare_data(cfg, tiny_tokenizer_obj(), **QUIET)
    model, record = transfer.build(cfg, backbone, data, torch.device("cpu"), **QUIET)
    chosen, rule, scores = (record["init"]["cfimdb"][k] for k in ("from", "rule", "scores"))
    # the best score wins: most votes (PHA's retrieval), else the lowest probe loss
    best = max if rule == "retrieval votes" else min
    assert chosen == best(scores, key=scores.get) and len(set(scores.values())) > 1, scores
    params = dict(model.named_parameters())
    mine = transfer.own_names(model, "cfimdb")
    for name in mine:
        twin = name.replace(".cfimdb.", f".{chosen}.").replace(".cfimdb", f".{chosen}")
        assert torch.equal(params[name], params[twin]), name
        assert params[name].requires_grad and not params[twin].requires_grad
    scratch, _ = transfer.build(transfer_cfg(sources[method], transfer_init="scratch"),
                                tiny_backbone(vocab_size=len(tiny_tokenizer_obj().vocab)), data,
                                torch.device("cpu"), **QUIET)
    fresh = dict(scratch.named_parameters())
    assert any(not torch.equal(fresh[n], params[n]) for n in mine)
    # trained from there, the copy moves and the task it was copied from does not
    train(transfer_cfg(sources[method], max_steps=3, lr=1e-2), out=tmp_path / "t", **QUIET)
    trained, _, _ = load_checkpoint(tmp_path / "t" / "checkpoint", tasks="cfimdb")
    after = dict(trained.named_parameters())
    assert any(not torch.equal(after[n], params[n]) for n in mine)
    twins = [n.replace(".cfimdb.", f".{chosen}.").replace(".cfimdb", f".{chosen}") for n in mine]
    assert all(torch.equal(after[t], params[t]) for t in twins)


def test_unfreeze_shared_also_trains_the_shared_update(sources, tmp_path):
    source = sources["lora"]
    result = train(transfer_cfg(source, unfreeze="shared", lr=1e-2), out=tmp_path / "t", **QUIET)
    old = load_file(str(source / WEIGHTS))
    new = load_file(str(tmp_path / "t" / "checkpoint" / WEIGHTS))
    shared = [n for n in old if "lora_" in n]
    assert shared and any(not torch.equal(new[n], old[n]) for n in shared)
    head = sum(v.numel() for n, v in new.items() if n.startswith("heads.cfimdb."))
    assert result["params"]["trainable"] == head + sum(old[n].numel() for n in shared)


def test_a_transferred_run_resumes_and_its_checkpoint_serves_every_task(sources, tmp_path):
    source = sources["adapter"]
    cfg = transfer_cfg(source, max_steps=6, eval_every=3)
    saved: list[Path] = []

    def report(row, save):
        if row["step"] == 3:
            save(tmp_path / "resume")
            saved.append(tmp_path / "resume")

    train(cfg, report=report, **QUIET)
    resumed = train(cfg, resume=saved[0], out=tmp_path / "resumed", **QUIET)
    assert resumed["steps"] == 6 and resumed["train_s"] > 0
    after = tmp_path / "resumed" / "checkpoint"
    for task in ("sst", "quora"):
        assert torch.equal(outputs(after, task), outputs(source, task))
    assert outputs(after, "cfimdb").shape == (6, 2)


# ---- the nearest trained task ---------------------------------------------------------------------
def test_pha_retrieval_picks_the_planted_nearest_task(tiny_model_dir, tmp_path):
    # cfimdb's reviews are written with sst's words; quora and sts with nouns and verbs.
    source = train_source(tiny_model_dir, tmp_path / "src", "pha", steps=60,
                          tasks="sst,quora,sts", lr=3e-3)
    result = train(transfer_cfg(source), **QUIET)
    init = result["transfer"]["init"]["cfimdb"]
    assert init["rule"] == "retrieval votes"
    assert init["from"] == "sst"
    assert init["scores"]["sst"] > 0.5  # a majority of the examples retrieve sst's prototype


def _planted_split(model: MultitaskModel, plant: str, n: int = 96):
    """Demo reviews whose labels are, by construction, a linear readout of the features that
    task ``plant``'s adapters produce (thresholded at the median): ``plant`` is the nearest task."""
    split = tokenize(demo_examples("cfimdb", "train")[:n], tiny_tokenizer_obj(), 32)
    feats = transfer.features(model, plant, split, 0, torch.device("cpu"))
    readout = np.random.default_rng(3).normal(size=feats.shape[1])
    score = feats @ readout
    split.labels = (score > np.median(score)).astype(np.float32)
    return split


@pytest.mark.parametrize("plant", ["a", "b"])
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_probe_picks_the_planted_nearest_task(plant, seed):
    model = tiny_model("adapter", adapter_size=8)
    with torch.no_grad():  # each task's adapters dominate the features, each differently
        g = torch.Generator().manual_seed(seed)
        for name, p in model.named_parameters():
            if p.requires_grad and not name.startswith("heads."):
                p.copy_(torch.randn(p.shape, generator=g) * 5.0)
    split = _planted_split(model, plant)
    spec = TaskSpec("new", "classification", "text", "label", num_labels=2)
    rule, scores = transfer.nearest(model, spec, split, 0, ["a", "b"], torch.device("cpu"))
    assert rule == "leave-one-out probe loss"
    assert min(scores, key=scores.get) == plant
    other = "b" if plant == "a" else "a"
    assert scores[plant] < 0.8 * scores[other]


def test_leave_one_out_closed_form_matches_refitting():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 6)), rng.normal(size=(20, 2))
    penalty = 0.1
    scale = np.trace((x - x.mean(0)) @ (x - x.mean(0)).T) / 20
    errors = []
    for i in range(20):  # refit without row i, predict it
        keep = np.arange(20) != i
        xm, ym = x[keep].mean(0), y[keep].mean(0)
        xc = x[keep] - xm
        w = np.linalg.solve(xc.T @ xc + penalty * scale * np.eye(6), xc.T @ (y[keep] - ym))
        errors.append((y[i] - ym - (x[i] - xm) @ w) ** 2)
    # the hat matrix with the intercept's 1/n leverage gives exactly the refits' errors (the
    # penalty's scale is the whole data's in both): dropping that term fails this
    assert transfer.loo_mse(x, y, penalty) == pytest.approx(float(np.mean(errors)), rel=1e-9)
    noise = rng.normal(size=(20, 6))
    signal = np.hstack([y, rng.normal(size=(20, 4)) * 0.1])
    assert transfer.ridge_loo(signal, y) < 0.2 * transfer.ridge_loo(noise, y)


# ---- PHA's retriever reads the pretrained encoder -------------------------------------------------
def test_pha_instance_features_are_the_pretrained_encoders_mean_hidden_state():
    model = tiny_model("pha", adapter_size=8, task_emb_dim=8, hyper_hidden=16).train()
    with torch.no_grad():  # generated adapters that change the encoder's output a lot
        torch.nn.init.normal_(model.extra.heads.up_w.weight, std=1.0)
    x = tiny_batch(2)
    got = model.extra.instance_features(x["input_ids"], x["attention_mask"])
    plain = tiny_backbone()  # the same pretrained weights, no adapters, eval mode
    with torch.no_grad():
        h = plain(**x).last_hidden_state
    m = x["attention_mask"].unsqueeze(-1).float()
    torch.testing.assert_close(got, (h * m).sum(1) / m.sum(1))
    assert model.backbone.training and not model.extra.bypass  # restored after the pass
    adapted = hidden_states(model.eval(), "a", x)
    assert not torch.allclose(adapted, h, atol=1e-3)  # the adapters are live outside that pass
    words = tiny_model("pha", adapter_size=8, task_emb_dim=8, hyper_hidden=16,
                       retriever_input="words")
    emb = words.backbone.get_input_embeddings()(x["input_ids"])
    torch.testing.assert_close(words.extra.instance_features(x["input_ids"], x["attention_mask"]),
                               (emb * m).sum(1) / m.sum(1))


# ---- refusals and the command line ----------------------------------------------------------------
def test_evaluation_refuses_a_task_the_checkpoint_has_not_seen(sources, capsys):
    source = sources["adapter"]
    assert evaluate.main(["--checkpoint", str(source), "--tasks", "cfimdb"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "trained on sst, quora" in err and f"--init-from {source} --tasks cfimdb" in err


def test_transfer_refuses_a_known_task_and_a_different_method(sources):
    with pytest.raises(transfer.TransferError, match="trained on sst, quora already"):
        train(transfer_cfg(sources["adapter"], tasks="sst,cfimdb"), **QUIET)
    with pytest.raises(transfer.TransferError, match="method='lora'.*differ"):
        transfer.inherit({"init_from": str(sources["adapter"]), "method": "lora"})
    with pytest.raises(transfer.TransferError, match="no-such-dir"):
        transfer.inherit({"init_from": "no-such-dir"})


def test_command_line_transfer(sources, tmp_path, capsys):
    source = sources["hyperformer"]
    rc = cli.main(["--init-from", str(source), "--tasks", "cfimdb", "--max-steps", "3",
                   "--eval-every", "3", "--max-train-samples", "16", "--max-length", "32",
                   "--out", str(tmp_path / "t")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "transfer: cfimdb started from" in out and "% of the backbone" in out
    result = json.loads((tmp_path / "t" / "result.json").read_text())
    assert result["config"]["method"] == "hyperformer" and result["config"]["init_from"] == str(source)
    assert cli.main(["--init-from", str(source), "--tasks", "cfimdb", "--method", "adapter"]) == 2
    assert "differ from the checkpoint" in capsys.readouterr().err


def test_a_format_1_checkpoint_with_task_tables_still_loads(tmp_path):
    model = tiny_model("hyperformer", adapter_size=4, task_emb_dim=8, hyper_hidden=16)
    cfg = TrainConfig.from_flat({"method": "hyperformer", "tasks": "a,b", "adapter_size": 4,
                                 "task_emb_dim": 8, "hyper_hidden": 16})
    save_checkpoint(tmp_path, model, cfg, 0)
    tensors = load_file(str(tmp_path / WEIGHTS))
    rows = [tensors.pop(f"extra.task_emb.by_task.{t}") for t in ("a", "b")]
    tensors["extra.task_emb.weight"] = torch.stack(rows)  # the old layout
    from safetensors.torch import save_file

    save_file(tensors, str(tmp_path / WEIGHTS))
    fresh = MultitaskModel(tiny_backbone(), SPECS, cfg)
    load_weights(fresh, tmp_path)
    for t, row in zip(("a", "b"), rows, strict=True):
        assert torch.equal(fresh.extra.task_emb.by_task[t], row)
    assert count_params(fresh).per_task["a"] == count_params(model).per_task["a"]


@pytest.mark.parametrize("method", ["pha", "hyperformer"])
def test_hypernetwork_transfer_with_unfreeze_shared_trains_the_hypernetwork_with_the_new_task(
        method, sources, tmp_path):
    """The papers' few-shot transfer: the new task's embedding (or prototype) and the shared
    hypernetwork train together; the backbone stays frozen."""
    source = sources[method]
    result = train(transfer_cfg(source, unfreeze="shared", lr=1e-2), out=tmp_path / "t", **QUIET)
    model, _, _ = load_checkpoint(tmp_path / "t" / "checkpoint", tasks="cfimdb")
    old = load_file(str(source / WEIGHTS))
    new = load_file(str(tmp_path / "t" / "checkpoint" / WEIGHTS))
    owner = {n: task_of(model, n) for n, _ in model.named_parameters()}
    shared = [n for n in old if owner.get(n) is None and not n.startswith("backbone.")]
    own = [n for n in new if owner.get(n) == "cfimdb"]
    assert shared and own
    assert any(not torch.equal(new[n], old[n]) for n in shared)  # the hypernetwork moved
    assert all(torch.equal(new[n], old[n]) for n in old if n.startswith("backbone."))
    expected = sum(new[n].numel() for n in own) + sum(old[n].numel() for n in shared)
    assert result["params"]["trainable"] == expected
    frozen = train(transfer_cfg(source), out=tmp_path / "f", **QUIET)
    assert frozen["params"]["trainable"] == sum(new[n].numel() for n in own)
