"""PHA (Zhao et al., 2023): hypernetwork adapters with instance-aware prompts and a contrastive
term weighted by pha_lambda at temperature pha_temperature."""

from __future__ import annotations

from spaces.adapter import ADAPTER_DIMS
from spaces.common import COMMON, Space, loguniform
from spaces.hyperformer import HYPER_DIMS

SPACE = Space("pha", COMMON + ADAPTER_DIMS + HYPER_DIMS + [
    loguniform("pha_lambda", 0.01, 1.0, note="weight of the contrastive losses"),
    loguniform("pha_temperature", 0.05, 1.0, note="contrastive softmax temperature"),
])
