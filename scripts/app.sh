#!/usr/bin/env bash
# Set up (first run) and start MF Studio in the browser: http://localhost:8501
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
ensure_env requirements.txt
# Runs on a Dask cluster (README, "Cluster") need its client too.
if [ -n "${MFSTUDIO_DASK_SCHEDULER:-}" ]; then ensure_env requirements-cluster.txt; fi
cd "$ROOT"
if [ -f app.py ]; then
  exec "$VENV/bin/streamlit" run app.py "$@"
fi
# Until the app lands: the engine's CLI demo on the built-in synthetic data.
exec "$VENV/bin/python" -m mfcore train --dataset synthetic "$@"
