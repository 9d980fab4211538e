"""Parallel adapter (He et al., 2022): a scaled bottleneck beside the feed-forward block."""

from __future__ import annotations

from spaces.adapter import ADAPTER_DIMS
from spaces.common import COMMON, LAYERS_ALL, Space, loguniform

SPACE = Space("parallel_adapter", COMMON + ADAPTER_DIMS + [LAYERS_ALL,
    loguniform("adapter_scale", 0.5, 8.0, note="He et al. use s = 4"),
])
