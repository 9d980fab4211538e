"""Reading, validating, batching and sampling task data."""

from __future__ import annotations

import json
import re
from dataclasses import asdict

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


def test_cs224n_files_keep_csv_quoting(tmp_path):
    # quora-train.csv quotes a field that holds quotes; it must read exactly as it always did
    rows = quora_rows(3)
    rows[1][2] = '"""Which is correct? Do I need """"the"""" here?"""'
    ex = read_examples(CS224N["quora"], write_tsv(tmp_path / "q.csv", QUORA_HEADER, rows))
    assert ex[1][0] == '"Which is correct? Do I need ""the"" here?"'
    assert {s.quoting for s in CS224N.values()} == {"csv"}


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
    with pytest.raises(DataError, match=r"10 malformed rows \(10 of 50 data lines\), first: .*q.csv:2"):
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


# ---- quoting and headerless files (GLUE-style TSV) ----------------------------------------

GLUE_COLUMNS = ["label", "id1", "id2", "sentence1", "sentence2"]


def glue_lines(n: int) -> list[str]:
    """Headerless MRPC-like lines; quotes are plain text. Read as CSV quoting, line 3's quote
    closes inside its field, and line 10's runs on to the quote that ends a field on line 12."""
    lines = [f"{i % 2}\t{i}\t{i + 1000}\tthe cat sat on mat {i} .\tthe cat sits on mat {i} ."
             for i in range(n)]
    lines[2] = '1\t2\t1002\t"Hello," she said .\tshe said hello .'
    lines[9] = '0\t9\t1009\t" Unbalanced quote at the start\tthe second sentence .'
    lines[11] = '1\t11\t1011\tit ends with a quote "\tand a last sentence .'
    return lines


def glue_task(tmp_path, lines: list[str], **extra) -> TaskSpec:
    (tmp_path / "train.tsv").write_text("\n".join(lines) + "\n")
    (tmp_path / "tasks.json").write_text(json.dumps({"tasks": [dict(
        name="mrpc", kind="classification", num_labels=2, text="sentence1", text_pair="sentence2",
        label="label", columns=GLUE_COLUMNS, train="train.tsv", dev="train.tsv", **extra)]}))
    return load_task_file(tmp_path / "tasks.json")["mrpc"]


def test_glue_style_tsv_reads_every_line_with_quotes_as_text(tmp_path):
    lines = glue_lines(50)
    spec = glue_task(tmp_path, lines)
    assert spec.quoting == "none", "a tsv task file defaults to GLUE's convention"
    logs = []
    ex = read_examples(spec, spec.train, log=logs.append)
    assert len(ex) == len(lines) and not logs
    assert ex[2] == ('"Hello," she said .', "she said hello .", 1.0)
    assert ex[9][0] == '" Unbalanced quote at the start'
    assert ex[11][0] == 'it ends with a quote "'


def test_csv_quoting_of_plain_quotes_names_the_lines_and_the_fix(tmp_path):
    spec = glue_task(tmp_path, glue_lines(50), quoting="csv")
    logs = []
    ex = read_examples(spec, spec.train, log=logs.append)
    warning, skipped = logs
    # lines 10-12 became one record holding a tab and two newlines
    assert "50 data lines read as 48 records" in warning and "(lines 10-12)" in warning
    assert 'set "quoting": "none" in task mrpc' in warning and "\n" not in warning
    # line 3: text after the closing quote is a malformed row, not a silently unquoted one
    assert "skipped 1 malformed row(s)" in skipped and "train.tsv:3: bad quoting" in skipped
    assert '"quoting": "none"' in skipped and "\t" not in skipped
    assert len(ex) == 47


def test_csv_quoting_losing_many_lines_is_an_error(tmp_path):
    lines = glue_lines(50)
    for i in range(20, 40, 2):  # ten more unbalanced quotes, each swallowing the next line
        lines[i] = lines[i].replace("\tthe cat sat", '\t"the cat sat')
    spec = glue_task(tmp_path, lines, quoting="csv")
    with pytest.raises(DataError, match=r"malformed rows \(\d+ of 50 data lines\), first: "
                                        r".*train.tsv:3: .*\"quoting\": \"none\" in task mrpc") as e:
        read_examples(spec, spec.train, log=lambda s: None)
    rows, lost = map(int, re.search(r"(\d+) malformed rows \((\d+) of", str(e.value)).groups())
    assert lost > rows, "the share counts the lines a broken record swallowed"
    logs = []
    assert len(read_examples(glue_task(tmp_path, lines), spec.train, log=logs.append)) == 50
    assert not logs, "read as plain text, the same file loses nothing"


def test_headerless_rows_with_the_wrong_column_count_are_named(tmp_path):
    lines = glue_lines(50)
    lines[5] = "1\t5\tonly four fields\t."
    lines.insert(7, "")  # a blank line is no row
    spec = glue_task(tmp_path, lines)
    logs = []
    ex = read_examples(spec, spec.train, log=logs.append)
    assert len(ex) == 49
    assert "skipped 1 malformed row(s) (1 of 50 data lines)" in logs[0]
    assert "train.tsv:6: 4 fields, expected 5" in logs[0]


def test_quoting_none_points_at_fields_that_look_csv_quoted(tmp_path):
    lines = glue_lines(12)
    lines[4] = '1\t4\t1004\t"He said ""hi"" twice"\tsecond .'
    logs = []
    ex = read_examples(glue_task(tmp_path, lines), tmp_path / "train.tsv", log=logs.append)
    assert ex[4][0] == '"He said ""hi"" twice"', "read as written"
    assert len(logs) == 1 and "lines 5)" in logs[0] and 'set "quoting": "csv"' in logs[0]


def test_a_header_file_named_wrong_suggests_columns(tmp_path):
    spec = glue_task(tmp_path, glue_lines(12))
    spec = TaskSpec(**{**asdict(spec), "columns": None})  # the first line is data, not a header
    with pytest.raises(DataError, match=r"missing column\(s\) sentence1, sentence2, label .*\"columns\""):
        read_examples(spec, spec.train)


def test_columns_survive_a_json_round_trip():  # checkpoints store specs as JSON
    spec = TaskSpec("t", "binary", "a", "y", columns=["y", "a"])
    assert spec.columns == ("y", "a")
    assert TaskSpec(**json.loads(json.dumps(asdict(spec)))) == spec


def test_quoting_defaults_per_format():
    assert TaskSpec("t", "binary", "a", "y").quoting == "none"
    assert TaskSpec("t", "binary", "a", "y", format="csv").quoting == "csv"
    assert TaskSpec("t", "binary", "a", "y", format="jsonl").quoting is None


@pytest.mark.parametrize("extra,match", [
    ({"quoting": "quoted"}, r"task 'mrpc': quoting must be \"csv\" or \"none\", got 'quoted'"),
    ({"format": "jsonl", "columns": None, "quoting": "csv"}, r"task 'mrpc': quoting applies to tsv and csv"),
    ({"columns": "label,id1"}, r"task 'mrpc': columns must be a non-empty list of column names"),
    ({"columns": ["label", 3, "sentence1"]}, r"task 'mrpc': columns must be a non-empty list"),
    ({"columns": ["label", "x", "x", "sentence1", "sentence2"]}, r"columns lists x more than once"),
    ({"columns": ["label", "sentence2"]}, r"task 'mrpc': text column 'sentence1' is not in columns"),
    ({"format": "jsonl"}, r"task 'mrpc': columns applies to tsv and csv files, not format 'jsonl'"),
    ({"quotng": "none"}, r"task #0 \('mrpc'\): unknown key\(s\) quotng; known: name, kind"),
])
def test_bad_task_file_entries_are_one_line_naming_file_and_task(tmp_path, extra, match):
    entry = dict(name="mrpc", kind="binary", text="sentence1", text_pair="sentence2", label="label",
                 columns=GLUE_COLUMNS, train="t.tsv")
    (tmp_path / "tasks.json").write_text(json.dumps([{**entry, **extra}]))
    with pytest.raises(DataError, match=r"tasks.json: task #0") as e:
        load_task_file(tmp_path / "tasks.json")
    assert re.search(match, str(e.value)) and "\n" not in str(e.value), str(e.value)


# ---- K-shot training samples (max_train_samples) ------------------------------------------------
def test_k_shot_sample_is_stratified_nested_and_seeded():
    import numpy as np

    from trainers.splits import k_shot
    from trainers.tasks import CS224N

    labels = np.repeat([0.0, 1.0], [700, 300])  # quora-like: 70% negatives
    spec = CS224N["quora"]
    for k in (16, 64, 256):
        rows = k_shot(spec, labels, k)
        assert len(rows) == k and len(set(rows)) == k and np.all(np.diff(rows) > 0)
        assert abs(labels[rows].mean() - 0.3) <= 1.5 / k  # the class share, give or take one row
    small, large = set(k_shot(spec, labels, 16)), set(k_shot(spec, labels, 64))
    assert small <= large  # the rows of K = 16 are among K = 64's
    np.testing.assert_array_equal(k_shot(spec, labels, 64), k_shot(spec, labels, 64))
    assert set(k_shot(spec, labels, 64, sample_seed=1)) != large  # another sample seed, other rows
    assert len(k_shot(spec, labels, 5000)) == 1000  # K above the rows: all of them


def test_max_train_samples_draws_the_k_shot_sample_and_keys_the_data():
    from trainers.config import TrainConfig
    from trainers.data import data_key, split_examples
    from trainers.demo import demo_examples
    from trainers.tasks import CS224N

    cfg = TrainConfig(tasks=("sst",), max_train_samples=50)
    rows = split_examples(CS224N["sst"], "train", cfg, log=lambda _: None)
    whole = demo_examples("sst", "train")
    assert len(rows) == 50 and all(r in whole for r in rows)
    counts = {c: sum(r[2] == c for r in rows) for c in range(5)}
    share = {c: sum(r[2] == c for r in whole) / len(whole) for c in range(5)}
    assert all(abs(counts[c] - 50 * share[c]) <= 1 for c in range(5)), (counts, share)
    other = TrainConfig(tasks=("sst",), max_train_samples=50, sample_seed=3)
    assert split_examples(CS224N["sst"], "train", other, log=lambda _: None) != rows
    assert data_key(other) != data_key(cfg)
