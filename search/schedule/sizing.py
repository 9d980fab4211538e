"""What a budget buys: steps per trial, evaluations (rungs), trials per method, race reserve.

With ``--budget`` the user gives one number; the search must choose ``--max-steps``,
``--eval-every``, ``--num-samples`` and the confirmation from what a step, an evaluation and a
trial start cost for each method. Before anything is measured the caller passes assumed costs;
after the first rung it passes measured ones and calls ``size_plan`` again (``changes`` says in
one line what moved). Values the user fixed (``max_steps``, ``eval_every``) are kept.

The rule, kept simple on purpose:

1. **Rungs.** A trial evaluates every ``eval_every`` steps; a trial that is never stopped makes
   ``E = reduction_factor ** (rungs - 1)`` evaluations (4 rungs, factor 2: 8 evaluations) unless
   the user fixed both ``max_steps`` and ``eval_every``. Rungs sit at evaluations 1, f, f², ...
   (ASHA with a grace period of one evaluation), the last one at the end.
2. **Cost of the search** is that of one successive-halving bracket per method: n trials start,
   ``max(1, floor(n / f**k))`` reach rung k, the others stop at the rung before. A trial stopped
   at rung k paid its start, ``k``'s steps and its evaluations. This is synchronous successive
   halving; ASHA promotes a little more generously early on. Every method gets the same n,
   because the between-method allocator (``methods.MethodAllocator.next_method``) starts trials
   evenly; the budget a method frees when it is eliminated is not counted on, so it covers
   ASHA's extra promotions and what is left becomes spare for the race or more trials. The
   ledger, not the plan, decides whether a run still starts (``budget.Ledger.fits``).
3. **Race reserve.** Racing confirmation gives the ``leaders`` best candidates across methods
   plus every method's defaults one seed per round, ``rounds`` rounds (default 2 + methods
   candidates, 3 rounds), each run a full trial (start, ``max_steps`` steps and its
   evaluations). The reserve is that full race but at most ``reserve_share`` of the budget
   (default 30%), and never less than a *minimal confirmation*: one round for the two leading
   candidates at the dearest method's cost; nor more than leaves one trial per method run to the
   end. The search gets the rest.
4. **Steps.** Unless fixed, ``max_steps`` is the largest multiple of ``E`` in
   [``min_steps``, ``max_steps_cap``] for which every method still gets one full bracket
   (``n >= E``: one trial reaches the end in each method) *and* the reserve pays all
   ``race_rounds`` rounds within ``reserve_share``; when no length is enough, ``min_steps``.
   A larger budget buys longer trials (up to the cap) and more trials together: the race
   binds first (18 full runs in 30% of the budget against about 4 x 3 in the search's 70%),
   so trials per method come out well above ``E``.
5. **Too small.** A budget below one trial per method run to the end plus the minimal
   confirmation is refused (``ValueError``, one line naming that minimum).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from search.schedule.budget import format_duration


@dataclass(frozen=True)
class Cost:
    """Seconds a method's trial holds its slot: per training step, per evaluation (the rung's
    subset), per trial start (model, data, actor). Measured after the first rung, assumed before."""

    step_s: float
    eval_s: float
    setup_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("step_s", "eval_s", "setup_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"Cost.{name} must be finite and >= 0, not {v!r}")
        if self.step_s <= 0:
            raise ValueError("Cost.step_s must be > 0")

    def run(self, steps: int, evaluations: int) -> float:
        """Seconds of one run of ``steps`` steps with ``evaluations`` evaluations, start included."""
        return self.setup_s + steps * self.step_s + evaluations * self.eval_s

    @classmethod
    def from_report(cls, metrics: dict) -> Cost:
        """A trial's costs from one of its reports (the trainer's cumulative ``train_s`` and
        ``eval_s`` over its ``step`` steps and ``training_iteration`` evaluations)."""
        steps, evaluations = (max(1.0, float(metrics.get(k) or 1)) for k in ("step", "training_iteration"))
        return cls(step_s=max(float(metrics["train_s"]) / steps, 1e-9),
                   eval_s=float(metrics["eval_s"]) / evaluations,
                   setup_s=float(metrics.get("setup_s") or 0.0))


@dataclass(frozen=True)
class BudgetPlan:
    """What the budget buys (all times trial-time seconds)."""

    budget_s: float
    slots: int
    max_steps: int
    eval_every: int
    evaluations: int
    """Evaluations of a trial that is never stopped (the last at ``max_steps``)."""
    rungs: tuple[int, ...]
    """Steps at which ASHA compares trials, the last being ``max_steps``."""
    reduction_factor: float
    trials: dict[str, int]
    """Trials per method (one bracket each)."""
    search_s: float
    """Planned trial-time of the search's brackets."""
    reserve_s: float
    """Trial-time reserved for racing confirmation."""
    race_candidates: int
    race_rounds: int
    """Full rounds of the race the reserve pays for (may be fewer than asked when capped)."""
    fixed: tuple[str, ...] = ()
    """Names of values the user fixed and the plan kept."""
    costs: dict[str, Cost] = field(default_factory=dict)

    @property
    def spare_s(self) -> float:
        """Budget neither in the brackets nor in the reserve (rounding; goes to the race)."""
        return self.budget_s - self.search_s - self.reserve_s

    def describe(self) -> str:
        """The plan in one line, printed at the start and when it is re-sized."""
        n = set(self.trials.values())
        per = f"{n.pop()} trials" if len(n) == 1 else ", ".join(f"{m} {k}" for m, k in self.trials.items())
        fixed = f" (fixed: {', '.join(self.fixed)})" if self.fixed else ""
        runs = [c.run(self.max_steps, self.evaluations) for c in self.costs.values()]
        dearest = max(runs) if runs else 0.0
        race = (f"{self.race_rounds} rounds x {self.race_candidates} candidates" if self.race_rounds
                else f"{int(self.reserve_s // dearest) if dearest else 0} full runs, under one round "
                     f"of {self.race_candidates} candidates")
        return (f"budget {format_duration(self.budget_s)}: {len(self.trials)} methods x {per} of "
                f"<= {self.max_steps} steps{fixed}, eval every {self.eval_every}, rungs at "
                f"{'/'.join(map(str, self.rungs))} keeping 1/{self.reduction_factor:g} = search "
                f"{format_duration(self.search_s)}; race reserve {format_duration(self.reserve_s)} "
                f"({race}); spare {format_duration(max(0.0, self.spare_s))}; about "
                f"{format_duration(self.budget_s / self.slots)} on {self.slots} "
                f"slot{'s' if self.slots != 1 else ''}")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["rungs"] = list(self.rungs)
        out["fixed"] = list(self.fixed)
        out["spare_s"] = self.spare_s
        return out

    @classmethod
    def from_dict(cls, saved: dict) -> BudgetPlan:
        """The plan ``to_dict`` wrote."""
        fields_ = {k: v for k, v in saved.items() if k not in ("costs", "spare_s")}
        fields_["rungs"], fields_["fixed"] = tuple(fields_["rungs"]), tuple(fields_["fixed"])
        return cls(**fields_, costs={m: Cost(**c) for m, c in saved.get("costs", {}).items()})


def changes(old: BudgetPlan, new: BudgetPlan) -> str:
    """One line saying what re-sizing moved: ``plan re-sized: max_steps 200 -> 150, trials 12 -> 9``."""
    moved = []
    for name in ("max_steps", "eval_every"):
        a, b = getattr(old, name), getattr(new, name)
        if a != b:
            moved.append(f"{name} {a} -> {b}")
    if old.trials != new.trials:
        a, b = set(old.trials.values()), set(new.trials.values())
        if len(a) == len(b) == 1 and old.trials.keys() == new.trials.keys():
            moved.append(f"trials per method {a.pop()} -> {b.pop()}")
        else:
            moved.append(f"trials {old.trials} -> {new.trials}")
    for name in ("search_s", "reserve_s"):
        a, b = getattr(old, name), getattr(new, name)
        if format_duration(a) != format_duration(b):
            moved.append(f"{name[:-2]} {format_duration(a)} -> {format_duration(b)}")
    if old.race_rounds != new.race_rounds:
        moved.append(f"race rounds {old.race_rounds} -> {new.race_rounds}")
    return "plan unchanged" if not moved else "plan re-sized: " + ", ".join(moved)


def milestones(evaluations: int, reduction_factor: float) -> list[int]:
    """Evaluation counts at which trials are compared: 1, f, f², ... below ``evaluations``, then
    ``evaluations`` itself (the end)."""
    out, k = [], 0
    while True:
        m = int(round(reduction_factor ** k))
        if m >= evaluations:
            break
        if not out or m > out[-1]:
            out.append(m)
        k += 1
    return out + [evaluations]


def bracket_cost(cost: Cost, n: int, max_steps: int, eval_every: int, marks: list[int],
                 reduction_factor: float) -> float:
    """Trial-time of one successive-halving bracket of ``n`` trials: ``max(1, floor(n / f**k))``
    reach rung k; those that stop at rung k paid its steps and evaluations."""
    if n <= 0:
        return 0.0
    reach = [max(1, math.floor(n / reduction_factor ** k)) for k in range(len(marks))]
    total = n * cost.setup_s
    for k, m in enumerate(marks):
        stop_here = reach[k] - (reach[k + 1] if k + 1 < len(marks) else 0)
        total += stop_here * (min(m * eval_every, max_steps) * cost.step_s + m * cost.eval_s)
    return total


def _most_trials(costs: dict[str, Cost], search_s: float, max_steps: int, eval_every: int,
                 marks: list[int], factor: float) -> int:
    """Largest n (same for every method) whose brackets fit ``search_s``; 0 if none fits."""
    def total(n: int) -> float:
        return sum(bracket_cost(c, n, max_steps, eval_every, marks, factor) for c in costs.values())

    if total(1) > search_s:
        return 0
    lo, hi = 1, 2
    while total(hi) <= search_s and hi < 1_000_000:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # total(lo) fits, total(hi) does not
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if total(mid) <= search_s else (lo, mid)
    return lo


def _reserve(budget_s: float, full: dict[str, float], leaders: int, rounds: int,
             reserve_share: float) -> tuple[float, int, int]:
    """(reserve seconds, candidates, rounds it pays for): see rule 3 of the module docstring."""
    dearest = max(full.values())
    per_round = leaders * dearest + sum(full.values())
    minimal = 2 * dearest
    # The cap by what one bracket of one trial per method leaves keeps the refusal's minimum exact.
    reserve = max(minimal, min(rounds * per_round, reserve_share * budget_s, budget_s - sum(full.values())))
    return reserve, leaders + len(full), min(rounds, int(reserve / per_round + 1e-9))


def minimum_budget(costs: dict[str, Cost], max_steps: int, evaluations: int) -> float:
    """One trial per method run to the end plus the minimal confirmation (two full runs of the
    dearest method)."""
    full = [c.run(max_steps, evaluations) for c in costs.values()]
    return sum(full) + 2 * max(full)


def size_plan(budget_s: float, costs: dict[str, Cost], slots: int = 1, *,
              max_steps: int | None = None, eval_every: int | None = None, rungs: int = 4,
              reduction_factor: float = 2.0, reserve_share: float = 0.3, leaders: int = 2,
              race_rounds: int = 3, min_steps: int = 40, max_steps_cap: int = 1000) -> BudgetPlan:
    """The plan ``budget_s`` buys for methods with per-step/eval/start ``costs`` on ``slots``
    slots (rules in the module docstring). ``max_steps``/``eval_every``: the user's fixed values,
    kept. Raises ``ValueError`` (one line, naming the minimum) when the budget is too small."""
    if not costs:
        raise ValueError("size_plan: no methods")
    if slots < 1:
        raise ValueError(f"size_plan: slots must be >= 1, not {slots}")
    if not (reduction_factor > 1 and rungs >= 1 and 0 < reserve_share < 1):
        raise ValueError("size_plan: need reduction_factor > 1, rungs >= 1, 0 < reserve_share < 1")
    fixed = tuple(n for n, v in (("max_steps", max_steps), ("eval_every", eval_every)) if v is not None)
    evaluations = max(1, int(round(reduction_factor ** (rungs - 1))))
    if max_steps is not None and eval_every is not None:
        evaluations = math.ceil(max_steps / eval_every)
    elif max_steps is not None:
        eval_every = max(1, math.ceil(max_steps / evaluations))
        evaluations = math.ceil(max_steps / eval_every)
    marks = milestones(evaluations, reduction_factor)

    def plan_at(steps: int, every: int) -> BudgetPlan | None:
        full = {m: c.run(steps, evaluations) for m, c in costs.items()}
        reserve, candidates, rounds = _reserve(budget_s, full, leaders, race_rounds, reserve_share)
        n = _most_trials(costs, budget_s - reserve, steps, every, marks, reduction_factor)
        if n < 1:
            return None
        search = sum(bracket_cost(c, n, steps, every, marks, reduction_factor) for c in costs.values())
        return BudgetPlan(budget_s=budget_s, slots=slots, max_steps=steps, eval_every=every,
                          evaluations=evaluations, rungs=tuple(min(m * every, steps) for m in marks),
                          reduction_factor=reduction_factor, trials={m: n for m in costs},
                          search_s=search, reserve_s=reserve, race_candidates=candidates,
                          race_rounds=rounds, fixed=fixed, costs=dict(costs))

    if max_steps is not None or eval_every is not None:
        steps = max_steps if max_steps is not None else evaluations * eval_every
        candidates = [(steps, eval_every)]
    else:
        lo_every = max(1, math.ceil(min_steps / evaluations))
        hi_every = max(lo_every, max_steps_cap // evaluations)
        candidates = [(e * evaluations, e) for e in range(hi_every, lo_every - 1, -1)]
    # The ladder runs from the longest trials to the shortest. "Enough" (a full bracket per method
    # and the whole race paid) only gets easier as trials shorten, so a binary search finds the
    # longest that is enough; when none is, the shortest that fits at all.
    def enough(plan: BudgetPlan | None) -> bool:
        return (plan is not None and min(plan.trials.values()) >= evaluations
                and plan.race_rounds >= race_rounds)

    plans: dict[int, BudgetPlan | None] = {}

    def at(i: int) -> BudgetPlan | None:
        if i not in plans:
            plans[i] = plan_at(*candidates[i])
        return plans[i]

    lo, hi = 0, len(candidates) - 1
    if at(hi) is None:
        steps = candidates[hi][0]
        need = minimum_budget(costs, steps, evaluations)
        raise ValueError(f"--budget {format_duration(budget_s)} is too small for {len(costs)} methods "
                         f"at {steps} steps: one trial per method to the end plus a minimal "
                         f"confirmation needs at least {format_duration(math.ceil(need))}")
    if enough(at(hi)):
        while lo < hi:  # invariant: candidates[hi] is enough
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if enough(at(mid)) else (mid + 1, hi)
    plan = at(hi)
    assert plan is not None
    return plan
