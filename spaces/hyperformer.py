"""Hyperformer (Mahabadi et al., 2021): a hypernetwork makes each task's adapters from a task
embedding of size t.

Size budget: the generator's output heads map t to every adapter weight and layer-norm offset,
so it holds about ``(t + 1)·(2·a·d + a + 3·d)`` parameters (a the bottleneck, d the model
width), whatever the number of tasks or layers. At t = 128, a = 256 that is 113% of the packaged
MiniLM (d = 384, 22.7M), so t stops at 64, the paper's value: the largest corner then trains
57% of MiniLM and 24% of BERT-base (``python -m benchmarks.param_accounting``).
"""

from __future__ import annotations

from spaces.adapter import ADAPTER_DIMS
from spaces.common import COMMON, Space, logint

HYPER_DIMS = [
    logint("task_emb_dim", 16, 64, role="scientific",
           note="Hyperformer t = 64 (projected task embedding); up to 64 only: the generator grows "
                "as (t+1)*2*a*d and t = 128 with a = 256 trains more than the whole MiniLM"),
    logint("hyper_hidden", 32, 256,
           note="task projector hidden size (Hyperformer 128); costs 4*t*h, at most 66K: no cap needed"),
]

SPACE = Space("hyperformer", COMMON + ADAPTER_DIMS + HYPER_DIMS)
