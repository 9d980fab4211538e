"""Replay ``--budget``'s pool against today's sequential per-method search, offline (issue 26).

The table: a FIFO ``--eval-full`` search of several methods (``method -> list[Curve]``, the curves
``search.schedule.replay`` reads; every trial ran every evaluation, scored on the whole dev set and on the
rung's subset). Both searches below draw each method's configs in the same random order (one
order per replay), run on ``concurrency`` slots, pay each trial's set-up once, each evaluation the
seconds it took (a subset evaluation the whole-dev seconds times its share of rows), and stop
trials with one PASHA per method (``make_policy("pasha", ...)``: rungs compare a method's trials
with each other only), which sees the subset score before the last evaluation and the whole-dev
score at it, as ``search.schedule.replay`` does.

- **The budget policy** (``simulate_pool``), as ``search.schedule.pool`` runs it: one pool; for
  each new trial the ``MethodAllocator`` picks the method (the live one with the fewest trials
  started, among those with configs left) and observes every evaluation (rows per task: the
  rows scored over ``tasks``); a trial starts only when the gate allows it (``Gate``: the budget
  left, less the reserve, less what the running trials may still spend, pays for it run to its
  end at its method's measured seconds per evaluation); when the gate refuses and nothing runs,
  or no live method has configs left, the pool starts nothing more. The ledger is charged with
  every report's seconds (set-up in the first).
- **The baseline** (``simulate_sequential``): today's per-method searches one after another on
  the same slots (the next method starts when the previous one's last trial ends), each with
  ``budget / M`` trial-time: a method starts trials while its own charged trial-time is below its
  share and it has configs left. Its last trials may run past the share (generous to the
  baseline). Method order: the given one or a random one per replay.

**Compute to hold** (the corrected metric of ``search.schedule.replay``, over the whole table): the
trial-time (set-up, training, evaluation, running trials' partial segments included) when the
search's overall pick (``search.trial_outcome.furthest_best`` over every trial of every method)
last became a config trained to the full budget whose full-budget whole-dev score is within
``tolerance`` of the table's best (over all methods), kept to the end. Never held, or lost by the
end: +inf (``hold_s`` None). The per-order ratio budget/baseline is ``search.schedule.replay.hold_ratios``'s
(inf when the budget policy never held, 0 when only the baseline never held).

**Not simulated.** The real ``--budget`` search then races the leaders on new seeds and retrains
the answer with fresh seeds out of the reserve; the table has one seed per config, so none of
that is replayed: the replay measures the pool's part (the reserve is left unspent). Nor are a
searcher that learns (orders are random; the product's pool uses Optuna, defaults first), Tune's
overheads, or a hand-set ``--num-samples`` (the baseline stops on its share of trial-time).

**The oracle** (``simulate_oracle``), in effect a ceiling for allocation between methods with the
same config orders and PASHA: all of B on the method holding the best config, from the start."""

from __future__ import annotations

import heapq
import random
import statistics
from dataclasses import dataclass, field
from typing import Any

from search.schedule.budget import Ledger
from search.schedule.gate import RESERVE_SHARE, Gate
from search.schedule.methods import MethodAllocator
from search.schedule.policies import CONTINUE, Policy, make_policy
from search.schedule.replay import Replay, _so_far, hold_ratios, never_inf, quartiles, table_best
from search.schedule.replay_table import Curve
from search.trial_outcome import furthest_best

Table = dict[str, list[Curve]]
TOLERANCE = 0.005
WAIT, DONE = "wait", "done"


def total_fifo_s(table: Table) -> float:
    """Trial-time of the whole table run FIFO (every trial, every evaluation on the whole dev set)."""
    return sum(c.setup_s + sum(c.train_s) + sum(c.eval_s) for cs in table.values() for c in cs)


def overall_best(table: Table) -> float:
    """The best full-budget whole-dev score over every method's configs."""
    return max(table_best(cs) for cs in table.values())


@dataclass
class Run(Replay):
    """One simulated search over a multi-method table (``Replay``'s fields, summed over methods)."""

    spent_s: float = 0.0  # trial-time charged by the end (every report's seconds)
    by_method: dict[str, float] = field(default_factory=dict)  # method -> trial-time charged
    trials: dict[str, int] = field(default_factory=dict)  # method -> trials started
    eliminated: dict[str, int] = field(default_factory=dict)  # method -> evaluations seen then
    final_method: str | None = None
    why_stopped: str = ""


@dataclass(frozen=True)
class Order:
    """One replay's draw: each method's configs in its random order; the baseline's method order."""

    configs: dict[str, list[int]]
    methods: list[str]


def draw_orders(table: Table, count: int, seed: int = 0, method_order: str = "random") -> list[Order]:
    """``count`` orders; the baseline's method order ``given`` (the table's) or ``random``."""
    if method_order not in ("given", "random"):
        raise ValueError(f"method order {method_order!r}: expected given or random")
    rng, by_method = random.Random(seed), random.Random(f"methods {seed}")  # same configs either way
    out = []
    for _ in range(count):
        configs = {}
        for m, cs in table.items():
            perm = list(range(len(cs)))
            rng.shuffle(perm)
            configs[m] = perm
        methods = list(table)
        if method_order == "random":
            by_method.shuffle(methods)
        out.append(Order(configs, methods))
    return out


class _Search:
    """The event loop both searches share; subclasses choose what starts and see every report."""

    def __init__(self, table: Table, order: Order, concurrency: int, tasks: int, tolerance: float,
                 best: float, grace: int, rf: float, pasha: dict[str, Any]) -> None:
        self.table, self.concurrency, self.tasks = table, concurrency, max(1, tasks)
        self.tolerance, self.best = tolerance, best
        self.max_t = len(next(iter(table.values()))[0].score)
        if any(len(c.score) != self.max_t for cs in table.values() for c in cs):
            raise ValueError("every curve of the table must have the same number of evaluations")
        self.queues = {m: list(order.configs[m]) for m in table}
        self.policies: dict[str, Policy] = {m: make_policy("pasha", self.max_t, grace, rf, **pasha)
                                            for m in table}
        self.out = Run(by_method={m: 0.0 for m in table}, trials={m: 0 for m in table})
        self.events: list[tuple[float, int, str, int, int]] = []  # (time, seq, method, curve, evaluation)
        self.running: dict[str, tuple[float, float, float]] = {}  # key -> (segment start, set-up, train)
        self.seen: dict[str, tuple[int, float]] = {}
        self.curve_of: dict[str, Curve] = {}
        self.seq, self.done = 0, False

    # -- what subclasses decide -----------------------------------------------------------------
    def next_trial(self) -> tuple[str, int] | str:
        """(method, curve index) to start now, ``WAIT`` or ``DONE``."""
        raise NotImplementedError

    def started(self, method: str, key: str) -> None:  # a trial of ``method`` started
        pass

    def reported(self, method: str, key: str, i: int, step: int, score: float, rows: float,
                 seconds: float) -> None:
        """Evaluation ``i`` of trial ``key``: its score seen, rows scored and the seconds charged."""

    def ended(self, method: str, key: str) -> None:  # stopped or at the full budget
        pass

    # -- the loop -------------------------------------------------------------------------------
    def _segment(self, method: str, c: int, i: int, now: float) -> None:
        cur = self.table[method][c]
        key = f"{method}/{cur.trial_id}"
        _, ev, _ = cur.seen(i, "subset")
        setup = cur.setup_s if i == 1 else 0.0
        self.running[key] = (now, setup, cur.train_s[i - 1])
        self.seq += 1
        heapq.heappush(self.events, (now + setup + cur.train_s[i - 1] + ev, self.seq, method, c, i))

    def _fill(self, now: float) -> None:
        while not self.done and len(self.running) < self.concurrency:
            nxt = self.next_trial()
            if nxt == DONE:
                self.done = True
            if isinstance(nxt, str):
                return
            method, c = nxt
            key = f"{method}/{self.table[method][c].trial_id}"
            self.curve_of[key] = self.table[method][c]
            self.policies[method].add(key)
            self.out.trials[method] += 1
            self.started(method, key)
            self._segment(method, c, 1, now)

    def _holds(self, key: str | None) -> bool:
        if key is None:
            return False
        cur = self.curve_of[key]
        return self.seen[key][0] == self.max_t and cur.final >= self.best - self.tolerance

    def run(self) -> Run:
        out = self.out
        self._fill(0.0)
        while self.events:
            now, _, method, c, i = heapq.heappop(self.events)
            cur = self.table[method][c]
            key = f"{method}/{cur.trial_id}"
            score, ev, rows = cur.seen(i, "subset")
            setup = self.running.pop(key)[1]
            seconds = setup + cur.train_s[i - 1] + ev
            out.setup_s += setup
            out.train_s += cur.train_s[i - 1]
            out.eval_s += ev
            out.eval_rows += rows
            out.evaluations += 1
            out.steps += cur.steps[i - 1] - (cur.steps[i - 2] if i > 1 else 0)
            out.spent_s += seconds
            out.by_method[method] += seconds
            self.reported(method, key, i, cur.steps[i - 1], score, rows, seconds)
            self.seen[key] = (i, score)
            policy = self.policies[method]
            finished = policy.on_result(key, i, score) != CONTINUE or i == self.max_t
            if finished:
                policy.on_complete(key, i, score)
                out.stopped[key] = i
                self.ended(method, key)
            if not self._holds(furthest_best(self.seen)):
                out.hold_s = out.hold_train_s = out.hold_eval_s = None
            elif out.hold_s is None:
                su, tr, evs = _so_far(out, self.running, now)  # type: ignore[arg-type]
                out.hold_s, out.hold_train_s, out.hold_eval_s = su + tr + evs, tr, evs
            if not finished:
                self._segment(method, c, i + 1, now)
            self._fill(now)
        out.final_trial = furthest_best(self.seen)
        if out.final_trial is not None:
            out.final_method = out.final_trial.split("/", 1)[0]
            out.final_true = self.curve_of[out.final_trial].final
            out.within = out.final_true >= self.best - self.tolerance
        return out


class _Pool(_Search):
    """``--budget``'s pool: the allocator picks each trial's method, the gate decides whether it starts."""

    def __init__(self, *args: Any, budget_s: float, reserve_share: float, allocator: dict[str, Any],
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ledger = Ledger(budget_s)
        self.gate = Gate(self.ledger, reserve_share * budget_s, self.max_t)
        self.allocator = MethodAllocator(list(self.table), **allocator)

    def next_trial(self) -> tuple[str, int] | str:
        live = [m for m in self.allocator.live() if self.queues[m]]
        method = self.allocator.next_method(among=live)
        if method is None:
            self.out.why_stopped = "no method has trials left"
            return DONE
        if not self.gate.allows(method):
            if not self.gate.running:
                self.out.why_stopped = "the budget left pays for no further trial"
                return DONE
            return WAIT
        return method, self.queues[method].pop(0)

    def started(self, method: str, key: str) -> None:
        self.allocator.started(method, key)
        self.gate.started(key, method)

    def reported(self, method: str, key: str, i: int, step: int, score: float, rows: float,
                 seconds: float) -> None:
        if self.ledger.charge("trial", method, seconds, run_id=key, index=i):
            self.gate.reported(key, method, i, seconds)
        self.allocator.observe(method, key, step, score, int(rows / self.tasks))

    def ended(self, method: str, key: str) -> None:
        self.gate.ended(key)

    def run(self) -> Run:
        out = super().run()
        out.eliminated = {m: int(rec["when"]) for m, rec in self.allocator.eliminated().items()}
        return out


class _Sequential(_Search):
    """Today's search: each method in turn with ``budget / M`` trial-time, on the same slots."""

    def __init__(self, *args: Any, budget_s: float, methods: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.share_s = budget_s / len(self.table)
        self.methods, self.k, self.live = list(methods), 0, set[str]()

    def next_trial(self) -> tuple[str, int] | str:
        while self.k < len(self.methods):
            m = self.methods[self.k]
            if self.queues[m] and self.out.by_method[m] < self.share_s:
                return m, self.queues[m].pop(0)
            if self.live:
                return WAIT  # the method's last trials run on; the next method starts after them
            self.k += 1
        self.out.why_stopped = "every method spent its share or ran out of configs"
        return DONE

    def started(self, method: str, key: str) -> None:
        self.live.add(key)

    def ended(self, method: str, key: str) -> None:
        self.live.discard(key)


@dataclass(frozen=True)
class Settings:
    budget_s: float
    concurrency: int = 2
    tasks: int = 1
    """Tasks scored together: rows per task for the allocator are rows scored / tasks."""
    tolerance: float = TOLERANCE
    reserve_share: float = RESERVE_SHARE
    grace: int = 1
    rf: float = 2.0
    pasha: tuple[tuple[str, Any], ...] = ()
    """PASHA's options (``epsilon``, ``leader``); unset as the product: epsilon estimated, leader on."""
    allocator: tuple[tuple[str, Any], ...] = ()
    """``MethodAllocator`` options (``min_trials``, ``z``, ``epsilon``); unset as ``search.budgeted``."""


def _common(table: Table, order: Order, s: Settings, best: float | None) -> tuple[Any, ...]:
    best = overall_best(table) if best is None else best
    return table, order, s.concurrency, s.tasks, s.tolerance, best, s.grace, s.rf, dict(s.pasha)


def simulate_pool(table: Table, order: Order, s: Settings, best: float | None = None) -> Run:
    """The budget policy over one order."""
    return _Pool(*_common(table, order, s, best), budget_s=s.budget_s, reserve_share=s.reserve_share,
                 allocator=dict(s.allocator)).run()


def simulate_sequential(table: Table, order: Order, s: Settings, best: float | None = None) -> Run:
    """The baseline over one order (methods in ``order.methods``)."""
    return _Sequential(*_common(table, order, s, best), budget_s=s.budget_s, methods=order.methods).run()


def best_method(table: Table) -> str:
    """The method holding the table's best full-budget config."""
    return max(table, key=lambda m: table_best(table[m]))


def simulate_oracle(table: Table, order: Order, s: Settings, best: float | None = None) -> Run:
    """The pool told which method holds the table's best config: only it, all of B, no reserve."""
    top = best_method(table)  # its table's best is the whole table's
    return _Pool(*_common({top: table[top]}, order, s, best), budget_s=s.budget_s, reserve_share=0.0,
                 allocator=dict(s.allocator)).run()


def summarize(pool: list[Run], base: list[Run], s: Settings) -> dict[str, Any]:
    """Per order hold seconds (None: never held) and ratios; held shares, quartiles (never held as
    inf), the share of orders with ratio <= 0.5, spending and elimination shares."""
    n = len(pool)
    ratios = hold_ratios(pool, base)
    methods = list(pool[0].by_method)
    med = statistics.median
    return {
        "orders": n, "budget_s": s.budget_s, "concurrency": s.concurrency, "tolerance": s.tolerance,
        "reserve_share": s.reserve_share,
        "held_share_budget": sum(r.hold_s is not None for r in pool) / n,
        "held_share_baseline": sum(r.hold_s is not None for r in base) / n,
        "neither_held_share": sum(r.hold_s is None and b.hold_s is None
                                  for r, b in zip(pool, base, strict=True)) / n,
        "hold_s_budget_q1_median_q3": quartiles([never_inf(r.hold_s) for r in pool]),
        "hold_s_baseline_q1_median_q3": quartiles([never_inf(r.hold_s) for r in base]),
        "ratio_q1_median_q3": quartiles(ratios),
        "ratio_le_half_share": sum(x <= 0.5 for x in ratios) / n,
        "within_share_budget": sum(r.within for r in pool) / n,
        "within_share_baseline": sum(r.within for r in base) / n,
        "spent_share_budget_median": med(r.spent_s / s.budget_s for r in pool),
        "spent_share_budget_max": max(r.spent_s / s.budget_s for r in pool),
        "spent_share_baseline_median": med(r.spent_s / s.budget_s for r in base),
        "spent_share_baseline_max": max(r.spent_s / s.budget_s for r in base),
        "method_spent_share_budget_median": {m: med(r.by_method[m] / r.spent_s if r.spent_s else 0.0
                                                    for r in pool) for m in methods},
        "trials_budget_median": {m: med(r.trials[m] for r in pool) for m in methods},
        "trials_baseline_median": {m: med(r.trials[m] for r in base) for m in methods},
        "eliminated_share": {m: sum(m in r.eliminated for r in pool) / n for m in methods},
        "final_method_share_budget": {m: sum(r.final_method == m for r in pool) / n for m in methods},
        "hold_s_budget_orders": [r.hold_s for r in pool],
        "hold_s_baseline_orders": [r.hold_s for r in base],
        "ratio_orders": ratios,
    }


def compare(table: Table, s: Settings, count: int = 200, seed: int = 0,
            method_order: str = "random") -> dict[str, Any]:
    """Both searches over the same ``count`` orders; ``summarize``'s figures."""
    best = overall_best(table)
    plans = draw_orders(table, count, seed, method_order)
    pool = [simulate_pool(table, o, s, best) for o in plans]
    base = [simulate_sequential(table, o, s, best) for o in plans]
    oracle = [simulate_oracle(table, o, s, best) for o in plans]
    out = {"method_order": method_order, "seed": seed, "best": best, **summarize(pool, base, s)}
    out["by_best_position"] = by_best_position(table, plans, out["ratio_orders"])
    ratios = hold_ratios(oracle, base)
    held, half = sum(r.hold_s is not None for r in oracle) / count, sum(x <= 0.5 for x in ratios) / count
    out["oracle"] = {"method": best_method(table), "ratio_le_half_share": half, "held_share": held,
                     "ratio_q1_median_q3": quartiles(ratios),
                     "by_best_position": by_best_position(table, plans, ratios)}
    return out


def by_best_position(table: Table, plans: list[Order], ratios: list[float]) -> dict[int, dict[str, float]]:
    """Where the method holding the table's best config stands in the baseline's order (1 = first)
    -> the orders there and their share with ratio <= 0.5. The baseline reaches that method after
    the shares of the methods before it; the pool runs every live method from the start."""
    top = best_method(table)
    out: dict[int, dict[str, float]] = {}
    for o, r in zip(plans, ratios, strict=True):
        row = out.setdefault(o.methods.index(top) + 1, {"orders": 0, "ratio_le_half": 0})
        row["orders"] += 1
        row["ratio_le_half"] += r <= 0.5
    return {k: {"orders": v["orders"], "ratio_le_half_share": v["ratio_le_half"] / v["orders"]}
            for k, v in sorted(out.items())}

