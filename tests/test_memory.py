"""A reused search worker gives each trial's memory back (issue 24): the release between
trials, the numbers a trial reports to Tune, and a real search whose worker stays flat."""

from __future__ import annotations

import gc
import json
import math
import subprocess
import weakref

import pytest
import torch

from search.reported import DETAILS, SCHEDULING, expand, for_tune
from search.results import numeric_metrics
from trainers import memory


class Cyclic(torch.nn.Module):
    """A model that points back at itself, as PHA's network and backbone do."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(256, 256))
        object.__setattr__(self, "me", self)


@pytest.fixture
def no_auto_gc():
    gc.collect()
    gc.disable()
    yield
    gc.enable()


def test_release_frees_a_model_held_only_by_a_reference_cycle(no_auto_gc):
    model = Cyclic()
    alive = weakref.ref(model)
    del model
    assert alive() is not None  # the cycle keeps it until the collector runs
    memory.release()
    assert alive() is None


def test_a_slow_collection_at_the_end_of_a_run_freezes_the_survivors(monkeypatch, no_auto_gc):
    """The survivors (this process's modules) leave the collector's sight; a model made later is
    still collected, and a fast collection (or one at a run's start) freezes nothing."""
    try:
        monkeypatch.setattr(memory, "FREEZE_AFTER_S", 0.0)
        assert memory.release()["froze"] is False and gc.get_freeze_count() == 0
        assert memory.release(freeze_survivors=True)["froze"] is True
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # the modules and their objects
        model = Cyclic()
        alive = weakref.ref(model)
        del model
        monkeypatch.setattr(memory, "FREEZE_AFTER_S", 60.0)
        assert memory.release(freeze_survivors=True)["froze"] is False
        assert alive() is None and gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def test_release_empties_cuda_cache_after_the_cycles_are_gone(monkeypatch, no_auto_gc):
    """The GPU path, as far as a CPU machine shows it: with CUDA in use, the cache is emptied
    once the finished model is unreachable (emptying it first would free nothing of it)."""
    model = Cyclic()
    alive = weakref.ref(model)
    del model
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: calls.append("sync"))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append(("empty", alive() is None)))
    done = memory.release()
    assert calls == ["sync", ("empty", True)]
    assert done["cuda_emptied"] is True


def test_release_without_cuda_never_touches_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: pytest.fail("CUDA touched without CUDA"))
    assert memory.release()["cuda_emptied"] is False


def test_anon_memory_reads_both_counters_and_none_for_a_missing_process():
    if memory.anon_gb() is None:
        pytest.skip("no /proc here")
    held = torch.ones(64 * 2**20 // 4)  # 64 MiB of anonymous memory
    rss, pss = memory.anon_gb(), memory.anon_gb(proportional=True)
    assert rss > 0.06 and pss > 0.06
    assert memory.anon_gb(2**22 + 12345) is None
    del held


def test_release_asks_glibc_to_return_free_pages():
    if memory._malloc_trim() is None:
        pytest.skip("this C library has no malloc_trim")
    assert memory.release()["trimmed"] is True


ROW = {"step": 20, "score": 0.61, "loss": 1.25, "eval_rows": 128.0, "eval_full": 1.0, "score_sub": 0.58,
       "sst_acc": 0.41, "stored_pct": 0.49, "trainable_params": 110592.0, "sst_pct": 0.0,
       "over_adapter": math.nan, "train_s": 3.5, "setup_s": 0.8, "first_step_at": 1.7e9,
       "node_id": "abc", "device": "cpu"}


def test_tune_sees_only_the_scheduling_numbers_and_strings():
    sent = for_tune(ROW)
    numbers = {k for k, v in sent.items() if isinstance(v, (int, float))}
    assert numbers == set(SCHEDULING)
    assert sent["node_id"] == "abc" and sent["device"] == "cpu"
    assert isinstance(sent[DETAILS], str) and json.loads(sent[DETAILS])["sst_acc"] == 0.41


def test_every_number_comes_back_for_mlflow_and_the_tables():
    back = expand(for_tune(ROW))
    assert DETAILS not in back
    assert back.keys() == ROW.keys()
    assert math.isnan(back["over_adapter"])
    assert numeric_metrics(for_tune(ROW)) == numeric_metrics(ROW)


def test_a_failure_report_and_an_unreadable_details_string_pass_through():
    failure = {"score": math.nan, "step": 3, "failure": "non-finite loss", "error": "loss became nan"}
    assert for_tune(failure) == failure
    assert expand({"score": 0.5, DETAILS: "{not json"}) == {"score": 0.5}


@pytest.mark.integration
def test_a_reused_worker_stays_flat_over_twenty_trials(tmp_path):
    """One worker hosts 20 trials of a 4-layer, 256-wide random BERT (FIFO, one at a time);
    its peak memory in the last trials stays within a bound of its peak in the second. Before
    the release between trials it grew by about a model's worth of allocations per trial."""
    from searchkit import ENV, MemorySampler, cli, mlflow_runs, per_trial, trial_results
    from tiny import write_tiny_model_dir

    model = write_tiny_model_dir(tmp_path / "bert-256", hidden_size=256, num_hidden_layers=4,
                                 intermediate_size=1024, num_attention_heads=4)
    out = tmp_path / "out"
    cmd = cli(model, out, "--experiment", "flat", "--method", "lora", "--num-samples", "20",
              "--scheduler", "fifo", "--searcher", "random", "--max-concurrent", "1", "--confirm", "0",
              "--max-steps", "12", "--eval-every", "6", "--max-train-samples", "256",
              "--set", "batch_size=64", "--set", "max_length=64")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    sampler = MemorySampler(proc.pid, every=0.2)
    output, _ = proc.communicate(timeout=600)
    samples = sampler.stop()
    assert proc.returncode == 0, output[-3000:]
    ends = [t["ended_at"] for t in json.loads((out / "lora" / "trials.json").read_text())["trials"].values()]
    rows = per_trial(samples, ends)
    assert len({p for s in samples for p, v in s["workers"].items() if v}) == 1  # one reused worker
    assert len(rows) >= 18
    second = rows[1]["worker_peak_gb"]
    late = max(r["worker_peak_gb"] for r in rows[-3:])
    growth_mb = 1024 * (late - second)
    print("worker peak GB per trial:", [round(r["worker_peak_gb"], 3) for r in rows])
    assert growth_mb < 60 + 0.10 * 1024 * second, [round(r["worker_peak_gb"], 3) for r in rows]
    # Every trial recorded what the worker held when it started (an MLflow metric), and the
    # numbers Tune did not see (packed in details) are MLflow metrics as before.
    client, runs = mlflow_runs(f"sqlite:///{out.parent / 'mlflow.db'}", "flat")
    trials = [r for r in runs if r.data.tags.get("kind") == "trial"]
    assert len(trials) == 20
    assert all(r.data.metrics.get("worker_mem_gb", 0) > 0 and "sst_accuracy" in r.data.metrics
               and "train_s" in r.data.metrics for r in trials)
    # What the driver kept of each trial: only the scheduling numbers from the trainer, and no
    # running windows for the completed ones.
    rows = [row for rs in trial_results(out, "flat", "lora").values() for row in rs]
    assert rows and all("sst_accuracy" not in row and isinstance(row[DETAILS], str) for row in rows)
    state = sorted((out / "tune" / "flat-lora").glob("experiment_state-*.json"))[-1]
    saved = [(json.loads(t), json.loads(m)) for t, m in json.loads(state.read_text())["trial_data"]]
    ended = [m for t, m in saved if t["status"] == "TERMINATED"]
    assert len(ended) == 20
    assert all(m["metric_n_steps"] == {} and "score" in m["metric_analysis"] for m in ended)
    numbers = {k for m in ended for k in m["metric_analysis"]}
    assert {"score", "step", "stored_pct"} <= numbers and not numbers & {"sst_accuracy", "loss", "train_s"}


def test_the_driver_drops_a_completed_trials_windows_and_trims_on_its_period(monkeypatch):
    from types import SimpleNamespace

    from search import callbacks

    trimmed = []
    monkeypatch.setattr(callbacks, "trim_heap", lambda: trimmed.append(1) or True)
    meta = SimpleNamespace(metric_n_steps={"score": {"5": [0.1], "10": [0.1]}},
                           metric_analysis={"score": {"last": 0.1}})
    keeper = callbacks.DriverMemory(trim_every_s=3600)
    keeper.on_trial_complete(0, [], SimpleNamespace(run_metadata=meta))
    assert meta.metric_n_steps == {} and meta.metric_analysis == {"score": {"last": 0.1}}
    keeper.on_step_end(0, [])
    assert trimmed == []  # not yet due
    keeper._last_trim -= 3600
    keeper.on_step_end(0, [])
    assert trimmed == [1]
