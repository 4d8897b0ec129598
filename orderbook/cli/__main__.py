"""``python -m orderbook.cli``: the same as the ``orderbook`` command."""

import sys

from . import main

sys.exit(main())
