#!/usr/bin/env bash
# The main job: build ferrotrace, trace examples/app.py, summarise the trace.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(scripts/setup.sh "${1:-}" | tail -1)
"$venv/bin/ferrotrace" run -o ferrotrace.jsonl examples/app.py
"$venv/bin/ferrotrace" report ferrotrace.jsonl --top 10
