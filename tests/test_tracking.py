"""MLflow records without Ray: the write queue (the one retry path), a design's best trial
without a run, and the one definition of a trial's outcome. Real SQLite MLflow stores."""

from __future__ import annotations

import threading
import time

import pytest

from search.tracking import BackgroundWrites, Tracker, TrialRuns, WriteQueue
from search.trial_outcome import FAILED, FINISHED, STOPPED_EARLY, outcome


class Flaky:
    """A write that fails ``failures`` times, then succeeds; records the order it ran in."""

    def __init__(self, name: str, log: list[str], failures: int = 0) -> None:
        self.name, self.log, self.failures = name, log, failures

    def __call__(self) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("tracking server restarting")
        self.log.append(self.name)


def test_queue_keeps_failed_writes_in_order_and_retries_them(capsys):
    done: list[str] = []
    queue = WriteQueue("http://example.invalid", retry_s=0.01)
    assert not queue.put("first", Flaky("a", done, failures=3))
    assert not queue.put("second", Flaky("b", done))  # waits behind the failing one
    assert done == [] and len(queue) == 2
    assert not queue.flush()
    assert queue.flush() and done == ["a", "b"] and len(queue) == 0
    out = capsys.readouterr().out
    assert out.count("failed at first") == 1 and "reachable again" in out


def test_drain_gives_up_after_its_timeout_and_says_what_is_left(capsys):
    queue = WriteQueue("http://example.invalid", retry_s=0.01)
    queue.put("metrics of trial t1", Flaky("a", [], failures=10**6))
    start = time.time()
    assert not queue.drain(timeout_s=0.2)
    assert time.time() - start < 5
    assert "1 write(s) to http://example.invalid could not be made" in capsys.readouterr().out


def test_background_writes_never_hold_up_the_caller_and_keep_their_order(capsys):
    done: list[str] = []
    gate = threading.Event()

    def slow() -> None:  # a tracking store taking its time
        assert gate.wait(10)
        done.append("slow")

    writes = BackgroundWrites(WriteQueue("http://example.invalid", retry_s=0.01))
    start = time.time()
    writes.add("slow", slow)
    writes.add("first", Flaky("a", done, failures=3))  # fails, then is retried by the thread
    writes.add("second", Flaky("b", done))
    assert time.time() - start < 1 and done == []  # the caller went on; nothing was written yet
    gate.set()
    deadline = time.time() + 10
    while len(writes) and time.time() < deadline:  # the thread retries on its own
        time.sleep(0.01)
    assert done == ["slow", "a", "b"] and len(writes) == 0
    assert writes.drain(timeout_s=1)
    assert "failed at first" in capsys.readouterr().out


@pytest.fixture
def tracker(tmp_path) -> Tracker:
    return Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "tracking-test")


def test_design_best_without_a_trial_run_is_said_and_skipped(tracker, capsys):
    runs = TrialRuns(tracker.uri, tracker.experiment_id, tracker.parent_run("auto", {}), "auto", max_t=3)
    runs.start("t1", {"method": "lora", "tasks": "sst", "r": 4})
    start = time.time()
    # A design whose best trial never got a run (its start write was lost): no exception, so
    # the retry path does not spin for minutes blaming MLflow; the other design is tagged.
    ok = tracker.retrying("recording the best config",
                          lambda: (tracker.tag_design_best("lora[all]", "t1"),
                                   tracker.tag_design_best("adapter[all]", "t-missing"),
                                   tracker.tag_design_best("prefix", None)))
    assert ok and time.time() - start < 5
    out = capsys.readouterr().out
    assert "design adapter[all]: its best trial t-missing has no MLflow run" in out
    assert "design prefix" in out
    tagged = tracker.client.search_runs([tracker.experiment_id], "tags.design_best = 'true'")
    assert [r.data.tags["trial_id"] for r in tagged] == ["t1"]


def test_trial_runs_close_with_the_shared_outcome(tracker):
    runs = TrialRuns(tracker.uri, tracker.experiment_id, tracker.parent_run("lora", {}), "lora", max_t=3)
    cases = {"early": ({"training_iteration": 1}, False), "done": ({"training_iteration": 3}, False),
             "nan": ({"training_iteration": 2, "failure": "non-finite loss"}, False),
             "error": ({"training_iteration": 3}, True)}
    for trial_id, (last, errored) in cases.items():
        runs.start(trial_id, {"method": "lora", "tasks": "sst"})
        runs.close(trial_id, last, errored)
    got = {r.data.tags["trial_id"]: (r.info.status, r.data.tags["stopped_early"])
           for r in tracker.client.search_runs([tracker.experiment_id], "tags.kind = 'trial'")}
    assert got == {"early": ("FINISHED", "true"), "done": ("FINISHED", "false"),
                   "nan": ("FAILED", "false"), "error": ("FAILED", "false")}
    assert [outcome(last, 3, errored) for last, errored in cases.values()] == [
        STOPPED_EARLY, FINISHED, FAILED, FAILED]
