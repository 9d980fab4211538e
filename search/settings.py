"""What defines a search: the ``Settings`` dataclass, saved as ``search.json`` for ``--resume``.

Each field carries its command-line flag in its metadata (help text, group, argparse options),
so ``search/cli.py`` builds the parser from this one class: a setting, its flag and its help
cannot drift apart. No Ray import here.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

RUNS = Path("runs")
MULTI_CONFIRM = "2:3"
"""``--confirm`` of a search over several methods unless given: what a method ranking needs."""
MAX_CONFIRM_SEEDS = 498
"""The most seeds N of ``--confirm K:N``: each search seed owns a block of 1,000 confirmation seeds,
selection seeds from its start and fresh ones from its middle (``search.selection.confirm.confirm_seeds``),
498 each so that ``--seed -2``'s block never holds -2."""
OWN_FLAGS = {"method", "tasks", "data_dir", "task_file", "model", "max_steps", "eval_every", "seed",
             "max_train_samples", "max_eval_samples", "eval_rows", "eval_growth", "eval_full",
             "val_from_train"}
"""Config keys set through their own flags, never through ``--set``."""


def flag(help: str, group: str, **argparse_options: Any) -> dict[str, Any]:
    """Field metadata for a setting's flag: its help text, its ``--help`` group, and extra
    argparse options (``flag`` renames it, e.g. ``--method`` for ``methods``)."""
    return {"help": help, "group": group, **argparse_options}


WHAT, BUDGET, ALGORITHM, RESOURCES, RECORDS = (
    "what to search", "budget", "search algorithm", "resources and cluster", "records")


@dataclass
class Settings:
    """Everything that defines a search; saved as ``search.json`` so ``--resume`` redoes it."""

    methods: list[str] = field(default_factory=lambda: ["lora"], metadata=flag(
        "one method, a comma list, 'all' ({methods}), or 'auto': one search over designs "
        "(method, layers, LoRA targets, adapter placement)", WHAT, flag="--method", shown="lora",
        metavar="METHOD[,METHOD...]"))
    tasks: str = field(default="sst,quora,sts", metadata=flag("comma list of tasks trained together", WHAT))
    data_dir: str | None = field(default=None, metadata=flag(
        "CS224N data folder; unset = the small synthetic demo suite built in code", WHAT))
    task_file: str | None = field(default=None, metadata=flag(
        "JSON file defining extra tasks (CSV/TSV/JSONL or HF datasets) for --tasks", WHAT))
    model: str | None = field(default=None, metadata=flag(
        "encoder: hub id or local dir (unset = the packaged all-MiniLM-L6-v2)", WHAT))
    transfer_from: str | None = field(default=None, metadata=flag(
        "search how a trained multitask checkpoint takes the --tasks it has not seen: a checkpoint "
        "folder or the MLflow run id of a finished search's method run; the method is the "
        "checkpoint's, the search tunes lr, steps, what to unfreeze and the new task's start "
        "(README: New task, few labels)", WHAT, metavar="CHECKPOINT_OR_RUN"))
    set: dict[str, Any] = field(default_factory=dict, metadata=flag(
        "hold a config key fixed in every trial, e.g. --set batch_size=16 --set "
        "target_modules=query,value (repeatable; JSON values)", WHAT, action="append", metavar="KEY=VALUE"))
    range: dict[str, list[float]] = field(default_factory=dict, metadata=flag(
        "search a dim of the method's space over another range, e.g. --range lr=1e-4:3e-3 "
        "(repeatable; the dim keeps its kind, log or linear)", WHAT, action="append",
        metavar="KEY=LOW:HIGH"))
    num_samples: int = field(default=8, metadata=flag("trials per method", BUDGET))
    budget: str | None = field(default=None, metadata=flag(
        "spend this much trial-time on the whole search and end with one answer, e.g. 2h or 45m: "
        "the sum of the time trials and confirmation runs hold a slot (GPU-hours on a cluster). "
        "Every method's trials share one pool, a method separably behind the leader gets no new "
        "trials, each method's best config races on new seeds, and the search stops on time "
        "with a verdict (README: One budget, one answer). Sizes the trials and the confirmation "
        "itself: not with --num-samples or --confirm", BUDGET, metavar="DURATION"))
    max_params: float | None = field(default=None, metadata=flag(
        "prune, before training, every config whose trained parameters exceed PCT %% of the "
        "backbone (counted from the config; needs --searcher optuna)", BUDGET, metavar="PCT"))
    auto_families: str | None = field(default=None, metadata=flag(
        "--method auto: the design families to search (comma list; unset = all: lora, adapter, "
        "lora_adapter, prefix, ptuning, unipelt)", BUDGET))
    max_steps: int = field(default=150, metadata=flag("training steps of a trial that is never stopped",
                                                      BUDGET))
    eval_every: int = field(default=50, metadata=flag(
        "steps between evaluations; one evaluation is ASHA's time unit", BUDGET))
    max_train_samples: int | None = field(default=None, metadata=flag(
        "train on K rows per task: a seeded, class-stratified K-shot sample (the same rows in every "
        "trial; --set sample_seed=S draws another)", BUDGET, metavar="K"))
    max_eval_samples: int | None = field(default=None, metadata=flag(
        "cap validation examples per task (never the test split)", BUDGET))
    val_from_train: float | None = field(default=None, metadata=flag(
        "hold out this fraction of each task's train rows (seeded, stratified) as the validation "
        "set every trial and confirmation selects on; the dev files become the test split, scored "
        "once for each method's final pick (the CS224N layout: its test files have no labels)",
        WHAT, metavar="FRACTION"))
    eval_rows: int = field(default=64, metadata=flag(
        "evaluation as a fidelity: dev rows per task a trial's first evaluation scores (a fixed, "
        "stratified subset shared by all trials), growing --eval-growth times per evaluation; the "
        "last evaluation of a trial scores the whole dev set. 0 = the whole dev set every time",
        BUDGET))
    eval_growth: float = field(default=2.0, metadata=flag(
        "how much the scored dev subset grows from one evaluation to the next", BUDGET))
    eval_full: bool = field(default=False, metadata=flag(
        "score the whole dev set at every evaluation and log the subset's score beside it (a "
        "--scheduler fifo search recorded this way is what `peft-search replay` replays)", BUDGET,
        action="store_true", shown=""))
    seed: int = field(default=0, metadata=flag("training and searcher seed", BUDGET))
    scheduler: str = field(default="pasha", metadata=flag(
        "asha: Ray Tune's ASHA stops trials below a rung's cutoff; hyperband: three ASHA "
        "brackets with later first rungs, trials in turn; pasha: ASHA that also stops trials at a "
        "top rung raised only while the two top rungs rank trials differently; fifo runs every "
        "trial to the end (see README: choosing a scheduler)", ALGORITHM,
        choices="schedulers"))
    searcher: str = field(default="optuna", metadata=flag(
        "optuna = TPE proposals; random = Tune's random sampling", ALGORITHM, choices="searchers"))
    objective: str = field(default="score", metadata=flag(
        "what Optuna optimises: score, or score,params to trade dev score against the %% of "
        "trained parameters (multi-objective; the Pareto set is reported)", ALGORITHM))
    default_trial: bool = field(default=True, metadata=flag(
        "skip the first trial that is the method's own defaults (by default every search starts "
        "with the config a user gets without searching, so it never reports a best below it)", ALGORITHM,
        flag="--no-default-trial", action="store_false", shown=""))
    warm_start: str | None = field(default=None, metadata=flag(
        "also start each method's search with the best configs of these earlier searches of that "
        "method in the same MLflow store (comma list of experiment names)", ALGORITHM,
        metavar="EXPERIMENT[,EXPERIMENT...]"))
    confirm: str | None = field(default=None, metadata=flag(
        "after each method's search, retrain its top K configs and its defaults with N new seeds "
        "at the full budget on the whole validation set and pick the best mean (the selection "
        "mean, biased upward: it chose); then retrain the pick and the defaults with N fresh "
        "seeds: the confirmed score, its 95%% interval over seeds and rows, the gain over the "
        "defaults and the test split's figures come from those. Cost: (K+1)*N runs, then 2*N (N "
        f"when the defaults are the pick); N from 2 to {MAX_CONFIRM_SEEDS}; 0 = off", ALGORITHM,
        metavar="K:N",
        shown=f"{MULTI_CONFIRM} with several methods, 0 with one"))
    grace_period: int = field(default=1, metadata=flag("evaluations before ASHA may stop a trial",
                                                       ALGORITHM))
    reduction_factor: float = field(default=2.0, metadata=flag(
        "ASHA keeps the top 1/factor of trials at each rung", ALGORITHM))
    pasha_epsilon: float | None = field(default=None, metadata=flag(
        "--scheduler pasha: score difference within which two trials count as tied when the two "
        "top rungs' rankings are compared (unset: estimated from the noise seen, as Bohdal et al. "
        "2023 do)", ALGORITHM, metavar="EPS", shown="estimated"))
    cpus_per_trial: float = field(default=1.0, metadata=flag("CPUs per trial (also its torch threads)",
                                                             RESOURCES))
    gpus_per_trial: float = field(default=0.0, metadata=flag(
        "GPUs per trial; fractions share a GPU, e.g. 0.25 = four PEFT trials per GPU", RESOURCES))
    max_concurrent: int | None = field(default=None, metadata=flag(
        "trials running at once (unset: as many as the cluster fits when the search starts; set "
        "it on an autoscaling cluster)", RESOURCES))
    keep_checkpoints: int = field(default=3, metadata=flag(
        "checkpoints kept of the search's ended trials: the best N (the others are deleted as "
        "trials end; running trials keep theirs for --resume)", RESOURCES))
    storage_path: str | None = field(default=None, metadata=flag(
        "Tune experiment storage: a local dir or a cloud URI such as s3://bucket/path "
        "(unset = runs/<experiment>/tune)", RESOURCES))
    mlflow_uri: str | None = field(default=None, metadata=flag(
        "MLflow tracking URI, e.g. http://127.0.0.1:5000 (unset = sqlite:///$PWD/mlflow.db)", RECORDS))
    experiment: str | None = field(default=None, metadata=flag(
        "search name: MLflow experiment and runs/<experiment>/ (unset = search-<time>)", RECORDS))
    out: str | None = field(default=None, metadata=flag("output folder (unset = runs/<experiment>)",
                                                        RECORDS))
    steps_from_budget: bool = field(default=False, metadata={"internal": True})
    """Not a flag: ``--budget`` without ``--max-steps`` and ``--eval-every`` sizes both from one
    measured run per method (``search.schedule.calibrate``); the sized values replace the
    defaults above and are saved with the search."""

    def __post_init__(self) -> None:
        if self.pasha_epsilon is not None:
            if self.scheduler != "pasha":
                raise ValueError(f"--pasha-epsilon applies to --scheduler pasha, not {self.scheduler}")
            if not (math.isfinite(self.pasha_epsilon) and self.pasha_epsilon >= 0):
                raise ValueError(f"--pasha-epsilon must be a finite number >= 0, got {self.pasha_epsilon}")

    @property
    def max_t(self) -> int:
        """Evaluations per trial: ASHA's time unit (the trainer also evaluates at the last step)."""
        return math.ceil(self.max_steps / self.eval_every)


def parse_confirm(text: str | None) -> tuple[int, int]:
    """``"K:N"`` -> (K, N); ``"0"`` -> (0, 0) (no confirmation)."""
    if text in ("0", "off"):
        return 0, 0
    k, sep, n = str(text).partition(":")
    try:
        if not sep:
            raise ValueError
        top, seeds = int(k), int(n)
    except ValueError:
        raise ValueError(f"--confirm {text!r}: expected K:N (top K configs, N new seeds each), "
                         "e.g. 3:3, or 0 for none") from None
    if top < 1 or seeds < 1:
        raise ValueError(f"--confirm {text}: K and N must be >= 1 (0 turns confirmation off)")
    if seeds < 2:
        raise ValueError(f"--confirm {text}: N must be >= 2 (one seed per candidate gives no "
                         f"spread over seeds, so no interval or verdict), e.g. {top}:3")
    if seeds > MAX_CONFIRM_SEEDS:
        raise ValueError(f"--confirm {text}: N must be <= {MAX_CONFIRM_SEEDS} (each search seed has "
                         f"{MAX_CONFIRM_SEEDS} selection and {MAX_CONFIRM_SEEDS} fresh seeds)")
    return top, seeds


def confirm_budget(s: Settings) -> tuple[int, int]:
    """The search's (K, N) of ``--confirm``: as given, else MULTI_CONFIRM with several methods
    and none with one."""
    return parse_confirm(s.confirm if s.confirm is not None
                         else MULTI_CONFIRM if len(s.methods) > 1 else "0")


def settings_from(values: dict[str, Any]) -> Settings:
    """Settings from parsed flags (or a saved search.json), normalized."""
    from trainers.methods import METHODS

    v = dict(values)
    if "method" in v:
        v["methods"] = v.pop("method")
    if isinstance(v.get("methods"), str):
        text = v["methods"].strip()
        names = list(METHODS) if text == "all" else [m.strip() for m in text.split(",") if m.strip()]
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
    """``["batch_size=16", ...]`` -> ``{"batch_size": 16}`` (JSON values, else strings)."""
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
    """``["lr=1e-4:3e-3"]`` -> ``{"lr": [1e-4, 3e-3]}``."""
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


def resolve_settings(typed: dict[str, Any], resume: bool) -> Settings:
    """The settings of a new search (``typed``: the flags the user typed; every other setting
    keeps its default), or of the saved one for ``resume`` (typed flags that contradict the
    saved search are an error, not silently ignored)."""
    if not resume:
        s = settings_from(typed)
        s.experiment = s.experiment or time.strftime("search-%Y%m%d-%H%M%S")
        s.out = s.out or str((RUNS / s.experiment).resolve())
        if (Path(s.out) / "search.json").exists():
            raise ValueError(f"a search already exists in {s.out}; add --resume to continue it, "
                             "or pass another --experiment")
        if s.transfer_from:
            _transfer_method(s, "methods" in typed)
        sized = [f"--{k.replace('_', '-')}" for k in ("num_samples", "confirm") if k in typed]
        if s.budget is not None and sized:
            raise ValueError(f"{' and '.join(sized)}: --budget sizes the trials and the confirmation "
                             "itself (trials start while the budget can pay for them); drop one")
        s.steps_from_budget = s.budget is not None and not {"max_steps", "eval_every"} & set(typed)
        return s
    out = Path(typed["out"]) if "out" in typed else _resume_dir(typed.get("experiment"))
    saved_file = out / "search.json"
    if not saved_file.exists():
        raise ValueError(f"--resume: no saved search in {out} (no search.json)")
    saved = settings_from(json.loads(saved_file.read_text()))
    given = settings_from({**asdict(saved), **typed})
    clashes = [f"{f.name}: saved {getattr(saved, f.name)!r}, given {getattr(given, f.name)!r}"
               for f in fields(Settings) if getattr(saved, f.name) != getattr(given, f.name)]
    if clashes:
        raise ValueError("--resume continues the saved search; these flags differ from it:\n  "
                         + "\n  ".join(clashes))
    return saved


def _transfer_method(s: Settings, typed_method: bool) -> None:
    """A transfer search's method is its checkpoint's: set it (a typed --method must agree)."""
    from search.transfer import resolve_source, source_record

    source = source_record(resolve_source(s.transfer_from, s.mlflow_uri or default_uri(), s.out),
                           s.transfer_from)
    method = source["source_method"]
    if typed_method and s.methods != [method]:
        raise ValueError(f"--method {','.join(s.methods)}: --transfer-from {s.transfer_from} holds a "
                         f"checkpoint of method {method}; a transfer search keeps its method (drop --method)")
    s.methods = [method]


def default_uri() -> str:
    """The MLflow store of a search without --mlflow-uri: ``mlflow.db`` in the working folder."""
    return f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def _resume_dir(experiment: str | None) -> Path:
    if experiment:
        return (RUNS / experiment).resolve()
    found = sorted(RUNS.glob("*/search.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise ValueError(f"--resume: no search under {RUNS.resolve()}; pass --experiment or --out")
    return found[-1].parent.resolve()
