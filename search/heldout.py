"""The test split: scored once per method, for its final pick only, after every selection.

Nothing in a search or a confirmation reads the test rows (``trainers.loop.train`` refuses
them); this module loads them only when the pick is made and scores its checkpoints (one per
confirmation seed) on them. No Ray import.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from search import stats
from search.stats import Interval, Outputs


def score_test(checkpoints: list[Any], log: Callable[[str], None] = print) -> tuple[Outputs, Interval, dict]:
    """Each checkpoint (a Tune ``Checkpoint`` or a folder path) scored on the test split:
    ``(outputs, interval, mean task metrics)``."""
    from trainers.checkpoint import load_checkpoint
    from trainers.data import prepare_data
    from trainers.loop import evaluate, pick_device

    if not checkpoints:
        raise ValueError("no checkpoint to score on the test split")
    runs, tasks, test = [], [], None
    t0 = time.time()
    for ckpt in checkpoints:
        with _folder(ckpt) as folder, _quiet():
            model, cfg, tokenizer = load_checkpoint(Path(folder))
        if test is None:
            test = prepare_data(cfg, tokenizer, log=log, splits=("test",))
        device = pick_device(cfg)
        rows: dict = {}
        metrics = evaluate(model.to(device), test, cfg, device, outputs=rows)
        runs.append(Outputs.from_evaluation(test.specs, rows))
        tasks.append({f"test_{s.name}_{s.metric}": metrics[s.name] for s in test.specs})
    outputs = Outputs.stack(runs)
    mean = {k: sum(t[k] for t in tasks) / len(tasks) for k in tasks[0]}
    log(f"[test] {len(runs)} checkpoint(s) scored on {outputs.rows} test rows ({time.time() - t0:.0f} s)")
    return outputs, stats.interval(outputs), mean


@contextmanager
def _quiet():
    """No weight-loading progress bars or deprecation notes between the search's lines."""
    import warnings

    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _folder(ckpt: Any):
    """A context giving a local folder of ``ckpt``."""
    from contextlib import nullcontext

    return ckpt.as_directory() if hasattr(ckpt, "as_directory") else nullcontext(str(ckpt))


def test_pick(method: str, out: Path, checkpoints: list[Any], row: dict[str, Any],
              summary: dict[str, float]) -> None:
    """Score a method's pick (its checkpoints, one per seed) on the test split, the only read of
    it in a search: the numbers go into the table ``row`` and the parent run's ``summary``, the
    per-row outputs into ``out/test_outputs.npz``."""
    from search.results import TEST_OUTPUTS

    kept = [c for c in checkpoints if c is not None]
    if not kept:
        print(f"[{method}] no checkpoint of the pick was kept: its test score is not computed",
              flush=True)
        return
    outputs, iv, tasks = score_test(kept, log=lambda m: print(m, flush=True))
    outputs.save(out / TEST_OUTPUTS)
    numbers = {"test_score": iv.mean, "test_lo": iv.lo, "test_hi": iv.hi, **tasks}
    summary.update(numbers)
    row.update({k: numbers[k] for k in ("test_score", "test_lo", "test_hi")})
    print(f"[{method}] test score of the pick: {iv.mean:.4f} [{iv.lo:.4f}, {iv.hi:.4f}] "
          f"({iv.seeds} seed(s), {iv.rows} rows)", flush=True)
