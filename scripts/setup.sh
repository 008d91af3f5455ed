#!/usr/bin/env bash
# One-command set-up: creates .venv (Python 3.11) with torch, the pinned requirements and
# this package in editable mode. Idempotent: a second run with nothing changed is a no-op.
#   bash scripts/setup.sh           install what is missing or changed
#   bash scripts/setup.sh --check   install nothing; exit 0 when .venv is up to date, else 1
#                                   (the fresh-clone README test reuses .venv only then)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
stamp=.venv/.hntumorseg-setup
want=$(cat requirements.txt requirements-test.txt pyproject.toml training/pyproject.toml | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
if [ "${1:-}" = "--check" ]; then
  echo "[setup] .venv is missing or older than requirements*.txt / pyproject.toml: run bash scripts/setup.sh" >&2
  exit 1
fi
# Measured (README "Two commands"): 2-10 minutes, mostly downloading torch's CUDA wheels; 8 GB.
echo "[setup] installing into .venv ($($PY --version); 2-10 minutes and 8 GB of disk the first time)" >&2
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
