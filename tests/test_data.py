"""Reading, validating, batching and sampling task data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trainers.config import TrainConfig
from trainers.data import (
    DataError,
    TaskSampler,
    load_task_file,
    prepare_data,
    read_examples,
    task_probabilities,
    train_batches,
)
from trainers.tasks import CS224N, TaskSpec


def write_tsv(path, header, rows):
    path.write_text("\n".join(["\t".join(header)] + ["\t".join(r) for r in rows]) + "\n")
    return path


QUORA_HEADER = ["", "id", "sentence1", "sentence2", "is_duplicate"]


def quora_rows(n):
    return [[str(i), f"id{i}", f"what is {i}", f"what was {i}", "1.0" if i % 2 else "0.0"] for i in range(n)]


def test_reads_cs224n_pair_file(tmp_path):
    path = write_tsv(tmp_path / "q.csv", QUORA_HEADER, quora_rows(10))
    ex = read_examples(CS224N["quora"], path)
    assert len(ex) == 10
    assert ex[1] == ("what is 1", "what was 1", 1.0)


def test_few_bad_rows_are_skipped_and_counted(tmp_path):
    rows = quora_rows(50)
    rows[3][4] = ""  # broken quoting in the real quora-train.csv leaves the label empty
    rows[7][4] = "maybe"
    path = write_tsv(tmp_path / "q.csv", QUORA_HEADER, rows)
    messages = []
    ex = read_examples(CS224N["quora"], path, log=messages.append)
    assert len(ex) == 48
    assert all(np.isfinite(e[2]) for e in ex)
    assert "skipped 2 malformed row(s)" in messages[0] and "q.csv:5" in messages[0]


def test_many_bad_labels_are_an_error_naming_file_and_row(tmp_path):
    rows = quora_rows(50)
    for r in rows[:10]:
        r[4] = "x"
    path = write_tsv(tmp_path / "q.csv", QUORA_HEADER, rows)
    with pytest.raises(DataError, match=r"10 malformed rows, first: .*q.csv:2"):
        read_examples(CS224N["quora"], path)


@pytest.mark.parametrize("content,match", [
    (b"", "empty file"),
    (b"\tid\tsentence\tsentiment\n", "no usable rows"),
    (b"\tid\ttext\tlabel\n0\ta\tgood\t1\n", "missing column"),
    (b"\tid\tsentence\tsentiment\n0\ta\t\xff\xfe bad\t1\n", "not UTF-8"),
    (b"\tid\tsentence\tsentiment\n0\ta\tok\t7\n", "not a class"),
])
def test_bad_files_fail_clearly(tmp_path, content, match):
    path = tmp_path / "sst.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=match):
        read_examples(CS224N["sst"], path)


def test_missing_file_and_unknown_task(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_examples(CS224N["sst"], tmp_path / "nope.csv")
    cfg = TrainConfig(tasks=("sst", "nli"))
    with pytest.raises(DataError, match="unknown task.*nli"):
        prepare_data(cfg, tokenizer=None)


def test_generic_task_file_csv_and_jsonl(tmp_path, tiny_tokenizer):
    (tmp_path / "t.csv").write_text("premise,hypothesis,gold\ncat sees dog,dog sees cat,1\n"
                                    "car,tree,0\nbook,book,1\n")
    with open(tmp_path / "r.jsonl", "w") as f:
        for i in range(4):
            f.write(json.dumps({"s": f"good film {i}", "y": i / 2}) + "\n")
    (tmp_path / "tasks.json").write_text(json.dumps({"tasks": [
        {"name": "rte", "kind": "classification", "num_labels": 2, "text": "premise",
         "text_pair": "hypothesis", "label": "gold", "train": "t.csv", "dev": "t.csv", "format": "csv"},
        {"name": "reg", "kind": "regression", "text": "s", "label": "y", "train": "r.jsonl",
         "dev": "r.jsonl", "format": "jsonl"}]}))
    specs = load_task_file(tmp_path / "tasks.json")
    assert specs["rte"].pair and specs["rte"].out_dim == 2
    cfg = TrainConfig(tasks=("rte", "reg"), task_file=str(tmp_path / "tasks.json"))
    data = prepare_data(cfg, tiny_tokenizer, log=lambda s: None)
    assert not data.synthetic
    assert len(data.train["rte"]) == 3 and len(data.dev["reg"]) == 4
    b = data.train["rte"].batch(np.array([0, 1]), data.pad_id)
    assert b["token_type_ids"][0].max() == 1, "sentence pairs must carry segment ids"


def test_bad_task_definition_names_the_file(tmp_path):
    (tmp_path / "tasks.json").write_text(json.dumps([{"name": "x", "kind": "ranking", "text": "a",
                                                      "label": "b"}]))
    with pytest.raises(DataError, match=r"tasks.json: task #0: .*kind"):
        load_task_file(tmp_path / "tasks.json")


def test_demo_suite_is_deterministic_and_labelled_synthetic(tiny_tokenizer):
    logs = []
    a = prepare_data(TrainConfig(), tiny_tokenizer, log=logs.append)
    b = prepare_data(TrainConfig(), tiny_tokenizer, log=lambda s: None)
    assert a.synthetic and any("SYNTHETIC" in m for m in logs)
    for t in ("sst", "quora", "sts"):
        assert np.array_equal(a.train[t].ids, b.train[t].ids)
        assert np.array_equal(a.dev[t].labels, b.dev[t].labels)
    assert set(np.unique(a.train["sst"].labels)) == {0, 1, 2, 3, 4}


def test_dynamic_padding_and_bucketing_reduce_padding(tiny_tokenizer):
    data = prepare_data(TrainConfig(), tiny_tokenizer, log=lambda s: None)
    split = data.train["sst"]
    rng = np.random.default_rng(0)

    def efficiency(bucket: bool) -> float:
        it = train_batches(split, 16, rng, bucket)
        real = padded = 0
        for _ in range(100):
            b = split.batch(next(it), data.pad_id)
            real += b["attention_mask"].sum()
            padded += b["attention_mask"].size
        return real / padded

    assert efficiency(True) > efficiency(False)
    assert efficiency(True) > 0.95
    # every example is visited once per epoch
    it = train_batches(split, 32, np.random.default_rng(1), bucket=True)
    seen = np.concatenate([next(it) for _ in range(len(split) // 32 + (len(split) % 32 > 0))])
    assert sorted(seen.tolist()) == list(range(len(split)))


@pytest.mark.parametrize("sampler,temperature", [("temperature", 10.0), ("temperature", 2.0),
                                                 ("proportional", 1.0), ("round_robin", 1.0)])
def test_sampler_frequencies_follow_the_formula(sampler, temperature):
    sizes = {"a": 8000, "b": 1000, "c": 100}
    s = TaskSampler(sizes, sampler, temperature, seed=0)
    n = 20000
    counts = {t: 0 for t in sizes}
    for _ in range(n):
        counts[next(s)] += 1
    power = {"temperature": 1 / temperature, "proportional": 1.0, "round_robin": 0.0}[sampler]
    weights = {t: v ** power for t, v in sizes.items()}
    for t in sizes:
        expected = weights[t] / sum(weights.values())
        assert counts[t] / n == pytest.approx(expected, abs=0.012)
    assert task_probabilities(sizes, sampler, temperature)["a"] == pytest.approx(
        weights["a"] / sum(weights.values()))


def test_task_names_are_checked():
    with pytest.raises(ValueError, match="task name"):
        TaskSpec("my task", "binary", "a", "b")


def test_eval_batches_cover_every_example_once_with_little_padding():
    from trainers.data import TokenizedSplit, eval_batches

    rng = np.random.default_rng(0)
    lengths = np.concatenate([rng.integers(5, 40, 90), rng.integers(100, 128, 10)])  # a long tail
    n_tokens = int(lengths.sum())
    split = TokenizedSplit(ids=np.zeros(n_tokens, np.int32), types=np.zeros(n_tokens, np.int8),
                           offsets=np.concatenate([[0], np.cumsum(lengths)]),
                           labels=np.zeros(100, np.float32))
    batches = list(eval_batches(split, batch_size=128))
    assert sorted(np.concatenate(batches).tolist()) == list(range(100))
    assert all(len(b) <= 128 for b in batches)
    padded = sum(len(b) * lengths[b].max() for b in batches)
    assert lengths.sum() / padded > 0.85  # one batch of 100 padded to 127 tokens would be ~0.25
    assert len(list(eval_batches(split, batch_size=16))) >= 100 // 16
