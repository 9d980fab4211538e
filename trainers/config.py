"""The trainer's one configuration: common fields here, method fields in the method's Config.

A trial config is a flat dict whose keys are exactly these field names; ``from_flat``
splits it, and any key that belongs to neither is an error (never silently dropped).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from trainers.methods import get_method

SAMPLERS = ("round_robin", "proportional", "temperature")
LR_SCHEDULES = ("linear", "cosine", "constant")
TRANSFER_INITS = ("nearest", "scratch")
UNFREEZE = ("none", "shared")
POOLINGS = ("mean", "cls")


@dataclass
class TrainConfig:
    method: str = "lora"
    tasks: tuple[str, ...] = ("sst", "quora", "sts")
    data_dir: str | None = None
    """CS224N data folder; None runs the small synthetic demo suite generated in code."""
    task_file: str | None = None
    """JSON file of extra task definitions (generic CSV/TSV/JSONL or HF datasets)."""
    model: str | None = None
    """Hub name or local path of an encoder; None = the packaged all-MiniLM-L6-v2."""
    pooling: str = "mean"
    max_length: int = 128
    batch_size: int = 32
    eval_batch_size: int = 128
    max_steps: int = 300
    eval_every: int = 100
    log_every: int = 25
    """Print a progress line (step, loss, steps/s, last score) every this many steps."""
    lr: float | None = None
    """None = the method's DEFAULT_LR."""
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    lr_schedule: str = "linear"
    """After warmup: linear decay to zero at max_steps, cosine decay to zero, or constant."""
    grad_clip: float = 1.0
    head_dropout: float = 0.1
    sampler: str = "temperature"
    temperature: float = 10.0
    max_train_samples: int | None = None
    """K-shot training: a seeded, class-stratified sample of K train rows per task (nested: the
    rows of a smaller K are among a larger K's)."""
    sample_seed: int = 0
    """Which K-shot sample ``max_train_samples`` draws (not the training seed: every run of a
    search, confirmation included, trains on the same rows)."""
    max_eval_samples: int | None = None
    val_from_train: float | None = None
    """Carve this fraction of each task's train rows (seeded, stratified) as the validation set
    that evaluation scores; the task's dev file then becomes its test split, which training and
    selection never read. None = evaluate on the dev files."""
    init_from: str | None = None
    """Transfer: a multitask checkpoint directory to start from. Its model, method and method
    options are used; tasks names the new task(s) it adds and trains (README: New task, few
    labels)."""
    transfer_init: str = "nearest"
    """Transfer: a new task's own parameters start from the trained task that fits its training
    examples best (nearest) or from a fresh initialisation (scratch)."""
    unfreeze: str = "none"
    """Transfer: train only what the new tasks own, their heads and task-specific parameters
    (none), or also the checkpoint's shared trainable parameters (shared: the trained tasks'
    outputs then change too)."""
    eval_rows: int | None = None
    """Evaluation as a fidelity: rows per task scored at the first evaluation (a fixed,
    stratified subset of each dev set); each later one scores eval_growth times more, the last
    one (at max_steps) the whole dev set. None = the whole dev set every time."""
    eval_growth: float = 2.0
    """How much the evaluated subset grows from one evaluation to the next (with eval_rows)."""
    eval_full: bool = False
    """Score the whole dev set at every evaluation and report the eval_rows subset's score
    beside it as score_sub (the record a replay of schedulers reads)."""
    bucket: bool = True
    """Group examples of similar length into a batch (less padding)."""
    seed: int = 0
    device: str = "auto"
    bf16: bool = True
    """bf16 autocast when running on CUDA; ignored on CPU."""
    num_threads: int | None = None
    method_cfg: Any = field(default=None)

    def __post_init__(self) -> None:
        if isinstance(self.tasks, str):
            self.tasks = tuple(t for t in self.tasks.split(",") if t)
        self.tasks = tuple(self.tasks)
        if not self.tasks:
            raise ValueError("tasks: give at least one task")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks: duplicated task in {','.join(self.tasks)}")
        method = get_method(self.method)
        if self.method_cfg is None:
            self.method_cfg = method.Config()
        elif not isinstance(self.method_cfg, method.Config):
            raise TypeError(f"method_cfg must be {self.method}.Config")
        if self.lr is None:
            self.lr = float(method.DEFAULT_LR)
        _check(self.pooling in POOLINGS, f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        _check(self.lr_schedule in LR_SCHEDULES,
               f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        _check(self.val_from_train is None or 0 < self.val_from_train < 1,
               f"val_from_train must be a fraction in (0, 1), got {self.val_from_train}")
        _check(self.transfer_init in TRANSFER_INITS,
               f"transfer_init must be one of {TRANSFER_INITS}, got {self.transfer_init!r}")
        _check(self.unfreeze in UNFREEZE, f"unfreeze must be one of {UNFREEZE}, got {self.unfreeze!r}")
        _check(self.sampler in SAMPLERS, f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        _check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        _check(self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}")
        _check(self.eval_every >= 1, f"eval_every must be >= 1, got {self.eval_every}")
        _check(self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}")
        _check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        _check(self.max_length >= 8, f"max_length must be >= 8, got {self.max_length}")
        _check(0 <= self.warmup_ratio < 1, f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        _check(0 <= self.head_dropout < 1, f"head_dropout must be in [0, 1), got {self.head_dropout}")
        _check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        _check(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")
        _check(self.grad_clip > 0, f"grad_clip must be > 0, got {self.grad_clip}")
        _check(self.eval_rows is None or self.eval_rows >= 1,
               f"eval_rows must be >= 1 (or unset for the whole dev set), got {self.eval_rows}")
        _check(self.eval_growth >= 1, f"eval_growth must be >= 1, got {self.eval_growth}")

    # ---- flat dicts: the form trial configs, JSON files and CLIs use -------------------------
    def to_flat(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "method_cfg"}
        out["tasks"] = ",".join(self.tasks)
        out.update(dataclasses.asdict(self.method_cfg))
        return out

    @classmethod
    def from_flat(cls, flat: dict[str, Any]) -> TrainConfig:
        """Build from a flat dict; raises ValueError naming every unknown key."""
        flat = dict(flat)
        method_name = flat.get("method", cls.method)
        method = get_method(method_name)
        common = {f.name for f in dataclasses.fields(cls)} - {"method_cfg"}
        own = {f.name for f in dataclasses.fields(method.Config)}
        unknown = sorted(set(flat) - common - own)
        if unknown:
            raise ValueError(
                f"unknown config key(s) for method {method_name!r}: {', '.join(unknown)}; "
                f"method keys are: {', '.join(sorted(own)) or '(none)'}"
            )
        mcfg = method.Config(**{k: flat.pop(k) for k in own if k in flat})
        return cls(**flat, method_cfg=mcfg)


def method_fields(method: str) -> list[str]:
    """The hyperparameter names a method adds to the common ones."""
    return [f.name for f in dataclasses.fields(get_method(method).Config)]


def common_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig) if f.name != "method_cfg"]


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)
