"""The Tune trial: a flat trial config in, ``trainers.train`` run, every evaluation reported.

The trainer knows nothing of Ray. Here its ``report(metrics, save)`` callback becomes
``tune.report(metrics, checkpoint=...)`` with the trainer's small checkpoint, and a restored
trial (after a failure or ``--resume``) passes Tune's checkpoint back as ``resume``.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any


def run_trial(config: dict[str, Any], data=None) -> None:
    """Tune function trainable. ``data`` is the driver's ``PreparedData`` (object store)."""
    import ray
    import torch
    from ray import tune

    from trainers.config import TrainConfig
    from trainers.train import train

    cfg = TrainConfig.from_flat(config)
    # Torch would otherwise start one thread per core of the node in every concurrent trial.
    cpus = tune.get_context().get_trial_resources().required_resources.get("CPU", 1)
    torch.set_num_threads(max(1, int(cfg.num_threads or cpus)))
    node_id = ray.get_runtime_context().get_node_id()
    extra: dict[str, Any] = {}

    def report(metrics: dict[str, float], save) -> None:
        if not extra and "stored_pct" not in metrics:
            extra.update(param_metrics(cfg, data))
        with tempfile.TemporaryDirectory(prefix="peft-trial-") as tmp:
            save(Path(tmp))  # tune.report copies it to the storage path before returning
            tune.report({**metrics, **extra, "node_id": node_id},
                        checkpoint=tune.Checkpoint.from_directory(tmp))

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        train(cfg, report, data=data)
    else:
        with checkpoint.as_directory() as resume:
            train(cfg, report, data=data, resume=resume)


def param_metrics(cfg, data) -> dict[str, float]:
    """Trainable-parameter shares as metrics: ``stored_pct`` and ``<task>_pct``.

    The trainer's report rows do not carry them (its result dict does, but a trial ASHA stops
    never returns), so they are counted once per trial on a freshly built model.
    """
    import numpy as np
    import torch

    from trainers.model import MultitaskModel, load_backbone
    from trainers.params import count_params

    # Building a model draws random initial weights: keep the trial's own random streams as
    # they were, so the trial trains exactly as `python -m trainers.train` reruns it.
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        backbone, _ = load_backbone(cfg.model)
        counts = count_params(MultitaskModel(backbone, data.specs, cfg))
    random.setstate(py_state)
    np.random.set_state(np_state)
    return {"stored_pct": counts.stored_pct, "trainable_params": float(counts.trainable),
            **{f"{task}_pct": pct for task, pct in counts.per_task_pct.items()}}
