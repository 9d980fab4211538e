"""Warm starts: the trials a search enqueues before its searcher proposes any.

Every method's search first runs the method's own defaults (the config a user gets without
searching: ``TrainConfig``'s field defaults, the method ``Config``'s, and its ``DEFAULT_LR``),
so a search never reports a best below them (``--no-default-trial`` skips it). ``--warm-start
EXP[,EXP]`` then enqueues the best config of each earlier search of the same method in those
MLflow experiments (the ``best_config.json`` of its parent run). Each point holds the searched
keys only and must lie in the current space (after ``--range`` and ``--set``): a value outside
it skips that point, said in one line. A trial run of an enqueued point carries the MLflow tag
``warm_start`` = ``default`` or the experiment's name (``search.tracking.TrialRuns``).

No Ray import: ``search.plan`` checks the experiments exist before Ray starts.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from search.results import resolved_config
from spaces.common import Dim, Space

DEFAULT = "default"
"""The ``warm_start`` tag of the default trial (other enqueued trials: their experiment)."""
Say = Callable[[str], None]
Point = dict[str, Any]
Start = tuple[str, Point]
"""(origin, point): ``"default"`` or the experiment it came from, and the searched values."""


def _say(line: str) -> None:
    print(line, flush=True)


def experiments(text: str | None) -> list[str]:
    """``"a, b"`` -> ``["a", "b"]`` (duplicates dropped); ``None`` -> ``[]``."""
    return list(dict.fromkeys(n.strip() for n in (text or "").split(",") if n.strip()))


# ---- fitting values to a space ------------------------------------------------------------------
def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


def fit_value(dim: Dim, value: Any) -> tuple[Any, str | None]:
    """``(value, None)`` as the searcher takes it for ``dim`` (floats for float dims, ints for
    int dims, the choice itself), or ``(None, why)`` when it lies outside the dim. A float a
    hair outside a bound (1e-9 relative, e.g. through a text round trip) is clipped in."""
    if dim.kind == "choice":
        for c in dim.choices:  # type-strict: False is not the choice 0
            if c == value and isinstance(c, bool) == isinstance(value, bool):
                return c, None
        return None, (f"{dim.name}={_show(value)} is not among the searched choices "
                      f"({', '.join(map(_show, dim.choices))})")
    if not dim.searched:
        return dim.value, None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None, f"{dim.name}={value!r} is not a number"
    if isinstance(value, bool) or not math.isfinite(number):
        return None, f"{dim.name}={value!r} is not a number"
    low, high = float(dim.low), float(dim.high)
    slack = 1e-9 * max(abs(low), abs(high))
    if not low - slack <= number <= high + slack:
        return None, (f"{dim.name}={_show(number)} is outside the searched range "
                      f"[{_show(low)}, {_show(high)}]")
    number = min(max(number, low), high)
    if dim.kind in ("int", "logint"):
        if number != int(number):
            return None, f"{dim.name}={_show(number)} is not an integer"
        return int(number), None
    return number, None


def fit_point(dims: list[Dim], values: dict[str, Any], prefix: str = "") -> tuple[Point | None, str | None]:
    """The point of ``values`` on the searched ``dims`` (keys ``prefix + name``), or
    ``(None, why)`` for the first dim it misses."""
    point: Point = {}
    for d in dims:
        if not d.searched:
            continue
        if d.name not in values:
            return None, f"it has no {d.name}"
        fitted, why = fit_value(d, values[d.name])
        if why:
            return None, why
        point[prefix + d.name] = fitted
    return point, None


def same_point(a: Point, b: dict[str, Any]) -> bool:
    """Every key of point ``a`` holds the same value in ``b`` (floats to 1e-9 relative)."""
    for k, v in a.items():
        if k not in b:
            return False
        w = b[k]
        if isinstance(v, float) and isinstance(w, (int, float)) and not isinstance(w, bool):
            if not math.isclose(v, w, rel_tol=1e-9, abs_tol=0.0):
                return False
        elif not (v == w and isinstance(v, bool) == isinstance(w, bool)):
            return False
    return True


# ---- the default trial --------------------------------------------------------------------------
def method_defaults(method: str, constants: dict[str, Any] | None = None) -> dict[str, Any]:
    """The flat config a user gets without searching (``lr`` = the method's ``DEFAULT_LR``),
    with the search's ``constants`` (e.g. a transfer search's ``max_steps``: its budget)."""
    from trainers.config import TrainConfig

    return TrainConfig.from_flat({**(constants or {}), "method": method}).to_flat()


def default_point(space: Space, method: str, say: Say = _say,
                  constants: dict[str, Any] | None = None) -> Point | None:
    """The method's defaults (with the search's ``constants``) on the searched dims of
    ``space``; None (said in one line) when one of them lies outside the space."""
    point, why = fit_point(space.searched(), method_defaults(method, constants))
    if point is None:
        say(f"[{method}] no default trial: {why}; the search starts from the searcher's own "
            "proposals")
    return point


# ---- earlier searches in MLflow -----------------------------------------------------------------
def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _store_missing(uri: str) -> bool:
    """A SQLite store whose file does not exist (opening it would create it)."""
    return uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists()


def check_experiments(uri: str, names: list[str]) -> None:
    """ValueError (one line) unless every experiment in ``names`` exists in the store at ``uri``."""
    if not names:
        return
    if _store_missing(uri):
        raise ValueError(f"--warm-start {','.join(names)}: no MLflow store at {uri} (no such file)")
    try:
        client = _client(uri)
        missing = [n for n in names if (e := client.get_experiment_by_name(n)) is None
                   or e.lifecycle_stage != "active"]
        known = [e.name for e in client.search_experiments(max_results=20)] if missing else []
    except Exception as e:  # noqa: BLE001 - unreachable server, bad URI: said in one line
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ValueError(f"--warm-start: cannot read the MLflow store {uri}: {first}") from None
    if missing:
        raise ValueError(f"--warm-start {', '.join(missing)}: no such MLflow experiment in {uri} "
                         f"(found: {', '.join(known) or 'none'})")


def best_configs(uri: str, experiment: str, method: str) -> list[dict[str, Any]]:
    """The best configs recorded by finished searches of ``method`` in ``experiment``, newest
    first: each parent run's ``best_config.json`` (its params when the file is missing)."""
    client = _client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    runs = client.search_runs([exp.experiment_id], f"tags.kind = 'method' and tags.method = '{method}' "
                              "and tags.best_config = 'true'", order_by=["attributes.start_time DESC"])
    configs = []
    for run in runs:
        try:
            with tempfile.TemporaryDirectory() as tmp, _no_progress_bar():
                path = client.download_artifacts(run.info.run_id, "best_config.json", tmp)
                configs.append(json.loads(Path(path).read_text()))
        except Exception:  # noqa: BLE001 - no artifact (or unreadable): the params hold it too
            configs.append({k: _param(v) for k, v in run.data.params.items()})
    return configs


@contextmanager
def _no_progress_bar():
    """MLflow's download progress bar off (one small file; the search prints its own lines)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def _param(text: str) -> Any:
    """An MLflow param back to a value: JSON when it parses (numbers, true), Python's
    ``str(True)``, else the text."""
    if text in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[text]
    try:
        return json.loads(text)
    except ValueError:
        return text


def auto_point(branches: dict[str, Space], config: dict[str, Any]) -> tuple[Point | None, str | None]:
    """A flat design config (``method`` + its keys) as a point of ``--method auto``'s
    define-by-run space: ``family``, ``<family>.placement``, ``<method>.<dim>``."""
    from spaces.auto import FAMILIES, FAMILY_KEY, PLACEMENT, PLACEMENT_KEY

    method = config.get("method")
    if method not in branches:
        return None, f"its method {method!r} is not among the searched designs ({', '.join(branches)})"
    family = next(f for f, ms in FAMILIES.items() if method in ms)
    point: Point = {FAMILY_KEY: family}
    if len([m for m in FAMILIES[family] if m in branches]) > 1:
        point[f"{family}.{PLACEMENT_KEY}"] = PLACEMENT[method]
    own, why = fit_point(branches[method].searched(), config, prefix=f"{method}.")
    return (None, why) if own is None else ({**point, **own}, None)


def warm_points(uri: str, names: list[str], method: str, space: Space | dict[str, Space],
                say: Say = _say) -> list[Start]:
    """``(experiment, point)`` for the best config of each earlier search of ``method`` in the
    experiments ``names`` that fits ``space`` (a method's space, or ``--method auto``'s
    branches: then the best configs of earlier ``auto`` searches and of searches of the
    branches' methods); each one that does not, or an experiment without such a search, is
    said in one line."""
    sources = [method, *space] if isinstance(space, dict) else [method]
    out: list[Start] = []
    for name in names:
        configs = [c for m in sources for c in best_configs(uri, name, m)]
        if not configs:
            what = method if len(sources) == 1 else f"{method} (nor {', '.join(sources[1:])})"
            say(f"[{method}] --warm-start {name}: no finished {what} search in that experiment; "
                "nothing to start from there")
        for config in configs:
            if isinstance(space, dict):
                point, why = auto_point(space, config)
            else:
                point, why = fit_point(space.searched(), config)
            if point is None:
                say(f"[{method}] --warm-start {name}: its best config is not enqueued: {why}")
            else:
                out.append((name, point))
    return out


# ---- what a search enqueues ---------------------------------------------------------------------
def start_points(plan, method: str, say: Say = _say) -> list[Start]:
    """The points ``method``'s search enqueues, in order: the default trial (unless
    ``--no-default-trial``), then ``--warm-start``'s best configs; a point equal to an earlier
    one is dropped, and no more than ``--num-samples`` are kept (each said in one line)."""
    s = plan.settings
    space: Space | dict[str, Space] = plan.auto if method == "auto" else plan.spaces[method]
    starts: list[Start] = []
    if s.default_trial:
        if method == "auto":
            say("[auto] no default trial: --method auto searches designs of several methods, "
                "which have no one default")
        elif (point := default_point(space, method, say, plan.constants[method])) is not None:
            starts.append((DEFAULT, point))
    for origin, point in warm_points(plan.mlflow_uri, experiments(s.warm_start), method, space, say):
        twin = next((o for o, p in starts if same_point(p, point) and len(p) == len(point)), None)
        if twin is not None:
            say(f"[{method}] --warm-start {origin}: its best config is the same as the "
                f"{'default trial' if twin == DEFAULT else f'best config of {twin}'}; enqueued once")
            continue
        starts.append((origin, point))
    if len(starts) > s.num_samples:
        dropped = ", ".join(o for o, _ in starts[s.num_samples:])
        say(f"[{method}] only {s.num_samples} of {len(starts)} warm-start configs fit in "
            f"--num-samples {s.num_samples}; not enqueued: {dropped}")
        starts = starts[:s.num_samples]
    if starts:
        say(f"[{method}] the first {len(starts)} trial(s) are enqueued: "
            + ", ".join("the defaults" if o == DEFAULT else f"the best of {o}" for o, _ in starts))
    return starts


def origin_of(config: dict[str, Any], starts: list[Start], used: set[int]) -> int | None:
    """The index in ``starts`` of the first point not yet ``used`` that ``config`` (a trial
    config) holds, or None: the trial that ran an enqueued point."""
    for i, (_, point) in enumerate(starts):
        if i not in used and same_point(point, config):
            return i
    return None


def default_config(plan, method: str) -> dict[str, Any] | None:
    """The resolved config of the method's defaults (with the search's fixed values), which
    confirmation retrains beside the top configs, whether or not the search began with them
    (``--no-default-trial``); None for ``auto`` and when a default lies outside the space."""
    if method == "auto":
        return None
    space = plan.spaces[method]
    point = default_point(space, method, lambda _: None, plan.constants[method])
    if point is None:
        return None
    fixed = {d.name: d.value for d in space.dims if d.kind == "fixed"}  # as every trial has them
    return resolved_config({**plan.constants[method], **fixed, **point})
