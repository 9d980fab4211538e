"""The learning-rate schedule (``TrainConfig.lr_schedule``): the multiplier of ``lr`` at every
step for linear, cosine and constant after a shared linear warmup, and what a real run ends at."""

from __future__ import annotations

import math

import pytest
import torch
from tiny import tiny_backbone, tiny_model, tiny_tokenizer_obj

from trainers.checkpoint import STATE
from trainers.config import LR_SCHEDULES, TrainConfig
from trainers.demo import tokenizer_vocab
from trainers.loop import make_optimizer, train

STEPS, WARMUP_RATIO = 100, 0.1
WARMUP = 10  # int(WARMUP_RATIO * STEPS)
MIDDLE = WARMUP + (STEPS - WARMUP) // 2  # halfway through the decay: step 55


def multipliers(schedule: str, steps: int = STEPS, warmup_ratio: float = WARMUP_RATIO) -> list[float]:
    """lr / cfg.lr at each step 0..steps, read from the optimizer as the loop drives it
    (index s: the rate optimizer step s uses; index ``steps``: the rate after the last step)."""
    cfg = TrainConfig.from_flat({"method": "lora", "tasks": "a,b", "lr": 1e-3, "max_steps": steps,
                                 "warmup_ratio": warmup_ratio, "lr_schedule": schedule})
    optimizer, scheduler = make_optimizer(tiny_model("lora"), cfg)
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"] / cfg.lr)
        optimizer.step()  # no gradients: a no-op that keeps the scheduler's order check quiet
        scheduler.step()
    out.append(optimizer.param_groups[0]["lr"] / cfg.lr)
    return out


@pytest.mark.parametrize("schedule", LR_SCHEDULES)
def test_every_schedule_warms_up_linearly_to_the_full_rate(schedule):
    m = multipliers(schedule)
    assert m[:WARMUP] == pytest.approx([(s + 1) / (WARMUP + 1) for s in range(WARMUP)])
    assert all(a < b for a, b in zip(m[:WARMUP], m[1:WARMUP + 1], strict=True))
    assert m[WARMUP] == pytest.approx(1.0)
    # every group follows the schedule, not only the first
    cfg = TrainConfig.from_flat({"method": "lora", "tasks": "a,b", "lr_schedule": schedule})
    optimizer, _ = make_optimizer(tiny_model("lora"), cfg)
    assert len({g["lr"] for g in optimizer.param_groups}) == 1


def test_linear_decays_to_zero_at_max_steps_as_before():
    m = multipliers("linear")
    assert m[MIDDLE] == pytest.approx(0.5)
    assert m[STEPS] == 0.0 and min(m) == 0.0
    assert all(a > b for a, b in zip(m[WARMUP:STEPS], m[WARMUP + 1:], strict=True))
    # the formula linear ran before the schedule was a choice, bit for bit: old runs reproduce
    cfg = TrainConfig.from_flat({"method": "lora", "tasks": "a,b", "max_steps": STEPS,
                                 "warmup_ratio": WARMUP_RATIO})
    assert cfg.lr_schedule == "linear"  # the default
    _, scheduler = make_optimizer(tiny_model("lora"), cfg)
    old = [(s + 1) / (WARMUP + 1) if s < WARMUP else max(0.0, (STEPS - s) / (STEPS - WARMUP))
           for s in range(STEPS + 1)]
    assert [scheduler.lr_lambdas[0](s) for s in range(STEPS + 1)] == old


def test_cosine_is_half_at_the_middle_of_the_decay_and_zero_at_max_steps():
    m, linear = multipliers("cosine"), multipliers("linear")
    assert m[MIDDLE] == pytest.approx(0.5)
    assert m[STEPS] == pytest.approx(0.0, abs=1e-12)
    step = WARMUP + 20  # a quarter of the way: cos(pi/4 * ...) sits above the straight line
    assert m[step] == pytest.approx(0.5 * (1 + math.cos(math.pi * 20 / (STEPS - WARMUP))))
    assert m[step] > linear[step] and m[STEPS - 20] < linear[STEPS - 20]
    assert all(a >= b for a, b in zip(m[WARMUP:], m[WARMUP + 1:], strict=False))


def test_constant_stays_at_the_full_rate_after_warmup():
    m = multipliers("constant")
    assert m[WARMUP:] == [1.0] * (STEPS + 1 - WARMUP)


def test_without_warmup_every_schedule_starts_at_the_full_rate():
    for schedule in LR_SCHEDULES:
        assert multipliers(schedule, steps=10, warmup_ratio=0.0)[0] == 1.0


@pytest.mark.parametrize("schedule, end", [("constant", 1.0), ("linear", 0.0), ("cosine", 0.0)])
def test_a_run_ends_at_its_schedules_last_rate(tmp_path, schedule, end):
    """A tiny run's optimizer state after its last step, as its checkpoint saves it."""
    cfg = TrainConfig(method="lora", lr=2e-3, max_steps=6, eval_every=6, batch_size=8,
                      max_train_samples=64, max_eval_samples=32, warmup_ratio=0.34,
                      lr_schedule=schedule)

    def report(metrics: dict, save) -> None:
        save(tmp_path / f"step{metrics['step']}")

    train(cfg, report, backbone=tiny_backbone(0, vocab_size=len(tokenizer_vocab())),
          tokenizer=tiny_tokenizer_obj(), log=lambda s: None)
    state = torch.load(tmp_path / "step6" / STATE, weights_only=False)
    lrs = [g["lr"] for g in state["optimizer"]["param_groups"]]
    assert lrs == pytest.approx([end * cfg.lr] * len(lrs), abs=1e-15)
    if schedule == "constant":
        assert set(lrs) == {cfg.lr}
