"""Warm starts (search/warm.py): the default trial and ``--warm-start``. Real spaces, real Optuna
searchers and real MLflow stores; the integration tests run two tiny searches with Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from searchkit import cli, mlflow_runs, run

from search.budget import ParamCounter
from search.searchers import make_searcher
from search.warm import (
    DEFAULT,
    check_experiments,
    default_point,
    fit_point,
    same_point,
    start_points,
    warm_points,
)
from spaces import get_space
from spaces.auto import branches
from trainers.config import TrainConfig
from trainers.methods import get_method
from trainers.tasks import TaskSpec


# ---- the default trial, without a search --------------------------------------------------------
@pytest.mark.parametrize("method", ["lora", "adapter", "prompt", "full", "task_lora", "unipelt"])
def test_default_point_is_what_a_user_gets_without_searching(method):
    space = get_space(method)
    point = default_point(space, method, say=pytest.fail)
    assert set(point) == {d.name for d in space.searched()}
    assert point["lr"] == get_method(method).DEFAULT_LR
    cfg = TrainConfig(method=method)  # no lr given: the method's default
    assert TrainConfig.from_flat({"method": method, **point}).to_flat() == cfg.to_flat()
    for d in space.searched():  # the searcher gets the dim's own types
        kind = {"uniform": float, "loguniform": float, "int": int, "logint": int}.get(d.kind)
        assert kind is None or type(point[d.name]) is kind, d.name


def test_default_point_outside_a_range_or_choice_is_skipped_with_one_line():
    said: list[str] = []
    lora = get_space("lora")
    assert default_point(lora.reranged("lr", 1e-5, 1e-4), "lora", say=said.append) is None
    assert default_point(lora.reranged("r", 16, 64), "lora", say=said.append) is None
    assert said == [
        "[lora] no default trial: lr=0.0005 is outside the searched range [1e-05, 0.0001]; the "
        "search starts from the searcher's own proposals",
        "[lora] no default trial: r=8 is outside the searched range [16, 64]; the search starts "
        "from the searcher's own proposals"]
    # A choice that leaves the default out (auto's lora branch with layers searched, pinned away).
    branch = branches(["lora"])["lora"]
    assert default_point(branch, "lora", say=said.append) is not None  # "all" is a choice
    no_all = branch.pin({"layers": "top_half"})
    assert "layers" not in default_point(no_all, "lora", say=said.append)  # pinned: not searched
    assert fit_point(branch.searched(), {**TrainConfig(method="lora").to_flat(), "layers": "x"})[1] == (
        "layers='x' is not among the searched choices ('all', 'top_half', 'bottom_half', 'every_other')")
    # task_lora's use_dora: False is a choice, 0 is not
    use_dora = get_space("task_lora")["use_dora"]
    assert fit_point([use_dora], {"use_dora": 0})[0] is None
    assert fit_point([use_dora], {"use_dora": False})[0] == {"use_dora": False}


class _Plan:
    """The parts of ``search.plan.Plan`` that ``start_points`` reads."""

    def __init__(self, method: str, uri: str = "sqlite:///unused.db", **settings) -> None:
        from search.settings import Settings

        self.settings = Settings(methods=[method], **settings)
        self.spaces = {} if method == "auto" else {method: get_space(method)}
        self.auto = branches(["lora", "adapter"]) if method == "auto" else None
        self.mlflow_uri = uri
        self.constants = {method: {"method": method}}


def test_no_default_trial_and_auto_enqueue_nothing():
    said: list[str] = []
    assert start_points(_Plan("lora", default_trial=False), "lora", say=said.append) == []
    assert said == []
    assert start_points(_Plan("auto"), "auto", say=said.append) == []
    assert said == ["[auto] no default trial: --method auto searches designs of several methods, "
                    "which have no one default"]
    (origin, point), = start_points(_Plan("lora"), "lora", say=said.append)
    assert origin == DEFAULT and point == default_point(get_space("lora"), "lora")


def test_confirmation_retrains_the_defaults_even_without_a_default_trial():
    """README: a method's defaults are always among the confirmed candidates; --no-default-trial
    only leaves the search's first trial to the searcher."""
    from search.warm import default_config

    with_trial = default_config(_Plan("lora"), "lora")
    assert with_trial is not None and with_trial["method"] == "lora"
    assert default_config(_Plan("lora", default_trial=False), "lora") == with_trial
    assert default_config(_Plan("auto"), "auto") is None


def test_optuna_searcher_proposes_the_enqueued_points_first():
    space = get_space("lora")
    default = default_point(space, "lora")
    other = {**default, "r": 32, "lr": 1e-4}
    constants = {"method": "lora"}
    searcher, _ = make_searcher("optuna", space, constants, seed=0, max_concurrent=3, num_samples=4,
                                points=[default, other])
    first, second, third = (searcher.suggest(f"t{i}") for i in range(3))
    assert first == default and second == other
    # Without points the same seeded searcher starts with its own proposal, not the default;
    # with points, that same proposal comes right after them (they take none of its draws).
    plain, _ = make_searcher("optuna", space, constants, seed=0, max_concurrent=3, num_samples=4)
    own = plain.suggest("t0")
    assert third == own and not same_point(default, own) and not same_point(other, own)
    empty, _ = make_searcher("optuna", space, constants, seed=0, max_concurrent=3, num_samples=4,
                             points=[])
    assert empty.suggest("t0") == own


def test_max_params_skips_an_enqueued_point_over_the_budget(tiny_model_dir, capsys):
    specs = [TaskSpec("a", "classification", "text", "label", num_labels=3)]
    constants = {"method": "lora", "tasks": "a", "model": tiny_model_dir}
    space = get_space("lora")
    default = default_point(space, "lora")
    count = ParamCounter(specs, tiny_model_dir)
    at_4, at_8 = (count({**constants, **default, "r": r}) for r in (4, 8))
    assert at_4 < at_8
    for budget, enqueued in ((at_8 * 2, True), ((at_4 + at_8) / 2, False)):
        searcher, _ = make_searcher("optuna", space, constants, seed=0, max_concurrent=1, num_samples=4,
                                    budget=(count, budget, None), points=[default])
        first = searcher.suggest("t0")
        assert same_point(default, first) == enqueued
        assert count({**constants, **first}) <= budget
    out = capsys.readouterr().out
    assert out.count("[budget] enqueued trial 1 of 1 skipped: lora[all;query,key,value] trains ") == 1


def test_unknown_warm_start_experiment_is_one_line(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(ValueError, match="no MLflow store at"):
        check_experiments(uri, ["a"])
    assert not (tmp_path / "mlflow.db").exists()  # checking never creates a store
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=uri).create_experiment("a")
    check_experiments(uri, ["a"])
    with pytest.raises(ValueError) as e:
        check_experiments(uri, ["a", "nope"])
    assert str(e.value).count("\n") == 0 and "--warm-start nope: no such MLflow experiment" in str(e.value)
    said: list[str] = []  # an experiment without a search of the method: a note, nothing enqueued
    assert warm_points(uri, ["a"], "lora", get_space("lora"), say=said.append) == []
    assert said == ["[lora] --warm-start a: no finished lora search in that experiment; nothing to "
                    "start from there"]


# ---- real searches: A without the default trial, then B warm-started from A ---------------------
def _cmd(model_dir: str, out: Path, *args: str) -> list[str]:
    # one evaluation per trial, one trial at a time: the smallest search searchkit runs
    return cli(model_dir, out, "--method", "lora", "--num-samples", "2", "--scheduler", "fifo",
               "--max-steps", "10", "--eval-every", "10", "--max-concurrent", "1", *args)


@pytest.fixture(scope="module")
def searches(tiny_model_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("warm")
    run(_cmd(tiny_model_dir, base / "wa", "--experiment", "wa", "--no-default-trial"), base)
    proc = run(_cmd(tiny_model_dir, base / "wb", "--experiment", "wb", "--warm-start", "wa"), base)
    return base, proc.stdout


def _trials(base: Path, experiment: str):
    """The experiment's parent run and its trial runs, in the order the trials started."""
    _, runs = mlflow_runs(f"sqlite:///{base / 'mlflow.db'}", experiment)
    (parent,) = [r for r in runs if r.data.tags.get("kind") == "method"]
    trials = sorted((r for r in runs if r.data.tags.get("kind") == "trial"), key=lambda r: r.info.start_time)
    return parent, trials


def _searched(run, space) -> dict:
    """A trial's searched values from its MLflow params (text): a number as its dim's type, a
    choice (lr_schedule) as the option of that text."""
    def value(d, text: str):
        if d.kind == "choice":
            return next(c for c in d.choices if str(c) == text)
        return type(d.corners()[0])(float(text))

    return {d.name: value(d, run.data.params[d.name]) for d in space.searched()}


@pytest.mark.integration
def test_first_trial_is_the_default_unless_no_default_trial(searches):
    base, _ = searches
    space = get_space("lora")
    default = default_point(space, "lora")
    parent_a, trials_a = _trials(base, "wa")
    parent_b, trials_b = _trials(base, "wb")
    assert len(trials_a) == len(trials_b) == 2
    assert same_point(default, _searched(trials_b[0], space))
    assert trials_b[0].data.tags["warm_start"] == "default"
    # --no-default-trial: TPE's own proposals from the first trial on, none tagged: A's first
    # trial is the first proposal of the same seeded searcher given no points (not the default)
    own, _ = make_searcher("optuna", space, {"method": "lora"}, seed=0, max_concurrent=1, num_samples=2)
    first_own = own.suggest("t0")
    assert same_point(first_own, _searched(trials_a[0], space))
    assert not same_point(default, first_own)
    assert not any(same_point(default, _searched(t, space)) for t in trials_a)
    assert not any("warm_start" in t.data.tags for t in trials_a)
    assert parent_a.data.tags["search.default_trial"] == "False"
    assert parent_a.data.tags["search.warm_start"] == "None"
    assert parent_b.data.tags["search.default_trial"] == "True"
    assert parent_b.data.tags["search.warm_start"] == "wa"


@pytest.mark.integration
def test_warm_start_enqueues_the_best_config_of_the_earlier_search_after_the_default(searches):
    base, stdout = searches
    space = get_space("lora")
    best_a = json.loads((base / "wa" / "lora" / "best_config.json").read_text())
    _, trials_b = _trials(base, "wb")
    second = trials_b[1]
    assert same_point(_searched(second, space), best_a) and second.data.tags["warm_start"] == "wa"
    assert "[lora] the first 2 trial(s) are enqueued: the defaults, the best of wa" in stdout
    uri = f"sqlite:///{base / 'mlflow.db'}"
    (origin, point), = warm_points(uri, ["wa"], "lora", space, say=pytest.fail)
    assert origin == "wa" and point == {d.name: best_a[d.name] for d in space.searched()}
    # the same best, read from a narrower space: outside it, not enqueued, said in one line
    said: list[str] = []
    narrow = space.reranged("r", 4, 5) if best_a["r"] > 5 else space.reranged("r", 6, 128)
    assert warm_points(uri, ["wa"], "lora", narrow, say=said.append) == []
    assert len(said) == 1 and said[0].startswith("[lora] --warm-start wa: its best config is not "
                                                 f"enqueued: r={best_a['r']} is outside")
    # --method auto starts from the lora search's best too (as a point of its conditional space)
    (_, auto), = warm_points(uri, ["wa"], "auto", branches(["lora"]), say=pytest.fail)
    assert auto["family"] == "lora" and auto["lora.r"] == best_a["r"]


def test_unknown_warm_start_experiment_exits_2_before_ray(tiny_model_dir, tmp_path):
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").create_experiment("wa")
    out = tmp_path / "bad"
    proc = run(_cmd(tiny_model_dir, out, "--experiment", "bad", "--warm-start", "wa,nope"), tmp_path, rc=2)
    assert proc.stderr.count("\n") == 1 and "--warm-start nope: no such MLflow experiment" in proc.stderr
    assert not out.exists() and proc.stdout == ""
