"""Search a PEFT method's hyperparameters with Ray Tune, ASHA and Optuna; record it in MLflow.

    python search/run.py --method adapter                   # demo: synthetic tasks, laptop CPU
    python search/run.py --method lora,adapter --data-dir ../shared/data/cs224n
    python search/run.py --resume                           # go on with the last search

Every setting is checked (methods, spaces, tasks, data) before Ray starts. Results land in
``runs/<experiment>/``: results.csv/json, ``<method>/best_config.json`` (rerun it with
``python -m trainers.train --config ...``) and the Tune experiment; MLflow holds every trial.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Runnable as `python search/run.py` from a checkout: import from the repository root, not
# from search/ itself (whose module names could shadow installed ones).
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "search":
    sys.path.pop(0)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass, field, fields  # noqa: E402
from typing import Any  # noqa: E402

from search.registry import SCHEDULERS, SEARCHERS, objective_metrics  # noqa: E402  (no Ray import until used)
from spaces import SPACES, Space, check_space, get_space  # noqa: E402
from spaces.auto import searched_dims as auto_dims  # noqa: E402

RUNS = Path("runs")
# Config keys set through their own flags, never through --set.
OWN_FLAGS = {"method", "tasks", "data_dir", "task_file", "model", "max_steps", "eval_every", "seed",
             "max_train_samples", "max_eval_samples"}


@dataclass
class Settings:
    """Everything that defines a search; saved as ``search.json`` so ``--resume`` redoes it."""

    methods: list[str] = field(default_factory=lambda: ["lora"])
    tasks: str = "sst,quora,sts"
    data_dir: str | None = None
    task_file: str | None = None
    model: str | None = None
    num_samples: int = 8
    max_steps: int = 150
    eval_every: int = 50
    grace_period: int = 1
    reduction_factor: float = 2.0
    scheduler: str = "asha"
    objective: str = "score"
    max_params: float | None = None
    auto_families: str | None = None
    searcher: str = "optuna"
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    storage_path: str | None = None
    mlflow_uri: str | None = None
    experiment: str | None = None
    seed: int = 0
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    set: dict[str, Any] = field(default_factory=dict)
    range: dict[str, list[float]] = field(default_factory=dict)
    out: str | None = None

    @property
    def max_t(self) -> int:
        """Evaluations per trial: ASHA's time unit (the trainer also evaluates at the last step)."""
        return math.ceil(self.max_steps / self.eval_every)


DEFAULTS = Settings()


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default unless it is empty (the help text says what unset means)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, [], argparse.SUPPRESS):
            return action.help or ""
        return super()._get_help_string(action)


def build_parser(defaults: bool = True) -> argparse.ArgumentParser:
    """The CLI. ``defaults=False`` leaves unset flags out (to tell what the user typed)."""
    d = (lambda v: v) if defaults else (lambda v: argparse.SUPPRESS)
    p = argparse.ArgumentParser(
        prog="python search/run.py", description=__doc__.split("\n\n")[0],
        formatter_class=_Help,
        epilog="Method spaces live in spaces/<method>.py. Results: runs/<experiment>/; MLflow: "
               "`mlflow ui --backend-store-uri sqlite:///$PWD/mlflow.db`.")
    g = p.add_argument_group("what to search")
    g.add_argument("--method", default=d("lora"),
                   help=f"one method, a comma list, 'all' ({', '.join(SPACES)}), or 'auto': one search "
                        "over designs (method, layers, LoRA targets, adapter placement)")
    g.add_argument("--tasks", default=d(DEFAULTS.tasks), help="comma list of tasks trained together")
    g.add_argument("--data-dir", default=d(None),
                   help="CS224N data folder; unset = the small synthetic demo suite built in code")
    g.add_argument("--task-file", default=d(None),
                   help="JSON file defining extra tasks (CSV/TSV/JSONL or HF datasets) for --tasks")
    g.add_argument("--model", default=d(None),
                   help="encoder: hub id or local dir (unset = the packaged all-MiniLM-L6-v2)")
    g.add_argument("--set", action="append", default=d([]), metavar="KEY=VALUE",
                   help="hold a config key fixed in every trial, e.g. --set batch_size=16 "
                        "--set target_modules=query,value (repeatable; JSON values)")
    g.add_argument("--range", action="append", default=d([]), metavar="KEY=LOW:HIGH",
                   help="search a dim of the method's space over another range, e.g. --range "
                        "lr=1e-4:3e-3 (repeatable; the dim keeps its kind, log or linear)")
    g = p.add_argument_group("budget")
    g.add_argument("--num-samples", type=int, default=d(DEFAULTS.num_samples),
                   help="trials per method")
    g.add_argument("--max-params", type=float, default=d(None), metavar="PCT",
                   help="prune, before training, every config whose trained parameters exceed PCT %% "
                        "of the backbone (counted from the config; needs --searcher optuna)")
    g.add_argument("--auto-families", default=d(None),
                   help="--method auto: the design families to search (comma list; unset = all: "
                        "lora, adapter, lora_adapter, prefix, ptuning, unipelt)")
    g.add_argument("--max-steps", type=int, default=d(DEFAULTS.max_steps),
                   help="training steps of a trial that is never stopped")
    g.add_argument("--eval-every", type=int, default=d(DEFAULTS.eval_every),
                   help="steps between evaluations; one evaluation is ASHA's time unit")
    g.add_argument("--max-train-samples", type=int, default=d(None),
                   help="cap training examples per task (quick demos)")
    g.add_argument("--max-eval-samples", type=int, default=d(None), help="cap dev examples per task")
    g.add_argument("--seed", type=int, default=d(DEFAULTS.seed), help="training and searcher seed")
    g = p.add_argument_group("search algorithm")
    g.add_argument("--scheduler", choices=list(SCHEDULERS), default=d(DEFAULTS.scheduler),
                   help="asha stops weak trials at each rung; fifo runs every trial to the end")
    g.add_argument("--searcher", choices=list(SEARCHERS), default=d(DEFAULTS.searcher),
                   help="optuna = TPE proposals; random = Tune's random sampling")
    g.add_argument("--objective", default=d(DEFAULTS.objective),
                   help="what Optuna optimises: score, or score,params to trade dev score against "
                        "the %% of trained parameters (multi-objective; the Pareto set is reported)")
    g.add_argument("--grace-period", type=int, default=d(DEFAULTS.grace_period),
                   help="evaluations before ASHA may stop a trial")
    g.add_argument("--reduction-factor", type=float, default=d(DEFAULTS.reduction_factor),
                   help="ASHA keeps the top 1/factor of trials at each rung")
    g = p.add_argument_group("resources and cluster")
    g.add_argument("--cpus-per-trial", type=float, default=d(DEFAULTS.cpus_per_trial),
                   help="CPUs per trial (also its torch threads)")
    g.add_argument("--gpus-per-trial", type=float, default=d(DEFAULTS.gpus_per_trial),
                   help="GPUs per trial; fractions share a GPU, e.g. 0.25 = four PEFT trials per GPU")
    g.add_argument("--max-concurrent", type=int, default=d(None),
                   help="trials running at once (unset: as many as the cluster fits when the "
                        "search starts; set it on an autoscaling cluster)")
    g.add_argument("--address", default=d(None),
                   help="join a running Ray cluster ('auto' on a `ray up` head); unset = local Ray")
    g.add_argument("--storage-path", default=d(None),
                   help="Tune experiment storage: a local dir or a cloud URI such as s3://bucket/path "
                        "(unset = runs/<experiment>/tune)")
    g = p.add_argument_group("records")
    g.add_argument("--mlflow-uri", default=d(None),
                   help="MLflow tracking URI, e.g. http://127.0.0.1:5000 (unset = sqlite:///$PWD/mlflow.db)")
    g.add_argument("--experiment", default=d(None),
                   help="search name: MLflow experiment and runs/<experiment>/ (unset = search-<time>)")
    g.add_argument("--out", default=d(None), help="output folder (unset = runs/<experiment>)")
    g.add_argument("--resume", action="store_true", default=d(False),
                   help="continue the search --experiment (unset: the latest under runs/) with its "
                        "saved settings; finished trials are not rerun")
    return p


# ---- settings ---------------------------------------------------------------------------------
def settings_from(values: dict[str, Any]) -> Settings:
    """Settings from parsed flags (or a saved search.json), normalized."""
    v = dict(values)
    if "method" in v:
        v["methods"] = v.pop("method")
    if isinstance(v.get("methods"), str):
        text = v["methods"].strip()
        names = list(SPACES) if text == "all" else [m.strip() for m in text.split(",") if m.strip()]
        v["methods"] = list(dict.fromkeys(names))
    if isinstance(v.get("set"), list):
        v["set"] = parse_sets(v["set"])
    if isinstance(v.get("range"), list):
        v["range"] = parse_ranges(v["range"])
    for key in ("data_dir", "task_file", "out"):
        if v.get(key):
            v[key] = str(Path(v[key]).expanduser().resolve())
    if v.get("model") and Path(v["model"]).expanduser().exists():  # a local dir, not a hub id
        v["model"] = str(Path(v["model"]).expanduser().resolve())
    if v.get("storage_path") and "://" not in v["storage_path"]:
        v["storage_path"] = str(Path(v["storage_path"]).expanduser().resolve())
    names = {f.name for f in fields(Settings)}
    return Settings(**{k: x for k, x in v.items() if k in names})


def parse_sets(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        key = key.strip()
        if key in OWN_FLAGS:
            raise ValueError(f"--set {key}: use --{key.replace('_', '-')} instead")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def parse_ranges(items: list[str]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        low, colon, high = text.partition(":")
        try:
            if not (sep and colon and key.strip()):
                raise ValueError
            out[key.strip()] = [float(low), float(high)]
        except ValueError:
            raise ValueError(f"--range {item!r}: expected KEY=LOW:HIGH with numbers, "
                             "e.g. lr=1e-4:3e-3") from None
    return out


def resolve_settings(args: argparse.Namespace, typed: dict[str, Any]) -> Settings:
    """The settings of a new search, or of the saved one for ``--resume`` (typed flags that
    contradict the saved search are an error, not silently ignored)."""
    flags = {k: v for k, v in vars(args).items() if k not in ("resume", "address")}
    if not args.resume:
        s = settings_from(flags)
        s.experiment = s.experiment or time.strftime("search-%Y%m%d-%H%M%S")
        s.out = s.out or str((RUNS / s.experiment).resolve())
        if (Path(s.out) / "search.json").exists():
            raise ValueError(f"a search already exists in {s.out}; add --resume to continue it, "
                             "or pass another --experiment")
        return s
    out = Path(typed["out"]) if "out" in typed else _resume_dir(typed.get("experiment"))
    saved_file = out / "search.json"
    if not saved_file.exists():
        raise ValueError(f"--resume: no saved search in {out} (no search.json)")
    saved = settings_from(json.loads(saved_file.read_text()))
    given = settings_from({**asdict(saved), **{k: v for k, v in typed.items()
                                              if k not in ("resume", "address")}})
    clashes = [f"{f.name}: saved {getattr(saved, f.name)!r}, given {getattr(given, f.name)!r}"
               for f in fields(Settings) if getattr(saved, f.name) != getattr(given, f.name)]
    if clashes:
        raise ValueError("--resume continues the saved search; these flags differ from it:\n  "
                         + "\n  ".join(clashes))
    return saved


def _resume_dir(experiment: str | None) -> Path:
    if experiment:
        return (RUNS / experiment).resolve()
    found = sorted(RUNS.glob("*/search.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise ValueError(f"--resume: no search under {RUNS.resolve()}; pass --experiment or --out")
    return found[-1].parent.resolve()


# ---- validation (no Ray) ----------------------------------------------------------------------
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


def make_plan(s: Settings) -> Plan:
    """Check every setting; raise ValueError naming the problem. Imports no Ray."""
    from trainers.config import TrainConfig, common_fields, method_fields

    if not s.methods:
        raise ValueError("--method: give at least one method")
    for name, low in [("num_samples", 1), ("max_steps", 1), ("eval_every", 1), ("grace_period", 1),
                      ("max_concurrent", 1), ("max_train_samples", 1), ("max_eval_samples", 1)]:
        value = getattr(s, name)
        if value is not None and value < low:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {low}, got {value}")
    if s.scheduler == "asha" and s.grace_period > s.max_t:
        raise ValueError(f"--grace-period {s.grace_period} exceeds the {s.max_t} evaluations of a "
                         f"trial (--max-steps {s.max_steps} / --eval-every {s.eval_every})")
    objective_metrics(s.objective)  # a bad --objective: ValueError naming it
    if s.reduction_factor <= 1:
        raise ValueError(f"--reduction-factor must be > 1, got {s.reduction_factor}")
    if s.cpus_per_trial <= 0 or s.gpus_per_trial < 0:
        raise ValueError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    if s.data_dir is not None and not Path(s.data_dir).is_dir():
        raise ValueError(f"--data-dir {s.data_dir}: not a directory")
    if s.task_file is not None and not Path(s.task_file).is_file():
        raise ValueError(f"--task-file {s.task_file}: no such file")
    if s.max_params is not None and not s.max_params > 0:
        raise ValueError(f"--max-params must be > 0 (a % of the backbone), got {s.max_params:g}")
    if (s.max_params is not None or "auto" in s.methods) and s.searcher != "optuna":
        raise ValueError("--method auto and --max-params need --searcher optuna")
    spaces: dict[str, Space] = {}
    constants: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    auto = None
    if "auto" in s.methods:
        auto, const, pins = _auto_plan(s)
        used |= set(pins)
        spaces["auto"], constants["auto"] = Space("auto", tuple(auto_dims(auto))), const
    for method in s.methods:
        if method == "auto":
            continue
        space = get_space(method)  # unknown method or malformed space file: ValueError
        valid = set(common_fields()) | set(method_fields(method))
        pins = {k: v for k, v in s.set.items() if k in valid}
        used |= set(pins)
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
        const = {"method": method, "tasks": s.tasks, "data_dir": s.data_dir,
                 "task_file": s.task_file, "model": s.model,
                 "max_steps": s.max_steps, "eval_every": s.eval_every, "seed": s.seed,
                 "max_train_samples": s.max_train_samples, "max_eval_samples": s.max_eval_samples}
        TrainConfig.from_flat({**const, **{d.name: d.corners()[0] for d in space.dims}})
        spaces[method], constants[method] = space, const
    unused = sorted(set(s.set) - used)
    if unused:
        raise ValueError(f"--set {', '.join(unused)}: not a config key of "
                         f"{', '.join(s.methods)} (see python -m trainers.train --help)")
    unused = sorted(set(s.range) - used)
    if unused:
        raise ValueError(f"--range {', '.join(unused)}: not a searched dim of {', '.join(s.methods)} "
                         f"(dims: {', '.join(d.name for d in spaces[s.methods[0]].searched())})")
    storage = s.storage_path or str(Path(s.out) / "tune")
    return Plan(s, spaces, constants, storage, s.mlflow_uri or _default_uri(), auto)


def _auto_plan(s: Settings) -> tuple[dict[str, Space], dict[str, Any], dict[str, Any]]:
    """``--method auto``: its branches with the user's --set pins (common keys only), its
    constants, and the pins used; every branch's extreme configs are checked."""
    from spaces.auto import branches
    from trainers.config import TrainConfig, common_fields

    if s.range:
        raise ValueError("--range is not supported with --method auto (each method keeps its "
                         "spaces/<method>.py ranges)")
    families = [f.strip() for f in s.auto_families.split(",") if f.strip()] if s.auto_families else None
    found = branches(families)
    pins = {k: v for k, v in s.set.items() if k in common_fields()}
    const = {"tasks": s.tasks, "data_dir": s.data_dir, "task_file": s.task_file, "model": s.model,
             "max_steps": s.max_steps, "eval_every": s.eval_every, "seed": s.seed,
             "max_train_samples": s.max_train_samples, "max_eval_samples": s.max_eval_samples}
    out = {}
    for method, space in found.items():
        space = space.pin(pins)
        check_space(space, method, f"spaces/auto.py ({method})")
        TrainConfig.from_flat({**const, **{d.name: d.corners()[0] for d in space.dims}, "method": method})
        out[method] = space
    return out, const, pins


def _default_uri() -> str:
    return f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def prepare(plan: Plan):
    """Tokenize every task once in the driver (bad tasks or data fail here, before Ray)."""
    from trainers.config import TrainConfig
    from trainers.data import prepare_data
    from trainers.model import load_tokenizer

    method = plan.settings.methods[0]
    if method == "auto":  # tokenization depends on the shared keys only: any branch will do
        method, space = next(iter(plan.auto.items()))
        const = {**plan.constants["auto"], "method": method}
    else:
        space, const = plan.spaces[method], plan.constants[method]
    cfg = TrainConfig.from_flat({**const, **{d.name: d.corners()[0] for d in space.dims}})
    return prepare_data(cfg, load_tokenizer(cfg.model), log=lambda m: print(m, flush=True))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    typed = vars(build_parser(defaults=False).parse_args(argv))
    try:
        settings = resolve_settings(args, typed)
        plan = make_plan(settings)
        data = prepare(plan)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from search.results import write_json_atomic

    write_json_atomic(Path(settings.out) / "search.json", asdict(settings))
    from search.driver import run_search  # Ray is imported from here on

    return run_search(plan, data, address=args.address, resuming=args.resume)


if __name__ == "__main__":
    sys.exit(main())
