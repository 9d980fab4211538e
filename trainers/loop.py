"""Multitask PEFT training loop. Read top to bottom: setup, model, optimizer, loop, result.

    python -m trainers.train --method lora --tasks sst,quora,sts --data-dir DIR \
        --max-steps 300 --eval-every 100 --out runs/lora

runs this loop through its command line (``trainers/cli.py``).

No Ray, no MLflow: a search wraps ``train`` and passes a ``report`` callback.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from trainers import transfer
from trainers.checkpoint import STATE, load_weights, save_checkpoint
from trainers.config import TrainConfig
from trainers.data import (
    PreparedData,
    TaskSampler,
    data_key,
    eval_batches,
    prepare_data,
    train_batches,
)
from trainers.fidelity import rows_at, subset_order
from trainers.metrics import overall_score, predictions, task_metric
from trainers.model import MultitaskModel, load_backbone
from trainers.params import count_params
from trainers.tasks import TaskSpec

Saver = Callable[[Path], None]
Report = Callable[[dict, Saver], None]


class TrainingFailure(RuntimeError):
    """A run that cannot go on and that a retry of the same config would not save."""

    kind = "failure"

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


class NonFiniteLoss(TrainingFailure):
    """The training loss became NaN or inf."""

    kind = "non-finite loss"


class OutOfMemory(TrainingFailure):
    """The device (or host) memory could not hold the model or a batch."""

    kind = "out of memory"


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or (
        isinstance(e, RuntimeError) and "can't allocate memory" in str(e))


@contextmanager
def oom_guard(cfg: TrainConfig, device: torch.device, where: Callable[[], str], step: Callable[[], int]):
    """Turn an out-of-memory error into one clear line saying what to lower."""
    try:
        yield
    except RuntimeError as e:
        if not _is_oom(e):
            raise
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise OutOfMemory(f"out of memory {where()} on {device} (batch_size={cfg.batch_size}, "
                          f"max_length={cfg.max_length}, method={cfg.method}): lower the batch size, "
                          f"the max length or the method's sizes [{first}]", step()) from e


# ---- pieces of a step ---------------------------------------------------------------------

def task_loss(spec: TaskSpec, out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if spec.kind == "classification":
        return F.cross_entropy(out.float(), labels.long())
    if spec.kind == "binary":
        return F.binary_cross_entropy_with_logits(out.float(), labels)
    if spec.label_min is not None and spec.label_max is not None:
        # Regress a centred, unit-scale target: a fresh head need not first walk its bias to
        # the middle of a 0-5 range at a PEFT learning rate. Pearson r ignores the affine map.
        centre = (spec.label_min + spec.label_max) / 2
        labels = (labels - centre) / ((spec.label_max - spec.label_min) / 4)
    return F.mse_loss(out.float(), labels)


def to_device(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    # non_blocking copies overlap with compute on CUDA and are plain copies on CPU.
    return {k: torch.from_numpy(v).to(device, non_blocking=True) for k, v in batch.items()}


def make_optimizer(model: MultitaskModel, cfg: TrainConfig):
    """AdamW without weight decay on biases and norms, and its rate schedule.

    Every schedule ramps linearly over the first ``warmup_ratio * max_steps`` steps (a fresh
    head and a fresh PEFT module would otherwise take full-size steps from random gradients).
    After warmup, ``cfg.lr_schedule`` picks the multiplier of ``cfg.lr``: ``linear`` decays to
    0 at ``max_steps``, ``cosine`` follows a half cosine to 0 at ``max_steps`` (longer near the
    peak, a softer end), ``constant`` stays 1. It is a searched choice because at short budgets
    a decay to 0 spends half the steps at under half the rate, where a constant rate (what a
    by-hand loop usually runs) keeps learning to the end (BENCHMARKS.md §10)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "LayerNorm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr)
    warmup = int(cfg.warmup_ratio * cfg.max_steps)
    kind = cfg.lr_schedule

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if kind == "constant":
            return 1.0
        if kind == "linear":  # the formula of before the choice: same rates, same runs
            return max(0.0, (cfg.max_steps - step) / max(1, cfg.max_steps - warmup))
        # cosine; the share of the decay done is clipped, so a step past max_steps stays at 0
        done = min(1.0, (step - warmup) / max(1, cfg.max_steps - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * done))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def train_step(model: MultitaskModel, spec: TaskSpec, b: dict[str, torch.Tensor], optimizer,
               scheduler, trainable: list[torch.nn.Parameter], cfg: TrainConfig,
               device: torch.device) -> torch.Tensor:
    """One optimisation step on batch ``b`` of task ``spec``; returns the loss, detached and on
    the device (reading it would wait for the device)."""
    with autocast(device, cfg):
        logits = model(spec.name, b["input_ids"], b["attention_mask"], b["token_type_ids"])
    loss = task_loss(spec, logits, b["labels"])
    aux = model.aux_loss()
    if aux is not None:
        loss = loss + aux
    loss.backward()
    torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


@torch.inference_mode()
def evaluate(model: MultitaskModel, data: PreparedData, cfg: TrainConfig, device: torch.device,
             rows: int | None = None, sub_rows: int | None = None,
             outputs: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> dict[str, float]:
    """Each task's dev metric and the overall score (model left in train mode).

    ``rows``: score only each task's first ``rows`` rows in the fixed stratified order
    (``trainers.fidelity``); None = the whole dev set. ``sub_rows``: also report ``score_sub``,
    the score of the first ``sub_rows`` rows, from the same predictions (no second pass).
    ``eval_rows`` says how many rows were scored in all, ``eval_full`` whether that was every
    dev row. ``outputs``: filled with each task's ``(labels, predictions)`` of the scored rows
    (``trainers.metrics.predictions``), for intervals over rows."""
    was_training = model.training
    model.eval()
    metrics: dict[str, float] = {}
    sub: dict[str, float] = {}
    scored = total = 0
    for spec in data.specs:
        split = data.dev[spec.name]
        order = subset_order(spec, split.labels)
        keep = order if rows is None else order[:rows]
        if len(keep) == len(split):  # the whole dev set, predicted in dev order
            keep = np.arange(len(split))
            preds = _predict(model, spec, split, data.pad_id, cfg, device)
        else:  # row j of the subset is dev row keep[j]
            preds = _predict(model, spec, split.subset(keep), data.pad_id, cfg, device)
        metrics[spec.name] = task_metric(spec, preds, split.labels[keep])
        if outputs is not None:
            outputs[spec.name] = (split.labels[keep], predictions(spec, preds))
        if sub_rows is not None:
            # the first sub_rows of the order: dev rows of a whole-dev pass, else a prefix of keep
            want = order[:sub_rows]
            pos = want if len(keep) == len(split) else np.arange(len(want))
            sub[spec.name] = task_metric(spec, preds[pos], split.labels[want])
        scored, total = scored + len(keep), total + len(split)
    metrics["score"] = overall_score(data.specs, metrics)
    if sub_rows is not None:
        metrics["score_sub"] = overall_score(data.specs, sub)
        metrics["sub_rows"] = float(sum(min(sub_rows, len(data.dev[s.name])) for s in data.specs))
    metrics["eval_rows"], metrics["eval_full"] = float(scored), float(scored == total)
    model.train(was_training)
    return metrics


def _predict(model: MultitaskModel, spec: TaskSpec, split, pad_id: int, cfg: TrainConfig,
             device: torch.device) -> np.ndarray:
    """The model's outputs for every row of ``split``, in the split's order."""
    outputs = []
    for idx in eval_batches(split, cfg.eval_batch_size):
        b = to_device(split.batch(idx, pad_id), device)
        with autocast(device, cfg):
            out = model(spec.name, b["input_ids"], b["attention_mask"], b["token_type_ids"])
        outputs.append((idx, out.float().cpu().numpy()))
    order = np.concatenate([i for i, _ in outputs])
    return np.concatenate([o for _, o in outputs])[np.argsort(order)]


def autocast(device: torch.device, cfg: TrainConfig):
    if device.type == "cuda" and cfg.bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def pick_device(cfg: TrainConfig) -> torch.device:
    if cfg.device != "auto":
        return torch.device(cfg.device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cpu_fallback_note(device: torch.device) -> str | None:
    """A line saying why a process that was given GPUs trains on the CPU (a scheduler set
    ``CUDA_VISIBLE_DEVICES`` but this torch sees no CUDA device: a CPU build, no driver, a
    node that only declares GPUs); None otherwise."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if device.type != "cpu" or not visible or visible in ("-1", "NoDevFiles"):
        return None
    why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA device is usable"
    return f"[train] CUDA_VISIBLE_DEVICES={visible} but {why}: training on the CPU"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---- the run ------------------------------------------------------------------------------

def train(cfg: TrainConfig, report: Report | None = None, *, data: PreparedData | None = None,
          resume: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
          log: Callable[[str], None] = print, backbone=None, tokenizer=None,
          outputs: dict | None = None) -> dict:
    """Train ``cfg`` and return the result dict (see README: result.json).

    ``report(metrics, save)`` runs after every evaluation; ``save(dir)`` writes a resumable
    checkpoint. ``resume`` is such a directory. ``data`` is a ``prepare_data`` result for the
    same tasks (a search tokenizes once); ``backbone``/``tokenizer`` skip loading (tests).
    ``outputs`` receives the last evaluation's per-row labels and predictions (``evaluate``).
    """
    t_start = time.perf_counter()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    seed_everything(cfg.seed)
    device = pick_device(cfg)
    if cfg.device == "auto" and (note := cpu_fallback_note(device)):
        log(note)

    # -- data and model
    if backbone is None:
        backbone, tokenizer = load_backbone(cfg.model)
    if data is None:
        data = prepare_data(cfg, tokenizer, log=log)
    elif data.key != data_key(cfg):
        raise ValueError(f"prepared data was built for {data.key}, not for this config")
    if data.eval_split == "test":  # selection must never see the test rows
        raise ValueError("train() evaluates on validation rows, not the test split: score a "
                         "finished model on test with trainers.loop.evaluate")
    transfer_record = None
    with oom_guard(cfg, device, lambda: "building the model", lambda: 0):
        if cfg.init_from is None:
            model = MultitaskModel(backbone, data.specs, cfg).to(device)
        else:  # the checkpoint's tasks plus the new ones (trainers/transfer.py)
            model, transfer_record = transfer.build(cfg, backbone, data, device, log)
    model.train()
    params = count_params(model)
    log(f"[train] method={cfg.method} tasks={','.join(cfg.tasks)} device={device} "
        f"trainable={params.trainable:,} ({params.stored_pct:.3f}% of {params.total:,})")

    # -- optimizer, schedule, resume
    optimizer, scheduler = make_optimizer(model, cfg)
    trainable = [p for p in model.parameters() if p.requires_grad]  # clip these, not 22M frozen
    step = 0
    if resume is not None:
        step = _restore(model, optimizer, scheduler, Path(resume), device)
        log(f"[train] resumed from {resume} at step {step}")
    start_step = step
    # The data order after a resume is re-seeded from (seed, step): deterministic, not replayed.
    rng = np.random.default_rng([cfg.seed, step])
    sampler = TaskSampler({s.name: len(data.train[s.name]) for s in data.specs},
                          cfg.sampler, cfg.temperature, seed=int(rng.integers(2**31)))
    batches = {s.name: train_batches(data.train[s.name], cfg.batch_size, rng, cfg.bucket)
               for s in data.specs}

    def save(path: Path) -> None:
        save_checkpoint(path, model, cfg, step, optimizer, scheduler, transfer=transfer_record)

    # -- loop
    metrics: dict[str, float] = {}
    loss_sum = torch.zeros((), device=device)  # summed on device: no host sync per step
    loss_steps, samples, t_log = 0, 0, time.perf_counter()
    # Where the time goes (benchmarks/ and the search's trial table read these): seconds in
    # training steps, in evaluation, and from entering train() to the first step.
    train_time = eval_time = 0.0
    step_times: list[float] = []
    setup_s = first_step_at = None
    with oom_guard(cfg, device, lambda: f"at step {step + 1}", lambda: step):
        while step < cfg.max_steps:
            t_step = time.perf_counter()
            if setup_s is None:
                setup_s, first_step_at = t_step - t_start, time.time()
            task = next(sampler)
            b = to_device(data.train[task].batch(next(batches[task]), data.pad_id), device)
            loss = train_step(model, model.specs[task], b, optimizer, scheduler, trainable, cfg, device)
            step += 1
            loss_sum += loss
            loss_steps += 1
            # Stop at the step a loss goes NaN/inf. On CPU the check is free; on CUDA it would
            # wait for the GPU every step, so there it runs with the log line.
            if (device.type != "cuda" or step % cfg.log_every == 0) and not torch.isfinite(loss_sum):
                raise NonFiniteLoss(f"loss became {loss.item()} at step {step} (lr={cfg.lr})", step)
            samples += len(b["labels"])
            step_times.append(time.perf_counter() - t_step)
            train_time += step_times[-1]

            if step % cfg.log_every == 0 and step % cfg.eval_every != 0:
                # One host sync per log line, not per step.
                last = f" last score {metrics['score']:.4f}" if metrics else ""
                log(f"[train] step {step}/{cfg.max_steps} loss {(loss_sum / loss_steps).item():.4f} "
                    f"{loss_steps / max(time.perf_counter() - t_log, 1e-9):.2f} steps/s{last}")

            if step % cfg.eval_every == 0 or step == cfg.max_steps:
                mean_loss = (loss_sum / loss_steps).item()
                if not math.isfinite(mean_loss):
                    raise NonFiniteLoss(f"loss became {mean_loss} by step {step} (lr={cfg.lr})", step)
                elapsed = time.perf_counter() - t_log
                t_eval = time.perf_counter()
                # Evaluation as a fidelity: a growing stratified subset, the whole dev set at the
                # last step (and every time with eval_full, the subset's score reported beside it).
                # The rung follows from the step, so a resumed trial scores the same rows.
                last = step == cfg.max_steps
                rows = rows_at(math.ceil(step / cfg.eval_every), cfg.eval_rows, cfg.eval_growth)
                metrics = evaluate(model, data, cfg, device,
                                   rows=None if (last or cfg.eval_full) else rows,
                                   sub_rows=rows if (cfg.eval_full or last) and rows else None,
                                   outputs=outputs if last else None)
                eval_time += time.perf_counter() - t_eval
                fidelity = {k: metrics[k] for k in ("eval_rows", "eval_full", "score_sub", "sub_rows")
                            if k in metrics}
                row = {"step": step, "score": metrics["score"], "loss": mean_loss, **fidelity,
                       "samples_per_s": samples / max(elapsed, 1e-9),
                       **{f"{s.name}_{s.metric}": metrics[s.name] for s in data.specs},
                       **params.metrics(),
                       "train_s": train_time, "eval_s": eval_time, "setup_s": setup_s,
                       "first_step_at": first_step_at}
                log(f"[train] step {step}/{cfg.max_steps} loss {mean_loss:.4f} score {row['score']:.4f} "
                    + " ".join(f"{s.name}={metrics[s.name]:.3f}" for s in data.specs)
                    + f" ({row['samples_per_s']:.1f} samples/s)")
                if report is not None:
                    report(row, save)
                loss_sum.zero_()
                loss_steps, samples, t_log = 0, 0, time.perf_counter()

    # -- result
    result = {
        "method": cfg.method,
        "score": metrics.get("score"),
        "metrics": {s.name: metrics.get(s.name) for s in data.specs},
        "params": params.summary(),
        "steps": step,
        "wall_s": time.perf_counter() - t_start,
        "train_s_per_step": train_time / max(1, step - start_step),
        "step_s_median": float(np.median(step_times)) if step_times else None,
        "train_s": train_time,
        "eval_s": eval_time,
        "setup_s": setup_s,
        "synthetic_data": data.synthetic,
        "config": cfg.to_flat(),
    }
    if transfer_record is not None:
        result["transfer"] = transfer_record
    if out is not None:
        write_result(Path(out), result, model, cfg, step, transfer_record)
    return result


def _restore(model, optimizer, scheduler, path: Path, device: torch.device) -> int:
    load_weights(model, path)
    state = torch.load(path / STATE, map_location=device, weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    if state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    return int(state["step"])


def write_result(out: Path, result: dict, model: MultitaskModel, cfg: TrainConfig, step: int,
                 transfer_record: dict | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "checkpoint", model, cfg, step, transfer=transfer_record)
    tmp = out / "result.json.tmp"
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, out / "result.json")

