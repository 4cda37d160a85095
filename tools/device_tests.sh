#!/usr/bin/env bash
# The kernel and loop tests on a lent GPU machine (the `device` tool), which has no Rust toolchain:
# `prepare` (here) builds the release test binaries, strips them and packs them with ../shared's
# images and weights into .gpu-carry/ (ignored, about 22 MB); `run` (there, with carry
# [".gl", ".gpu-carry"]) unpacks them where the binaries' compiled-in paths expect them and runs
# each suite under a deadline, logs packed into $OUT/logs.tar.gz.
#
#   tools/device_tests.sh prepare
#   (device) bash tools/device_tests.sh run
#
# SUITES and DEADLINE_S (seconds for the whole run) override the defaults.
set -u
cd "$(dirname "$0")/.."
suites=${SUITES:-kernels backward precision tuning optimizer gram_margin network style stylize}
case ${1:-} in
prepare)
  set -e
  grep -qx '/.gpu-carry/' .git/info/exclude 2>/dev/null || echo '/.gpu-carry/' >>.git/info/exclude
  cargo build --release
  cargo test --release --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "test" in m["target"]["kind"]:
        print(m["target"]["name"], m["executable"])' >/tmp/device-tests.list
  stage=$(mktemp -d)
  mkdir -p "$stage/bin" "$stage/shared"
  for s in $suites; do
    cp "$(awk -v s="$s" '$1 == s {print $2}' /tmp/device-tests.list)" "$stage/bin/$s"
  done
  cp target/release/neural-style "$stage/bin/"
  cp -r ../shared/images ../shared/weights "$stage/shared/"
  chmod -R u+w "$stage"
  rm -rf "$stage/shared/images/reference"
  strip "$stage"/bin/*
  mkdir -p .gpu-carry
  tar -cJf .gpu-carry/tests.tar.xz -C "$stage" bin shared
  rm -rf "$stage"
  ls -l .gpu-carry/tests.tar.xz
  ;;
run)
  for f in .gl/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done
  ldconfig 2>/dev/null
  nvidia=/usr/local/nvidia/share
  [ -d $nvidia ] && export VK_DRIVER_FILES=$nvidia/vulkan/icd.d/nvidia_icd.json \
    __EGL_VENDOR_LIBRARY_FILENAMES=$nvidia/glvnd/egl_vendor.d/10_nvidia.json
  OUT=${OUT:-/tmp/device-tests-out}
  deadline=${DEADLINE_S:-160}
  mkdir -p /tmp/gt /tmp/logs target/release /work "$OUT"
  tar -xJf .gpu-carry/tests.tar.xz -C /tmp/gt
  # The binaries read ../shared and the CLI at the paths of the checkout they were built in
  # (where they exist, as here, they are used as they are).
  [ -e /work/main ] || ln -s "$PWD" /work/main
  [ -e /work/shared ] || ln -s /tmp/gt/shared /work/shared
  [ -e target/release/neural-style ] || cp /tmp/gt/bin/neural-style target/release/
  export NEURAL_STYLE_REQUIRE_GPU=1 NEURAL_STYLE_WEIGHTS=/work/shared/weights/mobilenet_v3_small_100_224_int8.tflite \
    NEURAL_STYLE_CACHE_DIR=/tmp/device-tests-cache
  for s in $suites; do
    left=$((deadline - SECONDS))
    ((left < 10)) && { echo "skipped $s: deadline"; continue; }
    start=$SECONDS
    timeout "$left" "/tmp/gt/bin/$s" >"/tmp/logs/$s.log" 2>&1
    echo "$s: rc $? in $((SECONDS - start)) s; $(grep 'test result' "/tmp/logs/$s.log")"
    grep -E '^test .*FAILED|panicked' "/tmp/logs/$s.log" | head -4
    tar -czf "$OUT/logs.tar.gz" -C /tmp/logs .
  done
  ;;
*)
  echo "usage: tools/device_tests.sh prepare|run" >&2
  exit 2
  ;;
esac
