#!/usr/bin/env bash
# Create bench/.venv-torch (PyTorch CPU + Torch-Pruning) for the baseline side of the
# structured benchmark (bench/compare_torch_pruning.py).
# Idempotent: does nothing if the venv already imports torch and torch_pruning.
# Usage: bench/torchprune/setup_venv.sh [python3 executable]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$(cd "$here/.." && pwd)/.venv-torch"
python="${1:-${PYTHON:-python3}}"

check() {
  "$venv/bin/python" - <<'PY' >/dev/null 2>&1
import torch
import torch_pruning as tp
assert tp.pruner.MetaPruner is not None
PY
}

if [[ -x "$venv/bin/python" ]] && check; then
  echo "torch venv ready: $venv"
  exit 0
fi

echo "creating torch venv at $venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
# the CPU wheel first, alone: torch-pruning's own "torch" requirement is then already met
"$venv/bin/python" -m pip install --quiet "torch==2.13.0" "numpy>=1.26,<3"
"$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"

if check; then
  echo "torch venv ready: $venv"
else
  echo "torch venv at $venv does not import torch_pruning" >&2
  exit 1
fi
