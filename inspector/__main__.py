"""``python -m inspector``: the same command line as ``inspector``."""

import sys

from .cli import main

sys.exit(main())
