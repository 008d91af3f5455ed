#!/usr/bin/env bash
# One-command set-up: creates .venv (Python 3.11) with torch, the pinned requirements and
# this package in editable mode. Idempotent: a second run with nothing changed is a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
stamp=.venv/.hntumorseg-setup
want=$(cat requirements.txt requirements-test.txt pyproject.toml training/pyproject.toml | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "[setup] installing into .venv ($($PY --version); about 3 minutes the first time)" >&2
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# pip's own chatter (local-index notices, setuptools deprecation banners) goes to a log that
# is shown only when a step fails, so a working set-up prints two lines.
log=.venv/setup.log
: > "$log"
step() {
  if ! "$@" >>"$log" 2>&1; then
    echo "[setup] failed: $* (full log: $log)" >&2
    grep -v "is ignored: it is neither" "$log" | tail -n 30 >&2
    exit 1
  fi
}
step .venv/bin/python -m pip install -q --upgrade pip
step .venv/bin/python -m pip install -q -r requirements.txt -r requirements-test.txt
step .venv/bin/python -m pip install -q --no-deps -e . -e training
echo "$want" > "$stamp"
echo "[setup] done" >&2
