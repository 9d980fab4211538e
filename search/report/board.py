"""The leaderboard and what a reader may conclude from it.

With ``--confirm`` methods are ranked by their confirmed score: the pick retrained with fresh
seeds (not the seeds that chose it) and scored on the whole validation set, with its 95%
interval over seeds and rows. Those validation rows helped choose the pick, so the confirmed
score still carries a small upward bias from the rows; the seeds' share of the selection bias is
gone. Beside it, for contrast, the two figures that chose: best-of-N (the search's best single
seed) and the selection mean (the best of the K+1 candidates' means), both biased upward. The
test column scores the same fresh-seed checkpoints on the test split, which neither chose nor
was read while choosing: with a test split it is the figure to quote, and the verdicts under the
table (is the lead of the first method over the second separable; did each search beat its own
defaults, both paired by seed and row) are computed on it. Without a test split they are
computed on the fresh-seed validation runs and say so. Without confirmation the table says that
its ranks rest on one seed.
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
              + (["selection mean"] if by_confirmed else [])
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
            gain = (_points(r["gain"], r["gain_lo"], r["gain_hi"]) + f" ({r['gain_on']})"
                    if math.isfinite(r["gain"]) else "-")
            cells += [number(r["selection"]), number(r["test"]) + _span(r["test_lo"], r["test_hi"]), gain]
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
        "selection": s.get("selection_score", nan), "test_default": s.get("test_default_score", nan),
        **_gain(s),
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


def _gain(s: dict[str, float]) -> dict:
    """The pick minus the defaults: on the test split when it was scored there, else on the
    fresh-seed validation runs."""
    if "test_gain_over_default" in s:
        return {"gain": s["test_gain_over_default"], "gain_lo": s.get("test_gain_lo"),
                "gain_hi": s.get("test_gain_hi"), "gain_on": "test"}
    return {"gain": s.get("gain_over_default", float("nan")), "gain_lo": s.get("gain_lo"),
            "gain_hi": s.get("gain_hi"), "gain_on": "validation"}


def _task_metric(metrics: dict[str, float], task: str) -> float:
    for suffix in TASK_METRICS:
        if f"{task}{suffix}" in metrics:
            return metrics[f"{task}{suffix}"]
    return float("nan")


def verdict(exp: ExperimentRecord, records: list[dict]) -> str:
    """What the leaderboard supports, in plain sentences (Markdown)."""
    if not records:
        return ""
    if not all(math.isfinite(r["confirmed"]) for r in records):
        if len(records) < 2:
            return ""
        if any(m.settings.get("budget") not in (None, "", "None") for m in exp.methods):
            raced = [r["method"] for r in records if math.isfinite(r["confirmed"])]
            return ("**A `--budget` search**: its answer (`answer.json`) comes from the race and the "
                    f"fresh seeds, which {' and '.join(raced) or 'no method'} reached; the other methods' "
                    "best-of-N is one seed of the best of several configs, scored on the rows that "
                    "selected it (biased upward), so this table's order is not the answer's.")
        return ("**Not confirmed**: each score is one seed of the best of several configs, scored on "
                "the rows that selected it, so it is biased upward and 1-2 points between methods can "
                "be noise. Rank with intervals: run the search with `--confirm K:N` (e.g. 2:3).")
    lines = [_lead(exp, records)] if len(records) >= 2 else []
    lines += [g for g in map(_gain_line, records) if g]
    return "\n".join(line for line in lines if line)


def _lead(exp: ExperimentRecord, records: list[dict]) -> str:
    """The first method against the second: on the test split when both were scored there."""
    by_name = {m.method: m for m in exp.methods}
    first, second = records[0], records[1]
    a, b = by_name[first["method"]], by_name[second["method"]]
    on_test = a.test_outputs is not None and b.test_outputs is not None
    x, y = (a.test_outputs, b.test_outputs) if on_test else (a.confirm_outputs, b.confirm_outputs)
    if x is None or y is None:
        return ""
    d = difference(x, y)
    names = f"**{first['method']}** (first on validation) vs **{second['method']}**"
    if on_test:
        head = (f"On the test split (rows and seeds that chose nothing), {names}: "
                f"{_points(d.mean, d.lo, d.hi)} points (95% interval of the difference, paired by "
                "seed and row).")
    else:
        head = (f"{names} on the fresh-seed validation runs: {_points(d.mean, d.lo, d.hi)} points "
                "(95%, paired by seed and row; no test split, and these rows helped choose each "
                "pick).")
    if not (math.isfinite(d.lo) and math.isfinite(d.hi)):
        return head + " One seed: no interval over seeds, no verdict."
    if not separable(d):
        return head + (" **Not separable at this budget**: the interval includes 0; more seeds, "
                       "steps or evaluation rows may separate them.")
    if d.lo > 0:
        overlap = (first["confirmed_lo"] is not None and second["confirmed_hi"] is not None
                   and first["confirmed_lo"] <= second["confirmed_hi"] and not on_test)
        return head + " The lead is separable at this budget" + (
            " (their own intervals overlap; the paired difference is tighter)." if overlap else ".")
    return head + (f" **{second['method']}** is ahead, separably: the validation order of the first "
                   "two does not hold" + (" on the test split." if on_test else "."))


def _gain_line(r: dict) -> str:
    """Did the method's search beat its own defaults (retrained with the same fresh seeds)."""
    if not math.isfinite(r["gain"]):
        return ""
    where = "on the test split" if r["gain_on"] == "test" else "on fresh seeds, validation rows"
    if r["gain_lo"] is None:  # the defaults were the pick
        return (f"- {r['method']}: the method's defaults had the best selection mean; the search did "
                "not beat them at this budget.")
    span = _points(r["gain"], r["gain_lo"], r["gain_hi"])
    if r["gain_lo"] > 0:
        return f"- {r['method']}: the search beat the method's defaults by {span} points {where}."
    if r["gain_hi"] < 0:
        return (f"- {r['method']}: the method's defaults beat the search's pick by "
                f"{_points(-r['gain'], -r['gain_hi'], -r['gain_lo'])} points {where}.")
    return (f"- {r['method']}: the search's pick vs the method's defaults: {span} points {where}, "
            "not a separable gain at this budget.")
