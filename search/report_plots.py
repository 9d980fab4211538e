"""The report's figures, drawn with matplotlib (Agg, no display) from ``report_data`` records.

Each function writes one PNG and returns its path; none needs Ray or MLflow.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from search.pareto import pareto_front  # noqa: E402
from search.report_data import MethodRecord, TrialRecord  # noqa: E402
from spaces.common import Dim  # noqa: E402

DPI = 110


def colors(methods: list[str]) -> dict[str, object]:
    """A distinct colour per method or design (tab10, tab20, then evenly spaced hues)."""
    n = len(methods)
    if n <= 10:
        cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        return {m: cycle[i] for i, m in enumerate(methods)}
    cmap = matplotlib.colormaps["tab20" if n <= 20 else "hsv"]
    return {m: cmap(i / (20 if n <= 20 else n)) for i, m in enumerate(methods)}


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def pareto_plot(methods: list[MethodRecord], path: Path, title: str = "") -> Path:
    """Dev score against % trainable parameters (log axis) for every trial, coloured by
    method; each method's best is a star; the Pareto front over all trials is a step line."""
    many = len(methods) > 6  # the legend goes beside the axes
    fig, ax = plt.subplots(figsize=(11.5 if many else 7.5, 4.8 if len(methods) < 14 else 6.2))
    palette = colors([m.method for m in methods])
    for m in methods:
        pts = [t for t in m.finite if math.isfinite(t.stored_pct) and t.stored_pct > 0]
        ax.scatter([t.stored_pct for t in pts], [t.score for t in pts], s=28, alpha=0.75,
                   color=palette[m.method], label=f"{m.method} ({len(pts)})")
        best = m.best
        if best is not None and best in pts:
            ax.scatter([best.stored_pct], [best.score], marker="*", s=220, color=palette[m.method],
                       edgecolors="black", linewidths=0.8, zorder=4)
    front = pareto_front([t for m in methods for t in m.finite if t.stored_pct > 0],
                         score=lambda t: t.score, cost=lambda t: t.stored_pct)
    if front:
        xs = [t.stored_pct for t in front]
        ys = [t.score for t in front]
        ax.step(xs, ys, where="post", color="black", lw=1.2, ls="--", zorder=3,
                label=f"Pareto front ({len(front)})")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("trainable parameters, % of the backbone (stored for all tasks)")
    ax.set_ylabel("dev score")
    ax.set_title(title or "score vs parameters: every trial (star = best of its method)")
    ax.grid(alpha=0.3, which="both")
    if many:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    else:
        ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def rung_steps(m: MethodRecord) -> list[int]:
    """Training steps at which ASHA compared trials (empty for FIFO): milestones
    grace * factor^k evaluations below the last, as Ray's ASHA places them."""
    if m.settings.get("scheduler", "asha") != "asha":
        return []
    every = m.setting("eval_every", 0)
    max_steps = m.setting("max_steps", 0)
    grace, factor = m.setting("grace_period", 1), m.setting("reduction_factor", 2)
    if every <= 0 or max_steps <= 0 or factor <= 1:
        return []
    max_t = math.ceil(max_steps / every)
    rungs, k = [], 0
    while grace * factor ** k < max_t:
        rungs.append(int(min(grace * factor ** k * every, max_steps)))
        k += 1
    return rungs


def curves_plot(m: MethodRecord, path: Path) -> Path:
    """Score against training step for every trial of a method: trials ASHA stopped are faded,
    the best is bold, ASHA's rungs are dotted vertical lines."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    best = m.best
    for t in m.trials:
        pts = [(s, v) for s, v in t.curve if math.isfinite(v)]
        if not pts:
            continue
        xs, ys = zip(*pts, strict=True)
        if t is best:
            ax.plot(xs, ys, color="C3", lw=2.6, marker="o", ms=4, zorder=4, label=f"best ({t.trial_id})")
        elif t.stopped_early:
            ax.plot(xs, ys, color="gray", lw=1, alpha=0.45, marker="o", ms=4)
        else:
            ax.plot(xs, ys, color="C0", lw=1.3, alpha=0.9, marker="o", ms=3)
    ax.plot([], [], color="C0", label="ran to the end")
    ax.plot([], [], color="gray", alpha=0.45, marker="o", ms=4, label="stopped early by ASHA")
    for i, step in enumerate(rung_steps(m)):
        ax.axvline(step, color="black", ls=":", lw=1, label="ASHA rung" if i == 0 else None)
    ax.set_xlabel("training step")
    ax.set_ylabel("dev score")
    ax.set_title(f"{m.method}: learning curves of {len(m.trials)} trials")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def importance_plot(method: str, importances: dict[str, float], path: Path, evaluator: str) -> Path:
    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(names) + 1.4))
    ax.barh(names, [importances[n] for n in names], color="C2")
    ax.set_xlabel(f"importance ({evaluator}, sums to 1)")
    ax.set_title(f"{method}: hyperparameter importance")
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


def parse_value(dim: Dim, text: str):
    """A trial's logged param (a string) as the dim's type; None when it does not parse."""
    try:
        if dim.kind in ("int", "logint"):
            return int(float(text))
        if dim.kind in ("uniform", "loguniform"):
            return float(text)
    except ValueError:
        return None
    for c in dim.choices:
        if str(c) == text:
            return c
    return None


def values_plot(m: MethodRecord, path: Path) -> Path | None:
    """One panel per searched dim: score against the dim's value for every trial, the searched
    range's ends as red lines (a best point against one of them asks for a wider range)."""
    dims = m.dims
    if not dims:
        return None
    cols = min(3, len(dims))
    rows = math.ceil(len(dims) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.1 * rows), squeeze=False)
    best = m.best
    for ax, dim in zip(axes.flat, dims, strict=False):
        pts: list[tuple[object, float, TrialRecord]] = []
        for t in m.finite:
            v = parse_value(dim, t.params.get(dim.name, ""))
            if v is not None:
                pts.append((v, t.score, t))
        if dim.kind == "choice":
            labels = [str(c) for c in dim.choices]
            xs = [labels.index(str(v)) for v, _, _ in pts]
            ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=7)
            ax.set_xlim(-0.5, len(labels) - 0.5)
        else:
            xs = [v for v, _, _ in pts]
            for edge in (dim.low, dim.high):
                ax.axvline(edge, color="C3", lw=1, ls="--")
            if dim.kind.startswith("log"):
                ax.set_xscale("log")
        ys = [s for _, s, _ in pts]
        ax.scatter(xs, ys, s=22, color="C0", alpha=0.8)
        for x, (_, s, t) in zip(xs, pts, strict=True):
            if t is best:
                ax.scatter([x], [s], marker="*", s=180, color="C3", edgecolors="black", zorder=4)
        ax.set_title(dim.name, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(dims):]:
        ax.axis("off")
    fig.suptitle(f"{m.method}: dev score vs each searched value (red dashes: range ends; star: best)",
                 fontsize=10)
    return _save(fig, path)
