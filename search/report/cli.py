"""Compare the methods of a search: leaderboard, score-vs-parameters Pareto front, learning
curves with ASHA's rungs, hyperparameter importances and score-vs-value plots.

    python -m search.report --experiment cs224n-lora-vs-adapter
    peft-report --experiment NAME --mlflow-uri http://127.0.0.1:5000 --out report/ --no-log

Reads MLflow only (no Ray). Writes PNGs, ``report.md``, ``leaderboard.json`` and a
self-contained ``report.html`` to ``runs/<experiment>/report/`` and logs them to MLflow.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from search.report.make import summary_text
from search.report.publish import make_report

RUNS = Path("runs")


def build_parser() -> argparse.ArgumentParser:
    prog = "peft-report" if Path(sys.argv[0]).name == "peft-report" else "python -m search.report"
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--experiment", required=True, help="the search's name (its MLflow experiment)")
    p.add_argument("--mlflow-uri", default=None,
                   help="tracking URI (unset: the one runs/<experiment>/search.json recorded, "
                        "else sqlite:///$PWD/mlflow.db)")
    p.add_argument("--out", default=None, help="folder for the report (unset: runs/<experiment>/report)")
    p.add_argument("--no-log", action="store_true", help="write the files only, log nothing to MLflow")
    return p


def tracking_uri(experiment: str, given: str | None) -> str:
    """``--mlflow-uri``, else the one the search recorded, else ``mlflow.db`` in the cwd."""
    saved = RUNS / experiment / "search.json"
    uri = given
    if uri is None and saved.exists():
        uri = json.loads(saved.read_text()).get("mlflow_uri")
    return uri or f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def main(argv: list[str] | None = None) -> int:
    """The ``peft-report`` console script; 0 on success, 2 on a bad store or experiment."""
    args = build_parser().parse_args(argv)
    uri = tracking_uri(args.experiment, args.mlflow_uri)
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
