"""The test split: scored once per method, after every selection, for its pick and its defaults.

Nothing in a search or a confirmation reads the test rows (``trainers.loop.train`` refuses
them); this module loads them only when the pick is made. With ``--confirm`` it scores the
fresh-seed checkpoints of the pick and of the method's defaults (``search.selection.confirm``: seeds that
chose nothing) and their paired difference, so "did the search beat the defaults" is answered on
rows and seeds that did not choose the pick; without, the search's best checkpoint. No Ray import.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search import stats
from search.stats import Interval, Outputs

if TYPE_CHECKING:  # search.selection.confirm imports Ray
    from search.selection.confirm import Confirmation


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


TEST_DEFAULT_OUTPUTS = "test_default_outputs.npz"
"""``<method>/test_default_outputs.npz``: the defaults' per-row test predictions (``--confirm``)."""


def test_pick(method: str, out: Path, checkpoints: list[Any], row: dict[str, Any],
              summary: dict[str, float]) -> Outputs | None:
    """Score a method's pick (its checkpoints, one per seed) on the test split: the numbers go
    into the table ``row`` and the parent run's ``summary``, the per-row outputs into
    ``out/test_outputs.npz`` (returned; None when no checkpoint was kept)."""
    from search.results import TEST_OUTPUTS

    kept = [c for c in checkpoints if c is not None]
    if not kept:
        print(f"[{method}] no checkpoint of the pick was kept: its test score is not computed",
              flush=True)
        return None
    outputs, iv, tasks = score_test(kept, log=lambda m: print(m, flush=True))
    outputs.save(out / TEST_OUTPUTS)
    numbers = {"test_score": iv.mean, "test_lo": iv.lo, "test_hi": iv.hi, **tasks}
    summary.update(numbers)
    row.update({k: numbers[k] for k in ("test_score", "test_lo", "test_hi")})
    print(f"[{method}] test score of the pick: {iv.mean:.4f} [{iv.lo:.4f}, {iv.hi:.4f}] "
          f"({iv.seeds} seed(s), {iv.rows} rows)", flush=True)
    return outputs


def gain_numbers(pick: Outputs, default: Outputs | None) -> dict[str, float]:
    """The defaults' test score and the pick's gain over them on the test split, paired by seed
    and row; ``default`` None: the defaults were the pick (no gain, the same runs)."""
    if default is None:
        return {"test_default_score": float(stats.seed_scores(pick).mean()), "test_gain_over_default": 0.0}
    d = stats.difference(pick, default)
    return {"test_default_score": float(stats.seed_scores(default).mean()), "test_gain_over_default": d.mean,
            "test_gain_lo": d.lo, "test_gain_hi": d.hi}


def test_confirmation(method: str, out: Path, conf: Confirmation, row: dict[str, Any],
                      summary: dict[str, float]) -> None:
    """``--confirm``: the pick's and the defaults' fresh-seed checkpoints on the test split, and
    the pick's gain over the defaults there (``gain_numbers``)."""
    reported, default = conf.reported, conf.default
    pick_out = test_pick(method, out, reported.checkpoints if reported is not None else [], row, summary)
    if pick_out is None or default is None:
        return
    if default is reported:
        numbers = gain_numbers(pick_out, None)
    elif len(default.checkpoints) == len(reported.checkpoints):  # seed i against seed i
        outputs, _, _ = score_test(default.checkpoints, log=lambda m: print(m, flush=True))
        outputs.save(out / TEST_DEFAULT_OUTPUTS)
        numbers = gain_numbers(pick_out, outputs)
        print(f"[{method}] test score of the defaults: {numbers['test_default_score']:.4f}; the pick "
              f"minus the defaults on test: {100 * numbers['test_gain_over_default']:+.2f} "
              f"[{100 * numbers['test_gain_lo']:+.2f}, {100 * numbers['test_gain_hi']:+.2f}] points",
              flush=True)
    else:
        print(f"[{method}] the defaults have no checkpoint for some fresh seed (failed or not kept): "
              "their test score is not computed", flush=True)
        return
    summary.update(numbers)
    row.update(numbers)
