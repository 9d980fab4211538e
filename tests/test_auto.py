"""``--method auto`` and ``--max-params`` without a search: the conditional space, the design
configs it yields, and parameter counts known before training."""

from __future__ import annotations

import optuna
import pytest
from tiny import tiny_backbone

from search.searchers import AutoOptunaSpace
from spaces.auto import FAMILIES, STRUCTURAL, branches, design_config, design_name, method_of
from trainers.config import TrainConfig
from trainers.methods import METHODS
from trainers.model import MultitaskModel
from trainers.params import count_for_config, count_params
from trainers.tasks import TaskSpec

SPECS = [TaskSpec("a", "classification", "text", "label", num_labels=3),
         TaskSpec("b", "regression", "text", "label")]
CONSTANTS = {"tasks": "a,b", "max_steps": 10}


def test_conditional_space_never_proposes_another_methods_dim():
    spaces = branches()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    define = AutoOptunaSpace(spaces)
    seen_methods, seen_layers = set(), set()
    for _ in range(400):
        trial = study.ask()
        define(trial)
        params = dict(trial.params)
        method = method_of(params)
        family = params.pop("family")
        placement = params.pop(f"{family}.placement", None)
        assert (placement is not None) == (len(FAMILIES[family]) > 1)
        # Every other key is the chosen method's, and all of its searched dims are there.
        assert {k.split(".", 1)[0] for k in params} == {method}
        assert {k.split(".", 1)[1] for k in params} == {d.name for d in spaces[method].searched()}
        flat = design_config({**CONSTANTS, **trial.params})
        cfg = TrainConfig.from_flat(flat)  # a valid trainer config of that method only
        assert cfg.method == method
        seen_methods.add(method)
        seen_layers.add(flat.get("layers"))
        study.tell(trial, 0.0)
    assert seen_methods == {m for ms in FAMILIES.values() for m in ms}
    assert {"all", "top_half", "bottom_half", "every_other"} <= seen_layers


def test_design_names_carry_the_structural_choices():
    flat = design_config({"family": "adapter", "adapter.placement": "parallel",
                          "parallel_adapter.layers": "every_other", "parallel_adapter.adapter_size": 8,
                          "lora.r": 4, **CONSTANTS})
    assert flat["method"] == "parallel_adapter" and "r" not in flat and "lora.r" not in flat
    assert design_name(flat) == "parallel_adapter[every_other]"
    assert set(STRUCTURAL["lora"][0].choices) == {"all", "top_half", "bottom_half", "every_other"}


CASES = {"lora": {"r": 4, "layers": "top_half", "target_modules": "query,value"},
         "adapter": {"adapter_size": 8, "layers": "every_other"},
         "parallel_adapter": {"adapter_size": 8, "layers": "bottom_half"},
         "unipelt": {"adapter_size": 8, "prefix_length": 3, "r": 2, "layers": "top_half"},
         "ptuning": {"num_virtual_tokens": 4, "encoder_hidden_size": 8},
         "prefix": {"num_virtual_tokens": 4},
         "lora_adapter": {"r": 4, "adapter_size": 8, "layers": "bottom_half"},
         "hyperformer": {"adapter_size": 8, "task_emb_dim": 8, "hyper_hidden": 16}, "full": {}}


@pytest.mark.parametrize("method", list(CASES))
def test_count_before_training_equals_the_built_models_count(method):
    cfg = TrainConfig.from_flat({"method": method, "tasks": "a,b", **CASES[method]})
    built = count_params(MultitaskModel(tiny_backbone(0), SPECS, cfg))
    counted = count_for_config(cfg, SPECS, tiny_backbone(0).config)
    assert counted == built and counted.trainable > 0


@pytest.mark.parametrize("method", ["lora", "adapter", "parallel_adapter", "lora_adapter", "unipelt"])
def test_a_layer_subset_trains_that_share_of_the_layers(method):
    def trainable(layers):
        cfg = TrainConfig.from_flat({"method": method, "tasks": "a,b", **CASES[method], "layers": layers})
        model = MultitaskModel(tiny_backbone(0), SPECS, cfg)
        names = [n for n, p in model.named_parameters() if p.requires_grad and not n.startswith("heads.")]
        return sum(p.numel() for n, p in model.named_parameters() if n in names), names

    n_all, _ = trainable("all")
    for layers, kept in (("top_half", "1"), ("bottom_half", "0"), ("every_other", "1")):  # 2 layers
        n, names = trainable(layers)
        assert 2 * n == n_all, layers
        assert all(f"layer.{kept}." in name for name in names), layers


def test_unipelt_counts_every_gated_part():
    r, a, p, d, layers = 2, 8, 3, 32, 2
    cfg = TrainConfig.from_flat({"method": "unipelt", "tasks": "a,b", "adapter_size": a,
                                 "prefix_length": p, "r": r})
    counts = count_params(MultitaskModel(tiny_backbone(0), SPECS, cfg))
    gate = d + 1
    lora = 2 * (r * d + d * r + gate)  # query and value
    prefix = 2 * p * d + gate
    adapter = 2 * a * d + a + d + gate
    heads = (d * 3 + 3) + (d + 1)
    assert counts.trainable == layers * (lora + prefix + adapter) + heads
    assert counts.shared == layers * (lora + prefix + adapter)


def test_every_auto_method_is_a_registered_method():
    assert {m for ms in FAMILIES.values() for m in ms} <= set(METHODS)


# ---- a real auto search (Ray Tune, Optuna, MLflow) on the tiny model ------------------------------
@pytest.mark.integration
def test_auto_search_prunes_over_budget_designs_before_any_trial(tiny_model_dir, tmp_path):
    import json
    import pickle

    from searchkit import cli, mlflow_runs, run, trial_results

    budget = 25.0  # % of the tiny backbone: some designs fit, larger ones do not
    out = tmp_path / "auto"
    proc = run(cli(tiny_model_dir, out, "--method", "auto", "--num-samples", "6", "--experiment", "au",
                   "--auto-families", "lora,adapter,ptuning,unipelt", "--max-params", str(budget),
                   "--objective", "score,params", "--max-concurrent", "2"), tmp_path, timeout=600)
    pruned = [json.loads(line) for line in (out / "auto" / "pruned.jsonl").read_text().splitlines()]
    assert pruned and all(p["stored_pct"] > budget for p in pruned)
    assert proc.stdout.count("[budget] pruned before training") == len(pruned)
    # Only configs within budget became trials, and the trainer's own count agrees.
    trials = trial_results(out, "au", "auto")
    assert len(trials) == 6
    started = []
    for name, rows in trials.items():
        assert rows and rows[-1]["stored_pct"] <= budget, name
        params = json.loads((out / "tune" / "au-auto" / name / "params.json").read_text())
        started.append(design_config(params))
    for p in pruned:
        assert all({k: p["config"].get(k) for k in s} != s for s in started)
    # Optuna was told each pruned proposal (and optimised both objectives).
    (state_file,) = (out / "tune" / "au-auto").glob("searcher-state-*.pkl")
    study = pickle.loads(state_file.read_bytes())["_ot_study"]
    assert sum(t.state.name == "PRUNED" for t in study.trials) == len(pruned)
    assert len(study.directions) == 2
    # Designs are compared like methods: designs.json, a design tag per MLflow run, the report.
    designs = json.loads((out / "auto" / "designs.json").read_text())
    _, runs = mlflow_runs(f"sqlite:///{out.parent / 'mlflow.db'}", "au")
    tags = {r.data.tags["design"] for r in runs if r.data.tags.get("kind") == "trial"}
    assert {d["design"] for d in designs} == tags
    for d in designs:
        assert design_name(d["config"]) == d["design"] and TrainConfig.from_flat(d["config"])
    board = json.loads((out / "report" / "leaderboard.json").read_text())
    assert {r["method"] for r in board["methods"]} == tags
    assert sum(r.data.tags.get("design_best") == "true" for r in runs) == len(designs)
