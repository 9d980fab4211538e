"""LoRA plus bottleneck adapters: both methods' dims, one trial config."""

from __future__ import annotations

from spaces.adapter import ADAPTER_DIMS
from spaces.common import COMMON, LAYERS_ALL, Space
from spaces.lora import LORA_DIMS

SPACE = Space("lora_adapter", COMMON + LORA_DIMS + ADAPTER_DIMS + [LAYERS_ALL])
