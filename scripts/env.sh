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
    echo "installing $(basename "$reqs") into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/$reqs"
    touch "$stamp"
  fi
}
