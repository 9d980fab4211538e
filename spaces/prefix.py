"""Prefix tuning (Li & Liang, 2021): trained key/value prefixes in every layer."""

from __future__ import annotations

from spaces.common import COMMON, Space, logint, loguniform

SPACE = Space("prefix", COMMON + [
    logint("num_virtual_tokens", 4, 200, role="scientific",
           note="Li & Liang 10 (table-to-text) .. 200 (summarization)"),
    loguniform("lr", 1e-4, 1e-2, note="prefixes train at higher rates (Li & Liang 5e-5..8e-5 "
               "with reparametrisation; without it, 1e-3-ish)"),
])
