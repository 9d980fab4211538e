"""What every Tune experiment of a search shares: the trainable with the trial's resources, the
experiment restored on ``--resume`` (and refused over an existing one otherwise), and the run
settings (trial logs to files, the search's own callbacks, failures retried twice).

A search runs several: one per method (``search.driver``), the confirmation steps
(``search.selection.confirm``), and under ``--budget`` the pool and each race round.
"""

from __future__ import annotations

from collections.abc import Callable

from ray import tune


def trainable(fn: Callable, plan, data):
    """``fn`` with the search's prepared data and each trial's CPUs and GPUs."""
    s = plan.settings
    return tune.with_resources(tune.with_parameters(fn, data=data),
                               {"cpu": s.cpus_per_trial, "gpu": s.gpus_per_trial})


def restored(plan, name: str, fn, resuming: bool) -> tune.Tuner | None:
    """The experiment ``name`` restored from the storage path on ``--resume`` (unfinished and
    errored trials go on); None when there is none. An existing one without ``--resume`` is an
    error (FileExistsError), never silently reused."""
    path = f"{plan.storage_path.rstrip('/')}/{name}"
    if not tune.Tuner.can_restore(path):
        return None
    if not resuming:
        raise FileExistsError(f"a Tune experiment already exists at {path}; pass --resume to "
                              "continue it, or another --experiment or --storage-path")
    return tune.Tuner.restore(path, fn, resume_unfinished=True, resume_errored=True)


def run_settings(plan, name: str, callbacks: list, keep_one: bool = False) -> tune.RunConfig:
    """``keep_one``: Tune keeps each trial's last checkpoint only (a few confirmation runs);
    otherwise every checkpoint is registered and ``search.pruning`` deletes the superseded ones
    (Tune's num_to_keep would save the whole experiment state after every trial checkpoint)."""
    checkpoints = tune.CheckpointConfig(num_to_keep=1) if keep_one else tune.CheckpointConfig()
    return tune.RunConfig(name=name, storage_path=plan.storage_path, callbacks=callbacks, verbose=0,
                          log_to_file=True, checkpoint_config=checkpoints,
                          failure_config=tune.FailureConfig(max_failures=2))
