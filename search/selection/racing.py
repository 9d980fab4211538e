"""Racing confirmation: candidates from several methods get seeds in rounds, the ones separably
behind the leader are dropped, and the race stops on one survivor or when the reserve is spent.

Racing is F-Race (Birattari, Stützle, Paquete & Varrentrapp 2002) and irace's (López-Ibáñez et al.
2016) elimination loop, read as fixed-budget best-arm identification: spend the confirmation
budget on the candidates that can still win. Here a round gives every survivor one more training
seed (the same seed id for all, so seeds pair), each run scored on the same validation rows. The
rules, and why:

- **Compare to the leader** (the best mean over the shared seeds) with ``search.stats.difference``,
  paired by seed and by row: the crossed seeds x rows interval the rest of the product uses, not
  F-Race's Friedman test (ranks over rows would throw away that a row is scored by every seed). A
  survivor is dropped when the interval of ``leader - survivor`` lies above 0.
- **No look before ``min_seeds``** (default 2): with one seed there is no seed part, and an
  interval over rows alone supports no verdict (``stats.separable``).
- **Multiplicity** (the probability of dropping a candidate truly equal to the best <= ``alpha``
  over the whole race): the race plans its looks at rounds ``min_seeds..max_rounds`` before it
  starts and gives look t the share ``alpha_t = alpha * (n_t - 1) / sum(n - 1)`` of alpha (a
  Bonferroni split over looks weighted by the seed degrees of freedom, n_t the seeds at look t:
  a look at 2 seeds has a t-quantile with 1 degree of freedom and can rarely drop anything, so it
  gets little). Within a look with s survivors, each comparison uses level
  ``1 - alpha_t / (s (s - 1) / 2)``: Bonferroni over every pair of survivors, not only over the s - 1
  comparisons made, because the leader is chosen by the same data; a drop of a candidate equal to
  the best needs some pair's interval to exclude its true difference of 0, and the union bound over
  pairs and looks gives <= alpha whatever the leader. Looks are positively correlated, so the split
  is conservative (measured: ``benchmarks/racing.py``); Holm would gain little with a handful of
  survivors and needs p-values the crossed interval does not give.
- **Budget**: a round is started only when the reserve pays for all of it at the estimated cost
  per run (the larger of the estimate passed in and the mean measured so far: never undercount);
  the plan's ``max_rounds`` is also capped by the most rounds the reserve could pay if only two
  survived after ``min_seeds``, so the alpha split covers every look the race can make.
- **Failures**: a run that fails drops its candidate (a config that diverges under a seed is never
  the pick, as in ``search.selection.confirm``).
- **Halving** (default; ``search.selection.halving``): the reserve is planned as sequential
  halving, so after its phases' rounds the worse half by mean is cut (a ``Drop`` with ``separable``
  False: where the runs go, no claim) and the last two get the rest. Without it every survivor
  gets every round until a drop, the reserve or the futility stop ends the race. The futility
  stop is for races without halving only: with it the plan bounds the runs already, and stopping
  the final pair early cost the leader (measured: ``benchmarks/racing.py``).

The race's seeds chose the winner, so its mean over them is biased upward: the figure to report
comes from fresh seeds (``fresh_seeds``, disjoint from the race's) and the test split; the caller
runs those. Ray-free: the driver turns each ``next_round()`` into one Tune experiment.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from search import stats
from search.selection.halving import HalvingPlan, halving_plan
from search.selection.result import Drop, RaceResult
from search.selection.seeds import confirm_seeds, to_decide
from search.stats import Interval, Outputs

ALPHA = 0.05
MAX_ROUNDS = 10
Compare = Callable[..., Interval]
"""``compare(a, b, level=...) -> Interval`` of ``mean(a) - mean(b)``; ``stats.difference``."""


@dataclass(frozen=True)
class Candidate:
    name: str
    method: str
    config: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    is_default: bool = False


def fresh_seeds(search_seed: int, n: int) -> list[int]:
    """Seeds for the runs that report the winner: the fresh half of the block, disjoint from every
    seed a race of this search used."""
    return confirm_seeds(search_seed, n, fresh=True)


class Race:
    """A race over ``candidates``: ``next_round()`` asks for a batch of (candidate, seed) runs,
    ``record()`` takes each one's outputs (None when it failed); ``done`` ends it, ``result()``
    says what it found."""

    def __init__(self, candidates: Sequence[Candidate], *, reserve_s: float, cost_per_run_s: float,
                 search_seed: int = 0, min_seeds: int = 2, max_rounds: int = MAX_ROUNDS,
                 alpha: float = ALPHA, futility: bool = True, halving: bool = True,
                 compare: Compare | None = None):
        names = [c.name for c in candidates]
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"a race needs candidates with distinct names, not {names}")
        if min_seeds < 2 or cost_per_run_s <= 0 or not 0 < alpha < 1:
            raise ValueError("min_seeds >= 2, cost_per_run_s > 0 and 0 < alpha < 1")
        self.candidates = list(candidates)
        self.reserve_s, self.cost_per_run_s = float(reserve_s), float(cost_per_run_s)
        self.search_seed, self.min_seeds, self.alpha = search_seed, min_seeds, alpha
        self.futility, self.halving = futility and not halving, halving
        runs = self.reserve_s / self.cost_per_run_s
        self.plan = halving_plan(len(names), runs, max_rounds) if halving else HalvingPlan(
            min(max_rounds, self._affordable_rounds()))
        self.max_rounds = self.plan.rounds
        self.compare: Compare = compare or stats.difference
        self.round = 0
        self.alive = list(names)
        self.pending: list[tuple[str, int]] = []
        self.runs: dict[str, list[tuple[int, Outputs | None, float]]] = {n: [] for n in names}
        self.measured: list[float] = []
        self.drops: list[Drop] = []
        self.last: dict[str, dict[str, float]] = {}
        """The latest look's ``leader - survivor`` intervals (``Interval.to_dict``), by survivor."""
        self.stopped: str | None = None
        self._stacks: dict[str, Outputs] = {}
        self._scores: dict[str, list[float]] = {n: [] for n in names}

    # ---- plan ---------------------------------------------------------------------------------
    def _affordable_rounds(self) -> int:
        """The most rounds the reserve could pay: every candidate until ``min_seeds``, then two."""
        runs = self.reserve_s / self.cost_per_run_s
        k = len(self.candidates)
        if runs < self.min_seeds * k:
            return int(runs // k)
        return self.min_seeds + int((runs - self.min_seeds * k) // 2)

    @property
    def looks(self) -> list[int]:
        """The rounds after which the race compares (planned before it starts)."""
        return list(range(self.min_seeds, self.max_rounds + 1))

    def look_alpha(self, round_: int) -> float:
        """The share of alpha spent at the look after ``round_``: weighted by its seed degrees of
        freedom (n - 1), the weights over the planned looks summing to 1."""
        if round_ not in self.looks:
            return 0.0
        return self.alpha * (round_ - 1) / sum(r - 1 for r in self.looks)

    def level(self, round_: int, survivors: int) -> float:
        """Each comparison's interval level at the look after ``round_`` among ``survivors``."""
        pairs = max(survivors * (survivors - 1) // 2, 1)
        return 1 - self.look_alpha(round_) / pairs

    def seed(self, round_: int) -> int:
        """Round ``round_``'s seed (1-based): the selection half of the search's seed block."""
        return confirm_seeds(self.search_seed, round_)[-1]

    # ---- running ------------------------------------------------------------------------------
    @property
    def cost_estimate_s(self) -> float:
        mean = sum(self.measured) / len(self.measured) if self.measured else 0.0
        return max(self.cost_per_run_s, mean)

    @property
    def spent_s(self) -> float:
        return sum(s for runs in self.runs.values() for _, _, s in runs)

    @property
    def runs_used(self) -> int:
        return sum(len(r) for r in self.runs.values())

    @property
    def done(self) -> bool:
        return self.stopped is not None

    def _by_name(self, name: str) -> Candidate:
        return next(c for c in self.candidates if c.name == name)

    def _why_stop(self) -> str | None:
        if not self.alive:
            return "every candidate failed"
        if len(self.alive) == 1:
            return "one candidate left"
        if self.round >= self.max_rounds:
            return f"the planned rounds ran ({self.max_rounds})"
        cost = len(self.alive) * self.cost_estimate_s
        if self.spent_s + cost > self.reserve_s + 1e-9:
            return (f"the reserve cannot pay another round ({len(self.alive)} runs x "
                    f"{self.cost_estimate_s:.0f} s > {self.reserve_s - self.spent_s:.0f} s left)")
        return None

    def next_round(self) -> list[tuple[Candidate, int]]:
        """The runs to do now: the open round's runs not yet recorded (after ``--resume``), else a
        new round's (every survivor with the round's seed); [] when the race is over."""
        if not self.pending and not self.done:
            self.stopped = self._why_stop()
            if not self.done:
                self.round += 1
                seed = self.seed(self.round)
                self.pending = [(name, seed) for name in self.alive]
        return [(self._by_name(n), s) for n, s in self.pending]

    def abandon(self, why: str) -> None:
        """End the race without its open round (stopped before its runs all reported: the runs
        that did report are on another seed than the rest's, so none is counted)."""
        if self.pending or any(seed == self.seed(self.round) for runs in self.runs.values()
                               for seed, _, _ in runs):
            for name in self.runs:
                self.runs[name] = [r for r in self.runs[name] if r[0] != self.seed(self.round)]
                self._scores[name] = []
                self._stacks.pop(name, None)
            self.pending = []
            self.round -= 1
        self.stopped = why

    def record(self, candidate: Candidate | str, seed: int, outputs: Outputs | None,
               seconds: float | None = None) -> None:
        """One run's validation outputs (one seed; None: it failed) and the trial-time it held a
        slot (default: the estimate). The look follows the round's last record."""
        name = candidate if isinstance(candidate, str) else candidate.name
        if (name, seed) not in self.pending:
            raise ValueError(f"{name} with seed {seed} is not a run of round {self.round}")
        self.pending.remove((name, seed))
        spent = self.cost_per_run_s if seconds is None else float(seconds)
        if seconds is not None:
            self.measured.append(spent)
        self.runs[name].append((seed, outputs, spent))
        self._scores[name].append(math.nan if outputs is None else float(stats.seed_scores(outputs)[0]))
        self._stacks.pop(name, None)
        if outputs is None:
            self.alive.remove(name)
            self.drops.append(Drop(name, self.round, f"its run with seed {seed} failed", separable=False))
        if not self.pending and self.round >= self.min_seeds and len(self.alive) > 1:
            self._look()
        if not self.pending and self.stopped is None:
            self._cut()

    def _cut(self) -> None:
        """The halving plan's cut after this round: the worse by mean leave, no claim made."""
        keep = self.plan.cuts.get(self.round)
        if keep is None or len(self.alive) <= keep:
            return
        order = sorted(self.alive, key=self.mean, reverse=True)
        leader = order[0]
        for name in order[keep:]:
            gap = self.mean(leader) - self.mean(name)
            self.alive.remove(name)
            self.last.pop(name, None)
            self.drops.append(Drop(name, self.round, f"cut by halving after {self.round} seed(s): "
                                   f"{100 * gap:.2f} points behind {leader} by mean (not separable: its "
                                   "runs go to the better half)", leader, gap, separable=False))

    def outputs(self, name: str) -> Outputs:
        """A candidate's outputs over its seeds (seed order)."""
        if name not in self._stacks:
            self._stacks[name] = Outputs.stack([o for _, o, _ in self.runs[name] if o is not None])
        return self._stacks[name]

    def scores(self, name: str) -> list[float]:
        """Its seed scores (NaN for a failed run), in seed order."""
        if len(self._scores[name]) != len(self.runs[name]):  # after from_state
            self._scores[name] = [float(stats.seed_scores(o)[0]) if o is not None else math.nan
                                  for _, o, _ in self.runs[name]]
        return list(self._scores[name])

    def mean(self, name: str) -> float:
        s = self.scores(name)
        return float(np.mean(s)) if s and all(math.isfinite(x) for x in s) else -math.inf

    @property
    def leader(self) -> str | None:
        return max(self.alive, key=self.mean, default=None)

    def standing(self) -> list[str]:
        """Every candidate, best first: the survivors by mean, then the ones that left, later
        leavers first (each beat those that left before it on the seeds they shared), the same
        round's by mean. Means over different numbers of seeds are not compared: one lucky seed
        of a candidate cut after round 1 does not rank it above one that ran three."""
        alive = set(self.alive)
        return sorted((c.name for c in self.candidates),
                      key=lambda n: (n in alive, len(self.runs[n]), self.mean(n)), reverse=True)

    def _look(self) -> None:
        leader = self.leader
        assert leader is not None
        level = self.level(self.round, len(self.alive))
        self.last = {}
        behind = []
        for name in self.alive:
            if name == leader:
                continue
            d = self.compare(self.outputs(leader), self.outputs(name), level=level)
            self.last[name] = {**d.to_dict(), "level": level}
            if stats.separable(d) and d.mean > 0:
                behind.append(Drop(name, self.round, f"separably behind {leader} after {self.round} "
                                   f"seeds: {100 * d.mean:+.2f} points [{100 * d.lo:+.2f}, "
                                   f"{100 * d.hi:+.2f}] at level {level:.5f}",
                                   leader, d.mean, d.lo, d.hi, level))
        for drop in behind:  # all against the same leader, at once
            self.alive.remove(drop.name)
            self.last.pop(drop.name)
            self.drops.append(drop)
        if self.futility and len(self.alive) > 1 and all(
                v is None for v in self._need(most=self.max_rounds).values()):
            self.stopped = (f"futile: no gap to {leader} would be separable within the planned "
                            f"{self.max_rounds} seeds (the rows' part of its interval alone, or the seeds' "
                            "at that many, covers it)")

    def _need(self, most: int = 497) -> dict[str, int | None]:
        """Seeds per candidate at which each trailing survivor's observed gap to the leader would
        be separable at its latest look's level (``to_decide``)."""
        return {name: to_decide(d["mean"], d["seed_half"], d["rows_half"], self.round, d["level"], most)
                for name, d in self.last.items()}

    # ---- the answer -----------------------------------------------------------------------------
    def result(self) -> RaceResult:
        leader = self.leader
        winner = leader if len(self.alive) == 1 else None
        if winner is not None:
            verdict = f"{winner} wins the race"
        elif not self.alive:
            verdict = "no winner: every candidate failed"
        else:
            order = sorted(self.alive, key=self.mean, reverse=True)
            verdict = f"not separable at this budget: {' and '.join(order)} tie"
        return RaceResult(
            winner=winner, leader=leader, tied=[] if winner else sorted(self.alive, key=self.mean,
                                                                         reverse=True),
            verdict=verdict, stopped=self.stopped or "running", rounds=self.round,
            seeds=[self.seed(r) for r in range(1, self.round + 1)],
            scores={c.name: self.scores(c.name) for c in self.candidates},
            means={c.name: self.mean(c.name) for c in self.candidates},
            drops=list(self.drops), runs=self.runs_used, spent_s=self.spent_s,
            to_decide=self._to_decide(), methods={c.name: c.method for c in self.candidates},
            defaults=[c.name for c in self.candidates if c.is_default],
            note=("the race's seeds chose the winner and its mean over them is biased upward: report "
                  "it from fresh seeds (fresh_seeds, disjoint from the race's) and the test split"))

    def _to_decide(self) -> dict[str, Any] | None:
        """For a tie: the seeds per candidate at which each trailing survivor's gap to the leader
        would be separable, and the runs and seconds that would take."""
        if len(self.alive) < 2 or not self.last:
            return None
        n = self.round
        need = self._need()
        if any(v is None for v in need.values()):
            stuck = [k for k, v in need.items() if v is None]
            return {"seeds": need, "runs": None, "seconds": None,
                    "note": f"more seeds alone would not decide {', '.join(stuck)}: the rows' part of "
                            "the interval covers the gap (more validation rows would)"}
        most = max(v for v in need.values() if v is not None)
        runs = sum(v - n for v in need.values() if v is not None) + (most - n)
        return {"seeds": need, "runs": runs, "seconds": runs * self.cost_estimate_s,
                "note": f"about {runs} more runs ({most} seeds for the last pair), if the observed "
                        "gaps hold (they shrink toward the truth: an estimate, not a promise)"}

    # ---- resume ---------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything the race needs to go on (JSON-able): its plan, rounds, pending runs, each
        run's seed, seconds and predictions, drops."""
        first = next((o for runs in self.runs.values() for _, o, _ in runs if o is not None), None)
        rows = None if first is None else {
            "kinds": first.kinds, "labels": {t: v.tolist() for t, v in first.labels.items()}}
        return {
            "candidates": [asdict(c) for c in self.candidates],
            "plan": {"reserve_s": self.reserve_s, "cost_per_run_s": self.cost_per_run_s,
                     "search_seed": self.search_seed, "min_seeds": self.min_seeds,
                     "max_rounds": self.max_rounds, "alpha": self.alpha,
                     "futility": self.futility, "halving": self.halving},
            "round": self.round, "alive": self.alive, "pending": [list(p) for p in self.pending],
            "measured": self.measured, "stopped": self.stopped, "rows": rows, "last": self.last,
            "drops": [asdict(d) for d in self.drops],
            "runs": {name: [{"seed": s, "seconds": sec,
                             "preds": None if o is None else {t: v[0].tolist() for t, v in o.preds.items()}}
                            for s, o, sec in runs] for name, runs in self.runs.items()}}

    @classmethod
    def from_state(cls, state: dict[str, Any], compare: Compare | None = None) -> Race:
        plan = {"halving": False, **state["plan"]}  # a race saved before halving existed had none
        race = cls([Candidate(**c) for c in state["candidates"]], compare=compare, **plan)
        if race.max_rounds != state["plan"]["max_rounds"]:  # as planned, whatever it would say now
            race.plan = HalvingPlan(state["plan"]["max_rounds"])
            race.max_rounds = race.plan.rounds
        race.round, race.alive, race.stopped = state["round"], list(state["alive"]), state["stopped"]
        race.pending = [(n, int(s)) for n, s in state["pending"]]
        race.measured, race.last = list(state["measured"]), dict(state["last"])
        race.drops = [Drop(**d) for d in state["drops"]]
        rows = state["rows"]
        for name, runs in state["runs"].items():
            for run in runs:
                out = None
                if run["preds"] is not None:
                    out = Outputs(dict(rows["kinds"]), {t: np.asarray(v) for t, v in rows["labels"].items()},
                                  {t: np.asarray(v)[None, :] for t, v in run["preds"].items()})
                race.runs[name].append((int(run["seed"]), out, float(run["seconds"])))
        return race
