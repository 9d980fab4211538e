"""Build the report: every figure and table of an experiment's record, written under one
folder, then (``make_report``) logged to MLflow."""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

from search.report.board import leaderboard, verdict
from search.report.data import ExperimentRecord, MethodRecord
from search.report.doc import (
    Section,
    edge_warnings,
    html_page,
    importance_text,
    importances,
    markdown,
    number,
    pareto_rows,
    ranked_importances,
    roles_text,
)


@dataclass
class Report:
    out: Path
    html: Path
    markdown: Path
    figures: dict[str, list[Path]]
    """Figures by method ('' = the experiment-wide ones)."""
    leaderboard: list[dict]
    pareto: list[list[str]]
    warnings: list[str]
    verdict: str = ""
    """What the leaderboard supports: is the lead separable, did each search beat its defaults."""


def build(exp: ExperimentRecord, out: Path) -> Report:
    """Every figure and table of the report under ``out``; no MLflow writes."""
    from search.report import plots  # matplotlib only when figures are drawn

    out.mkdir(parents=True, exist_ok=True)
    header, rows, records = leaderboard(exp)
    figures: dict[str, list[Path]] = {"": [plots.pareto_plot(exp.methods, out / "pareto.png",
                                                             f"{exp.name}: score vs parameters")]}
    p_header, p_rows = pareto_rows(exp.trials, {m.method: m.dims for m in exp.methods})
    warnings = [w for m in exp.methods for w in edge_warnings(m)]
    conclusion = verdict(exp, records)
    sections = [
        Section("Leaderboard", f"MLflow {exp.uri}, experiment {exp.name}. Budget: {budget_text(exp)}. "
                + LEGEND + ("\n\n" + conclusion if conclusion else ""), tables=[(header, rows)]),
        Section("Pareto front: dev score vs % trainable parameters",
                "Trials no other trial beats on both score and parameters, cheapest first.",
                tables=[(p_header, p_rows)], images=figures[""]),
    ]
    if warnings:
        sections.append(Section("Best values at the edge of their range",
                                "\n".join(f"- {w}" for w in warnings)))
    replays = replay_text(exp)
    if replays:
        sections.append(Section("What other schedulers would have used", replays))
    for m in exp.methods:
        section = method_section(m, out)
        figures[m.method] = section.images
        sections.append(section)
    title = f"peft-search report: {exp.name}"
    md = out / "report.md"
    md.write_text(markdown(title, sections, out))
    page = out / "report.html"
    page.write_text(html_page(title + time.strftime(" (%Y-%m-%d %H:%M)"), sections))
    (out / "leaderboard.json").write_text(json.dumps(
        {"experiment": exp.name, "methods": records, "verdict": conclusion,
         "pareto": [dict(zip(p_header, r, strict=True)) for r in p_rows]}, indent=2, default=str))
    return Report(out, page, md, figures, records, p_rows, warnings, conclusion)


LEGEND = (
    "best-of-N = the pick's single-seed score in the search (without --confirm, the best trial's); "
    "selection mean = the pick's mean over the N seeds that chose it (the best of K+1 means). Both "
    "chose the pick, so both are biased upward. "
    "confirmed = the pick retrained with N fresh seeds, on the whole validation set, with its 95% "
    "interval over seeds and rows; those rows helped choose, so a small upward bias remains. "
    "test = the same fresh checkpoints on the test split, which chose nothing: the figure to quote. "
    "vs defaults = the pick minus the method's defaults retrained with the same fresh seeds, in "
    "points with its paired 95% interval, marked (test) when computed on the test split, "
    "(validation) when there is none. Per-task columns: the pick's metric, then the % of the "
    "backbone's parameters that task updates; % amortised = all trained parameters / number of "
    "tasks (how shared hypernetworks are tabulated); % stored = every trained parameter of all "
    "tasks.")


def method_section(m: MethodRecord, out: Path) -> Section:
    """One method's figures (curves, importances, score vs values) and what they say, the
    scientific dims named apart from the nuisance ones."""
    from search.report import plots

    stem = file_stem(m.method)
    figs = [plots.curves_plot(m, out / f"curves_{stem}.png")]
    got = importances(m)
    if isinstance(got, tuple):
        imp, evaluator = got
        ranked = ranked_importances(imp, m.dims)
        figs.append(plots.importance_plot(m.method, ranked, out / f"importance_{stem}.png", evaluator))
        note = importance_text(ranked, evaluator)
    else:
        note = f"Importance: not computed ({got})."
    values = plots.values_plot(m, out / f"values_{stem}.png")
    if values is not None:
        figs.append(values)
    return Section(m.method, roles_text(m) + "\n" + note, images=figs)


def budget_text(exp: ExperimentRecord) -> str:
    """Trials and steps per search (the designs of an auto search share its parent run)."""
    runs: dict[str, list[MethodRecord]] = {}
    for m in exp.methods:
        runs.setdefault(m.run_id, []).append(m)
    return ", ".join(
        f"{'auto (' + str(len(ms)) + ' designs)' if ms[0].from_auto else ms[0].method}: "
        f"{sum(len(m.trials) for m in ms)} trials x {int(ms[0].setting('max_steps', 0))} steps"
        for ms in runs.values())


def file_stem(name: str) -> str:
    """A file-name-safe form of a method or design name (``lora[top_half;query,value]``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def summary_text(report: Report) -> str:
    """The leaderboard and the Pareto front in a few lines for the terminal."""
    width = max([16] + [len(r["method"]) + 2 for r in report.leaderboard])
    confirmed = any(math.isfinite(r["confirmed"]) for r in report.leaderboard)
    lines = [f"{'method':<{width}}" + (f"{'confirmed [95%]':>27}" if confirmed else "")
             + f"{'best-of-N':>10}" + (f"{'test':>8}" if confirmed else "")
             + f"{'% stored':>10}{'trials':>8}{'early':>7}{'trial-steps':>13}"]
    for r in report.leaderboard:
        conf = ("" if not confirmed else f"{'-':>27}" if not math.isfinite(r["confirmed"]) else
                f"{r['confirmed']:>9.4f} [{r['confirmed_lo'] or float('nan'):.4f}, "
                f"{r['confirmed_hi'] or float('nan'):.4f}]")
        test = f"{number(r['test']):>8}" if confirmed else ""
        lines.append(f"{r['method']:<{width}}{conf}{r['score']:>10.4f}{test}{r['stored_pct']:>10.3f}"
                     f"{r['trials']:>8}{r['stopped_early']:>7}{r['trial_steps']:>13}")
    if report.verdict:
        lines.append(report.verdict.replace("**", ""))
    lines.append(f"Pareto front (score vs % params): {len(report.pareto)} trials: " + "; ".join(
        f"{r[0]} {r[1]} at {r[2]}%" for r in report.pareto))
    lines += [f"note: {w}" for w in report.warnings]
    return "\n".join(lines)


def replay_text(exp: ExperimentRecord, orders: int = 100) -> str:
    """For each method searched FIFO: the compute other schedulers would have used on these
    curves (``search.schedule.replay``), as lines of Markdown; '' when no method ran FIFO."""
    from search.schedule.replay import Scenario, replay_all
    from search.schedule.replay_table import method_curves

    lines = []
    for m in exp.methods:
        if m.from_auto or m.settings.get("scheduler") != "fifo":
            continue
        try:  # refused unless recorded with --eval-full: the baseline then scores the whole dev set
            method, curves = m.method, method_curves(exp.uri, m, exp.name)
        except ValueError:
            continue
        if len(curves) < 2:
            continue
        scenarios = [Scenario(n, "subset", concurrency=2) for n in ("asha", "hyperband", "pasha")]
        rows = replay_all(curves, scenarios, count=orders, baseline=Scenario("fifo", "full", concurrency=2))
        for r in rows:
            lines.append(f"- {method}: with these curves, **{r['scheduler']}** (dev subsets at early "
                         f"rungs) would have used {100 * r['compute_ratio_median']:.0f}% of the compute "
                         f"of this FIFO search (recorded with --eval-full: the whole dev set at every "
                         f"evaluation), and ended holding a config within 0.5 points of its best, "
                         f"trained to the end, in {100 * r['held_share']:.0f}% of {orders} random "
                         "trial orders.")
    if lines:
        lines.append(f"(`peft-search replay --experiment {exp.name}` replays more settings.)")
    return "\n".join(lines)
