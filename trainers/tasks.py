"""Task specifications: what a task's examples look like and how it is scored."""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("classification", "binary", "regression")
FORMATS = ("tsv", "csv", "jsonl", "hf")
QUOTINGS = ("csv", "none")
# TSV as GLUE and most NLP data ship it has no quoting (every line is a record, a " is a
# character); CSV files quote fields that hold commas, quotes or newlines.
DEFAULT_QUOTING = {"tsv": "none", "csv": "csv"}
_RESERVED = {"score", "loss", "step", "default", "keys", "items", "values", "update", "training"}


@dataclass(frozen=True)
class TaskSpec:
    """One task. ``kind`` fixes head size, loss and metric:

    - classification: ``num_labels`` logits, cross-entropy, accuracy;
    - binary: one logit, BCE, accuracy at 0.5;
    - regression: one output, MSE, Pearson r.
    """

    name: str
    kind: str
    text: str
    label: str
    text_pair: str | None = None
    num_labels: int = 1
    train: str | None = None
    dev: str | None = None
    test: str | None = None
    format: str = "tsv"
    """tsv | csv | jsonl | hf"""
    quoting: str | None = None
    """How a tsv/csv file treats ``"``: ``csv`` (a field that starts with ``"`` is quoted, may
    hold tabs, commas and newlines, and ``""`` is one quote) or ``none`` (quotes are plain
    characters; every line is one record). None = ``DEFAULT_QUOTING[format]``."""
    columns: tuple[str, ...] | None = None
    """The column names, in order, of a tsv/csv file that has no header row."""
    hf_path: str | None = None
    hf_name: str | None = None
    label_min: float | None = None
    label_max: float | None = None

    def __post_init__(self) -> None:
        # Task names become module keys (per-task adapters, heads) and metric names.
        if not isinstance(self.name, str) or not self.name.isidentifier() or self.name in _RESERVED:
            raise ValueError(f"task name {self.name!r}: use letters, digits and _ "
                             f"(not starting with a digit, not {sorted(_RESERVED)})")
        if self.kind not in KINDS:
            raise ValueError(f"task {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "classification" and self.num_labels < 2:
            raise ValueError(f"task {self.name!r}: classification needs num_labels >= 2")
        if self.format not in FORMATS:
            raise ValueError(f"task {self.name!r}: format must be one of {FORMATS}, got {self.format!r}")
        self._check_file_layout()

    def _check_file_layout(self) -> None:
        """``quoting`` and ``columns``: only for tsv/csv; fill in the format's default quoting."""
        delimited = self.format in DEFAULT_QUOTING
        for key in ("quoting", "columns"):
            if getattr(self, key) is not None and not delimited:
                raise ValueError(f"task {self.name!r}: {key} applies to tsv and csv files, "
                                 f"not format {self.format!r}")
        if not delimited:
            return
        quoting = DEFAULT_QUOTING[self.format] if self.quoting is None else self.quoting
        if quoting not in QUOTINGS:
            raise ValueError(f"task {self.name!r}: quoting must be \"csv\" or \"none\", got {quoting!r}")
        object.__setattr__(self, "quoting", quoting)  # frozen: resolved once, here
        if self.columns is None:
            return
        columns = self.columns
        if (not isinstance(columns, (list, tuple)) or not columns
                or not all(isinstance(c, str) and c for c in columns)):
            raise ValueError(f"task {self.name!r}: columns must be a non-empty list of column "
                             f"names (strings), got {columns!r}")
        dup = sorted({c for c in columns if list(columns).count(c) > 1})
        if dup:
            raise ValueError(f"task {self.name!r}: columns lists {', '.join(dup)} more than once")
        for key in ("text", "text_pair", "label"):
            value = getattr(self, key)
            if value is not None and value not in columns:
                raise ValueError(f"task {self.name!r}: {key} column {value!r} is not in columns "
                                 f"{list(columns)}")
        object.__setattr__(self, "columns", tuple(columns))

    @property
    def pair(self) -> bool:
        return self.text_pair is not None

    @property
    def out_dim(self) -> int:
        return self.num_labels if self.kind == "classification" else 1

    @property
    def metric(self) -> str:
        return "pearson" if self.kind == "regression" else "accuracy"


# The CS224N multitask suite, as distributed: tab-separated, header row, index column, and
# CSV quoting (quora-train.csv quotes a field that holds quotes: """Which ... """"the""""?""").
# Its *-test-student.csv files carry no labels, so no task names a test split: with
# --val-from-train the dev files serve as the test set (trainers/splits.py).
CS224N: dict[str, TaskSpec] = {
    "sst": TaskSpec("sst", "classification", "sentence", "sentiment", num_labels=5,
                    train="ids-sst-train.csv", dev="ids-sst-dev.csv", quoting="csv"),
    "cfimdb": TaskSpec("cfimdb", "classification", "sentence", "sentiment", num_labels=2,
                       train="ids-cfimdb-train.csv", dev="ids-cfimdb-dev.csv", quoting="csv"),
    "quora": TaskSpec("quora", "binary", "sentence1", "is_duplicate", text_pair="sentence2",
                      train="quora-train.csv", dev="quora-dev.csv", quoting="csv"),
    "sts": TaskSpec("sts", "regression", "sentence1", "similarity", text_pair="sentence2",
                    train="sts-train.csv", dev="sts-dev.csv", label_min=0.0, label_max=5.0, quoting="csv"),
}
