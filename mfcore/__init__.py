"""MF Studio's engine: explicit-rating matrix factorization in PyTorch (never imports streamlit)."""

import os as _os

# Set before torch starts its OpenMP pool: idle worker threads sleep instead of spinning,
# which keeps a busy 2-core machine (web server + training) responsive (see ../shared/PERF.md).
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
