"""P-tuning (Liu et al., 2021): the prompt length and the prompt encoder's width are scientific."""

from __future__ import annotations

from spaces.common import COMMON, Space, logint, loguniform

SPACE = Space("ptuning", COMMON + [
    logint("num_virtual_tokens", 4, 64, role="scientific", note="Liu et al. use a few to tens of tokens"),
    logint("encoder_hidden_size", 32, 512, role="scientific", note="peft defaults to the model width"),
    loguniform("lr", 1e-4, 3e-2, note="prompt methods need larger rates than weight updates"),
])
