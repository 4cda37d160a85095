#!/usr/bin/env bash
# The one prepared benchmark run for a lent GPU machine (the `device` tool): both tools, the same
# sizes and optimizers, JSON under $OUT, for BENCHMARKS.md. The machine has no Rust toolchain and
# no ../shared, so the x86-64 binary, the weights and the Vulkan loader travel in ignored folders.
#
# Here, once (see /work/.library/device/README.md for the loader packages):
#   echo /.gl/ >> .git/info/exclude; echo /.bench/ >> .git/info/exclude
#   (download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 into .gl/)
#   cargo build --release && mkdir -p .bench && cp target/release/neural-style .bench/
#   cp ../shared/weights/mobilenet_v3_small_100_224_int8.tflite .bench/
# Then run it there with carry [".gl", ".bench"]: `bash tools/bench_device.sh` (SIZES, ITERATIONS
# and OPTIMIZERS override the defaults).
set -u
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=$icd
OUT=${OUT:-/tmp/bench-out}
mkdir -p "$OUT"
weights=.bench/mobilenet_v3_small_100_224_int8.tflite
bin=.bench/neural-style
sizes=${SIZES:-256,512,1024}
iterations=${ITERATIONS:-50}
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem,memory.total --format=csv >"$OUT/gpu.csv"
"$bin" devices >"$OUT/devices.txt" 2>&1
for o in ${OPTIMIZERS:-lbfgs-bounded lbfgs adam}; do
  "$bin" bench --weights "$weights" --size "$sizes" --iterations "$iterations" --warmup 5 \
    --optimizer "$o" --json >"$OUT/neural-style_$o.json" 2>"$OUT/neural-style_$o.err"
  PYTHONUNBUFFERED=1 python3 tools/bench_pytorch.py --weights "$weights" --device cuda --size "$sizes" \
    --iterations "$iterations" --warmup 5 --optimizer "$o" --json >"$OUT/pytorch_$o.json" 2>"$OUT/pytorch_$o.err"
done
tail -n 3 "$OUT"/*.err
