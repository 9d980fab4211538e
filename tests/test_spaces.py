"""Search spaces: every method has one, its keys are the trainer's config keys, malformed spaces
fail with the file and key named, and the CLI rejects bad input before any Ray work."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from spaces import check_space, get_space
from spaces.common import COMMON, Dim, Space, choice, fixed, integer, logint, loguniform, uniform
from trainers.config import LR_SCHEDULES, TrainConfig, common_fields, method_fields
from trainers.methods import METHODS

ROOT = Path(__file__).resolve().parents[1]
PEFT = [m for m in METHODS if m not in ("full", "frozen")]


# ---- the shipped spaces -------------------------------------------------------------------------
def test_every_method_has_a_space_and_no_space_lacks_a_method():
    # Every method file and every space file is a listed method (a file added without its name
    # in METHODS fails here, not silently), and each listed method has both files.
    methods = {p.stem for p in (ROOT / "trainers" / "methods").glob("*.py") if not p.stem.startswith("_")}
    spaces = {p.stem for p in (ROOT / "spaces").glob("*.py")} - {"__init__", "common", "auto", "transfer"}
    assert methods == spaces == set(METHODS)


@pytest.mark.parametrize("method", list(METHODS))
def test_space_keys_are_config_keys_and_every_corner_builds_a_config(method):
    space = get_space(method)
    valid = set(common_fields()) | set(method_fields(method))
    assert set(space.names()) <= valid
    assert space.searched(), "a space with nothing to search"
    # Every method-specific hyperparameter is searched or deliberately fixed in the file.
    assert set(method_fields(method)) <= set(space.names())
    for d in space.dims:
        for value in d.corners():
            flat = {**space.fixed_values(), d.name: value, "method": method}
            assert TrainConfig.from_flat(flat).to_flat()[d.name] == value


@pytest.mark.parametrize("method", list(METHODS))
def test_each_dim_is_labelled_and_method_dims_are_scientific(method):
    space = get_space(method)
    roles = {d.name: d.role for d in space.dims}
    assert set(roles.values()) <= {"scientific", "nuisance", "fixed"}
    assert roles["batch_size"] == "fixed" and roles["lr"] == "nuisance"
    for name in ("r", "adapter_size", "task_emb_dim", "num_virtual_tokens"):
        if name in roles:
            assert roles[name] == "scientific", f"{method}: {name}"


# (method, key, value, where it was used): settings the papers and seed projects this product
# stands on report. A range that misses one cannot find what the literature found.
PAPER_VALUES = [
    ("lora", "r", 8, "Hu et al. 2021, GLUE with RoBERTa-base"),
    ("lora", "alpha", 8, "Hu et al. 2021, RoBERTa-base"),
    ("lora", "lr", 5e-4, "Hu et al. 2021, RoBERTa-base SST-2/MNLI"),
    ("lora", "lr", 4e-4, "Hu et al. 2021, RoBERTa-base MRPC/STS-B"),
    ("lora", "r", 64, "Hu et al. 2021, rank study"),
    ("dora", "r", 32, "Liu et al. 2024"),
    ("adapter", "adapter_size", 8, "Houlsby et al. 2019, sizes {8, 64, 256}"),
    ("adapter", "adapter_size", 64, "Houlsby et al. 2019"),
    ("adapter", "adapter_size", 256, "Houlsby et al. 2019"),
    ("adapter", "lr", 3e-5, "Houlsby et al. 2019, rates {3e-5, 3e-4, 3e-3}"),
    ("adapter", "lr", 3e-4, "Houlsby et al. 2019"),
    ("parallel_adapter", "adapter_scale", 4.0, "He et al. 2022"),
    ("hyperformer", "task_emb_dim", 64, "Karimi Mahabadi et al. 2021"),
    ("hyperformer", "lr", 3e-4, "Karimi Mahabadi et al. 2021"),
    ("hyperformer", "adapter_size", 24, "Karimi Mahabadi et al. 2021, reduction 32 on d=768"),
    ("prefix", "num_virtual_tokens", 10, "Li and Liang 2021, table-to-text"),
    ("prompt", "num_virtual_tokens", 20, "Lester et al. 2021, lengths {1, 5, 20, 100, 150}"),
    ("prompt", "num_virtual_tokens", 100, "Lester et al. 2021"),
    ("unipelt", "prefix_length", 10, "Mao et al. 2022"),
    ("unipelt", "r", 8, "Mao et al. 2022"),
    ("unipelt", "adapter_size", 48, "Mao et al. 2022, reduction 16 on d=768"),
    ("lora_adapter", "lr", 9e-4, "tuned PEFT bests of the seed projects: 6e-4 to 9e-4"),
    ("lora", "r", 1, "Hu et al. 2021 rank study; seed 002's r=1 scored 0.731"),
    ("lora", "r", 2, "Hu et al. 2021 rank study"),
    ("dora", "r", 1, "LoRA's rank study holds for DoRA's shared dims"),
    ("adapter", "lr", 3e-3, "Houlsby et al. 2019"),
    ("adapter", "weight_decay", 0.445, "AdaptBert's tuned weight decay"),
    ("prompt", "lr", 0.3, "Lester et al. 2021"),
    ("prefix", "num_virtual_tokens", 200, "Li and Liang 2021, summarization"),
    ("lora", "lr", 6.1e-4, "the by-hand peer's best LoRA rate (issue 14)"),
    ("lora", "lr_schedule", "constant", "the by-hand peer's constant rate (issue 14)"),
    ("lora", "lr_schedule", "linear", "BERT/RoBERTa fine-tuning: warmup then linear decay"),
]


@pytest.mark.parametrize("method, key, value, source", PAPER_VALUES)
def test_ranges_cover_what_the_papers_used(method, key, value, source):
    dim = get_space(method)[key]
    if not dim.searched:
        covered = dim.value == value
    elif dim.kind == "choice":
        covered = value in dim.choices
    else:
        covered = dim.low <= value <= dim.high
    assert covered, f"{method}.{key} misses {value} ({source})"


@pytest.mark.parametrize("method", list(METHODS))
def test_every_space_searches_each_lr_schedule_as_a_nuisance(method):
    # The schedule is tuned with the rate (which one wins depends on the budget), never
    # compared; its options are exactly the trainer's, so a new schedule is searched at once.
    dim = get_space(method)["lr_schedule"]
    assert dim.kind == "choice" and dim.role == "nuisance"
    assert dim.choices == LR_SCHEDULES


@pytest.mark.parametrize("method", list(METHODS))
def test_the_default_trial_lies_inside_every_space(method):
    # A search runs the method's defaults first (search/warm.py); a range widened or moved past
    # a default would silently drop that trial.
    from search.warm import default_point

    point = default_point(get_space(method), method, say=pytest.fail)
    assert point["lr_schedule"] == TrainConfig().lr_schedule


def test_full_fine_tuning_keeps_its_own_lower_rates():
    # Widening the PEFT rates must not carry full fine-tuning along: every weight moves there.
    full, lora = get_space("full")["lr"], get_space("lora")["lr"]
    assert full.high <= 1e-4 < lora.high and full.low < lora.low


def test_override_keeps_position_and_replaces_the_dim():
    space = get_space("full")
    assert space.names()[0] == "lr" and space["lr"].high == 1e-4
    assert len(space.names()) == len(set(space.names()))


def test_pin_turns_a_searched_dim_fixed():
    space = get_space("lora").pin({"r": 16})
    assert space["r"].kind == "fixed" and space.fixed_values()["r"] == 16
    assert "r" not in [d.name for d in space.searched()]


# ---- malformed spaces ---------------------------------------------------------------------------
@pytest.mark.parametrize("make, message", [
    (lambda: uniform("lr", 1e-3, 1e-3), "low must be < high"),
    (lambda: uniform("warmup_ratio", 0.2, 0.1), "low must be < high"),
    (lambda: loguniform("lr", 0.0, 1e-3), "log range needs low > 0"),
    (lambda: logint("r", -4, 128), "log range needs low > 0"),
    (lambda: integer("r", 4.5, 128), "int bounds must be integers"),
    (lambda: uniform("lr", 0.0, math.inf), "finite"),
    (lambda: choice("use_dora", []), "at least one option"),
    (lambda: Dim("lr", "normal", 0, 1), "kind must be one of"),
    (lambda: Dim("lr", "uniform", 0, 1, role="fixed"), "role 'fixed'"),
    (lambda: Dim("lr", "uniform", 0, 1, role="important"), "role must be one of"),
])
def test_malformed_dims_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_unknown_key_names_the_space_file_and_the_key():
    with pytest.raises(ValueError, match=r"spaces/lora\.py: unknown key 'rank' for method 'lora'"):
        check_space(Space("lora", COMMON + [logint("rank", 4, 128, role="scientific")]), "lora")
    # A real key of another method is still unknown here.
    with pytest.raises(ValueError, match="unknown key 'adapter_size'"):
        check_space(Space("lora", COMMON + [logint("adapter_size", 8, 64)]), "lora")


def test_a_value_the_trainer_rejects_is_an_error_of_the_space():
    bad = Space("lora", COMMON + [uniform("head_dropout", 0.0, 1.0)])
    with pytest.raises(ValueError, match=r"spaces/lora\.py: head_dropout=1\.0 is rejected"):
        check_space(bad, "lora")


def test_unknown_method_lists_the_choices():
    with pytest.raises(ValueError, match="unknown method 'lorax'.*lora, dora"):
        get_space("lorax")


def test_malformed_space_file_is_reported_with_its_path(tmp_path, monkeypatch):
    import spaces

    # A spaces/lora.py of another folder found first: as if the shipped file were broken.
    (tmp_path / "lora.py").write_text(
        "from spaces.common import COMMON, Space, uniform\n"
        "SPACE = Space('lora', COMMON + [uniform('lora_dropout', 0.3, 0.1)])\n")
    monkeypatch.setattr(spaces, "__path__", [str(tmp_path), *spaces.__path__])
    monkeypatch.delitem(sys.modules, "spaces.lora", raising=False)
    with pytest.raises(ValueError, match=r"spaces/lora\.py: dim 'lora_dropout': low must be < high"):
        get_space("lora")


# ---- conversion to the searchers' own distributions ---------------------------------------------
def test_optuna_define_by_run_stays_in_range_and_keeps_types():
    import optuna

    from search.searchers import OptunaSpace

    space = get_space("task_lora")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    define = OptunaSpace(list(space.dims))
    seen, schedules = set(), set()
    for _ in range(60):
        trial = study.ask()
        define(trial)
        study.tell(trial, 0.0)
        params = trial.params
        assert set(params) == {d.name for d in space.searched()}
        assert isinstance(params["r"], int) and 1 <= params["r"] <= 128
        assert 1e-5 <= params["lr"] <= 5e-3 and params["use_dora"] in (False, True)
        assert params["lr_schedule"] in LR_SCHEDULES
        seen.add(params["use_dora"])
        schedules.add(params["lr_schedule"])
        TrainConfig.from_flat({**space.fixed_values(), **params, "method": "task_lora"})
    assert seen == {False, True} and schedules == set(LR_SCHEDULES)


def test_tune_domains_cover_inclusive_int_bounds():
    import numpy as np

    from search.searchers import tune_domain

    values = tune_domain(integer("r", 4, 6)).sample(size=300, random_state=np.random.default_rng(0))
    assert set(values) == {4, 5, 6}
    assert tune_domain(fixed("batch_size", 32)) == 32
    lr = tune_domain(loguniform("lr", 1e-5, 1e-3)).sample(size=200)
    assert min(lr) >= 1e-5 and max(lr) <= 1e-3


# ---- the CLI fails before any Ray work ----------------------------------------------------------
def _run_cli(args, cwd, prelude=""):
    """Run search/run.py's main in a fresh interpreter; report whether Ray was imported."""
    probe = (
        "import runpy, sys\n" + prelude +
        f"sys.argv = ['search/run.py'] + {args!r}\n"
        "code = 0\n"
        "try:\n"
        f"    runpy.run_path({str(ROOT / 'search' / 'run.py')!r}, run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    code = e.code\n"
        "print('RAY_IMPORTED=' + str('ray' in sys.modules))\n"
        "sys.exit(code)\n")
    return subprocess.run([sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("args, message", [
    (["--method", "lora,nope"], "unknown method 'nope'"),
    (["--method", "lora", "--set", "rank=8"], "--set rank: not a config key"),
    (["--method", "lora", "--set", "tasks=sst"], "use --tasks instead"),
    (["--method", "adapter", "--data-dir", "/no/such/dir"], "not a directory"),
    (["--method", "lora", "--tasks", "sst,imdb"], "imdb"),
    (["--method", "lora", "--max-steps", "20", "--eval-every", "10", "--grace-period", "3"],
     "grace-period 3 exceeds"),
])
def test_cli_rejects_bad_settings_before_ray(tmp_path, args, message):
    proc = _run_cli(args, tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "RAY_IMPORTED=False" in proc.stdout
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()


def test_cli_rejects_a_malformed_space_file_before_ray(tmp_path):
    (tmp_path / "adapter.py").write_text(
        "from spaces.common import COMMON, Space, loguniform\n"
        "SPACE = Space('adapter', COMMON + [loguniform('lr', 0.0, 1e-3)])\n")
    prelude = f"import spaces\nspaces.__path__.insert(0, {str(tmp_path)!r})\n"
    proc = _run_cli(["--method", "lora,adapter"], tmp_path, prelude)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "spaces/adapter.py: dim 'lr': a log range needs low > 0" in proc.stderr
    assert "RAY_IMPORTED=False" in proc.stdout and not (tmp_path / "mlflow.db").exists()


def test_cli_script_entry_point_and_help(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "search" / "run.py"), "--method", "nope"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "error: unknown method 'nope'" in proc.stderr
    helptext = subprocess.run([sys.executable, str(ROOT / "search" / "run.py"), "--help"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120).stdout
    for flag in ("--method", "--tasks", "--data-dir", "--model", "--num-samples", "--max-steps",
                 "--eval-every", "--grace-period", "--reduction-factor", "--scheduler",
                 "--searcher", "--cpus-per-trial", "--gpus-per-trial", "--max-concurrent",
                 "--address", "--storage-path", "--mlflow-uri", "--experiment", "--resume", "--seed"):
        assert flag in helptext


def _typed(argv):
    """The settings flags a user typed (the CLI leaves unset ones out), minus per-run flags."""
    from search.cli import RUNTIME, build_parser

    return {k: v for k, v in vars(build_parser().parse_args(argv)).items() if k not in RUNTIME}


def test_resume_rejects_flags_that_contradict_the_saved_search(tmp_path, monkeypatch):
    from dataclasses import asdict

    from search.settings import resolve_settings

    monkeypatch.chdir(tmp_path)
    argv = ["--method", "lora", "--num-samples", "3", "--out", str(tmp_path / "s")]
    settings = resolve_settings(_typed(argv), resume=False)
    assert settings.methods == ["lora"] and settings.num_samples == 3 and settings.max_steps == 150
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "search.json").write_text(json.dumps(asdict(settings)))
    with pytest.raises(ValueError, match="a search already exists"):
        resolve_settings(_typed(argv), resume=False)
    assert resolve_settings(_typed(argv + ["--resume"]), resume=True) == settings
    clash = ["--resume", "--out", str(tmp_path / "s"), "--num-samples", "5"]
    with pytest.raises(ValueError, match="num_samples: saved 3, given 5"):
        resolve_settings(_typed(clash), resume=True)


def test_every_setting_has_one_flag_with_its_help_and_default():
    """The parser is generated from Settings: a field without a flag, or a flag whose help
    lost its text or default, fails here."""
    from dataclasses import fields

    from search.cli import build_parser
    from search.settings import Settings

    parser = build_parser()
    actions = {a.dest: a for a in parser._actions}
    for f in fields(Settings):
        if f.metadata.get("internal"):  # set by the search itself (steps_from_budget), no flag
            assert f.name not in actions, f.name
            continue
        assert f.name in actions, f.name
        assert f.metadata["help"].split(" (")[0][:30].replace("%%", "%") in actions[f.name].help % {}
    text = parser.format_help()
    assert "--method" in text and "--methods" not in text
    assert "trials per method (default: 8)" in text
    assert "(default: pasha)" in text and "{asha,hyperband,pasha,fifo}" in text
    assert "(default: lora)" in text and "--verbose" in text


def test_every_search_command_in_the_readme_parses_to_settings(tmp_path, monkeypatch):
    """A README example with a renamed, removed or refused flag (e.g. --num-samples beside
    --budget) fails here. Commands that need a source checkpoint or continue a search are
    parsed only."""
    import re
    import shlex

    from search.cli import RUNTIME, build_parser
    from search.settings import resolve_settings

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#")[0].strip()
            if line.startswith("python search/run.py") and "..." not in line:
                commands.append(shlex.split(line)[2:])
    assert any("--budget" in c for c in commands) and len(commands) >= 8
    monkeypatch.chdir(tmp_path)  # runs/<experiment> of a new search: nothing exists there
    parser = build_parser()
    for argv in commands:
        args = vars(parser.parse_args(argv))
        resume = [args.pop(k, None) for k in RUNTIME][0]
        if resume or "transfer_from" in args:
            continue
        s = resolve_settings(args, False)
        assert s.methods, argv
