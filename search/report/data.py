"""Read a finished (or running) search back from MLflow for the report: one ``MethodRecord``
per method parent run, one ``TrialRecord`` per trial run with its score curve.

MLflow holds everything the report needs: the searched space (``space.json`` on each parent
run, roles included; searches recorded before it existed fall back to ``spaces/<method>.py``),
the search settings (``search.*`` tags), each trial's config, metrics and score history.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search.results import CONFIRM_OUTPUTS, TEST_OUTPUTS
from search.stats import Outputs
from search.tracking import SPACE_ARTIFACT
from spaces.common import Dim, dims_from_json

TASK_METRICS = ("_accuracy", "_pearson")


@dataclass
class TrialRecord:
    method: str
    run_id: str
    trial_id: str
    status: str
    """MLflow run status: FINISHED, FAILED, KILLED or RUNNING."""
    stopped_early: bool
    failure: str | None
    params: dict[str, str]
    metrics: dict[str, float]
    """Latest value of every metric (the last evaluation)."""
    curve: list[tuple[int, float]]
    """(training step, dev score) of every evaluation, in step order."""
    seconds: float | None
    """Run lifetime (start to end) in seconds; None while running."""
    design: str = ""
    """``--method auto``: the trial's concrete design (method and structural choices)."""

    @property
    def score(self) -> float:
        """The last finite dev score (what ASHA and Optuna saw last); NaN if none."""
        finite = [s for _, s in self.curve if math.isfinite(s)]
        return finite[-1] if finite else float("nan")

    @property
    def stored_pct(self) -> float:
        return self.metrics.get("stored_pct", float("nan"))

    @property
    def steps(self) -> int:
        """Training steps the trial ran (its last evaluation's step)."""
        return max((s for s, _ in self.curve), default=0)


@dataclass
class MethodRecord:
    method: str
    run_id: str
    status: str
    settings: dict[str, str]
    """The search settings recorded on the parent run (``search.*`` tags, as strings)."""
    summary: dict[str, float]
    """The parent run's metrics: the best trial's and the method's totals."""
    best_trial_id: str | None
    dims: list[Dim]
    """The searched dims of the method's space."""
    trials: list[TrialRecord] = field(default_factory=list)
    confirm_outputs: Outputs | None = None
    """``--confirm``: the pick's per-row validation predictions, one row per fresh seed (the
    parent run's ``confirm_outputs.npz``), for paired comparisons between methods."""
    from_auto: bool = False
    """A concrete design of a ``--method auto`` search (``method`` is the design's name)."""
    test_outputs: Outputs | None = None
    """``--confirm`` with a test split: the same runs' per-row test predictions (the parent run's
    ``test_outputs.npz``): the lead between methods is judged on them."""

    @property
    def finite(self) -> list[TrialRecord]:
        return [t for t in self.trials if math.isfinite(t.score)]

    @property
    def best(self) -> TrialRecord | None:
        for t in self.trials:
            if t.trial_id == self.best_trial_id:
                return t
        return max(self.finite, key=lambda t: t.score, default=None)

    def setting(self, key: str, default: float) -> float:
        try:
            return float(self.settings[key])
        except (KeyError, ValueError):
            return default


@dataclass
class ExperimentRecord:
    name: str
    experiment_id: str
    uri: str
    methods: list[MethodRecord]

    @property
    def trials(self) -> list[TrialRecord]:
        return [t for m in self.methods for t in m.trials]


def load_experiment(uri: str, name: str) -> ExperimentRecord:
    """Everything the report needs from MLflow; ValueError if the experiment is missing or
    holds no method runs."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        known = [e.name for e in client.search_experiments(max_results=50)]
        raise ValueError(f"--experiment {name!r}: no such MLflow experiment in {uri} "
                         f"(found: {', '.join(known) or 'none'})")
    parents = _all_runs(client, exp.experiment_id, "tags.kind = 'method'")
    if not parents:
        raise ValueError(f"--experiment {name!r}: no method runs in {uri} (not a search/run.py search?)")
    trials = _all_runs(client, exp.experiment_id, "tags.kind = 'trial'")
    methods = []
    for p in parents:
        method = p.data.tags["method"]
        settings = {k[len("search."):]: v for k, v in p.data.tags.items() if k.startswith("search.")}
        dims, branches = _load_dims(client, p.info.run_id, method)
        own = [_trial(client, r) for r in trials if r.data.tags.get("method") == method]
        if method != "auto":
            methods.append(MethodRecord(method, p.info.run_id, p.info.status, settings, dict(p.data.metrics),
                                        p.data.tags.get("best_trial_id"), dims, own,
                                        _outputs(client, p, CONFIRM_OUTPUTS),
                                        test_outputs=_outputs(client, p, TEST_OUTPUTS)))
            continue
        # --method auto: every concrete design is compared like a method.
        for design in sorted({t.design for t in own}):
            base = design.split("[")[0]
            methods.append(MethodRecord(design, p.info.run_id, p.info.status, settings, {}, None,
                                        [d for d in branches.get(base, []) if d.searched],
                                        [t for t in own if t.design == design], from_auto=True))
    return ExperimentRecord(name, exp.experiment_id, uri, methods)


def _outputs(client, parent, name: str) -> Outputs | None:
    """The confirmed pick's outputs (``name``: validation or test) of a parent run, if it has them."""
    if "confirmed_score" not in parent.data.metrics:
        return None
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(parent.info.run_id, name, tmp)
        except Exception:  # noqa: BLE001 - recorded before the file existed, or not logged
            return None
        return Outputs.load(path)


def _all_runs(client, experiment_id: str, query: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], query, max_results=1000, page_token=token,
                                  order_by=["attributes.start_time ASC"])
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _trial(client, run) -> TrialRecord:
    tags, info = run.data.tags, run.info
    history = client.get_metric_history(info.run_id, "score")
    curve = sorted({m.step: m.value for m in history}.items())
    seconds = (info.end_time - info.start_time) / 1000 if info.end_time and info.start_time else None
    return TrialRecord(
        method=tags.get("method", "?"), run_id=info.run_id, trial_id=tags.get("trial_id", "?"),
        status=info.status, stopped_early=tags.get("stopped_early") == "true",
        failure=tags.get("failure"), params=dict(run.data.params), metrics=dict(run.data.metrics),
        curve=[(int(s), float(v)) for s, v in curve], seconds=seconds,
        design=tags.get("design", tags.get("method", "?")))


def _load_dims(client, run_id: str, method: str) -> tuple[list[Dim], dict[str, list[Dim]]]:
    """The searched dims of the parent run's space, and (``auto``) each branch's dims."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars in the log
    names = {a.path for a in client.list_artifacts(run_id)}
    if SPACE_ARTIFACT in names:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run_id, SPACE_ARTIFACT, tmp)
            record = json.loads(Path(path).read_text())
        branches = {m: dims_from_json(ds) for m, ds in record.get("branches", {}).items()}
        return [d for d in dims_from_json(record["dims"]) if d.searched], branches
    from spaces import get_space  # recorded before space.json existed
    from trainers.methods import METHODS

    return (get_space(method).searched() if method in METHODS else []), {}


def parse_value(dim: Dim, text: str) -> Any:
    """A trial's logged param (MLflow keeps a string) as the dim's type; None when it does not
    parse or is not one of the dim's choices."""
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


def rung_steps(m: MethodRecord) -> list[int]:
    """Training steps at which ASHA (or PASHA) compares a trial with its peers (empty otherwise).

    Mirrors Ray's asynchronous successive halving with one bracket (``search/`` builds it with
    ``time_attr="training_iteration"``, one iteration = one evaluation every ``eval_every``
    steps): the milestones are ``grace * factor**k`` evaluations, and at each evaluation a
    trial enters the highest milestone it has reached and not yet entered. A trial is stopped
    at ``max_t`` regardless, so no comparison happens there. With a fractional factor two
    milestones can share an evaluation; the lower one is then entered one evaluation later.
    """
    if m.settings.get("scheduler", "asha") not in ("asha", "pasha"):  # PASHA compares at ASHA's rungs
        return []
    every, max_steps = m.setting("eval_every", 0), m.setting("max_steps", 0)
    grace, factor = m.setting("grace_period", 1), m.setting("reduction_factor", 2)
    if every <= 0 or max_steps <= 0 or grace <= 0 or factor <= 1:
        return []
    max_t = math.ceil(max_steps / every)
    if grace > max_t:
        return []
    count = int(math.log(max_t / grace) / math.log(factor) + 1)  # Ray's number of rungs
    pending = [grace * factor ** k for k in reversed(range(count))]  # highest first, as Ray scans
    compared = []
    for it in range(1, max_t):
        reached = next((ms for ms in pending if it >= ms), None)
        if reached is not None:
            pending.remove(reached)
            compared.append(int(min(it * every, max_steps)))
    return compared


ROLE_ORDER = ("scientific", "nuisance", "fixed")
"""Scientific dims first: they are what a comparison is about; nuisance dims are tuned so that
it is fair (the tuning playbook's split, recorded as each ``Dim.role``)."""


def by_role(dims: list[Dim]) -> list[Dim]:
    """``dims`` with the scientific ones first, each group in its recorded order."""
    return sorted(dims, key=lambda d: ROLE_ORDER.index(d.role))
