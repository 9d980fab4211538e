"""Simulated confirmation outputs whose true score is known: the crossed seeds x rows design.

A model of config ``c`` trained with seed ``s`` gets row ``r`` of a binary task right when
``m_c + z_r + u_cr + a_s + v_cs + e_csr > 0``, every term but ``m_c`` normal with mean 0:

- ``z_r``: how easy the row is, for every config (rows drawn from a population);
- ``u_cr``: how easy it is for config ``c`` in particular;
- ``a_s``: what seed ``s`` does to every config trained with it (shared seed ids);
- ``v_cs``: what it does to config ``c`` only;
- ``e_csr``: the seed x row interaction.

Over the populations of seeds and rows config ``c`` scores ``Phi(m_c / sd)``, ``sd`` the square
root of the sum of the variances: the truth an interval must cover (``m_c`` is set from it).
Arrays are (draws, seeds, rows), so a thousand draws cost a few numpy calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from search.stats import Outputs


@dataclass(frozen=True)
class Noise:
    row: float = 1.0
    config_row: float = 0.3
    seed: float = 0.1
    config_seed: float = 0.1
    cross: float = 0.5

    @property
    def sd(self) -> float:
        return float(np.sqrt(self.row**2 + self.config_row**2 + self.seed**2 + self.config_seed**2
                             + self.cross**2))


def rows_of(rng: np.random.Generator, configs: int, draws: int, rows: int, noise: Noise) -> np.ndarray:
    """The rows' part ``z_r + u_cr`` of each config, (configs, draws, 1, rows): one evaluation set
    per draw, to score several sets of seeds on."""
    z = rng.normal(0, noise.row, (1, draws, 1, rows))
    return z + rng.normal(0, noise.config_row, (configs, draws, 1, rows))


def correct(rng: np.random.Generator, truths: list[float], draws: int, seeds: int, rows: int,
            noise: Noise = Noise(), on: np.ndarray | None = None) -> np.ndarray:
    """Right/wrong of each config (true scores ``truths``), (configs, draws, seeds, rows): the
    configs of one draw share its rows and its seed ids. ``on``: the rows (``rows_of``) to score
    these new seeds on, instead of new rows."""
    part = rows_of(rng, len(truths), draws, rows, noise) if on is None else on
    a = rng.normal(0, noise.seed, (1, draws, seeds, 1))
    v = rng.normal(0, noise.config_seed, (len(truths), draws, seeds, 1))
    e = rng.normal(0, noise.cross, (len(truths), draws, seeds, part.shape[-1]))
    m = np.array([noise.sd * norm.ppf(t) for t in truths]).reshape(-1, 1, 1, 1)
    return m + part + a + v + e > 0


def binary(right: np.ndarray) -> Outputs:
    """One draw's (seeds, rows) right/wrong as one binary task whose labels are all 1."""
    return Outputs({"b": "binary"}, {"b": np.ones(right.shape[-1], dtype=np.float32)},
                   {"b": right.astype(np.float32)})
