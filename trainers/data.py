"""Tasks' examples: reading, validating, tokenizing once, batching and task sampling.

Everything returned by ``prepare_data`` is plain numpy, so a search can tokenize once and
share the result with every trial.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from trainers import demo
from trainers.readers import DataError, Example, hf_examples, read_examples
from trainers.splits import carve, k_shot, source
from trainers.tasks import CS224N, TaskSpec

__all__ = ["DataError", "Example", "read_examples"]  # re-exported: callers import them from here

# ---- task specs ---------------------------------------------------------------------------

def load_task_file(path: str | os.PathLike) -> dict[str, TaskSpec]:
    """Read user task definitions: ``{"tasks": [{name, kind, text, label, ...}, ...]}``.

    Relative ``train``/``dev`` paths are resolved against the task file's folder.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read task file: {e}") from e
    entries = raw.get("tasks") if isinstance(raw, dict) else raw
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected a list of tasks or {{\"tasks\": [...]}}")
    specs = {}
    keys = {f.name: f.default is MISSING for f in fields(TaskSpec)}  # name -> required
    for i, entry in enumerate(entries):
        where = f"{path}: task #{i}"
        if not isinstance(entry, dict):
            raise DataError(f"{where}: expected an object {{\"name\": ..., \"kind\": ...}}, got {entry!r}")
        unknown = sorted(set(entry) - set(keys))
        missing = [k for k, required in keys.items() if required and k not in entry]
        if unknown or missing:
            raise DataError(f"{where} ({entry.get('name')!r}): "
                            + (f"unknown key(s) {', '.join(unknown)}; known: {', '.join(keys)}"
                               if unknown else f"missing key(s) {', '.join(missing)}"))
        try:
            spec = TaskSpec(**entry)
        except (TypeError, ValueError) as e:  # TaskSpec's messages name the task
            raise DataError(f"{where}: {e}") from e
        for split in ("train", "dev", "test"):
            value = getattr(spec, split)
            if value and spec.format != "hf" and not os.path.isabs(value):
                spec = replace(spec, **{split: str(path.parent / value)})
        specs[spec.name] = spec
    return specs


def resolve_specs(tasks: tuple[str, ...], task_file: str | None) -> list[TaskSpec]:
    extra = load_task_file(task_file) if task_file else {}
    known = {**CS224N, **extra}
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise DataError(f"unknown task(s) {', '.join(unknown)}; known: {', '.join(known)}"
                        + ("" if task_file else " (define more with --task-file)"))
    return [known[t] for t in tasks]


# ---- one split's examples ------------------------------------------------------------

def load_split(spec: TaskSpec, split: str, data_dir: str | None, log=print) -> list[Example]:
    """Examples of one task split: HF datasets, a file, or the synthetic demo suite."""
    if spec.format == "hf":
        return hf_examples(spec, split)
    name = getattr(spec, split)
    if name is None:
        raise DataError(f"task {spec.name}: no {split} file defined")
    if os.path.isabs(name):
        return read_examples(spec, name, log)
    if data_dir is None:
        return demo.demo_examples(spec.name, split)
    return read_examples(spec, Path(data_dir) / name, log)


# ---- tokenized, padded-on-demand storage --------------------------------------------------

@dataclass
class TokenizedSplit:
    """Token ids of all examples, concatenated (one array + offsets pickles fast)."""

    ids: np.ndarray
    types: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def subset(self, idx: np.ndarray) -> TokenizedSplit:
        """A new split of the rows ``idx``, in that order."""
        lengths = self.lengths[idx]
        pieces = [(self.ids[self.offsets[i]:self.offsets[i + 1]],
                   self.types[self.offsets[i]:self.offsets[i + 1]]) for i in idx]
        return TokenizedSplit(
            ids=np.concatenate([p[0] for p in pieces]) if pieces else self.ids[:0],
            types=np.concatenate([p[1] for p in pieces]) if pieces else self.types[:0],
            offsets=np.concatenate([[0], np.cumsum(lengths)]), labels=self.labels[idx])

    def batch(self, idx: np.ndarray, pad_id: int) -> dict[str, np.ndarray]:
        """Pad the examples ``idx`` to their longest one (dynamic padding)."""
        lens = self.lengths[idx]
        width = int(lens.max())
        input_ids = np.full((len(idx), width), pad_id, dtype=np.int64)
        types = np.zeros((len(idx), width), dtype=np.int64)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        for row, (i, n) in enumerate(zip(idx, lens, strict=True)):
            start = self.offsets[i]
            input_ids[row, :n] = self.ids[start:start + n]
            types[row, :n] = self.types[start:start + n]
            mask[row, :n] = 1
        return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": types,
                "labels": self.labels[idx]}


def tokenize(examples: list[Example], tokenizer, max_length: int) -> TokenizedSplit:
    texts = [e[0] for e in examples]
    pairs = [e[1] for e in examples] if examples and examples[0][1] is not None else None
    enc = tokenizer(texts, pairs, truncation=True, max_length=max_length,
                    return_token_type_ids=True, return_attention_mask=False)
    lengths = np.array([len(x) for x in enc["input_ids"]], dtype=np.int64)
    return TokenizedSplit(
        ids=np.concatenate([np.asarray(x, dtype=np.int32) for x in enc["input_ids"]]),
        types=np.concatenate([np.asarray(x, dtype=np.int8) for x in enc["token_type_ids"]]),
        offsets=np.concatenate([[0], np.cumsum(lengths)]),
        labels=np.array([e[2] for e in examples], dtype=np.float32),
    )


@dataclass
class PreparedData:
    specs: list[TaskSpec]
    train: dict[str, TokenizedSplit]
    dev: dict[str, TokenizedSplit]
    """The rows evaluation scores: validation (``eval_split`` says which split they are)."""
    pad_id: int
    synthetic: bool
    key: dict = field(default_factory=dict)
    """What the data was built from; ``train`` checks it matches the config."""
    eval_split: str = "dev"
    """The split in ``dev``: "dev" (validation), "train" or "test". Training refuses "test"."""


def data_key(cfg) -> dict:
    return {"tasks": list(cfg.tasks), "data_dir": cfg.data_dir, "task_file": cfg.task_file,
            "model": cfg.model, "max_length": cfg.max_length,
            "max_train_samples": cfg.max_train_samples, "sample_seed": cfg.sample_seed,
            "max_eval_samples": cfg.max_eval_samples, "val_from_train": cfg.val_from_train}


def _subsample(examples: list[Example], limit: int | None, seed: int) -> list[Example]:
    if limit is None or len(examples) <= limit:
        return examples
    keep = np.random.default_rng(seed).permutation(len(examples))[:limit]
    return [examples[i] for i in sorted(keep)]


def split_examples(spec: TaskSpec, split: str, cfg, log=print,
                   files: dict[str, list[Example]] | None = None) -> list[Example]:
    """One task's ``train``, ``dev`` (validation) or ``test`` rows as the run sees them
    (``trainers.splits``): with ``cfg.val_from_train`` a stratified share of the train file is
    the validation set and the dev file is the test set. ``max_train_samples`` draws a seeded,
    class-stratified K-shot sample of the train rows (``trainers.splits.k_shot``),
    ``max_eval_samples`` caps the validation rows; test rows are never capped. ``files`` keeps the
    files read so far (train and validation come from one read of the train file)."""
    vft = cfg.val_from_train
    if split == "test" and vft is None and getattr(spec, "test", None) is None:
        raise DataError(f"task {spec.name}: no test split (name a labelled 'test' file in the task "
                        "file, or pass --val-from-train so the dev files serve as the test set)")
    files = {} if files is None else files
    name = source(spec, split, vft)
    if name not in files:
        files[name] = load_split(spec, name, cfg.data_dir, log)
    examples = files[name]
    if vft is not None and split in ("train", "dev"):
        labels = np.array([e[2] for e in examples], dtype=np.float32)
        rows = carve(spec, labels, vft)[0 if split == "train" else 1]
        examples = [examples[i] for i in rows]
    if split == "train" and cfg.max_train_samples is not None:
        labels = np.array([e[2] for e in examples], dtype=np.float32)
        return [examples[i] for i in k_shot(spec, labels, cfg.max_train_samples, cfg.sample_seed)]
    return _subsample(examples, cfg.max_eval_samples if split == "dev" else None, seed=0)


def prepare_data(cfg, tokenizer, log=print, splits: tuple[str, ...] = ("train", "dev")) -> PreparedData:
    """Read, validate and tokenize every task's ``splits`` once (errors before any training).
    The first split other than train becomes ``PreparedData.dev``, the rows evaluation scores
    (``splits=("test",)`` scores a finished model on the test set)."""
    specs = resolve_specs(cfg.tasks, cfg.task_file)
    synthetic = cfg.data_dir is None and any(s.format != "hf" and not os.path.isabs(s.train or "")
                                             for s in specs)
    if synthetic:
        log("[data] no --data-dir: using the SYNTHETIC demo suite generated in code "
            "(rule-based labels; scores say nothing about real-language quality)")
    out: dict[str, dict[str, TokenizedSplit]] = {s: {} for s in ("train", "dev", "test")}
    for spec in specs:
        files: dict[str, list[Example]] = {}
        for split in splits:
            out[split][spec.name] = tokenize(split_examples(spec, split, cfg, log, files), tokenizer,
                                             cfg.max_length)
        names = {"dev": "validation (carved from train)" if cfg.val_from_train else "dev",
                 "test": "test (the dev file)" if cfg.val_from_train else "test"}
        log(f"[data] {spec.name}: " + ", ".join(f"{len(out[s][spec.name])} {names.get(s, s)}"
                                                for s in splits))
    eval_split = next((s for s in splits if s != "train"), None)
    return PreparedData(specs=specs, train=out["train"], dev=out[eval_split] if eval_split else {},
                        pad_id=tokenizer.pad_token_id or 0, synthetic=synthetic, key=data_key(cfg),
                        eval_split=eval_split or "dev")


# ---- batching and task sampling -----------------------------------------------------------

def train_batches(split: TokenizedSplit, batch_size: int, rng: np.random.Generator,
                  bucket: bool, pool_batches: int = 50) -> Iterator[np.ndarray]:
    """Endless index batches. With ``bucket``, examples of similar length share a batch:
    shuffle, cut into pools of ``pool_batches`` batches, sort each pool by length, split it
    into batches and shuffle their order (random batches, little padding)."""
    n = len(split)
    lengths = split.lengths
    while True:
        order = rng.permutation(n)
        pool = batch_size * pool_batches if bucket else batch_size
        for start in range(0, n, pool):
            chunk = order[start:start + pool]
            if bucket:
                chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            batches = [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
            for j in rng.permutation(len(batches)):
                yield batches[j]


def eval_batches(split: TokenizedSplit, batch_size: int, max_spread: float = 1.25,
                 min_batch: int = 8) -> Iterator[np.ndarray]:
    """Deterministic batches of examples sorted by length (padding waste is pure cost at eval).

    A batch also ends when its next example would be more than ``max_spread`` times longer
    than its first (once it holds ``min_batch``): otherwise a small dev set, one batch of 128,
    is padded to its longest example (measured: 2.3x the time of length-homogeneous batches).
    """
    order = np.argsort(split.lengths, kind="stable")
    lengths = split.lengths
    start = 0
    for i in range(1, len(order) + 1):
        size = i - start
        if i == len(order) or size == batch_size or (
                size >= min_batch and lengths[order[i]] > max_spread * lengths[order[start]]):
            yield order[start:i]
            start = i


def task_probabilities(sizes: dict[str, int], sampler: str, temperature: float) -> dict[str, float]:
    """p(task) ∝ n^(1/T): proportional is T = 1; round_robin is uniform in expectation."""
    if sampler == "round_robin":
        return {t: 1.0 / len(sizes) for t in sizes}
    power = 1.0 if sampler == "proportional" else 1.0 / temperature
    weights = {t: float(n) ** power for t, n in sizes.items()}
    total = sum(weights.values())
    return {t: w / total for t, w in weights.items()}


class TaskSampler:
    """Chooses the task of each batch."""

    def __init__(self, sizes: dict[str, int], sampler: str, temperature: float, seed: int) -> None:
        self.tasks = list(sizes)
        self.sampler = sampler
        self.probs = task_probabilities(sizes, sampler, temperature)
        self.rng = np.random.default_rng(seed)
        self.count = 0

    def __next__(self) -> str:
        self.count += 1
        if self.sampler == "round_robin":
            return self.tasks[(self.count - 1) % len(self.tasks)]
        return self.tasks[self.rng.choice(len(self.tasks), p=[self.probs[t] for t in self.tasks])]

    def __iter__(self) -> TaskSampler:
        return self
