"""The leaderboard and what a reader may conclude from it.

With ``--confirm`` methods are ranked by their confirmed score (the mean over new seeds of the
pick, on the whole validation set) with its 95% interval; the best-of-N search score stays
beside it, visibly higher on average (the winner's curse). The test score is shown for each
method's pick only. Under the table: whether the lead of the first method over the second is
separable (a paired interval of their difference), and, per method, whether its search beat
its own defaults. Without confirmation the table says that its ranks rest on one seed.
"""

from __future__ import annotations

import math

from search.report.data import TASK_METRICS, ExperimentRecord, MethodRecord
from search.report.doc import number
from search.stats import difference, separable


def _span(lo: float | None, hi: float | None) -> str:
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return ""
    return f" [{lo:.4f}, {hi:.4f}]"


def _points(v: float, lo: float | None, hi: float | None) -> str:
    """A score difference in points with its interval."""
    text = f"{100 * v:+.2f}"
    if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
        text += f" [{100 * lo:+.2f}, {100 * hi:+.2f}]"
    return text


def confirmed(m: MethodRecord) -> bool:
    return "confirmed_score" in m.summary


def leaderboard(exp: ExperimentRecord) -> tuple[list[str], list[list[str]], list[dict]]:
    """(header, rows as text, rows as numbers), first method first: by the confirmed score when
    every method was confirmed, else by the best-of-N search score."""
    tasks = sorted({k.rsplit("_", 1)[0] for m in exp.methods for t in m.trials for k in t.metrics
                    if k.endswith(TASK_METRICS)})
    records = [_record(m, tasks) for m in exp.methods]
    by_confirmed = bool(records) and all(math.isfinite(r["confirmed"]) for r in records)
    key = "confirmed" if by_confirmed else "score"
    records.sort(key=lambda r: -r[key] if math.isfinite(r[key]) else math.inf)
    header = (["rank", "method"] + (["confirmed [95%]"] if by_confirmed else []) + ["best-of-N"]
              + (["test [95%]", "vs defaults (points)"] if by_confirmed else [])
              + tasks + [f"% updated/task {t}" for t in tasks]
              + ["% amortised", "% stored", "trials", "stopped early", "failed", "trial-steps",
                 "trial-min", "wall-min", "notes"])
    rows = []
    for i, r in enumerate(records, 1):
        cells = [str(i), r["method"]]
        if by_confirmed:
            cells.append(number(r["confirmed"]) + _span(r["confirmed_lo"], r["confirmed_hi"]))
        cells.append(number(r["score"]))
        if by_confirmed:
            cells += [number(r["test"]) + _span(r["test_lo"], r["test_hi"]),
                      _points(r["gain"], r["gain_lo"], r["gain_hi"]) if math.isfinite(r["gain"]) else "-"]
        cells += [number(r[t], "{:.3f}") for t in tasks] + [number(r[f"{t}_pct"], "{:.3f}") for t in tasks]
        cells += [number(r["amortised_pct"], "{:.3f}"), number(r["stored_pct"], "{:.3f}"), str(r["trials"]),
                  str(r["stopped_early"]), str(r["failed"]), str(r["trial_steps"]),
                  number(r["trial_min"], "{:.1f}"), number(r["wall_min"], "{:.1f}"), r["notes"]]
        rows.append(cells)
    return header, rows, records


def _record(m: MethodRecord, tasks: list[str]) -> dict:
    """One method's numbers: the pick's (the parent run's metrics) when confirmed, else the best
    trial's."""
    best = m.best
    nan = float("nan")
    metrics = m.summary if confirmed(m) else (best.metrics if best is not None else {})
    s = m.summary
    notes = []
    if metrics.get("over_adapter") == 1.0:
        notes.append("trains more than plain per-task adapters of its size")
    return {
        "method": m.method,
        "score": s.get("search_score", best.score if best is not None else nan),
        "confirmed": s.get("confirmed_score", nan),
        "confirmed_lo": s.get("confirmed_lo"), "confirmed_hi": s.get("confirmed_hi"),
        "test": s.get("test_score", nan), "test_lo": s.get("test_lo"), "test_hi": s.get("test_hi"),
        "gain": s.get("gain_over_default", nan), "gain_lo": s.get("gain_lo"), "gain_hi": s.get("gain_hi"),
        **{t: _task_metric(metrics, t) for t in tasks},
        **{f"{t}_pct": metrics.get(f"{t}_pct", nan) for t in tasks},
        "amortised_pct": metrics.get("amortised_pct", nan),
        "stored_pct": metrics.get("stored_pct", nan),
        "trials": len(m.trials),
        "stopped_early": sum(t.stopped_early for t in m.trials),
        "failed": sum(t.status == "FAILED" for t in m.trials),
        "trial_steps": sum(t.steps for t in m.trials),
        "trial_min": sum(t.seconds or 0.0 for t in m.trials) / 60,
        "wall_min": s.get("wall_s", nan) / 60,
        "notes": "; ".join(notes),
    }


def _task_metric(metrics: dict[str, float], task: str) -> float:
    for suffix in TASK_METRICS:
        if f"{task}{suffix}" in metrics:
            return metrics[f"{task}{suffix}"]
    return float("nan")


def verdict(exp: ExperimentRecord, records: list[dict]) -> str:
    """What the leaderboard supports, in plain sentences (Markdown)."""
    by_name = {m.method: m for m in exp.methods}
    if not records:
        return ""
    if not all(math.isfinite(r["confirmed"]) for r in records):
        if len(records) < 2:
            return ""
        return ("**Not confirmed**: each score is one seed of the best of several configs, scored on "
                "the rows that selected it, so it is biased upward and 1-2 points between methods can "
                "be noise. Rank with intervals: run the search with `--confirm K:N` (e.g. 2:3).")
    lines = []
    if len(records) >= 2:
        first, second = records[0], records[1]
        a, b = by_name[first["method"]].confirm_outputs, by_name[second["method"]].confirm_outputs
        if a is not None and b is not None:
            d = difference(a, b)
            overlap = (first["confirmed_lo"] is not None and second["confirmed_hi"] is not None
                       and first["confirmed_lo"] <= second["confirmed_hi"])
            head = (f"**{first['method']}** leads **{second['method']}** by {_points(d.mean, d.lo, d.hi)} "
                    f"points (95% interval of the difference: seeds, and the same validation rows "
                    f"resampled for both).")
            if not separable(d):
                lines.append(head + " **Not separable at this budget**: the interval includes 0; "
                             "more seeds, steps or validation rows may separate them.")
            else:
                lines.append(head + " The lead is separable at this budget"
                             + (" (their own intervals overlap; the paired difference on the same "
                                "rows is tighter)." if overlap else "."))
    for r in records:
        if not math.isfinite(r["gain"]):
            continue
        if r["gain_lo"] is None:  # the defaults were the pick
            lines.append(f"- {r['method']}: the method's defaults scored best in confirmation; the "
                         "search did not beat them at this budget.")
        elif r["gain_lo"] > 0:
            lines.append(f"- {r['method']}: the search beat the method's defaults by "
                         f"{_points(r['gain'], r['gain_lo'], r['gain_hi'])} points.")
        else:
            lines.append(f"- {r['method']}: the search's pick vs the method's defaults: "
                         f"{_points(r['gain'], r['gain_lo'], r['gain_hi'])} points, not a separable "
                         "gain at this budget.")
    return "\n".join(lines)
