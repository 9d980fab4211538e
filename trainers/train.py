"""``python -m trainers.train``: train one encoder on several tasks with a PEFT method.

A thin entry point: the flags live in ``trainers/cli.py``, the loop in ``trainers/loop.py``
(also installed as the ``peft-train`` command).
"""

from __future__ import annotations

import sys

from trainers.cli import main

if __name__ == "__main__":
    sys.exit(main())
