#!/usr/bin/env bash
# The fidelity suite: CPython regression modules, third-party test suites and popular imports,
# untraced vs `ferrotrace run --capture all` (stdlib and site-packages traced), on every backend.
# Usage: scripts/fidelity.sh [X.Y ...] [-- options of python -m tests.fidelity]
#   (default versions: 3.10 3.11 3.12 3.13; e.g. scripts/fidelity.sh 3.12 -- --only test_json)
# For each version: builds .venv-X.Y (scripts/setup.sh), then .venv-fidelity-X.Y with the pinned
# corpus of tests/fidelity/requirements.txt and that same ferrotrace build on its path.
# Writes fidelity-results.md; exits 1 if any case differs.
set -euo pipefail
cd "$(dirname "$0")/.."
versions=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do versions+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ ${#versions[@]} -eq 0 ] && versions=(3.10 3.11 3.12 3.13)
pythons=()
for v in "${versions[@]}"; do
  venv=$(scripts/setup.sh "$v" | tail -1)
  fv=".venv-fidelity-$v"
  if [ ! -x "$fv/bin/python" ]; then
    base=$("$venv/bin/python" -c 'import sys; print(sys._base_executable)')
    "$base" -m venv "$fv"
  fi
  "$fv/bin/python" -m pip install -q -r tests/fidelity/requirements.txt
  # The ferrotrace of .venv-X.Y (maturin develop: the source tree plus its built _native).
  site=$("$fv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  "$venv/bin/python" -c 'import ferrotrace, os; print(os.path.dirname(os.path.dirname(ferrotrace.__file__)))' \
    > "$site/ferrotrace-dev.pth"
  pythons+=(--python "$PWD/$fv/bin/python")
done
exec "${venv}/bin/python" -m tests.fidelity "${pythons[@]}" "$@"
