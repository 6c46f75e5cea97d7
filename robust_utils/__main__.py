"""``python -m robust_utils``: the command line (``robust_utils.app.cli``)."""

import sys

from .app.cli import main

if __name__ == "__main__":
    sys.exit(main())
