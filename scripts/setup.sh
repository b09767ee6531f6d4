#!/usr/bin/env bash
# Creates .venv-X.Y for a CPython version and installs ferrotrace (release build) into it.
# Usage: scripts/setup.sh [X.Y]   (default: the newest CPython found by pyenv, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
ver="${1:-}"
find_python() {
  local v="$1"
  if [ -n "$v" ] && command -v pyenv >/dev/null 2>&1; then
    local full; full=$(pyenv versions --bare 2>/dev/null | grep -E "^${v//./\\.}\.[0-9]+$" | sort -V | tail -1 || true)
    [ -n "$full" ] && { echo "$(pyenv root)/versions/$full/bin/python"; return; }
  fi
  if [ -n "$v" ] && command -v "python$v" >/dev/null 2>&1; then command -v "python$v"; return; fi
  [ -z "$v" ] && { command -v python3; return; }
  return 1
}
py=$(find_python "$ver") || { echo "CPython $ver not found" >&2; exit 1; }
ver=$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
venv=".venv-$ver"
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
"$venv/bin/python" -m pip install -q "maturin>=1.5,<2" ruff -r tests/requirements.txt
(
  # shellcheck disable=SC1091
  source "$venv/bin/activate"
  CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/py$ver}" maturin develop --release -q
)
echo "$venv"
