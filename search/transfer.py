"""``--transfer-from``: the checkpoint a transfer search starts from (no Ray).

A checkpoint folder (a trainer's ``OUT/checkpoint``, a search's ``<method>/best_checkpoint``) or
an MLflow run that logged a ``checkpoint`` artifact (a finished search's method run, given as
its run id or ``runs:/<id>``), downloaded once into the search's folder.
"""

from __future__ import annotations

import re
from pathlib import Path

from trainers.checkpoint import CONFIG, read_meta, trained_tasks

SOURCE_DIR = "transfer-source"
"""Where an MLflow source's checkpoint is downloaded, inside the search's folder."""
ARTIFACT = "checkpoint"
"""The artifact path of a method run's best checkpoint (``Tracker.finish_parent``)."""


def resolve_source(given: str, mlflow_uri: str, out: str | Path) -> Path:
    """The local checkpoint folder of ``--transfer-from given``; ValueError naming it when it is
    neither a checkpoint folder nor an MLflow run with a checkpoint."""
    path = Path(given).expanduser()
    if path.is_dir():
        for candidate in (path, path / "checkpoint", path / "best_checkpoint"):
            if (candidate / CONFIG).is_file():
                return candidate.resolve()
        raise ValueError(f"--transfer-from {given}: a folder without a checkpoint (no {CONFIG})")
    run_id = given.removeprefix("runs:/").strip("/").split("/")[0]
    if not re.fullmatch(r"[0-9a-f]{32}", run_id):
        raise ValueError(f"--transfer-from {given}: neither a checkpoint folder nor an MLflow run id")
    dest = Path(out) / SOURCE_DIR
    if (dest / ARTIFACT / CONFIG).is_file():  # downloaded by an earlier start of this search
        return (dest / ARTIFACT).resolve()
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        MlflowClient(tracking_uri=mlflow_uri).get_run(run_id)
    except MlflowException:
        raise ValueError(f"--transfer-from {given}: no such MLflow run in {mlflow_uri}") from None
    dest.mkdir(parents=True, exist_ok=True)
    try:
        local = download_artifacts(run_id=run_id, artifact_path=ARTIFACT, dst_path=str(dest),
                                   tracking_uri=mlflow_uri)
    except (MlflowException, OSError):
        local = None
    if local is None or not (Path(local) / CONFIG).is_file():
        raise ValueError(f"--transfer-from {given}: the run has no {ARTIFACT!r} artifact (a finished "
                         "search's method run has its best checkpoint there)")
    return Path(local).resolve()


def source_record(checkpoint: Path, given: str) -> dict[str, str]:
    """What MLflow keeps of the source: as given, its folder, its method and tasks."""
    meta = read_meta(checkpoint)
    return {"transfer_from": given, "source_checkpoint": str(checkpoint),
            "source_method": meta["config"]["method"], "source_tasks": ",".join(trained_tasks(meta))}
