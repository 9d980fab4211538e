"""The Tune trial: a flat trial config in, ``trainers.train`` run, every evaluation reported.

The trainer knows nothing of Ray. A NaN/inf loss or an out-of-memory ends the trial at once
with a NaN score and its reason (not an error: Tune would retry it, and a rerun of the same
config fails the same way). Here its ``report(metrics, save)`` callback becomes
``tune.report(metrics, checkpoint=...)`` with the trainer's small checkpoint, and a restored
trial (after a failure or ``--resume``) passes Tune's checkpoint back as ``resume``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

OUTPUTS = "outputs.npz"
"""Per-row validation predictions a confirmation run leaves beside its checkpoint."""
RUN_KEY = "run"
"""The key of a confirmation run's Tune config: ``{"run": <flat train config>}``."""


def run_trial(config: dict[str, Any], data=None) -> None:
    """Tune function trainable. ``data`` is the driver's ``PreparedData`` (object store)."""
    import ray
    import torch
    from ray import tune

    from spaces.auto import to_train_config
    from trainers.loop import TrainingFailure, train

    cfg = to_train_config(config)  # an --method auto config: its design
    # Torch would otherwise start one thread per core of the node in every concurrent trial.
    cpus = tune.get_context().get_trial_resources().required_resources.get("CPU", 1)
    torch.set_num_threads(max(1, int(cfg.num_threads or cpus)))
    node_id = ray.get_runtime_context().get_node_id()

    def report(metrics: dict[str, float], save) -> None:
        # The trainer's rows carry scores and parameter shares (stored_pct, <task>_pct).
        with tempfile.TemporaryDirectory(prefix="peft-trial-") as tmp:
            save(Path(tmp))  # tune.report copies it to the storage path before returning
            tune.report({**metrics, "node_id": node_id},
                        checkpoint=tune.Checkpoint.from_directory(tmp))

    checkpoint = tune.get_checkpoint()
    try:
        if checkpoint is None:
            train(cfg, report, data=data)
        else:
            with checkpoint.as_directory() as resume:
                train(cfg, report, data=data, resume=resume)
    except TrainingFailure as e:
        # A NaN/inf loss or out of memory: retrying the same config fails the same way. End
        # the trial now, not as an error Tune would retry, with a NaN score so it is never the
        # best; MLflow marks its run FAILED with the reason.
        print(f"[trial] stopped: {e}", flush=True)
        tune.report({"score": float("nan"), "step": e.step, "failure": e.kind, "error": str(e),
                     "node_id": node_id})



def run_confirm(config: dict[str, Any], data=None) -> None:
    """A confirmation run (``search.confirm``): train ``config["run"]`` to the end, then report
    its one whole-validation evaluation with a checkpoint that also holds the per-row
    predictions (``outputs.npz``) the intervals are computed from."""
    import ray
    import torch
    from ray import tune

    from search.stats import Outputs
    from trainers.config import TrainConfig
    from trainers.loop import TrainingFailure, train

    cfg = TrainConfig.from_flat(config[RUN_KEY])
    cpus = tune.get_context().get_trial_resources().required_resources.get("CPU", 1)
    torch.set_num_threads(max(1, int(cfg.num_threads or cpus)))
    node_id = ray.get_runtime_context().get_node_id()
    outputs: dict = {}

    def report(metrics: dict[str, float], save) -> None:
        with tempfile.TemporaryDirectory(prefix="peft-confirm-") as tmp:
            save(Path(tmp))
            if outputs:  # the last evaluation (the only one: eval_every = max_steps)
                kinds = {s.name: s.kind for s in data.specs}
                Outputs(kinds, {t: outputs[t][0] for t in kinds},
                        {t: outputs[t][1][None, :] for t in kinds}).save(Path(tmp) / OUTPUTS)
            tune.report({**metrics, "node_id": node_id}, checkpoint=tune.Checkpoint.from_directory(tmp))

    try:
        train(cfg, report, data=data, outputs=outputs)
    except TrainingFailure as e:
        print(f"[confirm] stopped: {e}", flush=True)
        tune.report({"score": float("nan"), "step": e.step, "failure": e.kind, "error": str(e),
                     "node_id": node_id})
