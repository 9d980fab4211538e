"""Frozen backbone, heads only: small heads on fixed features take a larger learning rate."""

from __future__ import annotations

from spaces.common import COMMON, Space, loguniform

SPACE = Space("frozen", COMMON + [
    loguniform("lr", 1e-4, 1e-2, note="linear probes train at 1e-3-ish"),
])
