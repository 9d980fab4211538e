"""Replay schedulers offline over the curves of a finished FIFO search ("tune the tuner").

    peft-search replay --experiment NAME [--mlflow-uri URI] [--orders 200] [--concurrency 2]
    python -m search.replay --experiment NAME ...

A search run with ``--scheduler fifo --eval-full`` trains every trial to the end and logs, at
every evaluation, the whole-dev score, the subset score (``score_sub``), the seconds spent
training and evaluating, and each trial's set-up seconds. A table recorded without
``--eval-full`` is refused: its early evaluations scored a subset only, so "whole dev"
scenarios would be subset runs. From the table any stopping rule of ``search.policies`` can be
replayed: trials start in a random order on ``concurrency`` slots, each trial pays its set-up
seconds once, each evaluation the seconds it took for real (a subset evaluation the whole-dev
seconds times its share of rows), the policy sees the score it would have seen (the subset's,
the whole dev set's at the last evaluation) and stops trials. Ray-free; replays of a 32-trial
table take milliseconds each.

**Compute to hold** (``Replay.hold_s``): the trial-seconds (set-up, training, evaluation) used
when the search last came to *hold* a good config and kept it to the end. The search holds one
while its pick (the best of the trials that ran furthest, ``search.trial_outcome``) has been
trained to the full budget (so it was scored on the whole dev set at its last evaluation) and
that config's full-budget, whole-dev score is within ``tolerance`` of the table's best. A pick
seen only at an early rung does not hold, however good its config; when the pick later changes
to a config outside tolerance the hold is cleared, and it counts again only from when a good
pick is back. An order that never holds, or loses the hold by the end, is *never held*: its
compute to hold is +inf. Summaries keep those orders: ``held_share`` is the share that held,
quartiles of seconds and of ratios are taken with never-held orders as +inf (a quartile is inf
when more than that share of orders never held), and a per-order ratio is inf when the scenario
never held, 0 when only the reference never held.

What it does not model: a searcher that learns from results (orders are random, as random
search draws them) and Tune's own overheads (actor start, checkpoints).
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import statistics
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from search.policies import CONTINUE, POLICIES, make_policy, percentile
from search.trial_outcome import furthest_best as pick

FIDELITIES = ("subset", "full")


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


@dataclass(frozen=True)
class Scenario:
    scheduler: str
    fidelity: str = "subset"
    grace: int = 1
    rf: float = 2.0
    concurrency: int = 2
    options: tuple[tuple[str, Any], ...] = ()
    """The policy's options (``search.policies.make_policy``), e.g. ``(("leader", True),)``."""

    @property
    def label(self) -> str:
        extra = "" if (self.grace, self.rf) == (1, 2.0) else f" g{self.grace} rf{self.rf:g}"
        extra += "".join(f" {k}={v}" for k, v in self.options)
        return f"{self.scheduler}/{self.fidelity}{extra}"


@dataclass
class Replay:
    """One simulated search."""

    train_s: float = 0.0
    eval_s: float = 0.0
    setup_s: float = 0.0
    steps: int = 0
    eval_rows: float = 0.0
    evaluations: int = 0
    hold_s: float | None = None
    """Trial-seconds used when the search last came to hold a good config, kept to the end
    (None: never held; see the module docstring)."""
    hold_train_s: float | None = None
    hold_eval_s: float | None = None
    """The training and evaluation seconds of ``hold_s`` (the rest is set-up)."""
    final_trial: str | None = None
    final_true: float = math.nan
    """Full-budget whole-dev score of the config the search ends with."""
    within: bool = False
    """That config is within tolerance of the table's best (trained to the end or not)."""
    stopped: dict[str, int] = field(default_factory=dict)
    """trial -> evaluations it ran."""

    @property
    def compute_s(self) -> float:
        return self.train_s + self.eval_s + self.setup_s


def table_best(curves: list[Curve]) -> float:
    return max(c.final for c in curves if math.isfinite(c.final))


def simulate(curves: list[Curve], order: list[int], sc: Scenario, tolerance: float = 0.005,
             best: float | None = None) -> Replay:
    """One search over ``curves[order[0]], curves[order[1]], ...`` on ``sc.concurrency`` slots."""
    best = table_best(curves) if best is None else best
    by_id = {c.trial_id: c for c in curves}
    policy = make_policy(sc.scheduler, len(curves[order[0]].score), sc.grace, sc.rf, **dict(sc.options))
    out = Replay()
    queue = list(order)
    events: list[tuple[float, int, int, int]] = []  # (time, seq, curve index, evaluation)
    running: dict[int, tuple[float, float, float]] = {}  # curve -> (segment start, set-up s, train s)
    seen: dict[str, tuple[int, float]] = {}
    seq = 0

    def start(c: int, i: int, now: float) -> None:
        nonlocal seq
        cur = curves[c]
        _, ev, _ = cur.seen(i, sc.fidelity)
        setup = cur.setup_s if i == 1 else 0.0
        running[c] = (now, setup, cur.train_s[i - 1])
        seq += 1
        heapq.heappush(events, (now + setup + cur.train_s[i - 1] + ev, seq, c, i))

    def holds(trial: str | None) -> bool:
        if trial is None:
            return False
        cur = by_id[trial]
        return seen[trial][0] == len(cur.score) and cur.final >= best - tolerance

    now = 0.0
    for _ in range(min(sc.concurrency, len(queue))):
        c = queue.pop(0)
        policy.add(curves[c].trial_id)
        start(c, 1, now)
    while events:
        now, _, c, i = heapq.heappop(events)
        cur = curves[c]
        score, ev, rows = cur.seen(i, sc.fidelity)
        out.setup_s += running.pop(c)[1]
        out.train_s += cur.train_s[i - 1]
        out.eval_s += ev
        out.eval_rows += rows
        out.steps += cur.steps[i - 1] - (cur.steps[i - 2] if i > 1 else 0)
        out.evaluations += 1
        seen[cur.trial_id] = (i, score)
        action = policy.on_result(cur.trial_id, i, score)
        finished = action != CONTINUE or i == len(cur.score)
        if finished:
            policy.on_complete(cur.trial_id, i, score)
            out.stopped[cur.trial_id] = i
        if not holds(pick(seen)):
            out.hold_s = out.hold_train_s = out.hold_eval_s = None
        elif out.hold_s is None:
            setup, train, evals = _so_far(out, running, now)
            out.hold_s, out.hold_train_s, out.hold_eval_s = setup + train + evals, train, evals
        if not finished:
            start(c, i + 1, now)
        elif queue:
            nxt = queue.pop(0)
            policy.add(curves[nxt].trial_id)
            start(nxt, 1, now)
    out.final_trial = pick(seen)
    if out.final_trial is not None:
        last = out.stopped[out.final_trial]
        final = by_id[out.final_trial]
        if sc.fidelity == "subset" and last < len(final.score):
            out.eval_s += final.eval_s[last - 1]  # the search re-scores its best on the whole dev set
            out.eval_rows += final.rows[last - 1]
        out.final_true = final.final
        out.within = out.final_true >= best - tolerance
    return out


def _so_far(out: Replay, running: dict[int, tuple[float, float, float]],
            now: float) -> tuple[float, float, float]:
    """(set-up, training, evaluation) seconds spent by ``now``: the finished segments, plus the
    part of each running one so far (set-up first, then training, then evaluation)."""
    setup, train, evals = out.setup_s, out.train_s, out.eval_s
    for t0, su, tr in running.values():
        spent = now - t0
        setup += min(spent, su)
        train += min(max(0.0, spent - su), tr)
        evals += max(0.0, spent - su - tr)
    return setup, train, evals


def orders(n: int, count: int, seed: int, trials: int | None = None) -> list[list[int]]:
    """``count`` random orders of the ``n`` table rows (the first ``trials`` of each)."""
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(count):
        perm = list(range(n))
        rng.shuffle(perm)
        out.append(perm[:trials or n])
    return out


def never_inf(x: float | None) -> float:
    """A compute-to-hold figure with never held (None) as +inf."""
    return math.inf if x is None else x


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    """(q1, median, q3), linear interpolation; +inf (never held) kept, NaN left out."""
    return percentile(xs, 25), percentile(xs, 50), percentile(xs, 75)


def hold_ratios(replays: list[Replay], reference: list[Replay]) -> list[float]:
    """Per order: compute to hold under ``replays`` / under ``reference``; inf when ``replays``
    never held (whatever the reference did), 0 when only the reference never held."""
    out = []
    for r, b in zip(replays, reference, strict=True):
        if r.hold_s is None:
            out.append(math.inf)
        else:
            out.append(0.0 if b.hold_s is None else r.hold_s / b.hold_s)
    return out


def paired_shares(replays: list[Replay], reference: list[Replay]) -> dict[str, float]:
    """Over the same orders: the share where ``replays`` held no later than ``reference`` did
    (``at_most``; a scenario that never held is never at most a reference that held), strictly
    earlier, and where neither held (counted in neither of the first two)."""
    n = len(replays)
    pairs = [(r.hold_s, b.hold_s) for r, b in zip(replays, reference, strict=True)]
    return {"at_most": sum(r is not None and (b is None or r <= b) for r, b in pairs) / n,
            "less": sum(r is not None and (b is None or r < b) for r, b in pairs) / n,
            "neither_held": sum(r is None and b is None for r, b in pairs) / n}


def summarize(replays: list[Replay], sc: Scenario, reference: list[Replay] | None = None) -> dict[str, Any]:
    """Median and quartiles over replays (never-held orders as +inf, see the module docstring);
    ``reference``: the same orders under the baseline (ratios are per order, then summarized)."""
    med = statistics.median
    row: dict[str, Any] = {
        "scenario": sc.label, **asdict(sc), "replays": len(replays),
        "hold_s_orders": [r.hold_s for r in replays],
        "hold_s_q1_median_q3": quartiles([never_inf(r.hold_s) for r in replays]),
        "hold_train_s_median": quartiles([never_inf(r.hold_train_s) for r in replays])[1],
        "hold_eval_s_median": quartiles([never_inf(r.hold_eval_s) for r in replays])[1],
        "held_share": sum(r.hold_s is not None for r in replays) / len(replays),
        "within_share": sum(r.within for r in replays) / len(replays),
        "compute_s_median": med(r.compute_s for r in replays),
        "train_s_median": med(r.train_s for r in replays),
        "eval_s_median": med(r.eval_s for r in replays),
        "setup_s_median": med(r.setup_s for r in replays),
        "steps_median": med(r.steps for r in replays),
        "eval_rows_median": med(r.eval_rows for r in replays),
        "final_true_median": med(r.final_true for r in replays),
    }
    if reference is not None:
        row["ratio_orders"] = hold_ratios(replays, reference)
        row["hold_ratio_q1_median_q3"] = quartiles(row["ratio_orders"])
        row["compute_ratio_median"] = med(r.compute_s / b.compute_s
                                          for r, b in zip(replays, reference, strict=True))
    return row


def replay_all(curves: list[Curve], scenarios: list[Scenario], count: int = 200, seed: int = 0,
               trials: int | None = None, tolerance: float = 0.005,
               baseline: Scenario | None = None) -> list[dict[str, Any]]:
    """Every scenario over the same ``count`` random orders; ratios against ``baseline``."""
    best = table_best(curves)
    plans = orders(len(curves), count, seed, trials)
    base = None
    if baseline is not None:
        base = [simulate(curves, o, baseline, tolerance, best) for o in plans]
    rows = []
    for sc in scenarios:
        reps = [simulate(curves, o, sc, tolerance, best) for o in plans]
        rows.append(summarize(reps, sc, base))
    return rows


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float as None (strict JSON; here None = never held)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


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


# ---- the table from MLflow ----------------------------------------------------------------

def load_curves(uri: str, experiment: str, method: str | None = None) -> tuple[str, list[Curve]]:
    """The (method, curves) of a finished FIFO search: every trial that ran every evaluation.
    ValueError naming what is missing."""
    from search.report.data import load_experiment

    record = load_experiment(uri, experiment)
    methods = [m for m in record.methods if method is None or m.method == method]
    if not methods:
        raise ValueError(f"--method {method}: not searched in {experiment!r} "
                         f"(methods: {', '.join(m.method for m in record.methods)})")
    return methods[0].method, method_curves(uri, methods[0], experiment)


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


# ---- command line -------------------------------------------------------------------------

def format_table(rows: list[dict[str, Any]], baseline: str) -> str:
    head = ("| scheduler/fidelity | held | compute to hold, s: q1 / median / q3 | vs "
            f"{baseline}: median ratio (q1-q3) | ends within tol. | total compute s (set-up + train + eval) "
            "| steps | dev rows scored |")
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        q = r["hold_s_q1_median_q3"]
        ratio = r.get("hold_ratio_q1_median_q3", (math.nan,) * 3)
        lines.append(
            f"| {r['scenario']} | {100 * r['held_share']:.0f}% | {q[0]:.0f} / {q[1]:.0f} / {q[2]:.0f} | "
            f"{ratio[1]:.2f} ({ratio[0]:.2f}-{ratio[2]:.2f}) | {100 * r['within_share']:.0f}% | "
            f"{r['compute_s_median']:.0f} ({r['setup_s_median']:.0f} + {r['train_s_median']:.0f} + "
            f"{r['eval_s_median']:.0f}) | {r['steps_median']:.0f} | {r['eval_rows_median']:.0f} |")
    lines.append("(held: orders whose pick was a good config trained to the end, kept to the end; "
                 "an order never held counts as inf in the quartiles)")
    return "\n".join(lines)


DEFAULT_SCENARIOS = ("fifo/full", "asha/full", "asha/subset", "hyperband/subset", "pasha/subset",
                     "fifo/subset")


def parse_scenarios(text: str, concurrency: int, grace: int, rf: float) -> list[Scenario]:
    out = []
    for item in [x.strip() for x in text.split(",") if x.strip()]:
        name, _, fidelity = item.partition("/")
        fidelity = fidelity or "subset"
        if name not in POLICIES or fidelity not in FIDELITIES:
            raise ValueError(f"--scenarios {item!r}: expected SCHEDULER/FIDELITY with a scheduler "
                             f"of {', '.join(POLICIES)} and a fidelity of {', '.join(FIDELITIES)}")
        out.append(Scenario(name, fidelity, grace, rf, concurrency))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="peft-search replay", description=__doc__.split("\n")[0])
    p.add_argument("--experiment", required=True, help="a finished --scheduler fifo search")
    p.add_argument("--mlflow-uri", default=None, help="unset = sqlite:///$PWD/mlflow.db")
    p.add_argument("--method", default=None, help="which method of the search (unset: the first)")
    p.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS),
                   help="comma list of SCHEDULER/FIDELITY (fidelity: subset or full)")
    p.add_argument("--baseline", default="fifo/full", help="ratios are against this scenario")
    p.add_argument("--orders", type=int, default=200, help="random trial orders replayed")
    p.add_argument("--trials", type=int, default=None, help="trials per replayed search (unset: all)")
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--grace-period", type=int, default=1)
    p.add_argument("--reduction-factor", type=float, default=2.0)
    p.add_argument("--tolerance", type=float, default=0.005, help="score distance to the table's best")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    a = p.parse_args(argv)
    try:
        if a.orders < 1 or a.concurrency < 1 or (a.trials is not None and a.trials < 1):
            raise ValueError("--orders, --concurrency and --trials must be >= 1")
        scenarios = parse_scenarios(a.scenarios, a.concurrency, a.grace_period, a.reduction_factor)
        baseline = parse_scenarios(a.baseline, a.concurrency, a.grace_period, a.reduction_factor)[0]
        uri = a.mlflow_uri or f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"
        method, curves = load_curves(uri, a.experiment, a.method)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = replay_all(curves, scenarios, a.orders, a.seed, a.trials, a.tolerance, baseline)
    best = table_best(curves)
    print(f"{a.experiment} ({method}): {len(curves)} trials x {len(curves[0].score)} evaluations, "
          f"best full-budget score {best:.4f}; {a.orders} random orders, {a.concurrency} at once, "
          f"tolerance {a.tolerance:g}\n")
    print(format_table(rows, baseline.label))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(json_safe({"experiment": a.experiment, "method": method, "best": best,
                                                "rows": rows}), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
