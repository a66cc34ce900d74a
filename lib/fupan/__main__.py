"""``python -m fupan``: the ``fupan`` command (:func:`fupan.cli.main`)."""

import sys

from fupan.cli import main

if __name__ == "__main__":
    sys.exit(main())
