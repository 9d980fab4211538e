"""What a finished search leaves: a row per method, the table, CSV/JSON and best configs.

No Ray import here: the CLI writes its settings with these helpers before Ray starts.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from search import trial_outcome
from search.reported import expand, is_number
from search.trial_outcome import FAILED, STOPPED_EARLY, outcome

CONFIRM_JSON = "confirm.json"
"""``<method>/confirm.json``: every confirmation candidate, its seed scores and interval."""
CONFIRM_OUTPUTS = "confirm_outputs.npz"
"""``<method>/confirm_outputs.npz`` (also a parent-run artifact): the confirmed pick's per-row
validation predictions, one row per seed, for paired comparisons between methods."""
TEST_OUTPUTS = "test_outputs.npz"
"""``<method>/test_outputs.npz``: the pick's per-row test predictions."""

# Tune's bookkeeping keys: not training metrics.
_NOT_METRICS = {"step", "timestamp", "done", "pid", "time_this_iter_s", "time_since_restore",
                "iterations_since_restore", "should_checkpoint", "first_step_at"}


def numeric_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a Tune result (its packed ``details`` included: ``search.reported``),
    minus Tune's bookkeeping."""
    return {k: float(v) for k, v in expand(result).items()
            if k not in _NOT_METRICS and is_number(v) and math.isfinite(v)}


def resolved_config(trial_config: dict[str, Any]) -> dict[str, Any]:
    """The trial config with every default filled in, as the trainer will see it."""
    from spaces.auto import to_train_config

    return to_train_config(trial_config).to_flat()


def failed(result) -> bool:
    """The trial of a Tune ``Result`` failed (``search.trial_outcome.failed``)."""
    return trial_outcome.failed(result.metrics, errored=result.error is not None)


def fate(result, max_t: int) -> str:
    """How the trial of a Tune ``Result`` ended (``search.trial_outcome``)."""
    return outcome(result.metrics, max_t, errored=result.error is not None)


def summarize(method: str, grid, max_t: int, wall_s: float, metric: str = "score") -> tuple[dict, Any]:
    """``(row, best_result)`` of one method's ResultGrid; ``best_result`` is None when no trial
    reported a finite score."""
    results = list(grid)
    iterations = [int((r.metrics or {}).get("training_iteration", 0)) for r in results]
    fates = [fate(r, max_t) for r in results]
    n_failed, early = fates.count(FAILED), fates.count(STOPPED_EARLY)
    row: dict[str, Any] = {
        "method": method, "best_score": None, "trials": len(results), "stopped_early": early,
        "failed": n_failed, "evals_run": sum(iterations), "evals_if_no_stopping": len(results) * max_t,
        "wall_s": round(wall_s, 1), "best_trial_id": None,
    }
    best = pick_best(results, metric)
    if best is None:
        return row, None
    m = numeric_metrics(best.metrics)
    row["best_score"] = m.get(metric)
    row["best_trial_id"] = best.metrics.get("trial_id")
    row.update({k: v for k, v in m.items() if is_table_metric(k)})
    return row, best


def is_table_metric(key: str) -> bool:
    return key == "stored_pct" or key.endswith(("_accuracy", "_pearson", "_pct"))


def pick_best(results: list, metric: str = "score"):
    """The best ``Result``: the best last score among the trials that ran furthest, a trial that
    trained its own whole budget counting as furthest (``search.trial_outcome``); None when no
    trial has a finite score."""
    last = {str(i): (progress_of(r), float((r.metrics or {}).get(metric, math.nan)))
            for i, r in enumerate(results) if not failed(r)}
    key = trial_outcome.furthest_best(last)
    return None if key is None else results[int(key)]


def progress_of(result) -> float:
    """How far the trial of a Tune ``Result`` got (``search.trial_outcome.progress``)."""
    m, config = result.metrics or {}, result.config or {}
    step, max_steps = m.get("step"), config.get("max_steps")
    return trial_outcome.progress(int(m.get("training_iteration", 0)),
                                  step if is_number(step) else None,
                                  max_steps if is_number(max_steps) else None)


def best_record(best, run_id: str | None) -> dict[str, Any]:
    return {"config": resolved_config(best.config), "metrics": numeric_metrics(best.metrics),
            "trial_id": best.metrics.get("trial_id"), "run_id": run_id}


@contextmanager
def checkpoint_files(best, checkpoint=None):
    """The best trial's last checkpoint (or ``checkpoint``, a Tune ``Checkpoint``, when given)
    as a local folder, without optimizer state (a result artifact, not a resume point); None
    when there is none."""
    from trainers.checkpoint import STATE

    if checkpoint is None and best is not None:
        checkpoint = best.checkpoint
    if checkpoint is None:
        yield None
        return
    with checkpoint.as_directory() as src, tempfile.TemporaryDirectory() as tmp:
        dst = Path(tmp) / "checkpoint"
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns(STATE))
        yield str(dst)


def write_best(out: Path, method: str, record: dict[str, Any], ckpt_dir: str | None) -> Path:
    """``out/<method>/best_config.json`` (atomic) and a copy of the best checkpoint."""
    path = out / method / "best_config.json"
    write_json_atomic(path, record["config"])
    if ckpt_dir:
        target = out / method / "best_checkpoint"
        staging = out / method / ".best_checkpoint.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(ckpt_dir, staging)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    return path


def columns(rows: list[dict]) -> list[str]:
    head = ["method", "best_score"]
    tail = ["stored_pct", "trials", "stopped_early", "failed", "evals_run", "evals_if_no_stopping",
            "wall_s", "best_trial_id"]
    middle = sorted({k for r in rows for k in r} - set(head) - set(tail),
                    key=lambda k: (k.endswith("_pct"), k))
    return head + middle + tail


def table(rows: list[dict]) -> str:
    """A plain-text table, one line per method."""
    cols = [c for c in columns(rows) if c not in ("best_trial_id", "evals_if_no_stopping",
                                                  "mlflow_recorded")]
    titles = {"best_score": "best score", "stored_pct": "% stored", "stopped_early": "stopped early",
              "evals_run": "evals", "wall_s": "wall s"}

    def title(c: str) -> str:
        return titles.get(c, f"% {c[:-4]}" if c.endswith("_pct") else c)

    def cell(c: str, v: Any) -> str:
        if v is None:
            return "-"
        if not isinstance(v, float):
            return str(v)
        if c == "wall_s":
            return f"{v:.0f}"
        return f"{v:.3f}" if c.endswith("_pct") else f"{v:.4f}"

    grid = [[title(c) for c in cols]] + [[cell(c, r.get(c)) for c in cols] for r in rows]
    widths = [max(len(line[i]) for line in grid) for i in range(len(cols))]
    lines = ["  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                       for i, (v, w) in enumerate(zip(line, widths, strict=True)))
             for line in grid]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_tables(out: Path, rows: list[dict], extra: dict[str, Any]) -> tuple[Path, Path]:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns(rows), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    csv_path, json_path = out / "results.csv", out / "results.json"
    _write_atomic(csv_path, buf.getvalue())
    write_json_atomic(json_path, {**extra, "methods": rows})
    return csv_path, json_path


def write_json_atomic(path: Path, payload: Any) -> None:
    _write_atomic(path, json.dumps(payload, indent=2, default=str) + "\n")


def _write_atomic(path: Path, text: str) -> None:
    """Write beside ``path`` then rename over it: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float as None (strict JSON; in a replay, None = never held)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
