"""The space of a transfer search (``--transfer-from``): how a trained checkpoint takes a new
task. The method and its options are the checkpoint's, so nothing of the method is searched;
what is: the rate, how long to train (a share of ``--max-steps``), what to unfreeze and where
the new task's own parameters start, and the usual nuisance dims."""

from __future__ import annotations

from spaces.common import COMMON, Space, choice, fixed, loguniform
from trainers.config import TRANSFER_INITS, UNFREEZE

KEPT = ("weight_decay", "warmup_ratio", "lr_schedule", "head_dropout")
"""COMMON dims a transfer searches as every method does (temperature and sampler: one task)."""


def transfer_space(method: str, budget: int) -> Space:
    """The transfer space of a ``method`` checkpoint for a search of ``budget`` steps."""
    if method == "full":
        lr = loguniform("lr", 1e-6, 1e-4, note="the whole encoder may be unfrozen: full's range")
    else:
        lr = loguniform("lr", 1e-4, 3e-2, note="a new head and task parameters on a trained "
                                               "model: few-shot runs favour high rates")
    steps = sorted({max(1, budget // 4), max(1, budget // 2), budget})
    dims = [lr, *(d for d in COMMON if d.name in KEPT),
            choice("max_steps", steps, role="scientific",
                   note="with few labels, fewer steps can overfit less; shares of --max-steps"),
            choice("unfreeze", UNFREEZE, role="scientific",
                   note="none: only the new task's own parameters and head; shared: the "
                        "checkpoint's shared parameters too (the trained tasks' outputs change)"),
            choice("transfer_init", TRANSFER_INITS, role="scientific",
                   note="nearest: from the trained task that fits the new examples best"),
            fixed("sampler", "temperature"), fixed("batch_size", 32, note="change with --set")]
    return Space(method, dims)
