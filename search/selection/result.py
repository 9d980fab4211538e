"""What a race found (``search.selection.racing.Race.result``) and why each candidate left it;
JSON-able."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Drop:
    """Why and when a candidate left the race."""

    name: str
    round: int
    reason: str
    against: str | None = None
    gap: float = math.nan
    """``leader - candidate`` in score units (x100 for points)."""
    lo: float = math.nan
    hi: float = math.nan
    level: float = math.nan
    separable: bool = True
    """False for a halving cut (behind by mean) and a failed run: the race claims nothing."""


@dataclass
class RaceResult:
    winner: str | None
    """The one candidate left (None for a tie or when every one failed)."""
    leader: str | None
    """The best mean among the survivors (the winner, or the first of a tie)."""
    tied: list[str]
    verdict: str
    stopped: str
    rounds: int
    seeds: list[int]
    scores: dict[str, list[float]]
    means: dict[str, float]
    drops: list[Drop]
    runs: int
    spent_s: float
    to_decide: dict[str, Any] | None
    methods: dict[str, str]
    defaults: list[str]
    note: str

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["means"] = {k: (v if math.isfinite(v) else None) for k, v in self.means.items()}
        out["scores"] = {k: [x if math.isfinite(x) else None for x in v] for k, v in self.scores.items()}
        return out
