"""Reading one split's examples from a file (TSV, CSV, JSONL) or a Hugging Face dataset,
validating every row: a bad row is counted and named, never turned into a NaN label."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from trainers.tasks import TaskSpec

# A few malformed rows are skipped and counted; more than this share is an error.
MAX_BAD_SHARE = 0.01
MAX_BAD_ROWS_ANYWAY = 5


class DataError(ValueError):
    """Bad input data: the message names the file, the row and what is wrong."""


Example = tuple[str, "str | None", float]


def _parse_label(spec: TaskSpec, raw: object) -> float:
    value = float(raw)  # raises ValueError / TypeError on junk or empty
    if not np.isfinite(value):
        raise ValueError(f"label {raw!r} is not finite")
    if spec.kind == "classification":
        if value != int(value) or not 0 <= value < spec.num_labels:
            raise ValueError(f"label {raw!r} is not a class in 0..{spec.num_labels - 1}")
    elif spec.kind == "binary" and value not in (0.0, 1.0):
        raise ValueError(f"label {raw!r} is not 0 or 1")
    return value


def _records(path: Path, fmt: str) -> Iterator[tuple[int, dict]]:
    """Yield (line number, record) pairs; the header is line 1 for CSV/TSV."""
    with open(path, encoding="utf-8", newline="") as f:
        if fmt == "jsonl":
            for n, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        yield n, json.loads(line)
                    except json.JSONDecodeError:
                        yield n, {}
            return
        reader = csv.DictReader(f, delimiter="\t" if fmt == "tsv" else ",")
        if reader.fieldnames is None:
            raise DataError(f"{path}: empty file (no header row)")
        for record in reader:
            yield reader.line_num, record


def read_examples(spec: TaskSpec, path: str | os.PathLike, log=print) -> list[Example]:
    """Read and validate one split file; skip and count a few malformed rows."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"task {spec.name}: file not found: {path}")
    columns = [c for c in (spec.text, spec.text_pair, spec.label) if c]
    examples: list[Example] = []
    bad: list[str] = []
    try:
        for n, rec in _records(path, spec.format):
            if not examples and not bad:
                missing = [c for c in columns if c not in rec]
                if missing and rec:
                    raise DataError(f"{path}: missing column(s) {', '.join(missing)} "
                                    f"(has: {', '.join(k for k in rec if k)})")
            try:
                text = rec.get(spec.text)
                pair = rec.get(spec.text_pair) if spec.text_pair else None
                if not isinstance(text, str) or not text.strip():
                    raise ValueError(f"empty {spec.text!r}")
                if spec.text_pair and (not isinstance(pair, str) or not pair.strip()):
                    raise ValueError(f"empty {spec.text_pair!r}")
                examples.append((text.strip(), pair.strip() if pair else None,
                                 _parse_label(spec, rec.get(spec.label))))
            except (TypeError, ValueError) as e:
                bad.append(f"{path}:{n}: {e}")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from e
    _check_bad_rows(path, examples, bad, log)
    return examples


def _check_bad_rows(path: Path, examples: list, bad: list[str], log) -> None:
    if not examples:
        raise DataError(f"{path}: no usable rows" + (f"; first problem: {bad[0]}" if bad else ""))
    if bad and len(bad) > max(MAX_BAD_ROWS_ANYWAY, MAX_BAD_SHARE * (len(examples) + len(bad))):
        raise DataError(f"{len(bad)} malformed rows, first: {bad[0]}")
    if bad:
        log(f"[data] {path.name}: skipped {len(bad)} malformed row(s), e.g. {bad[0]}")


def hf_examples(spec: TaskSpec, split: str) -> list[Example]:
    try:
        import datasets
    except ImportError as e:
        raise DataError(f"task {spec.name}: format 'hf' needs `pip install datasets`") from e
    ds = datasets.load_dataset(spec.hf_path, spec.hf_name, split=getattr(spec, split) or split)
    out = []
    for i, rec in enumerate(ds):
        try:
            out.append((rec[spec.text], rec[spec.text_pair] if spec.text_pair else None,
                        _parse_label(spec, rec[spec.label])))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"task {spec.name}: {spec.hf_path} {split} row {i}: {e}") from e
    return out
