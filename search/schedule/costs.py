"""What the runs after a ``--budget`` search's pool cost (the race's rounds, the fresh seeds):
estimated from what the pool measured, scaled by what the latest such experiment charged."""

from __future__ import annotations

from dataclasses import dataclass

from search.schedule.budget import LOAD_MARGIN, Ledger


@dataclass
class Costs:
    """Seconds of the runs after the pool, from what the pool measured."""

    run_s: dict[str, float]
    """method -> one run to the full budget on a warm worker (``run_cost``)."""
    cold_s: float
    """What a run on a new worker pays once more (``pool.Gate.cold_start_s``)."""
    concurrency: int
    factor: float = 1.0
    """Charged / estimated seconds of the latest experiment after the pool (1 until one ran):
    later estimates scale by it, so a machine that slowed down since the pool is seen."""

    @property
    def run(self) -> float:
        return max(self.run_s.values(), default=0.0)

    def experiment(self, runs: float) -> float:
        """``runs`` runs in one new Tune experiment, scaled by ``factor``."""
        return self.factor * self._unscaled(runs)

    def _unscaled(self, runs: float) -> float:
        """Each a warm run, the first ``concurrency`` also cold, as the pool measured them."""
        return runs * self.run + min(runs, self.concurrency) * self.cold_s

    def wall(self, runs: float) -> float:
        """Seconds on the clock of ``runs`` runs in one experiment, spread over the slots."""
        return self.experiment(runs) / max(1.0, min(runs, self.concurrency))

    def observe(self, runs: int, charged_s: float) -> None:
        """An experiment of ``runs`` runs charged ``charged_s``: the next estimates scale to it."""
        base = self._unscaled(runs)
        if runs > 0 and base > 0 and charged_s > 0:
            self.factor = charged_s / base

    def seeds_that_fit(self, ledger: Ledger, configs: list[int], most: int) -> int:
        """The most fresh seeds (``most`` down to 2) for experiments of ``configs`` configs each
        whose estimate, with ``LOAD_MARGIN``, the budget left still pays; 0 when not even 2 do."""
        return next((k for k in range(most, 1, -1)
                     if ledger.fits(LOAD_MARGIN * sum(self.experiment(k * c) for c in configs),
                                    wall=sum(self.wall(k * c) for c in configs))), 0)


def run_cost(by_method: dict[str, list], max_t: int) -> dict[str, float]:
    """Seconds of one run to the full budget, per method: the trials' seconds per evaluation
    (set-up included) times the evaluations of a trial never stopped (an upper bound for a race
    run, which evaluates once)."""
    cost = {}
    for method, results in by_method.items():
        per_eval = [float(r.metrics["time_total_s"]) / int(r.metrics["training_iteration"])
                    for r in results if r.metrics and r.metrics.get("training_iteration")
                    and r.metrics.get("time_total_s")]
        if per_eval:
            cost[method] = sum(per_eval) / len(per_eval) * max_t
    return cost
