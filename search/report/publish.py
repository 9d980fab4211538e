"""Read, build and log a report (``make_report``): each method's figures on its parent run
(under ``report/``), every file on the experiment's ``report`` run, the leaderboard as the
experiment's description."""

from __future__ import annotations

from pathlib import Path

from search.report.data import ExperimentRecord, load_experiment
from search.report.make import Report, build

DESCRIPTION_CHARS = 4000
"""Past this, the MLflow description keeps the leaderboard only (the UI renders all of it)."""


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
    description = text.split("## Pareto front")[0] if len(text) > DESCRIPTION_CHARS else text
    client.set_experiment_tag(exp.experiment_id, "mlflow.note.content", description)


def make_report(uri: str, experiment: str, out: Path, log: bool = True) -> Report:
    """Read the experiment from MLflow, write the report under ``out`` and (``log``) log it."""
    exp = load_experiment(uri, experiment)
    report = build(exp, out)
    if log:
        log_to_mlflow(exp, report)
    return report
