"""Replay schedulers offline over the curves of a finished FIFO search ("tune the tuner").

    peft-search replay --experiment NAME [--mlflow-uri URI] [--orders 200] [--concurrency 2]
    (``search.report.replay``: the command, its table)

A search run with ``--scheduler fifo --eval-full`` trains every trial to the end and logs, at
every evaluation, the whole-dev score, the subset score (``score_sub``), the seconds spent
training and evaluating, and each trial's set-up seconds. A table recorded without
``--eval-full`` is refused: its early evaluations scored a subset only, so "whole dev"
scenarios would be subset runs. From the table any stopping rule of ``search.schedule.policies`` can be
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

import heapq
import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from search.schedule.policies import CONTINUE, make_policy, percentile
from search.schedule.replay_table import Curve
from search.trial_outcome import furthest_best as pick

FIDELITIES = ("subset", "full")


@dataclass(frozen=True)
class Scenario:
    scheduler: str
    fidelity: str = "subset"
    grace: int = 1
    rf: float = 2.0
    concurrency: int = 2
    options: tuple[tuple[str, Any], ...] = ()
    """The policy's options (``search.schedule.policies.make_policy``), e.g. ``(("leader", True),)``."""

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
