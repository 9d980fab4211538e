"""The report's figures, drawn with matplotlib from ``data`` records; none needs Ray or MLflow.

Figures are built with matplotlib's object API (``Figure``, no ``pyplot``): no backend to
select, no global figure registry to leak into, safe inside a driver that runs other code.
Each ``*_figure`` function returns the figure (tests read its axes); each ``*_plot`` function
writes it as one PNG and returns the path.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from search.report.data import MethodRecord, TrialRecord, by_role, parse_value, rung_steps
from search.report.pareto import pareto_front
from spaces.common import Dim

DPI = 110
ROLE_COLORS = {"scientific": "C1", "nuisance": "C7"}
"""Importance bars by role: scientific (what the comparison is about) stands out."""


def colors(methods: list[str]) -> dict[str, object]:
    """A distinct colour per method or design (tab10, tab20, then evenly spaced hues)."""
    n = len(methods)
    if n <= 10:
        cycle = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
        return {m: cycle[i] for i, m in enumerate(methods)}
    cmap = matplotlib.colormaps["tab20" if n <= 20 else "hsv"]
    return {m: cmap(i / (20 if n <= 20 else n)) for i, m in enumerate(methods)}


def save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return path


# ---- every trial of every method: score against parameters -----------------------------------
def pareto_figure(methods: list[MethodRecord], title: str = "") -> Figure:
    """Dev score against % trainable parameters (log axis) for every trial, coloured by
    method; each method's best is a star; the Pareto front over all trials is a step line."""
    many = len(methods) > 6  # the legend goes beside the axes
    fig = Figure(figsize=(11.5 if many else 7.5, 4.8 if len(methods) < 14 else 6.2))
    ax = fig.subplots()
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
        ax.step([t.stored_pct for t in front], [t.score for t in front], where="post", color="black",
                lw=1.2, ls="--", zorder=3, label=f"Pareto front ({len(front)})")
    if any(t.stored_pct > 0 and math.isfinite(t.stored_pct) for m in methods for t in m.finite):
        ax.set_xscale("log")  # a log axis with no point cannot be drawn (no trial reported a score)
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.text(0.5, 0.5, "no trial reported a finite score", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("trainable parameters, % of the backbone (stored for all tasks)")
    ax.set_ylabel("dev score")
    ax.set_title(title or "score vs parameters: every trial (star = best of its method)")
    ax.grid(alpha=0.3, which="both")
    if many:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    else:
        ax.legend(fontsize=8, loc="best")
    return fig


def pareto_plot(methods: list[MethodRecord], path: Path, title: str = "") -> Path:
    return save(pareto_figure(methods, title), path)


# ---- one method: learning curves, importances, score against each value ----------------------
def curves_plot(m: MethodRecord, path: Path) -> Path:
    """Score against training step for every trial of a method: trials ASHA stopped are faded,
    the best is bold, ASHA's rungs are dotted vertical lines."""
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
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
    return save(fig, path)


def importance_figure(method: str, ranked: list[tuple[str, str, float]], evaluator: str) -> Figure:
    """Horizontal bars, one per dim, coloured by role; ``ranked`` is (name, role, importance)
    in reading order (scientific dims first), drawn top to bottom."""
    fig = Figure(figsize=(6.4, 0.45 * len(ranked) + 1.6))
    ax = fig.subplots()
    rows = ranked[::-1]  # barh draws its first bar at the bottom
    ax.barh([n for n, _, _ in rows], [v for _, _, v in rows],
            color=[ROLE_COLORS.get(r, "C2") for _, r, _ in rows])
    roles = [r for r in ROLE_COLORS if any(role == r for _, role, _ in ranked)]
    ax.legend(handles=[Patch(color=ROLE_COLORS[r], label=r) for r in roles], fontsize=8, loc="lower right")
    ax.set_xlabel(f"importance ({evaluator}, sums to 1)")
    ax.set_title(f"{method}: hyperparameter importance (scientific dims first)")
    ax.grid(alpha=0.3, axis="x")
    return fig


def importance_plot(method: str, ranked: list[tuple[str, str, float]], path: Path, evaluator: str) -> Path:
    return save(importance_figure(method, ranked, evaluator), path)


def values_figure(m: MethodRecord) -> Figure | None:
    """One panel per searched dim, scientific dims first, the role in each panel's title:
    score against the dim's value for every trial, the searched range's ends as red lines (a
    best point against one of them asks for a wider range)."""
    dims = by_role(m.dims)
    if not dims:
        return None
    cols = min(3, len(dims))
    rows = math.ceil(len(dims) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.1 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, dim in zip(axes.flat, dims, strict=False):
        _values_panel(ax, dim, m)
    for ax in list(axes.flat)[len(dims):]:
        ax.axis("off")
    fig.suptitle(f"{m.method}: dev score vs each searched value (red dashes: range ends; star: best)",
                 fontsize=10)
    return fig


def values_plot(m: MethodRecord, path: Path) -> Path | None:
    fig = values_figure(m)
    return None if fig is None else save(fig, path)


def _values_panel(ax, dim: Dim, m: MethodRecord) -> None:
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
        if dim.kind.startswith("log") and dim.low > 0:
            ax.set_xscale("log")
    ax.scatter(xs, [s for _, s, _ in pts], s=22, color="C0", alpha=0.8)
    best = m.best
    for x, (_, s, t) in zip(xs, pts, strict=True):
        if t is best:
            ax.scatter([x], [s], marker="*", s=180, color="C3", edgecolors="black", zorder=4)
    ax.set_title(f"{dim.name} ({dim.role})", fontsize=9,
                 fontweight="bold" if dim.role == "scientific" else "normal")
    ax.grid(alpha=0.3)
