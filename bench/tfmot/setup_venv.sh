#!/usr/bin/env bash
# Create bench/.venv-tfmot (Keras 2 + tfmot) for the baseline side of the benchmark.
# Idempotent: does nothing if the venv already imports tfmot under legacy Keras.
# Usage: bench/tfmot/setup_venv.sh [python3 executable]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$(cd "$here/.." && pwd)/.venv-tfmot"
python="${1:-${PYTHON:-python3}}"

check() {
  TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=3 "$venv/bin/python" - <<'PY' >/dev/null 2>&1
import tensorflow_model_optimization as tfmot
import tf_keras
assert tfmot.sparsity.keras.prune_low_magnitude is not None
PY
}

if [[ -x "$venv/bin/python" ]] && check; then
  echo "tfmot venv ready: $venv"
  exit 0
fi

echo "creating tfmot venv at $venv (downloads TensorFlow; takes a few minutes)"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"

if check; then
  echo "tfmot venv ready: $venv"
else
  echo "tfmot venv at $venv does not import tensorflow_model_optimization" >&2
  exit 1
fi
