#!/usr/bin/env bash
# Set up (first run) and run the whole test suite, the real-browser test included.
# Real MovieLens files are read from ../shared/data (or $MFSTUDIO_SHARED_DATA); tests
# that need them fail, not skip, when they are missing.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
ensure_env requirements-dev.txt
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing Debian's chromium for the browser test"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
  else
    echo "warning: /usr/bin/chromium is missing and we are not root: the browser test will fail" >&2
  fi
fi
cd "$ROOT"
exec "$VENV/bin/python" -m pytest "$@"
