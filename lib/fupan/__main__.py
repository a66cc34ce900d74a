"""``python -m fupan``: the ``fupan`` command (:func:`fupan.run.cli.main`)."""

import sys

from fupan.run.cli import main

if __name__ == "__main__":
    sys.exit(main())
