"""Trial schedulers by name: a lazy table (Ray is imported when one is built) that fails on an
unknown name with the choices. A scheduler's time unit is one report of the trainer, i.e. one
evaluation every ``--eval-every`` steps.

``asha`` is Ray Tune's own ``ASHAScheduler``; ``hyperband`` and ``pasha`` are the stopping rules
of ``search.schedule.policies`` (the ones a replay simulates) run as Tune schedulers by
``PolicyScheduler``, whose rungs survive ``--resume``; ``fifo`` runs every trial to the end.
``epsilon`` is PASHA's (None: estimated from the noise, ``search.schedule.policies.Pasha``).
"""

from __future__ import annotations

from collections.abc import Callable

from search.schedule.policies import make_policy
from search.searchers import METRIC, MODE


def _asha(max_t: int, grace_period: int, reduction_factor: float):
    from ray.tune.schedulers import ASHAScheduler

    # time unit: one report = one evaluation of the trainer (every --eval-every steps).
    return ASHAScheduler(metric=METRIC, mode=MODE, time_attr="training_iteration", max_t=max_t,
                         grace_period=grace_period, reduction_factor=reduction_factor)


def _policy(name: str) -> Callable:
    def build(max_t: int, grace_period: int, reduction_factor: float, **options):
        from search.schedule.policy_scheduler import PolicyScheduler

        return PolicyScheduler(make_policy(name, max_t, grace_period, reduction_factor, **options))

    return build


def _fifo(max_t: int, grace_period: int, reduction_factor: float):
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


SCHEDULERS: dict[str, Callable] = {"asha": _asha, "hyperband": _policy("hyperband"),
                                   "pasha": _policy("pasha"), "fifo": _fifo}


def make_scheduler(name: str, *, max_t: int, grace_period: int, reduction_factor: float,
                   epsilon: float | None = None):
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose one of: {', '.join(SCHEDULERS)}")
    options = {"epsilon": epsilon} if name == "pasha" else {}
    return SCHEDULERS[name](max_t, grace_period, reduction_factor, **options)


def scheduler_for(settings):
    """The scheduler a search's settings name (``--scheduler`` and its options)."""
    return make_scheduler(settings.scheduler, max_t=settings.max_t, grace_period=settings.grace_period,
                          reduction_factor=settings.reduction_factor, epsilon=settings.pasha_epsilon)
