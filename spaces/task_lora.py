"""Task LoRA: one LoRA update per task; whether it is a DoRA update is a searched choice."""

from __future__ import annotations

from spaces.common import COMMON, LAYERS_ALL, Space, choice
from spaces.lora import LORA_DIMS

SPACE = Space("task_lora", COMMON + LORA_DIMS + [LAYERS_ALL,
    choice("use_dora", (False, True), role="scientific", note="plain LoRA or DoRA per task"),
])
