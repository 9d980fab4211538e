"""The plan of a search: every setting checked, each method's space and constants, the data
tokenized once. Imports no Ray, so bad input fails before Ray or MLflow are touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.searchers import objective_metrics
from search.settings import Settings, confirm_budget, default_uri
from search.warm import check_experiments, experiments
from spaces import Space, check_space, get_space
from spaces.auto import searched_dims as auto_dims
from trainers.transfer import inherit


@dataclass
class Plan:
    settings: Settings
    spaces: dict[str, Space]
    constants: dict[str, dict[str, Any]]
    """Per method: every config value fixed in all its trials (flags and --set)."""
    storage_path: str
    mlflow_uri: str
    auto: dict[str, Space] | None = None
    """``--method auto``: the design branches (method -> its space with structural dims)."""
    source: dict[str, str] | None = None
    """``--transfer-from``: the source as given, its local checkpoint, method and tasks."""


def make_plan(s: Settings) -> Plan:
    """Check every setting; raise ValueError naming the problem. Imports no Ray."""
    check_settings(s)
    spaces: dict[str, Space] = {}
    constants: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    auto = None
    if "auto" in s.methods:
        auto, pins = _auto_plan(s)
        used |= set(pins)
        spaces["auto"], constants["auto"] = Space("auto", tuple(auto_dims(auto))), _constants(s)
    source = None
    if s.transfer_from:
        source = _transfer_source(s)
    for method in s.methods:
        if source is not None:
            spaces[method], keys = _transfer_space(s, method)
            constants[method] = inherit({"init_from": source["source_checkpoint"], "method": method,
                                         **_constants(s)})
            _first_corner(constants[method], spaces[method])
            used |= keys
        elif method != "auto":
            spaces[method], keys = _method_space(s, method)
            constants[method] = {"method": method, **_constants(s)}
            _first_corner(constants[method], spaces[method])
            used |= keys
    unused = sorted(set(s.set) - used)
    if unused:
        raise ValueError(f"--set {', '.join(unused)}: not a config key of "
                         f"{', '.join(s.methods)} (see python -m trainers.train --help)")
    unused = sorted(set(s.range) - used)
    if unused:
        raise ValueError(f"--range {', '.join(unused)}: not a searched dim of {', '.join(s.methods)} "
                         f"(dims: {', '.join(d.name for d in spaces[s.methods[0]].searched())})")
    storage = s.storage_path or str(Path(s.out) / "tune")
    uri = s.mlflow_uri or default_uri()
    check_experiments(uri, experiments(s.warm_start))  # --warm-start names known experiments
    return Plan(s, spaces, constants, storage, uri, auto, source)


def check_settings(s: Settings) -> None:
    """The settings that need no space or data: counts, budgets, paths, algorithm choices."""
    if not s.methods:
        raise ValueError("--method: give at least one method")
    for name, low in [("num_samples", 1), ("max_steps", 1), ("eval_every", 1), ("grace_period", 1),
                      ("max_concurrent", 1), ("max_train_samples", 1), ("max_eval_samples", 1),
                      ("eval_rows", 0), ("eval_growth", 1)]:
        value = getattr(s, name)
        if value is not None and value < low:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {low}, got {value}")
    if s.scheduler != "fifo" and s.grace_period > s.max_t:
        raise ValueError(f"--grace-period {s.grace_period} exceeds the {s.max_t} evaluations of a "
                         f"trial (--max-steps {s.max_steps} / --eval-every {s.eval_every})")
    objective_metrics(s.objective)  # a bad --objective: ValueError naming it
    confirm_budget(s)  # a bad --confirm: ValueError naming it
    if s.val_from_train is not None and not 0 < s.val_from_train < 1:
        raise ValueError(f"--val-from-train must be a fraction in (0, 1), got {s.val_from_train:g}")
    if s.reduction_factor <= 1:
        raise ValueError(f"--reduction-factor must be > 1, got {s.reduction_factor}")
    if s.cpus_per_trial <= 0 or s.gpus_per_trial < 0:
        raise ValueError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    if s.gpus_per_trial > 1 and s.gpus_per_trial != int(s.gpus_per_trial):
        raise ValueError(f"--gpus-per-trial {s.gpus_per_trial:g}: above 1 it must be a whole number "
                         "(Ray shares a GPU only in fractions below 1)")
    if s.keep_checkpoints < 1:
        raise ValueError(f"--keep-checkpoints must be at least 1 (the search's pick), "
                         f"got {s.keep_checkpoints}")
    if s.data_dir is not None and not Path(s.data_dir).is_dir():
        raise ValueError(f"--data-dir {s.data_dir}: not a directory")
    if s.task_file is not None and not Path(s.task_file).is_file():
        raise ValueError(f"--task-file {s.task_file}: no such file")
    if s.max_params is not None and not s.max_params > 0:
        raise ValueError(f"--max-params must be > 0 (a % of the backbone), got {s.max_params:g}")
    if (s.max_params is not None or "auto" in s.methods) and s.searcher != "optuna":
        raise ValueError("--method auto and --max-params need --searcher optuna")
    if s.budget is not None:
        _check_budget(s)


def _check_budget(s: Settings) -> None:
    """What ``--budget`` runs with: one pool of trials over named methods (Optuna per method)."""
    from search.schedule.budget import parse_duration

    parse_duration(s.budget)  # a bad duration: ValueError naming it
    unsupported = [name for name, on in [
        ("--method auto", "auto" in s.methods), ("--transfer-from", s.transfer_from is not None),
        ("--max-params", s.max_params is not None), ("--searcher random", s.searcher != "optuna")] if on]
    if unsupported:
        raise ValueError(f"--budget: not with {', '.join(unsupported)} yet")


def _constants(s: Settings) -> dict[str, Any]:
    """The config values every trial of the search shares (set by their own flags)."""
    return {"tasks": s.tasks, "data_dir": s.data_dir, "task_file": s.task_file, "model": s.model,
            "max_steps": s.max_steps, "eval_every": s.eval_every, "seed": s.seed,
            "max_train_samples": s.max_train_samples, "max_eval_samples": s.max_eval_samples,
            "eval_rows": s.eval_rows or None, "eval_growth": s.eval_growth, "eval_full": s.eval_full,
            "val_from_train": s.val_from_train}


def _transfer_source(s: Settings) -> dict[str, str]:
    """The checked source of a transfer search (its method is the search's one method)."""
    from search.transfer import resolve_source, source_record

    if "auto" in s.methods or len(s.methods) != 1:
        raise ValueError("--transfer-from searches one method, the checkpoint's (drop --method)")
    source = source_record(resolve_source(s.transfer_from, s.mlflow_uri or default_uri(), s.out),
                           s.transfer_from)
    if s.methods != [source["source_method"]]:
        raise ValueError(f"--method {s.methods[0]}: --transfer-from {s.transfer_from} holds a "
                         f"checkpoint of method {source['source_method']}")
    known = source["source_tasks"].split(",")
    again = [t for t in s.tasks.split(",") if t in known]
    if again:
        raise ValueError(f"--tasks {','.join(again)}: the checkpoint was trained on {', '.join(known)} "
                         "already; a transfer search adds tasks it has not seen")
    return source


def _transfer_space(s: Settings, method: str) -> tuple[Space, set[str]]:
    """The transfer space (``spaces/transfer.py``) with the user's --set/--range on common keys;
    a method option cannot be set: it is the checkpoint's."""
    from spaces.transfer import transfer_space
    from trainers.config import common_fields, method_fields

    taken = sorted(k for k in {*s.set, *s.range} if k in method_fields(method))
    if taken:
        raise ValueError(f"--set/--range {', '.join(taken)}: a transfer keeps the checkpoint's "
                         f"{method} options")
    space = transfer_space(method, s.max_steps).pin({k: v for k, v in s.set.items()
                                                     if k in common_fields()})
    used = {k for k in s.set if k in common_fields()}
    for key, (low, high) in s.range.items():
        if key in space.names() and space[key].searched and space[key].kind != "choice":
            space = space.reranged(key, low, high)
            used.add(key)
    check_space(space, method, "spaces/transfer.py with --set")
    return space, used


def _first_corner(constants: dict[str, Any], space: Space):
    """The config of the space's first corner: builds, or the trainer's error is raised."""
    from trainers.config import TrainConfig

    return TrainConfig.from_flat({**constants, **{d.name: d.corners()[0] for d in space.dims}})


def _method_space(s: Settings, method: str) -> tuple[Space, set[str]]:
    """``method``'s space with the user's ``--set`` pins and ``--range`` ranges, checked; and
    the --set/--range keys it used."""
    from trainers.config import common_fields, method_fields

    space = get_space(method)  # unknown method or malformed space file: ValueError
    valid = set(common_fields()) | set(method_fields(method))
    pins = {k: v for k, v in s.set.items() if k in valid}
    used = set(pins)
    space = space.pin(pins)
    for key, (low, high) in s.range.items():
        if key in s.set:
            raise ValueError(f"--range {key}: also fixed with --set {key}; give one of them")
        if key not in space.names():
            continue
        dim = space[key]
        if not dim.searched or dim.kind == "choice":
            raise ValueError(f"--range {key}: {method}'s {key} is {dim.kind}, not a numeric range "
                             f"(set it with --set {key}=VALUE)")
        try:
            space = space.reranged(key, low, high)
        except ValueError as e:
            raise ValueError(f"--range {key}={low:g}:{high:g}: {e}") from None
        used.add(key)
    check_space(space, method, f"spaces/{method}.py with --set")
    return space, used


def _auto_plan(s: Settings) -> tuple[dict[str, Space], dict[str, Any]]:
    """``--method auto``: its branches with the user's --set pins (common keys only), and the
    pins used; every branch's extreme configs are checked."""
    from spaces.auto import branches
    from trainers.config import common_fields

    if s.range:
        raise ValueError("--range is not supported with --method auto (each method keeps its "
                         "spaces/<method>.py ranges)")
    families = [f.strip() for f in s.auto_families.split(",") if f.strip()] if s.auto_families else None
    pins = {k: v for k, v in s.set.items() if k in common_fields()}
    out = {}
    for method, space in branches(families).items():
        space = space.pin(pins)
        check_space(space, method, f"spaces/auto.py ({method})")
        _first_corner({**_constants(s), "method": method}, space)
        out[method] = space
    return out, pins


def space_record(plan: Plan, method: str) -> dict[str, Any]:
    """What the method's parent run keeps as ``space.json``: the searched dims (and auto's
    branches)."""
    from spaces.common import dims_to_json

    record = {"method": method, "dims": dims_to_json(list(plan.spaces[method].dims))}
    if method == "auto":
        record["branches"] = {m: dims_to_json(list(sp.dims)) for m, sp in plan.auto.items()}
    return record


def prepare(plan: Plan):
    """Tokenize every task once in the driver (bad tasks or data fail here, before Ray)."""
    from trainers.data import prepare_data
    from trainers.model import load_tokenizer

    first = plan.settings.methods[0]
    if first == "auto":  # tokenization depends on the shared keys only: any branch will do
        method, space = next(iter(plan.auto.items()))
    else:
        method, space = first, plan.spaces[first]
    cfg = _first_corner({**plan.constants[first], "method": method}, space)
    return prepare_data(cfg, load_tokenizer(cfg.model), log=lambda m: print(m, flush=True))
