"""Transfer: add new tasks to a trained multitask checkpoint and train only what they own.

    python -m trainers.train --init-from OUT/checkpoint --tasks cfimdb --max-train-samples 64

The checkpoint fixes the model, the method and its options (``inherit``). ``build`` makes the
model for the checkpoint's tasks *and* the new ones (the trained tasks keep their indices),
loads every trained weight, starts each new task's own parameters from the most similar
trained task (``transfer_init="nearest"``) or from a fresh initialisation (``"scratch"``), and
freezes everything but the new tasks' own parameters and heads (``unfreeze="none"``) or also
trains the checkpoint's shared parameters (``"shared"``). With ``none`` the trained tasks'
outputs stay exactly what they were, and the saved checkpoint serves all tasks.

"Most similar", by method:

- ``pha``: the paper's retrieval. Each new-task training example votes for the trained task
  whose prototype is nearest (cosine) to its instance embedding; the most voted task's
  prototype is the new task's starting prototype (ties: the higher mean similarity).
- every other method with task-specific parameters (``adapter``, ``lora_adapter``,
  ``task_lora``, ``hyperformer``'s task embedding, ...): the new task's examples are encoded
  through each trained task's modules, and a ridge probe is fitted on those features to the
  new labels; the trained task with the lowest leave-one-out probe loss (closed form, no
  training) lends its parameters. A loss with a fitted head, because the new task's own head
  is untrained and would rank the sources by noise.
- methods without task-specific parameters (``lora``, ``full``, ...): nothing to choose; the
  new task gets its head on the shared, trained encoder.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from trainers.checkpoint import load_weights, read_meta, trained_tasks
from trainers.config import TrainConfig, method_fields
from trainers.data import PreparedData, TokenizedSplit, eval_batches
from trainers.model import MultitaskModel
from trainers.params import task_of
from trainers.tasks import TaskSpec

INHERITED = ("method", "model", "pooling")
"""Common config keys a transfer takes from its checkpoint (with the method's own keys)."""
PROBE_ROWS = 256
"""Training examples of the new task that choose its nearest trained task (a seeded subset)."""
RIDGE = (1e-3, 1e-2, 1e-1, 1.0)
"""Ridge penalties tried by the probe, relative to the mean squared feature norm (best kept)."""


class TransferError(ValueError):
    """A transfer that cannot be set up (wrong checkpoint, a task it already has, ...)."""


def inherit(flat: dict) -> dict:
    """The flat config of a transfer run: ``flat`` with the checkpoint's model, method and
    method options filled in. A value the user gave that differs from the checkpoint's is an
    error (the trained weights only fit the checkpoint's own)."""
    path = flat["init_from"]
    try:
        meta = read_meta(path)
    except FileNotFoundError as e:
        raise TransferError(f"--init-from {path}: {e}") from None
    source = meta["config"]
    keys = (*INHERITED, *method_fields(source["method"]))
    clash = [k for k in keys if k in flat and flat[k] is not None and flat[k] != source.get(k)]
    if clash:
        raise TransferError(
            f"--init-from {path}: " + ", ".join(f"{k}={flat[k]!r}" for k in clash)
            + " differ from the checkpoint's (" + ", ".join(f"{k}={source.get(k)!r}" for k in clash)
            + "); a transfer keeps the checkpoint's model, method and method options")
    return {**flat, **{k: source[k] for k in keys if k in source}}


def build(cfg: TrainConfig, backbone: torch.nn.Module, data: PreparedData,
          device: torch.device, log=print) -> tuple[MultitaskModel, dict]:
    """The model of ``cfg.init_from`` with ``data.specs`` added as new tasks, initialised and
    frozen as ``cfg`` says, on ``device``; and what was done (the checkpoint's ``transfer``
    record)."""
    path = Path(cfg.init_from)
    meta = read_meta(path)
    if meta["config"]["method"] != cfg.method:
        raise TransferError(f"--init-from {path}: trained with method {meta['config']['method']!r},"
                            f" not {cfg.method!r}")
    known = trained_tasks(meta)
    again = [t for t in cfg.tasks if t in known]
    if again:
        raise TransferError(f"--tasks {','.join(again)}: the checkpoint {path} was trained on "
                            f"{', '.join(known)} already; a transfer adds tasks it has not seen")
    sources = [TaskSpec(**s) for s in meta["tasks"]]
    model = MultitaskModel(backbone, sources + list(data.specs), cfg)
    new = set(cfg.tasks)
    load_weights(model, path, new=lambda name: task_of(model, name) in new)
    model.to(device)
    init: dict[str, dict] = {}
    for spec in data.specs:
        if cfg.transfer_init == "scratch" or not own_names(model, spec.name):
            init[spec.name] = {"from": None, "rule": "scratch" if own_names(model, spec.name)
                               else "no task-specific parameters"}
            continue
        rule, scores = nearest(model, spec, data.train[spec.name], data.pad_id, known, device)
        best = max(scores, key=scores.get) if rule == "retrieval votes" else min(scores, key=scores.get)
        copy_task(model, best, spec.name)
        init[spec.name] = {"from": best, "rule": rule, "scores": scores}
        log(f"[transfer] {spec.name} starts from {best}'s parameters ({rule}: "
            + ", ".join(f"{t} {v:.4g}" for t, v in scores.items()) + ")")
    set_trainable(model, new, cfg.unfreeze)
    record = {"source": os.fspath(path), "source_tasks": known, "method": cfg.method,
              "new_tasks": list(cfg.tasks), "init": init, "unfreeze": cfg.unfreeze,
              "transfer_init": cfg.transfer_init}
    return model, record


# ---- ownership ----------------------------------------------------------------------------

def own_names(model: MultitaskModel, task: str) -> list[str]:
    """Names of the stored parameters that belong to ``task``, its head excluded."""
    return [n for n in model.stored if not n.startswith("heads.") and task_of(model, n) == task]


def copy_task(model: MultitaskModel, source: str, target: str) -> None:
    """Set ``target``'s own parameters to ``source``'s (same name with the task renamed)."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in own_names(model, target):
            twin = ".".join(source if part == target else part for part in name.split("."))
            if twin not in params or params[twin].shape != params[name].shape:
                raise TransferError(f"{name}: task {source!r} has no parameter {twin!r} to copy")
            params[name].copy_(params[twin])


def set_trainable(model: MultitaskModel, new: set[str], unfreeze: str) -> None:
    """Train the new tasks' own parameters and heads; with ``unfreeze="shared"`` also every
    stored parameter no task owns. Everything else (the trained tasks' own) is frozen."""
    for name, p in model.named_parameters():
        owner = task_of(model, name) if name in model.stored else "(pretrained)"
        p.requires_grad_(owner in new or (owner is None and unfreeze == "shared"))


# ---- the nearest trained task -------------------------------------------------------------

def probe_rows(split: TokenizedSplit, limit: int = PROBE_ROWS) -> np.ndarray:
    """At most ``limit`` rows of the new task's training split (a fixed seeded subset)."""
    if len(split) <= limit:
        return np.arange(len(split))
    return np.sort(np.random.default_rng(0).permutation(len(split))[:limit])


def targets(spec: TaskSpec, labels: np.ndarray) -> np.ndarray:
    """What the probe regresses on: one-hot classes, the 0/1 label, or the standardised score."""
    if spec.kind == "classification":
        return np.eye(spec.num_labels)[labels.astype(int)]
    y = labels.astype(np.float64)[:, None]
    return (y - y.mean()) / (y.std() + 1e-8) if spec.kind == "regression" else y


def loo_mse(x: np.ndarray, y: np.ndarray, penalty: float) -> float:
    """Leave-one-out mean squared error of a ridge regression of ``y`` [n, k] on ``x`` [n, p]
    with an (unpenalised) intercept and ridge ``penalty`` times the mean squared centred feature
    norm; closed form through the hat matrix (kernel form: ``n`` rows), nothing refitted."""
    n = len(x)
    xc, yc = x - x.mean(0), y - y.mean(0)
    gram = xc @ xc.T
    values, vectors = np.linalg.eigh(gram)
    scale = max(float(np.trace(gram)) / n, 1e-12)
    shrink = np.clip(values, 0.0, None) / (np.clip(values, 0.0, None) + penalty * scale)
    fitted = vectors @ (shrink[:, None] * (vectors.T @ yc))
    leverage = (vectors ** 2) @ shrink + 1.0 / n  # diag of the hat matrix, intercept included
    return float(np.mean(((yc - fitted) / (1.0 - leverage)[:, None]) ** 2))


def ridge_loo(x: np.ndarray, y: np.ndarray) -> float:
    """The probe's loss: ``loo_mse`` at the best of the penalties ``RIDGE``."""
    if len(x) < 3:
        raise TransferError(f"the nearest task needs at least 3 training examples, got {len(x)}")
    return min(loo_mse(x, y, penalty) for penalty in RIDGE)


@torch.no_grad()
def features(model: MultitaskModel, task: str, split: TokenizedSplit, pad_id: int,
             device: torch.device, retrieval: bool = False) -> np.ndarray:
    """Every row's pooled features routed through ``task`` (eval mode), or with ``retrieval``
    PHA's instance embeddings (which read no task)."""
    was_training = model.training
    model.eval()
    out = []
    for idx in eval_batches(split, 64):
        b = {k: torch.from_numpy(v).to(device) for k, v in split.batch(idx, pad_id).items()}
        types = b["token_type_ids"] if model.applied.token_type_ids else None
        if retrieval:
            z = model.extra.instance_embedding(b["input_ids"], b["attention_mask"], types)
        else:
            z = model.features(task, b["input_ids"], b["attention_mask"], types)
        out.append((idx, z.float().cpu().numpy()))
    model.train(was_training)
    order = np.concatenate([i for i, _ in out])
    return np.concatenate([z for _, z in out])[np.argsort(order)].astype(np.float64)


def nearest(model: MultitaskModel, spec: TaskSpec, split: TokenizedSplit, pad_id: int,
            candidates: list[str], device: torch.device) -> tuple[str, dict[str, float]]:
    """``(rule, score per trained task)``: PHA's retrieval votes (highest wins) or every other
    method's leave-one-out probe loss (lowest wins)."""
    rows = split.subset(probe_rows(split))
    if hasattr(model.extra, "prototype") and hasattr(model.extra, "instance_embedding"):
        return "retrieval votes", retrieval_votes(model, rows, pad_id, candidates, device)
    y = targets(spec, rows.labels)
    return "leave-one-out probe loss", {
        t: ridge_loo(features(model, t, rows, pad_id, device), y) for t in candidates}


def retrieval_votes(model: MultitaskModel, rows: TokenizedSplit, pad_id: int,
                    candidates: list[str], device: torch.device) -> dict[str, float]:
    """Share of the rows whose nearest prototype (among ``candidates``) is each task's, plus a
    tie-breaker below one vote: the task's mean cosine similarity / (rows + 1)."""
    z = torch.from_numpy(features(model, "", rows, pad_id, device, retrieval=True)).to(device)
    ids = [model.router.index[t] for t in candidates]
    with torch.no_grad():
        sims = model.extra.similarities(z, ids).cpu()
    votes = torch.bincount(sims.argmax(-1), minlength=len(ids)).double()
    tiebreak = sims.double().mean(0) / (len(z) + 1)
    return {t: float((votes[i] + tiebreak[i]) / len(z)) for i, t in enumerate(candidates)}
