"""``python -m mfcore``: see mfcore.cli."""

import gc
import sys

# A cold start creates ~1M objects while importing torch and pandas; the cyclic collector
# would walk them again and again for nothing (~0.2 s of a 2 s run, benchmarks/NOTES.md
# section 12). mfcore.cli turns it back on once the heavy imports are done.
gc.disable()

from mfcore.cli import main  # noqa: E402

sys.exit(main())
