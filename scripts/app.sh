#!/usr/bin/env bash
# Set up (first run) and start MF Studio in the browser: http://localhost:8501
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
ensure_env requirements.txt
# Runs on a Dask cluster (README, "Cluster") need its client too.
if [ -n "${MFSTUDIO_DASK_SCHEDULER:-}" ]; then ensure_env requirements-cluster.txt; fi
cd "$ROOT"
if [ -f app.py ]; then
  # The address students type: this machine's own network address (read, never contacted).
  PORT=8501
  for arg in "$@"; do case "$arg" in --server.port=*) PORT="${arg#*=}";; esac; done
  ADDR="$(hostname -I 2>/dev/null | awk '{print $1}')"
  echo "MF Studio: open http://localhost:$PORT here${ADDR:+, or http://$ADDR:$PORT from the students' machines}"
  exec "$VENV/bin/streamlit" run app.py "$@"
fi
# Until the app lands: the engine's CLI demo on the built-in synthetic data.
exec "$VENV/bin/python" -m mfcore train --dataset synthetic "$@"
