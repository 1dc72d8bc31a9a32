"""``python -m specconv``: the command line (see :mod:`specconv.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
