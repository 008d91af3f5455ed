#!/usr/bin/env bash
# README's test command: set up .venv if needed, then run the test suite.
#   bash scripts/test.sh          the default run (skips tests marked slow; < 15 min on 2 cores)
#   bash scripts/test.sh --all    everything, slow tests included (what CI runs)
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k metrics`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
marker=(-m "not slow")
if [ "${1:-}" = "--all" ]; then marker=(); shift; fi
mkdir -p test-artifacts
exec .venv/bin/python -m pytest "${marker[@]}" -p no:cacheprovider -q --durations=15 "$@"
