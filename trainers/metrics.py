"""Task metrics and the overall score (the CS224N leaderboard formula)."""

from __future__ import annotations

import numpy as np

from trainers.tasks import TaskSpec


def pearson(pred: np.ndarray, gold: np.ndarray) -> float:
    pred = pred.astype(np.float64) - pred.mean()
    gold = gold.astype(np.float64) - gold.mean()
    denom = np.sqrt((pred**2).sum() * (gold**2).sum())
    return float((pred * gold).sum() / denom) if denom > 0 else 0.0


def predictions(spec: TaskSpec, outputs: np.ndarray) -> np.ndarray:
    """What the metric compares with the labels: the class (argmax), 0/1 (logit > 0), or the
    regression value. Kept per row for intervals (``search.stats``)."""
    if spec.kind == "classification":
        return outputs.argmax(-1).astype(np.float32)
    if spec.kind == "binary":
        return (outputs > 0).astype(np.float32).reshape(-1)
    return outputs.astype(np.float32).reshape(-1)


def task_metric(spec: TaskSpec, outputs: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy for classification (argmax) and binary (logit > 0); Pearson r for regression."""
    if spec.kind == "classification":
        return float((outputs.argmax(-1) == labels).mean())
    if spec.kind == "binary":
        return float(((outputs > 0).astype(np.float32) == labels).mean())
    return pearson(outputs, labels)


def overall_score(specs: list[TaskSpec], metrics: dict[str, float]) -> float:
    """Mean of the task metrics with Pearson r mapped to (r + 1) / 2."""
    parts = [(metrics[s.name] + 1) / 2 if s.metric == "pearson" else metrics[s.name] for s in specs]
    return float(np.mean(parts))
