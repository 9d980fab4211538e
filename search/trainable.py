"""The Tune trial: a flat trial config in, ``trainers.train`` run, every evaluation reported.

The trainer knows nothing of Ray. A NaN/inf loss or an out-of-memory ends the trial at once
with a NaN score and its reason (not an error: Tune would retry it, and a rerun of the same
config fails the same way). Here its ``report(metrics, save)`` callback becomes
``tune.report(metrics, checkpoint=...)`` with the trainer's small checkpoint (the numbers
scheduling does not need packed into one string: ``search.reported``), and a restored trial
(after a failure or ``--resume``) passes Tune's checkpoint back as ``resume``.

One worker process hosts trial after trial (``reuse_actors``): each trial starts by handing the
memory of the trials before it back (``trainers.memory.release``), or the worker grows by a
model's worth per trial (BENCHMARKS.md §14).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

OUTPUTS = "outputs.npz"
"""Per-row validation predictions a confirmation run leaves beside its checkpoint."""
RUN_KEY = "run"
"""The key of a confirmation run's Tune config: ``{"run": <flat train config>}``."""


def run_trial(config: dict[str, Any], data=None) -> None:
    """Tune function trainable. ``data`` is the driver's ``PreparedData`` (object store)."""
    from spaces.auto import to_train_config

    _run(to_train_config(config), data, "trial")  # an --method auto config: its design


def run_of(config: dict[str, Any], seed: int) -> dict[str, Any]:
    """A confirmation (or race) run of ``config``: new seed, the full budget, one evaluation at
    the end on the whole validation set."""
    return {**config, "seed": seed, "eval_every": config["max_steps"], "eval_rows": None,
            "eval_full": False}


def run_confirm(config: dict[str, Any], data=None) -> None:
    """A confirmation run (``search.selection.confirm``): train ``config["run"]`` to the end, then report
    its one whole-validation evaluation with a checkpoint that also holds the per-row
    predictions (``outputs.npz``) the intervals are computed from."""
    from trainers.config import TrainConfig

    _run(TrainConfig.from_flat(config[RUN_KEY]), data, "confirm", keep_outputs=True)


def _run(cfg, data, kind: str, keep_outputs: bool = False) -> None:
    """Train ``cfg`` in a Tune trial, every evaluation reported with the trainer's checkpoint
    (and, with ``keep_outputs``, the last evaluation's per-row predictions beside it)."""
    import ray
    import torch
    from ray import tune

    from search.reported import for_tune
    from search.stats import Outputs
    from trainers.loop import TrainingFailure, pick_device, train
    from trainers.memory import anon_gb, release

    # What the worker's earlier trials left: their threads, data copies and models are gone by
    # now. A trial's end rarely runs code of ours: when Tune stops a trial (ASHA, or at the last
    # rung), its session ends the trial's thread with SystemExit inside tune.report. The first
    # slow collections (the first two trials import torch, transformers and peft) freeze what
    # survives them, so later ones walk only the trials' objects (trainers.memory).
    release(freeze_survivors=True)
    # Torch would otherwise start one thread per core of the node in every concurrent trial.
    cpus = tune.get_context().get_trial_resources().required_resources.get("CPU", 1)
    torch.set_num_threads(max(1, int(cfg.num_threads or cpus)))
    # Where the trial runs, in every report (MLflow tags the trial's run with them).
    placement = {"node_id": ray.get_runtime_context().get_node_id(),
                 "gpu_ids": ",".join(str(g) for g in ray.get_gpu_ids()),
                 "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
                 "device": str(pick_device(cfg))}
    # What the worker holds (RssAnon) before this trial builds anything: flat over a search when
    # nothing of the earlier trials stays behind (an MLflow metric of each trial; BENCHMARKS §14).
    held = anon_gb()
    placement |= {"worker_mem_gb": held} if held is not None else {}
    outputs: dict | None = {} if keep_outputs else None

    def report(metrics: dict[str, float], save) -> None:
        # The trainer's rows carry scores and parameter shares (stored_pct, <task>_pct).
        with tempfile.TemporaryDirectory(prefix=f"peft-{kind}-") as tmp:
            save(Path(tmp))  # tune.report copies it to the storage path before returning
            if outputs:  # filled by the last evaluation only
                Outputs.from_evaluation(data.specs, outputs).save(Path(tmp) / OUTPUTS)
            tune.report(for_tune({**metrics, **placement}),
                        checkpoint=tune.Checkpoint.from_directory(tmp))

    checkpoint = tune.get_checkpoint()
    try:
        if checkpoint is None:
            train(cfg, report, data=data, outputs=outputs)
        else:
            with checkpoint.as_directory() as resume:
                train(cfg, report, data=data, resume=resume, outputs=outputs)
    except TrainingFailure as e:
        # A NaN/inf loss or out of memory: retrying the same config fails the same way. End
        # the trial now, not as an error Tune would retry, with a NaN score so it is never the
        # best; MLflow marks its run FAILED with the reason.
        print(f"[{kind}] stopped: {e}", flush=True)
        failure = {"score": float("nan"), "step": e.step, "failure": e.kind, "error": str(e)}
        tune.report(for_tune({**failure, **placement}))
    # A trial that returns (its trainer ended, or it failed): the model and optimizer died with
    # train()'s frame and the failure's traceback with this block; give their memory back now,
    # while the worker waits for its next trial.
    release()
