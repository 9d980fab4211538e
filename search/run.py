"""``python search/run.py``: the search's command line from a checkout (same as ``peft-search``).

The flags and their help live in ``search/settings.py`` and ``search/cli.py``.
"""

from __future__ import annotations

import sys

from search.cli import main

if __name__ == "__main__":
    sys.exit(main())
