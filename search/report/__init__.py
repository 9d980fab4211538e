"""The comparison report of a search, built from MLflow alone (no Ray).

    python -m search.report --experiment NAME      # or the console script peft-report

- ``data``: MLflow -> ``ExperimentRecord`` (methods, trials, score curves, the searched dims
  with their roles) and the ASHA rungs those settings imply;
- ``doc``: leaderboard, Pareto rows, fANOVA importances, edge warnings, Markdown and HTML;
- ``plots``: the figures (matplotlib); ``pareto``: the score-vs-parameters front, shared
  with the search driver;
- ``make``: ``build`` (files only); ``publish``: ``make_report`` (read, build, log: the MLflow
  writes); ``cli``: the command line.

Example (a search already recorded in ``mlflow.db``)::

    from pathlib import Path
    from search.report import make_report, summary_text
    report = make_report("sqlite:///mlflow.db", "cs224n-peft", Path("runs/cs224n-peft/report"))
    print(summary_text(report))
"""

from search.report.make import Report, build, summary_text
from search.report.publish import make_report

__all__ = ["Report", "build", "make_report", "summary_text"]
