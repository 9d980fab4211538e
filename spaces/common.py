"""Search-space building blocks and the dimensions every method shares.

A space is plain data: a list of ``Dim`` values, no Ray or Optuna objects (``search/``
converts them). Each dim carries a role, after the tuning playbook:

- ``scientific``: what a method comparison is about (rank, bottleneck, prompt length);
- ``nuisance``: must be tuned for the comparison to be fair (learning rate, dropout, ...);
- ``fixed``: held constant in every trial (batch size is not a tuning knob).

Example::

    >>> from spaces.common import COMMON, Space, logint
    >>> space = Space("lora", COMMON + [logint("r", 4, 128, role="scientific")])
    >>> [d.name for d in space.searched()][:2]
    ['lr', 'weight_decay']
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from trainers.config import LR_SCHEDULES

KINDS = ("uniform", "loguniform", "int", "logint", "choice", "fixed")
"""``int``/``logint`` bounds are inclusive; ``log*`` kinds sample the logarithm uniformly."""
ROLES = ("scientific", "nuisance", "fixed")


@dataclass(frozen=True)
class Dim:
    """One hyperparameter: its config key, how it is drawn, and why it is searched."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()
    value: Any = None
    """The value of a ``fixed`` dim."""
    role: str = "nuisance"
    note: str = ""
    """Where the range comes from (paper, default), for the reader of the space file."""

    def __post_init__(self) -> None:
        where = f"dim {self.name!r}"
        if self.kind not in KINDS:
            raise ValueError(f"{where}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.role not in ROLES:
            raise ValueError(f"{where}: role must be one of {ROLES}, got {self.role!r}")
        if (self.kind == "fixed") != (self.role == "fixed"):
            raise ValueError(f"{where}: role 'fixed' goes with kind 'fixed' and only with it")
        if self.kind == "choice":
            if not self.choices:
                raise ValueError(f"{where}: a choice needs at least one option")
            if len(set(map(repr, self.choices))) != len(self.choices):
                raise ValueError(f"{where}: duplicated option in {self.choices}")
        if self.kind in ("uniform", "loguniform", "int", "logint"):
            self._check_range(where)

    def _check_range(self, where: str) -> None:
        if self.low is None or self.high is None:
            raise ValueError(f"{where}: {self.kind} needs low and high")
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"{where}: low and high must be finite")
        if not self.low < self.high:
            raise ValueError(f"{where}: low must be < high, got low={self.low} high={self.high}")
        if self.kind.startswith("log") and self.low <= 0:
            raise ValueError(f"{where}: a log range needs low > 0, got low={self.low}")
        if self.kind in ("int", "logint") and (int(self.low) != self.low or int(self.high) != self.high):
            raise ValueError(f"{where}: int bounds must be integers, got {self.low}, {self.high}")

    @property
    def searched(self) -> bool:
        return self.kind != "fixed"

    def corners(self) -> list[Any]:
        """Extreme values a trial may receive (used to check a space against the config)."""
        if self.kind == "fixed":
            return [self.value]
        if self.kind == "choice":
            return list(self.choices)
        if self.kind in ("int", "logint"):
            return [int(self.low), int(self.high)]
        return [float(self.low), float(self.high)]


# ---- constructors: one line per dim in the space files ----------------------------------------
def uniform(name: str, low: float, high: float, role: str = "nuisance", note: str = "") -> Dim:
    return Dim(name, "uniform", low=low, high=high, role=role, note=note)


def loguniform(name: str, low: float, high: float, role: str = "nuisance", note: str = "") -> Dim:
    return Dim(name, "loguniform", low=low, high=high, role=role, note=note)


def integer(name: str, low: int, high: int, role: str = "nuisance", note: str = "") -> Dim:
    return Dim(name, "int", low=low, high=high, role=role, note=note)


def logint(name: str, low: int, high: int, role: str = "nuisance", note: str = "") -> Dim:
    return Dim(name, "logint", low=low, high=high, role=role, note=note)


def choice(name: str, options: Iterable[Any], role: str = "nuisance", note: str = "") -> Dim:
    return Dim(name, "choice", choices=tuple(options), role=role, note=note)


def fixed(name: str, value: Any, note: str = "") -> Dim:
    return Dim(name, "fixed", value=value, role="fixed", note=note)


@dataclass(frozen=True)
class Space:
    """A method's search space. Later dims replace earlier ones of the same name, so a
    method file can start from ``COMMON`` and override, e.g., the learning-rate range."""

    method: str
    dims: tuple[Dim, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        merged: dict[str, Dim] = {}
        for d in self.dims:
            if not isinstance(d, Dim):
                raise TypeError(f"space {self.method!r}: expected Dim, got {d!r}")
            merged[d.name] = d  # an override keeps the position of the dim it replaces
        object.__setattr__(self, "dims", tuple(merged.values()))

    def __getitem__(self, name: str) -> Dim:
        for d in self.dims:
            if d.name == name:
                return d
        raise KeyError(f"space {self.method!r} has no dim {name!r}")

    def names(self) -> list[str]:
        return [d.name for d in self.dims]

    def searched(self) -> list[Dim]:
        return [d for d in self.dims if d.searched]

    def fixed_values(self) -> dict[str, Any]:
        return {d.name: d.value for d in self.dims if not d.searched}

    def reranged(self, name: str, low: float, high: float) -> Space:
        """The same space with dim ``name`` drawn from [low, high] (its kind kept); a bad range
        (low >= high, a log range from <= 0, non-integer int bounds) raises ValueError."""
        d = self[name]
        if d.kind in ("int", "logint"):
            if int(low) != low or int(high) != high:
                raise ValueError(f"dim {name!r}: int bounds must be integers, got {low:g}, {high:g}")
            low, high = int(low), int(high)
        return Space(self.method, self.dims + (Dim(name, d.kind, low=low, high=high, role=d.role,
                                                    note="range set by the user"),))

    def pin(self, values: dict[str, Any]) -> Space:
        """The same space with ``values`` held fixed (a user's ``--set key=value``)."""
        pinned = tuple(fixed(k, v, "set by the user") for k, v in values.items())
        return Space(self.method, self.dims + pinned)


# ---- JSON: the searched space as recorded beside a search (MLflow ``space.json``) -----------
def dims_to_json(dims: Iterable[Dim]) -> list[dict[str, Any]]:
    """Plain dicts (every field, role included) that ``json.dumps`` takes when the values do.

        >>> dims = [logint("r", 4, 128, role="scientific"), choice("bias", [False, True])]
        >>> dims_from_json(dims_to_json(dims)) == dims
        True
    """
    return [{**asdict(d), "choices": list(d.choices)} for d in dims]


def dims_from_json(items: Iterable[dict[str, Any]]) -> list[Dim]:
    """The ``Dim``s that ``dims_to_json`` wrote (a record without a role reads as nuisance)."""
    return [Dim(**{**d, "choices": tuple(d.get("choices") or ())}) for d in items]


# ---- the dims every method shares ---------------------------------------------------------------
COMMON: list[Dim] = [
    loguniform("lr", 1e-5, 5e-3,
               note="PEFT papers tune in 1e-5..3e-3 (Houlsby 3e-3); the seed projects' tuned bests "
                    "sat at 6e-4..9e-4, just under the old 1e-3 cap; `full` and heads-only override"),
    uniform("weight_decay", 0.0, 0.5,
            note="AdamW decay; 0.01 is the usual default, AdaptBert tuned 0.445"),
    uniform("warmup_ratio", 0.0, 0.2, note="linear warmup share of max_steps"),
    choice("lr_schedule", LR_SCHEDULES,
           note="rate after warmup: linear or cosine decay to 0, or constant; which is best depends "
                "on the budget (at 60 steps a decay to 0 trains the last steps at a fraction of "
                "the rate), so it is tuned with the rate, not compared (BENCHMARKS.md §10)"),
    uniform("head_dropout", 0.0, 0.3, note="dropout before each task head"),
    loguniform("temperature", 1.0, 20.0,
               note="task sampling p ~ n^(1/T): 1 = proportional to size, large = uniform"),
    fixed("sampler", "temperature", note="temperature sampling covers proportional and uniform"),
    fixed("batch_size", 32, note="not a tuning knob (tuning playbook); change with --set"),
]

LAYERS_ALL = fixed("layers", "all", note="modules in every layer; --method auto searches the subset")
