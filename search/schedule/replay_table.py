"""The table a replay reads (``search.schedule.replay``, ``search.schedule.budget_replay``): each
trial's curve, from the MLflow records of a finished ``--scheduler fifo --eval-full`` search or
from their JSON copies."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass
class Curve:
    """One trial of the table: per evaluation (1-based index i -> list index i - 1)."""

    trial_id: str
    steps: list[int]
    train_s: list[float]
    """Seconds training since the previous evaluation."""
    eval_s: list[float]
    """Seconds evaluating the whole dev set at this evaluation."""
    score: list[float]
    """Whole-dev score."""
    score_sub: list[float]
    """Subset score."""
    rows: list[float]
    """Dev rows of the whole dev set."""
    sub_rows: list[float]
    """Dev rows of the subset evaluated at this evaluation."""
    setup_s: float = 0.0
    """Seconds from the trial's start to its first training step (model and data set-up)."""

    @property
    def final(self) -> float:
        return self.score[-1]

    def seen(self, i: int, fidelity: str) -> tuple[float, float, float]:
        """(score seen, eval seconds, rows) at evaluation ``i`` (1-based) under ``fidelity``;
        the last evaluation is always the whole dev set."""
        k = i - 1
        if fidelity == "full" or i == len(self.score):
            return self.score[k], self.eval_s[k], self.rows[k]
        share = self.sub_rows[k] / self.rows[k] if self.rows[k] else 1.0
        return self.score_sub[k], self.eval_s[k] * share, self.sub_rows[k]


def curves_from_records(records: list[dict[str, Any]]) -> list[Curve]:
    """Curves from their JSON records (``dataclasses.asdict`` of each); ValueError naming a
    record that lacks a field."""
    names = {f.name for f in fields(Curve)}
    required = {f.name for f in fields(Curve) if f.name != "setup_s"}
    out = []
    for n, rec in enumerate(records):
        missing = sorted(required - set(rec))
        if missing:
            raise ValueError(f"curve record {n} ({rec.get('trial_id', '?')}) lacks {', '.join(missing)}")
        out.append(Curve(**{k: v for k, v in rec.items() if k in names}))
    return out


def method_curves(uri: str, m, experiment: str = "") -> list[Curve]:
    """The curves of one method's trials (a ``search.report.data.MethodRecord``, whose score
    curves are already read) that ran every evaluation. ValueError in one line when the search
    did not run ``--scheduler fifo --eval-full`` or a trial lacks a figure the replay needs."""
    from mlflow.tracking import MlflowClient

    if m.settings.get("scheduler", "fifo") != "fifo":
        raise ValueError(f"{experiment!r} ran --scheduler {m.settings['scheduler']}: a replay needs "
                         "every trial run to the end (--scheduler fifo --eval-full)")
    if m.settings.get("eval_full") != "True":
        raise ValueError(f"{experiment!r} ({m.method}) was recorded without --eval-full: its evaluations "
                         "before the last scored a dev subset only, so no scenario could score the whole "
                         "dev set; record the table with --scheduler fifo --eval-full")
    client = MlflowClient(tracking_uri=uri)
    curves = []
    for t in m.trials:
        if t.status != "FINISHED" or t.failure or not t.curve:
            continue
        hist = {key: {x.step: x.value for x in client.get_metric_history(t.run_id, key)} for key in RECORDED}
        score = dict(t.curve)
        steps = sorted(score)
        for key in RECORDED:
            gap = next((s for s in steps if s not in hist[key]), None)
            if gap is not None:
                raise ValueError(f"{experiment!r}: trial {t.trial_id} of {m.method} logged no {key} at step "
                                 f"{gap} ({RECORDED[key]})")
        at = {key: [hist[key][s] for s in steps] for key in RECORDED}
        curves.append(Curve(
            trial_id=t.trial_id, steps=steps, train_s=_increments(at["train_s"]),
            eval_s=_increments(at["eval_s"]), score=[score[s] for s in steps], score_sub=at["score_sub"],
            rows=at["eval_rows"], sub_rows=at["sub_rows"], setup_s=at["setup_s"][0]))
    if not curves:
        raise ValueError(f"{experiment!r}: no finished trial of {m.method} with a score curve")
    longest = max(len(c.score) for c in curves)
    return [c for c in curves if len(c.score) == longest]


RECORDED = {"score_sub": "recorded with --eval-rows 0? a replay needs the subset scores",
            "sub_rows": "the subset's size", "train_s": "training seconds", "eval_s": "evaluation seconds",
            "eval_rows": "rows scored", "setup_s": "the trial's set-up seconds"}
"""The metrics a replay reads at every evaluation of a trial, and what each is."""


def _increments(cumulative: list[float]) -> list[float]:
    return [b - a for a, b in zip([0.0] + cumulative[:-1], cumulative, strict=True)]
