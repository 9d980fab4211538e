"""Prompt tuning (Lester et al., 2021): trained soft tokens prepended to the input.

The prompt shares the encoder's position budget with the text: max_length + num_virtual_tokens
must stay within the model's max_position_embeddings (512 for MiniLM).
"""

from __future__ import annotations

from spaces.common import COMMON, Space, logint, loguniform

SPACE = Space("prompt", COMMON + [
    logint("num_virtual_tokens", 4, 100, role="scientific", note="Lester et al. 1..150"),
    loguniform("lr", 1e-4, 0.5, note="soft prompts need large rates (Lester et al. 0.3)"),
])
