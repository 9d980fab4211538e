"""Compare the methods of a search: leaderboard, score-vs-parameters Pareto front, learning
curves with ASHA's rungs, hyperparameter importances and score-vs-value plots.

    python search/report.py --experiment cs224n-lora-vs-adapter
    python search/report.py --experiment NAME --mlflow-uri http://127.0.0.1:5000 --out report/

Reads MLflow only (no Ray). Writes PNGs, ``report.md`` and a self-contained ``report.html`` to
``runs/<experiment>/report/`` and logs them to MLflow: each method's figures on its parent run
(under ``report/``), everything on a ``report`` run of the experiment, and the leaderboard as
the experiment's description. ``search/run.py`` runs it at the end of every search.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "search":
    sys.path.pop(0)  # run as a script: import from the repository root, not from search/
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

from search.report_data import ExperimentRecord, load_experiment  # noqa: E402
from search.report_doc import (  # noqa: E402
    Section,
    edge_warnings,
    html_page,
    importances,
    leaderboard,
    markdown,
    pareto_rows,
)

RUNS = Path("runs")


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


def build(exp: ExperimentRecord, out: Path) -> Report:
    """Every figure and table of the report under ``out``; no MLflow writes."""
    from search import report_plots as plots

    out.mkdir(parents=True, exist_ok=True)
    header, rows, records = leaderboard(exp)
    figures: dict[str, list[Path]] = {"": [plots.pareto_plot(exp.methods, out / "pareto.png",
                                                             f"{exp.name}: score vs parameters")]}
    p_header, p_rows = pareto_rows(exp.trials, {m.method: m.dims for m in exp.methods})
    warnings = [w for m in exp.methods for w in edge_warnings(m)]
    runs: dict[str, list] = {}  # the designs of an auto search share its parent run
    for m in exp.methods:
        runs.setdefault(m.run_id, []).append(m)
    budget = ", ".join(
        f"{'auto (' + str(len(ms)) + ' designs)' if ms[0].from_auto else ms[0].method}: "
        f"{sum(len(m.trials) for m in ms)} trials x {int(ms[0].setting('max_steps', 0))} steps"
        for ms in runs.values())
    sections = [
        Section("Leaderboard", f"MLflow {exp.uri}, experiment {exp.name}. Budget: {budget}. "
                "Per-task columns: the best trial's dev metric, then the % of the backbone's "
                "parameters that task updates; % stored = every trained parameter of all tasks.",
                tables=[(header, rows)]),
        Section("Pareto front: dev score vs % trainable parameters",
                "Trials no other trial beats on both score and parameters, cheapest first.",
                tables=[(p_header, p_rows)], images=figures[""]),
    ]
    if warnings:
        sections.append(Section("Best values at the edge of their range",
                                "\n".join(f"- {w}" for w in warnings)))
    for m in exp.methods:
        stem = file_stem(m.method)
        figs = [plots.curves_plot(m, out / f"curves_{stem}.png")]
        got = importances(m)
        if isinstance(got, tuple):
            imp, evaluator = got
            figs.append(plots.importance_plot(m.method, imp, out / f"importance_{stem}.png", evaluator))
            note = "Importance (" + evaluator + ", last score of each trial): " + ", ".join(
                f"{k} {v:.2f}" for k, v in imp.items())
        else:
            note = f"Importance: not computed ({got})."
        values = plots.values_plot(m, out / f"values_{stem}.png")
        if values is not None:
            figs.append(values)
        figures[m.method] = figs
        sections.append(Section(f"{m.method}", note, images=figs))
    title = f"peft-search report: {exp.name}"
    md = out / "report.md"
    md.write_text(markdown(title, sections, out))
    page = out / "report.html"
    page.write_text(html_page(title + time.strftime(" (%Y-%m-%d %H:%M)"), sections))
    (out / "leaderboard.json").write_text(json.dumps(
        {"experiment": exp.name, "methods": records, "pareto": [dict(zip(p_header, r, strict=True))
                                                                for r in p_rows]}, indent=2, default=str))
    return Report(out, page, md, figures, records, p_rows, warnings)


def file_stem(name: str) -> str:
    """A file-name-safe form of a method or design name (``lora[top_half;query,value]``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def log_to_mlflow(exp: ExperimentRecord, report: Report) -> None:
    """Figures on each method's parent run; all files on the experiment's ``report`` run; the
    leaderboard (Markdown) as the experiment's description in the MLflow UI."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=exp.uri)
    by_run: dict[str, list[Path]] = {}  # an auto search's designs share one parent run
    for m in exp.methods:
        files = by_run.setdefault(m.run_id, [*report.figures[""], report.html])
        files.extend(report.figures.get(m.method, []))
    for run_id, files in by_run.items():
        for f in files:
            client.log_artifact(run_id, str(f), "report")
    found = client.search_runs([exp.experiment_id], "tags.kind = 'report'", max_results=1)
    run_id = found[0].info.run_id if found else client.create_run(
        exp.experiment_id, run_name="report", tags={"kind": "report"}).info.run_id
    client.log_artifacts(run_id, str(report.out), "report")
    client.set_terminated(run_id, "FINISHED")
    text = report.markdown.read_text()
    description = text.split("## Pareto front")[0] if len(text) > 4000 else text
    client.set_experiment_tag(exp.experiment_id, "mlflow.note.content", description)


def summary_text(report: Report) -> str:
    width = max([16] + [len(r["method"]) + 2 for r in report.leaderboard])
    lines = [f"{'method':<{width}}{'best score':>11}{'% stored':>10}{'trials':>8}{'early':>7}"
             f"{'trial-steps':>13}"]
    for r in report.leaderboard:
        lines.append(f"{r['method']:<{width}}{r['score']:>11.4f}{r['stored_pct']:>10.3f}{r['trials']:>8}"
                     f"{r['stopped_early']:>7}{r['trial_steps']:>13}")
    lines.append(f"Pareto front (score vs % params): {len(report.pareto)} trials: " + "; ".join(
        f"{r[0]} {r[1]} at {r[2]}%" for r in report.pareto))
    lines += [f"note: {w}" for w in report.warnings]
    return "\n".join(lines)


def make_report(uri: str, experiment: str, out: Path, log: bool = True) -> Report:
    exp = load_experiment(uri, experiment)
    report = build(exp, out)
    if log:
        log_to_mlflow(exp, report)
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python search/report.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--experiment", required=True, help="the search's name (its MLflow experiment)")
    p.add_argument("--mlflow-uri", default=None,
                   help="tracking URI (unset: the one runs/<experiment>/search.json recorded, "
                        "else sqlite:///$PWD/mlflow.db)")
    p.add_argument("--out", default=None, help="folder for the report (unset: runs/<experiment>/report)")
    p.add_argument("--no-log", action="store_true", help="write the files only, log nothing to MLflow")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    saved = RUNS / args.experiment / "search.json"
    uri = args.mlflow_uri
    if uri is None and saved.exists():
        uri = json.loads(saved.read_text()).get("mlflow_uri")
    uri = uri or f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        print(f"error: --mlflow-uri {uri}: no such database file", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else RUNS / args.experiment / "report"
    try:
        report = make_report(uri, args.experiment, out, log=not args.no_log)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary_text(report))
    print(f"report: {report.html.resolve()} (and report.md, PNGs) in {report.out.resolve()}"
          + ("" if args.no_log else "; logged to MLflow"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
