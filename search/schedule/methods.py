"""Between-method successive halving: which PEFT methods still receive new trials.

All methods' trials share one pool of slots. Searching every method to the end spends as much on
a method that trails badly after its first rungs as on the leader; successive halving over arms
(Karnin, Koren & Somekh 2013's sequential halving for a fixed budget; Jamieson & Talwalkar 2016)
instead stops feeding arms that can no longer win. Here the arms are methods, and an arm is
dropped not on a fixed schedule but when the data say it is behind by more than noise.

**Rule.** Methods are compared at *equal training steps*: at step s, each method's best score
among its trials evaluated at s (trials at the same rung are scored on the same validation rows,
so the scores are comparable; scores at different steps are not, since a longer-trained trial
scores higher). A live method is eliminated at step s when it has at least ``min_trials`` trials
with a score at s and its best is behind the best live method's (the *leader's*) best at s by
more than ``max(z' * se_diff, epsilon or 0)``, z' being ``z`` corrected for multiplicity (below).
The leader at s and the leader at the furthest step are never eliminated, so the last live
method never is. A method with ``min_trials`` trials that has never produced a finite score is
eliminated as "every trial failed" (unless it is the last live one).

**Multiplicity.** The leader is picked by the data as the best of k methods and compared with
the k - 1 others, at every step the trials reach, every time a new result arrives. With z = 2
applied to each comparison as it stands, four *equal* methods lost one of them in 33% of
simulated searches (tests/test_allocation.py, models erring independently; 15% when they agree
on hard rows). So z is read as a two-sided level for one pair at one step (z = 2: 4.6%) and
split Bonferroni-fashion over the (k - 1) comparisons and the steps compared so far: four
methods at three rungs use z' = 2.80. The looks within a step, as trials arrive, are not
corrected; the simulation measures what they add: the familywise rate was 4.6% (independent
errors) and 0.4% (agreeing models), at or under the nominal 4.6%.

**Noise bound.** Trials report only a score per rung, not per-row outputs, so the difference
cannot be paired over rows. For a score that is a mean over tasks of per-row accuracies on
``rows`` rows per task (the caller passes the smallest task's count), task t's accuracy p_t has
standard error sqrt(p_t(1-p_t)/rows). Whatever the correlation between tasks, the mean's
standard error is at most the mean of the tasks' ones, which (sqrt and p(1-p) being concave) is
at most sqrt(s(1-s)/rows) for the score s; independent tasks would divide the variance further
by their number, which the bound does not claim. A Pearson task mapped to (r+1)/2, as the CS224N
score does, has standard error about (1-r²)/sqrt(rows) in r (bivariate normal, large rows), that
is 2p(1-p)/sqrt(rows) <= sqrt(p(1-p)/rows) in the mapped p = (r+1)/2: inside the same bound. So
``se_one = sqrt(v / rows)`` with v the larger of a(1-a) and b(1-b) for the two scores a, b. For
two models scored on the *same* rows, var(a-b) = var(a) + var(b) - 2cov(a, b), and cov >= 0 in
practice (both models get the easy rows right), so ``se_diff = sqrt(2) * se_one``, the
independent-models value, is an upper bound. The bound is conservative three times over (tasks
treated as one, agreement between models ignored, v the larger): it eliminates late rather than
wrongly.

**Selection.** The leader's best is a maximum over more trials than a laggard's (the leader got
its trials while the laggard's stopped), and a maximum over more draws is biased upward, so
best-vs-best favours the leader a little. The rule uses it anyway: the bias is of the order of
the row noise, which the generous threshold (a corrected z on a conservative se) covers, and
``min_trials`` gives every method a few tries first. The tests measure the false-elimination rate.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

_EPS_GAP = 1e-12


def diff_noise(a: float, b: float, rows: int) -> float:
    """Conservative standard error of the difference of two scores in [0, 1] computed on the
    same ``rows`` rows (module docstring: sqrt(2) x the larger single-score binomial se)."""
    v = max(_var(a), _var(b))
    return math.sqrt(2.0 * v / max(1, rows))


def _best_of(by_trial: dict[str, float]) -> tuple[float, int]:
    finite = [v for v in by_trial.values() if math.isfinite(v)]
    return (max(finite), len(finite)) if finite else (math.nan, 0)


def _var(p: float) -> float:
    p = min(1.0, max(0.0, p))
    return p * (1.0 - p)


class MethodAllocator:
    """Which methods still receive new trials; why the others stopped. JSON-able for ``--resume``."""

    VERSION = 1

    def __init__(self, methods: list[str], *, min_trials: int = 2, z: float = 2.0,
                 epsilon: float | None = None) -> None:
        if not methods or len(set(methods)) != len(methods):
            raise ValueError(f"MethodAllocator: methods must be distinct and non-empty, not {methods}")
        if min_trials < 1 or z < 0 or (epsilon is not None and epsilon < 0):
            raise ValueError("MethodAllocator: need min_trials >= 1, z >= 0, epsilon >= 0")
        self.methods = list(methods)
        self.min_trials, self.z, self.epsilon = int(min_trials), float(z), epsilon
        self._started: dict[str, list[str]] = {m: [] for m in self.methods}
        self._scores: dict[str, dict[int, dict[str, float]]] = {m: {} for m in self.methods}
        """method -> step -> trial -> score (NaN for a failed evaluation); the latest report wins,
        so a result re-sent after a restore changes nothing."""
        self._best: dict[str, dict[int, tuple[float, int]]] = {m: {} for m in self.methods}
        """method -> step -> (best finite score, trials with one): kept current by ``observe``."""
        self._rows: dict[int, int] = {}
        """step -> rows per task the scores at that step were computed on (the fewest seen)."""
        self._tried: dict[str, set[str]] = {m: set() for m in self.methods}
        self._out: dict[str, dict[str, Any]] = {}
        self.seen = 0
        """Evaluations observed so far: the clock that ``eliminated()[m]["when"]`` reads."""

    # -- input ------------------------------------------------------------------------------
    def started(self, method: str, trial_id: str) -> None:
        """Record that ``trial_id`` of ``method`` started (once per trial id)."""
        self._check(method)
        if trial_id not in self._started[method]:
            self._started[method].append(trial_id)

    def observe(self, method: str, trial_id: str, step: int, score: float, rows: int) -> None:
        """One evaluation of a trial at training ``step``, scored on ``rows`` validation rows per
        task (the rung's subset, the same rows for every trial at that step). NaN: it failed."""
        self._check(method)
        self.seen += 1
        score = float(score) if score is not None else math.nan
        step, rows = int(step), int(rows)
        by_trial = self._scores[method].setdefault(step, {})
        by_trial[trial_id] = score
        self._best[method][step] = _best_of(by_trial)
        self._rows[step] = min(rows, self._rows.get(step, rows))
        self._tried[method].add(trial_id)
        self._eliminate_failed(method)
        self._eliminate_behind(step)

    def failed(self, method: str, trial_id: str) -> None:
        """A trial that errored before any evaluation: counts towards "every trial failed"."""
        self._check(method)
        self.seen += 1
        self._tried[method].add(trial_id)
        self._eliminate_failed(method)

    # -- output -----------------------------------------------------------------------------
    def live(self) -> list[str]:
        """Methods still receiving new trials, in the given order."""
        return [m for m in self.methods if m not in self._out]

    def next_method(self, among: list[str] | None = None) -> str | None:
        """The live method with the fewest trials started (ties: the given order); None if none.
        ``among``: only these (e.g. without methods whose own searcher has no trials left)."""
        live = [m for m in self.live() if among is None or m in among]
        return min(live, key=lambda m: (len(self._started[m]), self.methods.index(m))) if live else None

    def trials_started(self, method: str) -> int:
        return len(self._started[method])

    def eliminated(self) -> dict[str, dict[str, Any]]:
        """Per eliminated method: ``when`` (evaluations seen), ``step``, ``rows``, ``trials``,
        ``best``, ``leader``, ``leader_best``, ``gap``, ``noise`` (the threshold), ``z`` (as
        corrected) and a one-line ``why``."""
        return {m: dict(rec) for m, rec in self._out.items()}

    def best(self, method: str, step: int) -> tuple[float, int]:
        """(best finite score, trials with a finite score) of ``method`` at ``step``; (nan, 0)."""
        return self._best[method].get(step, (math.nan, 0))

    def leader(self) -> str | None:
        """The live method with the best score at the furthest step any live method reached
        (the next step down where none has a finite score there); None before any score."""
        live = self.live()
        steps = sorted({s for m in live for s in self._scores[m]}, reverse=True)
        for s in steps:
            scored = [(self.best(m, s)[0], -i, m) for i, m in enumerate(live) if self.best(m, s)[1]]
            if scored:
                return max(scored)[2]
        return None

    # -- the rule ---------------------------------------------------------------------------
    def z_for(self, compared: int, steps: int = 1) -> float:
        """``z`` corrected for multiplicity: the leader, chosen as the best of ``compared``
        methods, is compared with the ``compared - 1`` others at each of ``steps`` steps, so each
        comparison gets the two-sided level of ``z`` divided by ``(compared - 1) * steps``
        (Bonferroni). Two methods at one step: ``z`` itself."""
        tests = max(1, compared - 1) * max(1, steps)
        tail = (1.0 - NormalDist().cdf(self.z)) / tests
        return self.z if tail <= 0.0 else -NormalDist().inv_cdf(tail)  # the upper tail, precisely

    def threshold(self, a: float, b: float, rows: int, compared: int = 2, steps: int = 1) -> float:
        """The gap beyond which ``b`` is separably behind ``a`` on ``rows`` rows, when the leader
        is the best of ``compared`` methods and methods have been compared at ``steps`` steps."""
        return max(self.z_for(compared, steps) * diff_noise(a, b, rows), self.epsilon or 0.0)

    def _eliminate_behind(self, step: int) -> None:
        rows = self._rows[step]
        live = self.live()
        bests = {m: self.best(m, step) for m in live}
        scored = [m for m in live if bests[m][1]]
        if len(scored) < 2:
            return
        lead = max(scored, key=lambda m: (bests[m][0], -self.methods.index(m)))
        top = bests[lead][0]
        z = self.z_for(len(scored), len(self._rows))
        overall: str | None = None
        for m in sorted(scored, key=lambda m: bests[m][0]):
            b, n = bests[m]
            if m == lead or n < self.min_trials:
                continue
            gap, noise = top - b, max(z * diff_noise(top, b, rows), self.epsilon or 0.0)
            if gap <= noise + _EPS_GAP:
                continue
            overall = overall or self.leader()  # the leader at the furthest step stays too
            if m == overall or len(self.live()) <= 1:
                continue
            self._out[m] = {
                "when": self.seen, "step": step, "rows": rows, "trials": n, "best": b,
                "leader": lead, "leader_best": top, "gap": gap, "noise": noise, "z": z,
                "why": (f"best {b:.3f} at step {step} is {100 * gap:.1f} points behind {lead}'s "
                        f"{top:.3f} at step {step} (noise {100 * noise:.1f} points, {rows} rows)")}

    def _eliminate_failed(self, method: str) -> None:
        if method in self._out or len(self.live()) <= 1 or len(self._tried[method]) < self.min_trials:
            return
        if any(math.isfinite(v) for by_trial in self._scores[method].values() for v in by_trial.values()):
            return
        self._out[method] = {"when": self.seen, "step": None, "rows": None,
                             "trials": len(self._tried[method]), "best": None, "leader": None,
                             "leader_best": None, "gap": None, "noise": None, "z": None,
                             "why": "every trial failed"}

    def _check(self, method: str) -> None:
        if method not in self._scores:
            raise ValueError(f"unknown method {method!r}: expected one of {', '.join(self.methods)}")

    # -- persistence ------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """JSON-able (NaN stored as None, steps as strings) for ``--resume``."""
        def num(v: float) -> float | None:
            return v if math.isfinite(v) else None

        return {"version": self.VERSION, "methods": self.methods, "min_trials": self.min_trials,
                "z": self.z, "epsilon": self.epsilon, "seen": self.seen,
                "started": {m: list(v) for m, v in self._started.items()},
                "tried": {m: sorted(v) for m, v in self._tried.items()},
                "scores": {m: {str(s): {t: num(v) for t, v in by_trial.items()}
                               for s, by_trial in steps.items()} for m, steps in self._scores.items()},
                "rows": {str(s): r for s, r in self._rows.items()},
                "eliminated": self.eliminated()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> MethodAllocator:
        if state.get("version") != cls.VERSION:
            raise ValueError(f"method allocator state version {state.get('version')!r}: "
                             f"expected {cls.VERSION}")
        a = cls(state["methods"], min_trials=state["min_trials"], z=state["z"], epsilon=state["epsilon"])
        a.seen = int(state["seen"])
        a._started = {m: list(v) for m, v in state["started"].items()}
        a._tried = {m: set(v) for m, v in state["tried"].items()}
        a._scores = {m: {int(s): {t: math.nan if v is None else float(v) for t, v in by_trial.items()}
                         for s, by_trial in steps.items()} for m, steps in state["scores"].items()}
        a._best = {m: {s: _best_of(by_trial) for s, by_trial in steps.items()}
                   for m, steps in a._scores.items()}
        a._rows = {int(s): int(r) for s, r in state["rows"].items()}
        a._out = {m: dict(rec) for m, rec in state["eliminated"].items()}
        return a
