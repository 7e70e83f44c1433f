#!/usr/bin/env bash
# Create .venv and install the project without ever pulling a multi-GB CUDA torch on a CPU machine.
#   1. a local CPU wheel of torch (pip find-links, e.g. $PIP_FIND_LINKS) if there is one;
#   2. else, with no NVIDIA GPU: the CPU build from PyTorch's CPU index;
#   3. else (GPU present): the default CUDA build from PyPI.
# Override with TORCH_SPEC / TORCH_INDEX_URL (see README, "GPU").
set -euo pipefail
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/pip"
"$PIP" install -q --disable-pip-version-check --upgrade pip >/dev/null
if "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "[install] torch already installed: $("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"
elif [ -n "${TORCH_INDEX_URL:-}" ]; then
  "$PIP" install -q "$TORCH_SPEC" --index-url "$TORCH_INDEX_URL"
elif "$PIP" install -q --no-index --no-deps "$TORCH_SPEC" 2>/dev/null; then
  echo "[install] torch from a local wheel"
elif ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "[install] no GPU: CPU build of torch"
  "$PIP" install -q "$TORCH_SPEC" --index-url https://download.pytorch.org/whl/cpu
else
  echo "[install] NVIDIA GPU found: CUDA build of torch"
  "$PIP" install -q "$TORCH_SPEC"
fi
"$PIP" install -q -e '.[dev]'
touch "$VENV/.installed"
