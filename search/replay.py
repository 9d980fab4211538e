"""Replay schedulers offline over the curves of a finished FIFO search ("tune the tuner").

    peft-search replay --experiment NAME [--mlflow-uri URI] [--orders 200] [--concurrency 2]
    python -m search.replay --experiment NAME ...

A search run with ``--scheduler fifo --eval-full`` trains every trial to the end and logs, at
every evaluation, the whole-dev score, the subset score (``score_sub``), the seconds spent
training and evaluating. From that table any stopping rule of ``search.policies`` can be
replayed: trials start in a random order on ``concurrency`` slots, each evaluation takes the
seconds it took for real (a subset evaluation the whole-dev seconds times its share of rows),
the policy sees the score it would have seen (the subset's, the whole dev set's at the last
evaluation) and stops trials. Each replay reports the compute used (trial-seconds of training
and of evaluation, steps, dev rows scored), the config the search ends with, and when it
first held a config within ``tolerance`` of the table's best (judged by the configs' full-budget,
whole-dev scores). Ray-free; replays of a 32-trial table take milliseconds each.

What it does not model: a searcher that learns from results (orders are random, as random
search draws them) and Tune's own overheads (start-up, checkpoints).
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import statistics
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from search.policies import CONTINUE, POLICIES, make_policy
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
    """Subset score (the whole-dev score where the subset was not recorded)."""
    rows: list[float]
    """Dev rows of the whole dev set."""
    sub_rows: list[float]
    """Dev rows of the subset evaluated at this evaluation."""

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

    @property
    def label(self) -> str:
        extra = "" if (self.grace, self.rf) == (1, 2.0) else f" g{self.grace} rf{self.rf:g}"
        return f"{self.scheduler}/{self.fidelity}{extra}"


@dataclass
class Replay:
    """One simulated search."""

    train_s: float = 0.0
    eval_s: float = 0.0
    steps: int = 0
    eval_rows: float = 0.0
    evaluations: int = 0
    hold_s: float | None = None
    """Trial-seconds used when the search first held a config within tolerance (None: never)."""
    hold_train_s: float | None = None
    hold_eval_s: float | None = None
    """``hold_s`` split into training and evaluation seconds."""
    final_trial: str | None = None
    final_true: float = math.nan
    """Full-budget whole-dev score of the config the search ends with."""
    within: bool = False
    stopped: dict[str, int] = field(default_factory=dict)
    """trial -> evaluations it ran."""

    @property
    def compute_s(self) -> float:
        return self.train_s + self.eval_s


def table_best(curves: list[Curve]) -> float:
    return max(c.final for c in curves if math.isfinite(c.final))


def simulate(curves: list[Curve], order: list[int], sc: Scenario, tolerance: float = 0.005,
             best: float | None = None) -> Replay:
    """One search over ``curves[order[0]], curves[order[1]], ...`` on ``sc.concurrency`` slots."""
    best = table_best(curves) if best is None else best
    policy = make_policy(sc.scheduler, len(curves[order[0]].score), sc.grace, sc.rf)
    out = Replay()
    queue = list(order)
    events: list[tuple[float, int, int, int]] = []  # (time, seq, curve index, evaluation)
    running: dict[int, tuple[float, float]] = {}  # curve index -> (segment start, its train s)
    seen: dict[str, tuple[int, float]] = {}
    seq = 0

    def start(c: int, i: int, now: float) -> None:
        nonlocal seq
        cur = curves[c]
        _, ev, _ = cur.seen(i, sc.fidelity)
        running[c] = (now, cur.train_s[i - 1])
        seq += 1
        heapq.heappush(events, (now + cur.train_s[i - 1] + ev, seq, c, i))

    now = 0.0
    for _ in range(min(sc.concurrency, len(queue))):
        c = queue.pop(0)
        policy.add(curves[c].trial_id)
        start(c, 1, now)
    while events:
        now, _, c, i = heapq.heappop(events)
        cur = curves[c]
        score, ev, rows = cur.seen(i, sc.fidelity)
        out.train_s += cur.train_s[i - 1]
        out.eval_s += ev
        out.eval_rows += rows
        out.steps += cur.steps[i - 1] - (cur.steps[i - 2] if i > 1 else 0)
        out.evaluations += 1
        running.pop(c)
        seen[cur.trial_id] = (i, score)
        action = policy.on_result(cur.trial_id, i, score)
        finished = action != CONTINUE or i == len(cur.score)
        if finished:
            policy.on_complete(cur.trial_id, i, score)
            out.stopped[cur.trial_id] = i
        incumbent = pick(seen)
        if out.hold_s is None and incumbent is not None and _true(curves, incumbent) >= best - tolerance:
            # finished segments, plus the part of each running one so far (training comes first)
            out.hold_train_s = out.train_s + sum(min(now - t0, tr) for t0, tr in running.values())
            out.hold_eval_s = out.eval_s + sum(max(0.0, now - t0 - tr) for t0, tr in running.values())
            out.hold_s = out.hold_train_s + out.hold_eval_s
        if not finished:
            start(c, i + 1, now)
        elif queue:
            nxt = queue.pop(0)
            policy.add(curves[nxt].trial_id)
            start(nxt, 1, now)
    out.final_trial = pick(seen)
    if out.final_trial is not None:
        last = out.stopped[out.final_trial]
        final = next(x for x in curves if x.trial_id == out.final_trial)
        if sc.fidelity == "subset" and last < len(final.score):
            out.eval_s += final.eval_s[last - 1]  # the search re-scores its best on the whole dev set
            out.eval_rows += final.rows[last - 1]
        out.final_true = final.final
        out.within = out.final_true >= best - tolerance
    return out


def _true(curves: list[Curve], trial: str) -> float:
    return next(c.final for c in curves if c.trial_id == trial)


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


def quartiles(xs: list[float | None]) -> tuple[float, float, float]:
    """(q1, median, q3) of the finite values; NaNs when there are none."""
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    if len(xs) < 2:
        return (xs[0],) * 3 if xs else (math.nan,) * 3
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[1], q[2]


def hold_ratios(replays: list[Replay], reference: list[Replay]) -> list[float | None]:
    """Per order: compute to hold under ``replays`` / under ``reference`` (None: either never held)."""
    return [r.hold_s / b.hold_s if r.hold_s is not None and b.hold_s else None
            for r, b in zip(replays, reference, strict=True)]


def summarize(replays: list[Replay], sc: Scenario, reference: list[Replay] | None = None) -> dict[str, Any]:
    """Median and quartiles over replays; ``reference``: the same orders under the baseline
    (ratios are per order, then summarized)."""
    med = statistics.median
    row: dict[str, Any] = {
        "scenario": sc.label, **asdict(sc), "replays": len(replays),
        "hold_s_q1_median_q3": quartiles([r.hold_s for r in replays]),
        "hold_train_s_median": quartiles([r.hold_train_s for r in replays])[1],
        "hold_eval_s_median": quartiles([r.hold_eval_s for r in replays])[1],
        "held_share": sum(r.hold_s is not None for r in replays) / len(replays),
        "within_share": sum(r.within for r in replays) / len(replays),
        "compute_s_median": med(r.compute_s for r in replays),
        "train_s_median": med(r.train_s for r in replays),
        "eval_s_median": med(r.eval_s for r in replays),
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
    curves are already read) that ran every evaluation; ValueError when it did not run FIFO."""
    from mlflow.tracking import MlflowClient

    if m.settings.get("scheduler", "fifo") != "fifo":
        raise ValueError(f"{experiment!r} ran --scheduler {m.settings['scheduler']}: a replay needs "
                         "every trial run to the end (--scheduler fifo, best with --eval-full)")
    client = MlflowClient(tracking_uri=uri)
    curves = []
    for t in m.trials:
        if t.status != "FINISHED" or t.failure or not t.curve:
            continue
        hist = {key: {x.step: x.value for x in client.get_metric_history(t.run_id, key)}
                for key in ("score_sub", "train_s", "eval_s", "eval_rows", "sub_rows")}
        score = dict(t.curve)
        steps = sorted(score)
        rows = [hist["eval_rows"].get(s, 1.0) for s in steps]
        curves.append(Curve(
            trial_id=t.trial_id, steps=steps,
            train_s=_increments([hist["train_s"].get(s, math.nan) for s in steps]),
            eval_s=_increments([hist["eval_s"].get(s, math.nan) for s in steps]),
            score=[score[s] for s in steps],
            score_sub=[hist["score_sub"].get(s, score[s]) for s in steps],
            rows=rows, sub_rows=[hist["sub_rows"].get(s) or _sub_rows(t.params, i + 1, r)
                                 for i, (s, r) in enumerate(zip(steps, rows, strict=True))]))
    if not curves:
        raise ValueError(f"{experiment!r}: no finished trial of {m.method} with a score curve")
    longest = max(len(c.score) for c in curves)
    return [c for c in curves if len(c.score) == longest]


def _sub_rows(params: dict[str, str], evaluation: int, rows: float) -> float:
    """Subset rows of an evaluation, from the trial's config, for records without ``sub_rows``
    (an upper bound when a task's dev set is smaller than the subset)."""
    from trainers.fidelity import rows_at

    try:
        per_task = rows_at(evaluation, int(params["eval_rows"]), float(params.get("eval_growth", 2.0)))
    except (KeyError, ValueError):
        return rows
    return min(rows, float(per_task * len(params.get("tasks", "").split(","))))


def _increments(cumulative: list[float]) -> list[float]:
    return [b - a for a, b in zip([0.0] + cumulative[:-1], cumulative, strict=True)]


# ---- command line -------------------------------------------------------------------------

def format_table(rows: list[dict[str, Any]], baseline: str) -> str:
    head = ("| scheduler/fidelity | compute to within tol., s: q1 / median / q3 | vs "
            f"{baseline}: median ratio (q1-q3) | ends within tol. | total compute s (train + eval) "
            "| steps | dev rows scored |")
    lines = [head, "|" + "---|" * 7]
    for r in rows:
        q = r["hold_s_q1_median_q3"]
        ratio = r.get("hold_ratio_q1_median_q3", (math.nan,) * 3)
        lines.append(
            f"| {r['scenario']} | {q[0]:.0f} / {q[1]:.0f} / {q[2]:.0f} | {ratio[1]:.2f} "
            f"({ratio[0]:.2f}-{ratio[2]:.2f}) | {100 * r['within_share']:.0f}% | "
            f"{r['compute_s_median']:.0f} ({r['train_s_median']:.0f} + {r['eval_s_median']:.0f}) | "
            f"{r['steps_median']:.0f} | {r['eval_rows_median']:.0f} |")
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
        a.json.write_text(json.dumps({"experiment": a.experiment, "method": method, "best": best,
                                      "rows": rows}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
