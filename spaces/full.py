"""Full fine-tuning: every weight trains, so the learning rate range sits lower."""

from __future__ import annotations

from spaces.common import COMMON, Space, loguniform

SPACE = Space("full", COMMON + [
    loguniform("lr", 5e-6, 1e-4, note="BERT fine-tuning 2e-5..5e-5 (Devlin et al.), widened"),
])
