#!/usr/bin/env bash
# The one prepared benchmark run for a lent GPU machine (the `device` tool): both tools, the same
# sizes and optimizers (issue 19's GPU table), both precisions of the default optimizer at
# 512/1024/2048 px (issue 21), and the default 512 px picture in f32 and f16, all under a deadline,
# packed into $OUT/results.tar.gz (the tool brings back at most 8 files). The machine has no Rust
# toolchain and no ../shared, so the x86-64 binary, the weights, two images, the Vulkan loader and
# the `tflite` wheel (the machine's PyTorch image lacks it) travel in ignored folders.
#
# Here, once (see /work/.library/device/README.md for the loader packages):
#   printf '/.gl/\n/.bench/\n/.whl/\n' >> .git/info/exclude
#   (download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 into .gl/)
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl tflite
#   cargo build --release && mkdir -p .bench && cp target/release/neural-style .bench/
#   cp ../shared/weights/mobilenet_v3_small_100_224_int8.tflite ../shared/images/{tubingen,starry_night}.jpg .bench/
# Then run it there with carry [".gl", ".bench", ".whl"]: `bash tools/bench_device.sh`. PARTS
# (any of `table precision pictures`), SIZES, ITERATIONS, OPTIMIZERS, PRECISION_SIZES, DEADLINE_S
# (seconds for the whole script) and TORCH_DEVICE override the defaults. The table's runs use
# `bench --losses reference`, the losses PyTorch's twin computes; the others the product's defaults.
set -u
for f in .gl/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done
ldconfig 2>/dev/null
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=$icd
if compgen -G '.whl/*.whl' >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl &&
    export PYTHONPATH=/tmp/site
fi
OUT=${OUT:-/tmp/bench-out}
res=$(mktemp -d)
export NEURAL_STYLE_CACHE_DIR=$res/cache
weights=.bench/mobilenet_v3_small_100_224_int8.tflite
bin=.bench/neural-style
sizes=${SIZES:-256,512,1024}
iterations=${ITERATIONS:-30}
precision_sizes=${PRECISION_SIZES:-512,1024,2048}
deadline=${DEADLINE_S:-400}
torch_device=${TORCH_DEVICE:-cuda}
parts=" ${PARTS:-table precision pictures} "

# step NAME SECONDS COMMAND...: runs COMMAND with stdout to NAME.json and stderr to NAME.err, for at
# most SECONDS and never past the deadline; skipped when under 10 s are left.
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((deadline - SECONDS))
  ((left < limit)) && limit=$left
  if ((limit < 10)); then
    echo "skipped $name: deadline" | tee -a "$res/log.txt"
    return
  fi
  local start=$SECONDS
  timeout "$limit" "$@" >"$res/$name.json" 2>"$res/$name.err"
  echo "$name: rc $? in $((SECONDS - start)) s" | tee -a "$res/log.txt"
}

nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem,memory.total --format=csv >"$res/gpu.csv" 2>&1
"$bin" devices >"$res/devices.txt" 2>&1
cat "$res/gpu.csv" "$res/devices.txt"
if [[ $parts == *" table "* ]]; then
  for o in ${OPTIMIZERS:-lbfgs-bounded adam lbfgs}; do
    step "neural-style_$o" 90 "$bin" bench --weights "$weights" --size "$sizes" --iterations "$iterations" --warmup 5 \
      --optimizer "$o" --losses reference --json
    step "pytorch_$o" 90 env PYTHONUNBUFFERED=1 python3 tools/bench_pytorch.py --weights "$weights" \
      --device "$torch_device" --size "$sizes" --iterations "$iterations" --warmup 5 --optimizer "$o" --json
  done
fi
if [[ $parts == *" precision "* ]]; then
  for p in f16 f32; do
    step "${p}_lbfgs-bounded" 90 "$bin" bench --weights "$weights" --size "$precision_sizes" --iterations 10 --warmup 3 \
      --precision "$p" --json
  done
  step auto_lbfgs-bounded 40 "$bin" bench --weights "$weights" --size 512 --iterations 10 --warmup 3 --precision auto --json
fi
if [[ $parts == *" pictures "* ]]; then
  for p in f32 f16; do
    step "stylize_$p" 60 "$bin" stylize --weights "$weights" --content .bench/tubingen.jpg --style .bench/starry_night.jpg \
      --output "$res/tubingen_starry_$p.png" --precision "$p" --json
  done
fi
mkdir -p "$OUT"
tar -czf "$OUT/results.tar.gz" -C "$res" .
tail -n 2 "$res"/*.err
