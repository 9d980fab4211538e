"""Searchers by name, ``--objective``, and the conversion of plain spaces to Tune/Optuna.

The table is lazy (Ray modules are imported only when an entry is built) and fails on an
unknown name with the choices. A space's fixed dims become constants of the Tune
``param_space``; its searched dims become Tune distributions (``random``) or an Optuna
define-by-run function (``optuna``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from spaces.common import Dim, Space

METRIC, MODE = "score", "max"
OBJECTIVES = {"score": (METRIC, MODE), "params": ("stored_pct", "min")}
"""``--objective`` names: the reported metric each optimises and its direction."""


def objective_metrics(objective: str) -> list[tuple[str, str]]:
    """``"score,params"`` -> [("score", "max"), ("stored_pct", "min")]; ValueError naming a bad
    part. The score always comes first: ASHA and the best config go by it."""
    names = [n.strip() for n in objective.split(",") if n.strip()]
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown or not names:
        raise ValueError(f"--objective {objective!r}: expected a comma list of "
                         f"{', '.join(OBJECTIVES)}, e.g. score,params")
    if names[0] != "score" or len(set(names)) != len(names):
        raise ValueError(f"--objective {objective!r}: start with score and name each objective once")
    return [OBJECTIVES[n] for n in names]


# ---- spaces -> Tune / Optuna ------------------------------------------------------------------
def tune_domain(dim: Dim):
    """The Tune sampling domain of one dim (Tune's integer upper bounds are exclusive)."""
    from ray import tune

    if dim.kind == "uniform":
        return tune.uniform(dim.low, dim.high)
    if dim.kind == "loguniform":
        return tune.loguniform(dim.low, dim.high)
    if dim.kind == "int":
        return tune.randint(int(dim.low), int(dim.high) + 1)
    if dim.kind == "logint":
        return tune.lograndint(int(dim.low), int(dim.high) + 1)
    if dim.kind == "choice":
        return tune.choice(list(dim.choices))
    return dim.value


def _suggest(trial, dims: list[Dim], prefix: str = "") -> None:
    for d in dims:
        name = prefix + d.name
        if d.kind in ("uniform", "loguniform"):
            trial.suggest_float(name, d.low, d.high, log=d.kind == "loguniform")
        elif d.kind in ("int", "logint"):
            trial.suggest_int(name, int(d.low), int(d.high), log=d.kind == "logint")
        else:
            trial.suggest_categorical(name, list(d.choices))


class OptunaSpace:
    """Optuna define-by-run function for a space: asks the trial for each searched dim.

    A plain class rather than a closure so the searcher state pickles for ``--resume``.
    """

    def __init__(self, dims: list[Dim]) -> None:
        self.dims = [d for d in dims if d.searched]

    def __call__(self, trial) -> None:
        _suggest(trial, self.dims)


class AutoOptunaSpace:
    """Define-by-run for ``--method auto``: the family, then (adapters) the placement, then only
    the chosen method's dims, named ``<method>.<dim>``; nothing of another method is drawn. It
    returns the chosen ``method`` and that branch's fixed values, which Tune adds to the trial
    config, so nothing downstream decodes the family again."""

    def __init__(self, branches: dict[str, Space]) -> None:
        self.branches = branches

    def __call__(self, trial) -> dict[str, Any]:
        from spaces.auto import FAMILIES, FAMILY_KEY, PLACEMENT, PLACEMENT_KEY, pick_method

        families = [f for f, ms in FAMILIES.items() if any(m in self.branches for m in ms)]
        family = trial.suggest_categorical(FAMILY_KEY, families)
        methods = [m for m in FAMILIES[family] if m in self.branches]
        method = methods[0]
        if len(methods) > 1:
            placement = trial.suggest_categorical(f"{family}.{PLACEMENT_KEY}",
                                                  [PLACEMENT[m] for m in methods])
            method = pick_method(family, placement)
        _suggest(trial, self.branches[method].searched(), prefix=f"{method}.")
        return {"method": method, **self.branches[method].fixed_values()}


# ---- searchers --------------------------------------------------------------------------------
def _optuna(space: Space | dict[str, Space], constants: dict[str, Any], seed: int,
            max_concurrent: int, num_samples: int, objectives: list[tuple[str, str]], budget=None,
            points: list[dict[str, Any]] | None = None):
    import optuna
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    # Explore broadly, then exploit: a quarter of the budget (2..10 trials) is drawn at random
    # before TPE models the results. The limiter keeps TPE from launching every trial before
    # any has reported.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    startup = min(10, max(2, num_samples // 4))
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
    # Several objectives: TPE models them together (multi-objective TPE) and Optuna keeps the
    # Pareto set; each trial's last reported values are its result.
    metric: str | list[str] = objectives[0][0] if len(objectives) == 1 else [m for m, _ in objectives]
    mode: str | list[str] = objectives[0][1] if len(objectives) == 1 else [d for _, d in objectives]
    define = AutoOptunaSpace(space) if isinstance(space, dict) else OptunaSpace(list(space.dims))
    if budget is not None:  # an enqueued point over the budget would only be pruned: skip it
        points = _within_budget(points or [], constants, *budget[:2])
    # Enqueued points (search/warm.py) are the study's first trials, in order.
    searcher = OptunaSearch(space=define, metric=metric, mode=mode, sampler=sampler,
                            points_to_evaluate=list(points or []) or None)
    if budget is not None:  # (counter, max %, log): over-budget proposals pruned before any trial
        from search.budget import BudgetSearcher

        searcher = BudgetSearcher(searcher, *budget)
    return ConcurrencyLimiter(searcher, max_concurrent=max_concurrent), dict(constants)


def _within_budget(points: list[dict[str, Any]], constants: dict[str, Any], count,
                   max_pct: float) -> list[dict[str, Any]]:
    """The enqueued points within ``--max-params`` (each one over it said in one line)."""
    from spaces.auto import design_name, to_train_config

    kept = []
    for i, point in enumerate(points, 1):
        config = {**constants, **point}
        pct = count(config)
        if pct <= max_pct:
            kept.append(point)
            continue
        design = design_name(to_train_config(config).to_flat())
        print(f"[budget] enqueued trial {i} of {len(points)} skipped: {design} trains {pct:.3f}% of "
              f"the backbone > --max-params {max_pct:g}%", flush=True)
    return kept


def _random(space: Space, constants: dict[str, Any], seed: int, max_concurrent: int,
            num_samples: int, objectives: list[tuple[str, str]], budget=None,
            points: list[dict[str, Any]] | None = None):
    from ray.tune.search import BasicVariantGenerator

    param_space = {**constants, **{d.name: tune_domain(d) for d in space.searched()}}
    # Each enqueued point replaces one of the num_samples draws, first.
    return BasicVariantGenerator(max_concurrent=max_concurrent, random_state=seed,
                                 points_to_evaluate=list(points or []) or None), param_space


SEARCHERS: dict[str, Callable] = {"optuna": _optuna, "random": _random}


def make_searcher(name: str, space: Space | dict[str, Space], constants: dict[str, Any], *,
                  seed: int, max_concurrent: int, num_samples: int,
                  objectives: list[tuple[str, str]] | None = None, budget=None,
                  points: list[dict[str, Any]] | None = None):
    """``(search_alg, param_space)`` for Tune: constants are every fixed config value. ``space``
    is one method's space, or for ``--method auto`` the branches (method -> space; Optuna only,
    each branch's fixed values are added per trial). ``budget`` = (counter, max %, log path).
    ``points``: searched values the first trials run, in order (``search.warm.start_points``),
    at most ``num_samples``; with a budget, those over it are skipped (said)."""
    if name not in SEARCHERS:
        raise ValueError(f"unknown searcher {name!r}; choose one of: {', '.join(SEARCHERS)}")
    if isinstance(space, dict) and name != "optuna":
        raise ValueError("--method auto needs --searcher optuna (a conditional space)")
    if budget is not None and name != "optuna":
        raise ValueError("--max-params needs --searcher optuna")
    fixed = {} if isinstance(space, dict) else space.fixed_values()
    return SEARCHERS[name](space, {**constants, **fixed}, seed, max_concurrent,
                           num_samples, objectives or [(METRIC, MODE)], budget,
                           points=list(points or [])[:num_samples])
