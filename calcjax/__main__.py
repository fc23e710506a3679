"""``python -m calcjax``: the same as the ``calcjax`` command."""

import sys

from calcjax.cli import main

if __name__ == "__main__":
    sys.exit(main())
