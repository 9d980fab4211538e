"""The report's tables and documents: leaderboard rows, the Pareto set, importances grouped by
role, warnings about best values at the edge of a range, and the Markdown and self-contained
HTML pages."""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path

from search.report.data import (
    ROLE_ORDER,
    MethodRecord,
    TrialRecord,
    by_role,
    parse_value,
)
from search.report.pareto import pareto_front
from spaces.common import Dim

EDGE = 0.05  # a best value in the outer 5% of its range (log scale for log dims) is flagged


@dataclass
class Section:
    title: str
    text: str = ""
    tables: list[tuple[list[str], list[list[str]]]] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)


def number(v: float | None, fmt: str = "{:.4f}") -> str:
    """A table cell: ``fmt`` of ``v``, '-' for none or a non-finite value."""
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)


def pareto_rows(trials: list[TrialRecord], dims: dict[str, list[Dim]]) -> tuple[list[str], list[list[str]]]:
    """The trials on the score-vs-% parameters front, cheapest first, with their searched values
    (scientific dims first)."""
    front = pareto_front([t for t in trials if t.stored_pct > 0], score=lambda t: t.score,
                         cost=lambda t: t.stored_pct)
    rows = []
    for t in front:
        name = t.design or t.method
        values = ", ".join(f"{d.name}={_short(t.params.get(d.name))}" for d in by_role(dims.get(name, [])))
        rows.append([name, number(t.score), number(t.stored_pct, "{:.3f}"), str(t.steps), t.trial_id, values])
    return ["method", "score", "% params", "steps", "trial", "config"], rows


def _short(text: str | None) -> str:
    if text is None:
        return "?"
    try:
        v = float(text)
    except ValueError:
        return text
    return text if v.is_integer() and "." not in text else f"{v:.3g}"


def edge_warnings(m: MethodRecord) -> list[str]:
    """Searched numeric dims whose best value lies in the outer ``EDGE`` of the range."""
    best = m.best
    if best is None:
        return []
    out = []
    for d in m.dims:
        if d.kind == "choice":
            continue
        v = parse_value(d, best.params.get(d.name, ""))
        if v is None:
            continue
        log = d.kind.startswith("log")
        lo, hi, x = (math.log(d.low), math.log(d.high), math.log(v)) if log and v > 0 else (d.low, d.high, v)
        pos = (x - lo) / (hi - lo)
        if pos <= EDGE and (d.low == 0 or (d.kind in ("int", "logint") and d.low <= 1)):
            continue  # the low end is the least there is (no decay, no dropout, rank 1)
        if pos <= EDGE or pos >= 1 - EDGE:
            side = "low" if pos <= EDGE else "high"
            how = f"spaces/{m.method.split('[')[0]}.py" if m.from_auto else f"--range {d.name}=LOW:HIGH"
            out.append(f"{m.method}: best {d.name}={_short(str(v))} is at the {side} end of "
                       f"[{d.low:g}, {d.high:g}]; widen it with {how}")
    return out


def importances(m: MethodRecord) -> tuple[dict[str, float], str] | str:
    """Optuna's fANOVA importances of the method's searched dims for the trials' last scores,
    or the reason there are none."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    dists = {}
    for d in m.dims:
        if d.kind == "choice":
            dists[d.name] = CategoricalDistribution(list(d.choices))
        elif d.kind in ("int", "logint"):
            dists[d.name] = IntDistribution(int(d.low), int(d.high), log=d.kind == "logint")
        else:
            dists[d.name] = FloatDistribution(d.low, d.high, log=d.kind == "loguniform")
    trials = []
    for t in m.finite:
        params = {d.name: parse_value(d, t.params.get(d.name, "")) for d in m.dims}
        if any(v is None for v in params.values()):
            continue
        try:
            trials.append(optuna.trial.create_trial(params=params, distributions=dists, value=t.score))
        except ValueError:  # a value outside the recorded range (a resumed, re-ranged search)
            continue
    if not dists:
        return "no searched dims"
    if len(trials) < 2:
        return f"{len(trials)} trial(s) with a score: importance needs at least 2"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    study.add_trials(trials)
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    try:
        return dict(optuna.importance.get_param_importances(study, evaluator=evaluator)), "fANOVA"
    except (RuntimeError, ValueError) as e:  # e.g. every trial scored the same
        return f"fANOVA could not rank the dims: {e}"


def ranked_importances(imp: dict[str, float], dims: list[Dim]) -> list[tuple[str, str, float]]:
    """(name, role, importance) with the scientific dims first, each group most important
    first: a comparison is read off the scientific dims; nuisance dims only had to be tuned."""
    roles = {d.name: d.role for d in dims}
    rows = [(name, roles.get(name, "nuisance"), value) for name, value in imp.items()]
    return sorted(rows, key=lambda r: (ROLE_ORDER.index(r[1]), -r[2]))


def roles_text(m: MethodRecord) -> str:
    """Which searched dims the comparison is about and which were tuned only to be fair."""
    groups = {role: [d.name for d in by_role(m.dims) if d.role == role] for role in ROLE_ORDER[:2]}
    scientific = ", ".join(groups["scientific"]) or "none (every searched dim is a nuisance)"
    nuisance = ", ".join(groups["nuisance"]) or "none"
    return (f"Scientific dims (what this comparison is about): {scientific}. "
            f"Nuisance dims (tuned so that the comparison is fair): {nuisance}.")


def importance_text(ranked: list[tuple[str, str, float]], evaluator: str) -> str:
    groups = [(role, [f"{n} {v:.2f}" for n, r, v in ranked if r == role]) for role in ROLE_ORDER]
    return f"Importance ({evaluator}, last score of each trial): " + "; ".join(
        f"{role}: {', '.join(items)}" for role, items in groups if items) + "."


# ---- documents ------------------------------------------------------------------------------
def markdown(title: str, sections: list[Section], rel_to: Path) -> str:
    lines = [f"# {title}", ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        if s.text:
            lines += [s.text, ""]
        for header, rows in s.tables:
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
            lines.append("")
        for img in s.images:
            lines += [f"![{img.stem}]({img.relative_to(rel_to).as_posix()})", ""]
    return "\n".join(lines)


_CSS = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;font-size:13px;margin:0.5em 0}"
        "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}"
        "td:nth-child(-n+2),th{text-align:left}th{background:#f0f0f0}"
        "img{max-width:100%;border:1px solid #eee;margin:0.5em 0}pre{white-space:pre-wrap}")


def html_page(title: str, sections: list[Section]) -> str:
    """One self-contained page: tables inline, every image embedded as a data URI."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        if s.text:
            parts.append(f"<pre>{html.escape(s.text)}</pre>")
        for header, rows in s.tables:
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows]
            parts.append("</table>")
        for img in s.images:
            data = base64.b64encode(img.read_bytes()).decode("ascii")
            parts.append(f"<img alt='{html.escape(img.stem)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)
