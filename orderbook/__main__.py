"""``python -m orderbook``: the same as the ``orderbook`` command."""

import sys

from .cli import main

sys.exit(main())
