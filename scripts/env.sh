# Sourced by app.sh and test.sh: create .venv once and (re)install only when a
# requirements file changed, so a second run takes a second.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"

ensure_env() {
  local reqs="$1"
  if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV"
    "$PY" -m venv "$VENV"
  fi
  local stamp="$VENV/.installed-$(cat "$ROOT"/requirements*.txt | sha256sum | cut -c1-16)-$(basename "$reqs")"
  if [ ! -f "$stamp" ]; then
    echo "installing $(basename "$reqs") into $VENV (first run only: about a minute; one line per package)"
    # --progress-bar off: pip's own line per package, readable in a terminal and in CI logs.
    set +e
    "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off -r "$ROOT/$reqs" 2>&1 \
      | grep --line-buffered -vE "^(Requirement already satisfied|  )"
    local status="${PIPESTATUS[0]}"
    set -e
    if [ "$status" != 0 ]; then echo "pip install -r $reqs failed (exit $status)" >&2; exit "$status"; fi
    touch "$stamp"
  fi
  # The default preset's kernels compiled ahead of time for this CPU (a few seconds, once;
  # a no-op while they match the sources): a fresh process then trains without starting numba.
  (cd "$ROOT" && "$VENV/bin/python" -m mfcore build-kernels --if-stale)
}
