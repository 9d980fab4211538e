"""Search spaces, one file per method, chosen by name from ``trainers.methods.METHODS``.

Each ``spaces/<method>.py`` defines ``SPACE``: a ``Space`` of plain ``Dim`` values whose names
are the trainer's config keys (``TrainConfig`` fields plus the method's ``Config`` fields).
``get_space`` imports the file and checks it against the trainer's config, so a typo'd key or
an impossible range fails here, before any trial runs::

    >>> from spaces import get_space
    >>> get_space("lora")["r"].role
    'scientific'
"""

from __future__ import annotations

import importlib
from typing import Any

from spaces.common import COMMON, Dim, Space
from trainers.methods import METHODS


def space_file(method: str) -> str:
    return f"spaces/{method}.py"


def get_space(method: str) -> Space:
    """The checked search space of ``method``; unknown names fail with the choices."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    source = space_file(method)
    try:
        module = importlib.import_module(f"spaces.{method}")
    except (ValueError, TypeError) as e:  # a Dim or Space rejected its own arguments
        raise ValueError(f"{source}: {e}") from e
    space = getattr(module, "SPACE", None)
    if not isinstance(space, Space):
        raise ValueError(f"{source}: defines no SPACE = Space(...)")
    check_space(space, method, source)
    return space


def check_space(space: Space, method: str, source: str | None = None) -> None:
    """Raise ValueError (naming ``source`` and the key) unless every dim is a config key of
    ``method`` and every extreme value of every dim is accepted by the trainer's config."""
    from trainers.config import TrainConfig, common_fields, method_fields

    source = source or space_file(method)
    if space.method != method:
        raise ValueError(f"{source}: SPACE is for method {space.method!r}, expected {method!r}")
    own = method_fields(method)
    valid = set(common_fields()) | set(own)
    for name in space.names():
        if name == "method" or name not in valid:
            raise ValueError(
                f"{source}: unknown key {name!r} for method {method!r}; method keys are "
                f"{', '.join(own) or '(none)'}, plus the common TrainConfig fields"
            )
    base: dict[str, Any] = {d.name: d.corners()[0] for d in space.dims}
    for d in space.dims:
        for value in d.corners():
            try:
                TrainConfig.from_flat({**base, d.name: value, "method": method})
            except (ValueError, TypeError) as e:
                raise ValueError(f"{source}: {d.name}={value!r} is rejected by the trainer: {e}") from e


__all__ = ["COMMON", "Dim", "Space", "check_space", "get_space", "space_file"]
