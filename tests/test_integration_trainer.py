"""The packaged MiniLM on the real CS224N files (marked integration; CI runs it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainers.config import TrainConfig
from trainers.loop import train

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cs224n"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not DATA.is_dir(), reason=f"CS224N data not at {DATA}"),
]


def test_minilm_lora_on_cs224n_beats_chance():
    logs: list[str] = []
    cfg = TrainConfig(method="lora", data_dir=str(DATA), max_steps=120, eval_every=60, lr=2e-3,
                      max_train_samples=3000, max_eval_samples=400, max_length=64)
    res = train(cfg, log=logs.append)
    # Real data, not the demo suite; the two broken quora rows were counted, not turned into NaN.
    assert not res["synthetic_data"]
    assert not any("SYNTHETIC" in m for m in logs)
    assert res["params"]["total"] == 22_713_216  # all-MiniLM-L6-v2
    assert 0.1 < res["params"]["stored_pct"] < 1.0
    # Chance: SST-5 majority ~0.27, Quora majority ~0.63, STS r = 0 -> 0.5; overall ~0.47.
    # Measured with this config: 0.639 (sst 0.40, quora 0.71, sts r 0.63).
    assert res["metrics"]["sts"] > 0.4, res["metrics"]
    assert res["score"] > 0.56, res["metrics"]
