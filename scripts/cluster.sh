#!/usr/bin/env bash
# Start a local Dask cluster for MF Studio on this machine: one scheduler and N workers
# (default 2), every one bound to 127.0.0.1, each worker its own process with one thread.
# Ctrl-C stops them all.
#
#   bash scripts/cluster.sh [N] [--port PORT] [--gpus K]
#
#   N           workers to start (default 2)
#   --port      the scheduler's port (default $MFSTUDIO_DASK_PORT or 8786)
#   --gpus K    the first K workers say they have a GPU (--resources GPU=1), worker i
#               seeing only GPU i (CUDA_VISIBLE_DEVICES); only on a machine with K GPUs
#
# Then, in another terminal, start the app on the cluster with the line it prints:
#   MFSTUDIO_DASK_SCHEDULER=tcp://127.0.0.1:PORT bash scripts/app.sh
#
# Workers load datasets by spec from their own disk, never downloading: for MovieLens set
# MFSTUDIO_DATA_DIR (a folder holding ml-100k/ ...) or MFSTUDIO_CACHE before starting this
# script; the synthetic sets need nothing.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

N=2
PORT="${MFSTUDIO_DASK_PORT:-8786}"
GPUS=0
while [ $# -gt 0 ]; do
  case "$1" in
    --port) PORT="${2:?--port needs a number}"; shift 2 ;;
    --gpus) GPUS="${2:?--gpus needs a number}"; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *[!0-9]*|'') echo "cluster.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    *) N="$1"; shift ;;
  esac
done
case "$PORT$GPUS" in *[!0-9]*) echo "cluster.sh: --port and --gpus take whole numbers" >&2; exit 2 ;; esac
if [ "$N" -lt 1 ]; then echo "cluster.sh: N must be at least 1" >&2; exit 2; fi

ensure_env requirements.txt
ensure_env requirements-cluster.txt
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # workers import mfcore from this checkout
# A worker that dies mid-run fails that run (the server names it) instead of the task
# being started again on another worker.
export DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0
ADDRESS="tcp://127.0.0.1:$PORT"

pids=()
stop_all() {
  trap - INT TERM EXIT
  if [ ${#pids[@]} -gt 0 ]; then
    echo "stopping the cluster (${#pids[@]} processes)"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
}
trap stop_all EXIT
trap 'exit 130' INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

if port_open; then
  echo "cluster.sh: 127.0.0.1:$PORT is already in use; choose another with --port" >&2
  exit 1
fi

# --no-dashboard alone still serves /health on 0.0.0.0: the HTTP address is pinned to loopback too.
"$VENV/bin/dask" scheduler --host 127.0.0.1 --port "$PORT" --no-dashboard --dashboard-address 127.0.0.1:0 &
pids+=($!)
for _ in $(seq 100); do
  port_open && break
  kill -0 "${pids[0]}" 2>/dev/null || { echo "cluster.sh: the scheduler did not start" >&2; exit 1; }
  sleep 0.1
done
port_open || { echo "cluster.sh: the scheduler did not open 127.0.0.1:$PORT within 10 s" >&2; exit 1; }

# --preload: each worker imports torch and compiles mfcore's kernels as it starts, not in its first run.
for i in $(seq 0 $((N - 1))); do
  args=("$ADDRESS" --host 127.0.0.1 --nthreads 1 --nworkers 1 --no-dashboard
        --dashboard-address 127.0.0.1:0 --name "local-$i" --preload mfcore.runs.dask_executor)
  if [ "$i" -lt "$GPUS" ]; then
    CUDA_VISIBLE_DEVICES="$i" "$VENV/bin/dask" worker "${args[@]}" --resources "GPU=1" &
  else
    "$VENV/bin/dask" worker "${args[@]}" &
  fi
  pids+=($!)
done

echo
echo "Dask scheduler and $N worker(s) on 127.0.0.1 ($GPUS with a GPU). Start the app on them with:"
echo
echo "  MFSTUDIO_DASK_SCHEDULER=$ADDRESS bash scripts/app.sh"
echo
echo "Ctrl-C stops the cluster."
wait -n "${pids[@]}" || true
echo "cluster.sh: a cluster process ended; stopping the others" >&2
exit 1
