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
echo "[setup] creating .venv with $($PY --version)" >&2
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -r requirements.txt -r requirements-test.txt 2> >(grep -v "is ignored: it is neither" >&2)
.venv/bin/python -m pip install -q --no-deps -e . -e training
echo "$want" > "$stamp"
echo "[setup] done" >&2
