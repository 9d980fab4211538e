"""DoRA (Liu et al., 2024): LoRA's dims; the learned magnitude adds no hyperparameter."""

from __future__ import annotations

from spaces.common import COMMON, LAYERS_ALL, Space
from spaces.lora import LORA_DIMS

SPACE = Space("dora", COMMON + LORA_DIMS + [LAYERS_ALL])
