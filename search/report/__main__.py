"""``python -m search.report``: the same as the ``peft-report`` console script."""

import sys

from search.report.cli import main

sys.exit(main())
