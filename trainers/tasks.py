"""Task specifications: what a task's examples look like and how it is scored."""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("classification", "binary", "regression")
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
    hf_path: str | None = None
    hf_name: str | None = None
    label_min: float | None = None
    label_max: float | None = None

    def __post_init__(self) -> None:
        # Task names become module keys (per-task adapters, heads) and metric names.
        if not self.name.isidentifier() or self.name in _RESERVED:
            raise ValueError(f"task name {self.name!r}: use letters, digits and _ "
                             f"(not starting with a digit, not {sorted(_RESERVED)})")
        if self.kind not in KINDS:
            raise ValueError(f"task {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "classification" and self.num_labels < 2:
            raise ValueError(f"task {self.name!r}: classification needs num_labels >= 2")
        if self.format not in ("tsv", "csv", "jsonl", "hf"):
            raise ValueError(f"task {self.name!r}: format must be tsv, csv, jsonl or hf")

    @property
    def pair(self) -> bool:
        return self.text_pair is not None

    @property
    def out_dim(self) -> int:
        return self.num_labels if self.kind == "classification" else 1

    @property
    def metric(self) -> str:
        return "pearson" if self.kind == "regression" else "accuracy"


# The CS224N multitask suite, as distributed (tab-separated, header row, index column).
CS224N: dict[str, TaskSpec] = {
    "sst": TaskSpec("sst", "classification", "sentence", "sentiment", num_labels=5,
                    train="ids-sst-train.csv", dev="ids-sst-dev.csv", test="ids-sst-test-student.csv"),
    "cfimdb": TaskSpec("cfimdb", "classification", "sentence", "sentiment", num_labels=2,
                       train="ids-cfimdb-train.csv", dev="ids-cfimdb-dev.csv",
                       test="ids-cfimdb-test-student.csv"),
    "quora": TaskSpec("quora", "binary", "sentence1", "is_duplicate", text_pair="sentence2",
                      train="quora-train.csv", dev="quora-dev.csv", test="quora-test-student.csv"),
    "sts": TaskSpec("sts", "regression", "sentence1", "similarity", text_pair="sentence2",
                    train="sts-train.csv", dev="sts-dev.csv", test="sts-test-student.csv",
                    label_min=0.0, label_max=5.0),
}
