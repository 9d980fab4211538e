"""LoRA (Hu et al., 2021): rank and scale of one low-rank update shared by all tasks."""

from __future__ import annotations

from spaces.common import COMMON, LAYERS_ALL, Space, fixed, logint, loguniform, uniform

LORA_DIMS = [
    logint("r", 1, 128, role="scientific",
           note="Hu et al. 1..64 (r = 1 already does well), QLoRA/DoRA up to 128"),
    loguniform("alpha", 8.0, 256.0, note="scale alpha/r; papers use alpha = r .. 2r, 8..256"),
    uniform("lora_dropout", 0.0, 0.2, note="peft default 0.05; papers 0..0.1"),
    fixed("target_modules", "query,key,value", note="BERT attention projections; --set for others"),
]

SPACE = Space("lora", COMMON + LORA_DIMS + [LAYERS_ALL])
