"""PHA (Zhao et al., 2023): hypernetwork adapters with instance-aware prompts and a contrastive
term weighted by pha_lambda at temperature pha_temperature.

Size budget: as Hyperformer's, the generator's output heads hold about ``(t + 1)·(2·a·d + a + d)``
parameters (one adapter per layer, no layer-norm offsets), so t = 128 with a = 256 trained 113% of
the packaged MiniLM; t stops at 64, the value of PHA's released code, where the largest corner
trains 57% of MiniLM and 24% of BERT-base (``python -m benchmarks.param_accounting``).
"""

from __future__ import annotations

from spaces.adapter import ADAPTER_DIMS
from spaces.common import COMMON, Space, fixed, logint, loguniform

SPACE = Space("pha", COMMON + ADAPTER_DIMS + [
    logint("task_emb_dim", 16, 64, role="scientific",
           note="PHA's code: 64-d prototypes and layer embeddings; up to 64 only: the generator grows "
                "as (t+1)*2*a*d and t = 128 with a = 256 trains more than the whole MiniLM"),
    logint("hyper_hidden", 32, 256,
           note="retriever and hypernetwork hidden size (PHA 128); costs (d_emb+4t)*h, under 0.3M: "
                "no cap needed"),
    loguniform("pha_lambda", 0.01, 1.0, note="weight of the contrastive losses"),
    loguniform("pha_temperature", 0.05, 1.0, note="contrastive softmax temperature"),
    fixed("retriever_input", "hidden",
          note="the paper's retriever input, the pretrained encoder's hidden states; the word-"
               "embedding variant trained worse in BENCHMARKS.md §12"),
])
