"""Bottleneck adapters (Houlsby et al., 2019): the bottleneck size a is the scientific dim."""

from __future__ import annotations

from spaces.common import COMMON, LAYERS_ALL, Space, logint, uniform

ADAPTER_DIMS = [
    logint("adapter_size", 8, 256, role="scientific", note="Houlsby 8..256, Pfeiffer r=16 (48 on 768)"),
    uniform("adapter_dropout", 0.0, 0.2, note="0..0.1 in the adapter papers"),
]

SPACE = Space("adapter", COMMON + ADAPTER_DIMS + [LAYERS_ALL])
