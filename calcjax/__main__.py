"""``python -m calcjax``: the same as the ``calcjax`` command."""

import sys

from calcjax.cli import main

sys.exit(main())
