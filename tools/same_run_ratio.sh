#!/usr/bin/env bash
# The same-run speed ratio of issue 19: `neural-style stylize` against PyTorch CPU running the same
# loss on the same images, alternating, three times. 256×192 (tubingen), Adam, one scale, the
# classic loss (the one tools/reference_style.py computes); neural-style's time is stylize --json's
# elapsed_s between iterations 2 and 12, PyTorch's the mean of 12 iterations of
# `reference_style.py time`. Extra arguments go to stylize (e.g. --tune off).
#
#   cargo build --release && tools/same_run_ratio.sh [--tune off]
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED:-../shared}
export NEURAL_STYLE_WEIGHTS=${NEURAL_STYLE_WEIGHTS:-$shared/weights/mobilenet_v3_small_100_224_int8.tflite}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
ours() {
  target/release/neural-style stylize --content "$shared/images/tubingen.jpg" --style "$shared/images/starry_night.jpg" \
    --output "$out/o.png" --size 256 --scales 1 --optimizer adam --iterations 12 --print-every 1 --init content \
    --padding 0 --loss-normalization none --style-layers stem,block1.expand,block3.expand,block5.expand \
    --style-weight 5000 --gram-margin 0 --json "$@" |
    python3 -c '
import json, sys
t = {d["iteration"]: d["elapsed_s"] for d in map(json.loads, sys.stdin) if "iteration" in d and "elapsed_s" in d}
print("%.1f" % ((t[12] - t[2]) / 10 * 1000))'
}
theirs() {
  python3 tools/reference_style.py time --size 256 --optimizer adam --iterations 12 |
    sed -E 's/.*: ([0-9.]+) s\/iteration.*/\1/' | python3 -c 'import sys; print("%.1f" % (float(sys.stdin.read()) * 1000))'
}
for run in 1 2 3; do
  o=$(ours "$@")
  p=$(theirs)
  echo "run $run: neural-style $o ms/it, PyTorch $p ms/it, ratio $(python3 -c "print('%.3f' % ($p / $o))")"
done
