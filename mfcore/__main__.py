"""``python -m mfcore``: see mfcore.cli."""

import sys

from mfcore.cli import main

sys.exit(main())
