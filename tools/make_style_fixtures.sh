#!/usr/bin/env bash
# Regenerate tests/fixtures/style_chain.safetensors with tools/reference_style.py (PyTorch,
# float64 CPU): losses, image gradient, Gram/content targets, Adam and L-BFGS trajectories.
# The settings (layers, weights, optimizer parameters, sizes, seeds) are hard-coded in
# tools/reference_style.py and stored as JSON in the file's metadata under "settings".
# First cross-checks the torch forward pass against tools/reference.py (numpy float64);
# the fixture step also prints a finite-difference check of the gradient.
# Needs Python 3 with tools/requirements.txt installed (torch included) and the weights in
# ../shared/weights/. Usage (from anywhere): bash tools/make_style_fixtures.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PY="${PYTHON:-python3}"
REF="tools/reference_style.py"
WEIGHTS="${WEIGHTS_DIR:-../shared/weights}/mobilenet_v3_small_100_224_int8.tflite"

"$PY" "$REF" verify  --weights "$WEIGHTS" --size 52x40 --seed 1
"$PY" "$REF" fixture --weights "$WEIGHTS" --out tests/fixtures/style_chain.safetensors "$@"
