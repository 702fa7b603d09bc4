"""``python -m jobpulse`` is the ``jobpulse`` command."""

import sys

from ._cli import main

sys.exit(main())
