#!/usr/bin/env bash
# Regenerate every reference fixture under tests/fixtures/ with tools/reference.py.
# Needs Python 3 with tools/requirements.txt installed and the weights in ../shared/weights/.
# Usage (from anywhere): bash tools/make_fixtures.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PY="${PYTHON:-python3}"
REF="tools/reference.py"
OUT="tests/fixtures"
WEIGHTS="${WEIGHTS_DIR:-../shared/weights}"
INT8="$WEIGHTS/mobilenet_v3_small_100_224_int8.tflite"
UINT8="$WEIGHTS/v3-small_224_1.0_uint8.tflite"

mkdir -p "$OUT"

# TFLite graphs, re-executed in float64 (WxH = width x height).
"$PY" "$REF" tflite --weights "$INT8"  --out "$OUT/tflite_int8_37x23.safetensors"  --size 37x23 --seed 1
"$PY" "$REF" tflite --weights "$INT8"  --out "$OUT/tflite_int8_64x48.safetensors"  --size 64x48 --seed 2
"$PY" "$REF" tflite --weights "$UINT8" --out "$OUT/tflite_uint8_37x23.safetensors" --size 37x23 --seed 1

# torchvision layout with formula-defined synthetic weights; also writes
# tests/fixtures/torchvision_<arch>_tensors.json.
"$PY" "$REF" torchvision --arch small --out "$OUT/torchvision_small_41x29.safetensors" --size 41x29 --seed 3
"$PY" "$REF" torchvision --arch large --out "$OUT/torchvision_large_41x29.safetensors" --size 41x29 --seed 4

ls -l "$OUT"
