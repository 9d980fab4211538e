"""Hyperformer (Mahabadi et al., 2021): a hypernetwork makes each task's adapters from a task
embedding of size t."""

from __future__ import annotations

from spaces.adapter import ADAPTER_DIMS
from spaces.common import COMMON, Space, logint

HYPER_DIMS = [
    logint("task_emb_dim", 16, 128, role="scientific", note="Hyperformer t = 64; 16..128"),
    logint("hyper_hidden", 32, 256, note="task projector hidden size (Hyperformer 128)"),
]

SPACE = Space("hyperformer", COMMON + ADAPTER_DIMS + HYPER_DIMS)
