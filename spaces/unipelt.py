"""UniPELT (Mao et al., 2022): the sizes of its three gated parts are scientific."""

from __future__ import annotations

from spaces.common import COMMON, Space, fixed, logint, loguniform, uniform

SPACE = Space("unipelt", COMMON + [
    logint("adapter_size", 8, 128, role="scientific", note="Mao et al. 48 on BERT-base"),
    logint("prefix_length", 2, 32, role="scientific", note="Mao et al. 10"),
    logint("r", 2, 32, role="scientific", note="Mao et al. 8"),
    loguniform("alpha", 4.0, 64.0, note="LoRA scale alpha/r; Mao et al. 16"),
    uniform("dropout", 0.0, 0.2, note="adapter bottleneck and LoRA input"),
    loguniform("lr", 1e-5, 3e-3, note="Mao et al. 5e-4 for every submodule"),
    fixed("layers", "all", note="every layer, as UniPELT; --method auto searches it"),
])
