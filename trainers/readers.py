"""Reading one split's examples from a file (TSV, CSV, JSONL) or a Hugging Face dataset,
validating every row: a bad row is counted and named, never turned into a NaN label."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, TextIO

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


# ---- records: (lines, row) pairs of a file ----------------------------------------------

class _Record(NamedTuple):
    """One record and the physical lines (1-based, inclusive) it was read from."""

    first: int
    last: int
    fields: list[str] | None = None
    row: dict | None = None
    problem: str = ""

    def lines(self) -> str:
        return f"{self.first}-{self.last}" if self.last > self.first else str(self.first)

    def where(self, path: Path) -> str:
        return f"{path}:{self.lines()}"


def _plain_records(f: TextIO, delimiter: str) -> Iterator[_Record]:
    """``quoting: none``: every physical line is one record; a ``"`` is an ordinary character."""
    for n, line in enumerate(f, start=1):
        line = line.rstrip("\r\n")
        if line:
            yield _Record(n, n, line.split(delimiter))


def _quoted_records(f: TextIO, delimiter: str) -> Iterator[_Record]:
    """``quoting: csv``: a field starting with ``"`` runs to its closing quote, across tabs
    and newlines. Strict: text after a closing quote is a problem, where the lenient default
    would drop both quotes and glue the text on, unsaid."""
    reader = csv.reader(f, delimiter=delimiter, strict=True)
    last = 0
    while True:
        first = last + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:  # the reader drops the rest of the line and goes on
            last = reader.line_num
            why = str(e).replace("\t", "\\t")  # one readable line: no raw tab
            yield _Record(first, last, problem=f"bad quoting ({why})")
            continue
        last = reader.line_num
        if fields:  # [] is a blank line
            yield _Record(first, last, fields)


def _delimited_rows(path: Path, spec: TaskSpec, f: TextIO) -> Iterator[_Record]:
    """Records of a tsv/csv file as dicts keyed by the header row or by ``spec.columns``."""
    delimiter = "\t" if spec.format == "tsv" else ","
    records = (_quoted_records if spec.quoting == "csv" else _plain_records)(f, delimiter)
    names = list(spec.columns) if spec.columns else None
    if names is None:
        header = next(records, None)
        if header is None:
            raise DataError(f"{path}: empty file (no header row)")
        if header.fields is None or header.last > header.first:
            raise DataError(f"{header.where(path)}: cannot read the header row "
                            f"({header.problem or 'it spans several lines'})")
        names = header.fields
        missing = [c for c in (spec.text, spec.text_pair, spec.label) if c and c not in names]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)} (has: "
                            f"{', '.join(k for k in names if k)}); if the file has no header row, "
                            f"name its columns with \"columns\": [...] in task {spec.name}")
    for rec in records:
        if rec.fields is not None and len(rec.fields) != len(names):
            rec = rec._replace(problem=f"{len(rec.fields)} fields, expected {len(names)}")
        elif rec.fields is not None:
            rec = rec._replace(row=dict(zip(names, rec.fields, strict=True)))
        yield rec


def _json_rows(path: Path, spec: TaskSpec, f: TextIO) -> Iterator[_Record]:
    for n, line in enumerate(f, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            yield _Record(n, n, problem=f"not JSON ({e.msg})")
            continue
        if not isinstance(row, dict):
            yield _Record(n, n, problem="not a JSON object")
            continue
        yield _Record(n, n, row=row)


# ---- examples: validated rows, and what was lost on the way -------------------------------

def _example(spec: TaskSpec, rec: _Record) -> Example:
    if rec.row is None:
        raise ValueError(rec.problem)
    missing = [c for c in (spec.text, spec.text_pair, spec.label) if c and c not in rec.row]
    if missing:  # only JSONL rows can lack a key: a header's columns are checked once
        raise ValueError(f"no {', '.join(map(repr, missing))} (has: {', '.join(map(str, rec.row))})")
    text = rec.row[spec.text]
    pair = rec.row[spec.text_pair] if spec.text_pair else None
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"empty {spec.text!r}")
    if spec.text_pair and (not isinstance(pair, str) or not pair.strip()):
        raise ValueError(f"empty {spec.text_pair!r}")
    return text.strip(), pair.strip() if pair else None, _parse_label(spec, rec.row[spec.label])


def _looks_csv_quoted(value: str) -> bool:
    """``"a ""b"" c"``: how a CSV writer quotes a field holding quotes."""
    return len(value) > 3 and value[0] == value[-1] == '"' and '""' in value[1:-1]


@dataclass
class _Tally:
    """Lines, records and losses of one file, for the checks at its end."""

    path: Path
    spec: TaskSpec
    lines: int = 0
    records: int = 0
    bad: list[tuple[_Record, str]] = field(default_factory=list)
    multiline: list[_Record] = field(default_factory=list)
    quoted_looking: list[_Record] = field(default_factory=list)

    def add(self, rec: _Record) -> None:
        self.lines += rec.last - rec.first + 1
        self.records += 1
        if rec.last > rec.first:
            self.multiline.append(rec)
        if (self.spec.quoting == "none" and rec.row
                and any(_looks_csv_quoted(v) for v in rec.row.values() if isinstance(v, str))):
            self.quoted_looking.append(rec)

    def spans(self, recs: list[_Record], limit: int = 5) -> str:
        shown = ", ".join(r.lines() for r in recs[:limit])
        return shown + (", ..." if len(recs) > limit else "")

    def fix(self) -> str:
        return (f"if quotes are plain text in this file (GLUE-style), set \"quoting\": \"none\" "
                f"in task {self.spec.name}")

    def report(self, examples: list[Example], log) -> None:
        """Say where lines and records disagree; fail when too many lines were lost."""
        name = self.path.name
        if self.multiline:
            log(f"[data] WARNING {name}: {self.lines} data lines read as {self.records} records: "
                f"{len(self.multiline)} record(s) span several lines (lines {self.spans(self.multiline)}): "
                f"a field starting with \" is read as CSV-quoted (\"quoting\": \"csv\"); {self.fix()}")
        if self.quoted_looking:
            log(f"[data] {name}: {len(self.quoted_looking)} field(s) look CSV-quoted (\"...\"\"...\", "
                f"lines {self.spans(self.quoted_looking)}) but task {self.spec.name} reads quotes as "
                f"text (\"quoting\": \"none\"); if the file is CSV-quoted, set \"quoting\": \"csv\"")
        bad = [f"{rec.where(self.path)}: {why}" for rec, why in self.bad]
        if not examples:
            raise DataError(f"{self.path}: no usable rows" + (f"; first problem: {bad[0]}" if bad else ""))
        if not bad:
            return
        bad_lines = sum(rec.last - rec.first + 1 for rec, _ in self.bad)
        quoting_trouble = self.spec.quoting == "csv" and any(
            rec.problem.startswith("bad quoting") or rec.last > rec.first for rec, _ in self.bad)
        lost = f"({bad_lines} of {self.lines} data lines)"
        hint = f"; {self.fix()}" if quoting_trouble else ""
        # The share is of lines: a record that swallowed ten lines lost ten rows.
        if bad_lines > max(MAX_BAD_ROWS_ANYWAY, MAX_BAD_SHARE * self.lines):
            raise DataError(f"{len(bad)} malformed rows {lost}, first: {bad[0]}{hint}")
        log(f"[data] {name}: skipped {len(bad)} malformed row(s) {lost}, e.g. {bad[0]}{hint}")


def read_examples(spec: TaskSpec, path: str | os.PathLike, log=print) -> list[Example]:
    """Read and validate one split file. A few malformed rows are skipped, counted and named;
    every line is accounted for (see ``_Tally.report``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"task {spec.name}: file not found: {path}")
    tally = _Tally(path, spec)
    examples: list[Example] = []
    # csv's reader wants newline=""; elsewhere a line is what ends in "\n", as for wc -l.
    newline = "" if spec.format != "jsonl" and spec.quoting == "csv" else "\n"
    rows = _json_rows if spec.format == "jsonl" else _delimited_rows
    try:
        with open(path, encoding="utf-8", newline=newline) as f:
            for rec in rows(path, spec, f):
                tally.add(rec)
                try:
                    examples.append(_example(spec, rec))
                except (TypeError, ValueError) as e:
                    tally.bad.append((rec, str(e)))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from e
    tally.report(examples, log)
    return examples


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
