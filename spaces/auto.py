"""``--method auto``: one search over PEFT designs (AutoPEFT-style, Zhou et al., 2024).

A design is a method plus the structural choices AutoPEFT searches: which layers get modules,
which attention projections LoRA targets, and whether adapters sit serially (Houlsby) or in
parallel (He et al.). The space is conditional: a trial first draws the ``family``, then only
that family's dims (``adapter`` also draws its ``placement``, which picks the method
``adapter`` or ``parallel_adapter``). Each method's dims keep their own ranges from
``spaces/<method>.py``; the structural dims replace the ones those files hold fixed.

Trial configs name a method's dims ``<method>.<key>`` (so two methods' ``lr`` never mix in the
searcher) and carry the chosen ``method`` and its fixed values (the define-by-run function
returns them); ``to_train_config`` turns one into the trainer's config: the one place an auto
trial is decoded (the trainable, the ``--max-params`` counter and the results all call it).
"""

from __future__ import annotations

from typing import Any

from spaces.common import Dim, Space, choice

LAYERS = choice("layers", ["all", "top_half", "bottom_half", "every_other"], role="scientific",
                note="AutoPEFT searches which layers get modules")
TARGETS = choice("target_modules",
                 ["query,value", "query,key,value", "query,key,value,attention.output.dense"],
                 role="scientific", note="which attention projections LoRA updates")
FAMILIES: dict[str, list[str]] = {
    "lora": ["lora"],
    "adapter": ["adapter", "parallel_adapter"],
    "lora_adapter": ["lora_adapter"],
    "prefix": ["prefix"],
    "ptuning": ["ptuning"],
    "unipelt": ["unipelt"],
}
"""Family -> its methods; a family of two methods draws ``placement`` to pick one."""
PLACEMENT = {"adapter": "serial", "parallel_adapter": "parallel"}
STRUCTURAL = {"lora": [LAYERS, TARGETS], "adapter": [LAYERS], "parallel_adapter": [LAYERS],
              "lora_adapter": [TARGETS], "unipelt": [LAYERS]}
"""Structural dims searched per method (replacing the fixed ones of its space file)."""
FAMILY_KEY, PLACEMENT_KEY = "family", "placement"


def branch(method: str) -> Space:
    """The space ``auto`` searches for ``method``: its own space with the structural dims."""
    from spaces import get_space

    space = get_space(method)
    return Space(method, space.dims + tuple(STRUCTURAL.get(method, [])))


def branches(families: list[str] | None = None) -> dict[str, Space]:
    """Method -> its branch space, for the given families (default: all)."""
    chosen = families or list(FAMILIES)
    unknown = [f for f in chosen if f not in FAMILIES]
    if unknown:
        raise ValueError(f"auto: unknown design family {', '.join(unknown)}; "
                         f"choose from {', '.join(FAMILIES)}")
    return {m: branch(m) for f in chosen for m in FAMILIES[f]}


def pick_method(family: str, placement: str | None = None) -> str:
    """The method a family (and, for adapters, a placement) stands for."""
    methods = FAMILIES[family]
    if len(methods) == 1:
        return methods[0]
    return next(m for m in methods if PLACEMENT[m] == placement)


def method_of(config: dict[str, Any]) -> str:
    """The method of an ``auto`` trial config (its ``method``, or decoded from its family)."""
    family = config[FAMILY_KEY]
    return config.get("method") or pick_method(family, config.get(f"{family}.{PLACEMENT_KEY}"))


def is_auto(config: dict[str, Any]) -> bool:
    return FAMILY_KEY in config


def design_config(config: dict[str, Any]) -> dict[str, Any]:
    """The trainer's flat config of an ``auto`` trial config (others pass through unchanged):
    the chosen method, its ``<method>.<key>`` values unprefixed, its fixed values, the shared
    constants; the other families' keys are dropped."""
    if not is_auto(config):
        return dict(config)
    family, method = config[FAMILY_KEY], method_of(config)
    prefixes = tuple(f"{m}." for ms in FAMILIES.values() for m in ms) + tuple(f"{f}." for f in FAMILIES)
    shared = {k: v for k, v in config.items() if not k.startswith(prefixes) and k != FAMILY_KEY}
    placement = f"{family}.{PLACEMENT_KEY}"  # "adapter.placement" is not adapter's key
    own = {k[len(method) + 1:]: v for k, v in config.items()
           if k.startswith(f"{method}.") and k != placement}
    return {**branch(method).fixed_values(), **shared, **own, "method": method}


def to_train_config(trial_config: dict[str, Any]):
    """The trainer's ``TrainConfig`` of any trial config (``--method auto`` ones decoded)."""
    from trainers.config import TrainConfig

    return TrainConfig.from_flat(design_config(trial_config))


def design_name(flat: dict[str, Any]) -> str:
    """A short name of a concrete design: the method and its structural choices, e.g.
    ``lora[top_half;query,value]`` or ``parallel_adapter[every_other]``."""
    method = flat["method"]
    parts = [str(flat[d.name]) for d in STRUCTURAL.get(method, []) if d.name in flat]
    return f"{method}[{';'.join(parts)}]" if parts else method


def searched_dims(spaces: dict[str, Space]) -> list[Dim]:
    """Every dim a trial may receive, with its ``<method>.`` name (for checks and records)."""
    out = [choice(FAMILY_KEY, sorted({f for f, ms in FAMILIES.items() if set(ms) & set(spaces)}),
                  role="scientific")]
    for family, methods in FAMILIES.items():
        if len([m for m in methods if m in spaces]) > 1:
            out.append(choice(f"{family}.{PLACEMENT_KEY}", [PLACEMENT[m] for m in methods if m in spaces],
                              role="scientific"))
    for method, space in spaces.items():
        out += [Dim(**{**d.__dict__, "name": f"{method}.{d.name}"}) for d in space.searched()]
    return out
