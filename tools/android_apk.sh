#!/usr/bin/env bash
# tools/android_apk.sh OUT_DIR: builds examples/android_app for aarch64-linux-android in release
# and packages OUT_DIR/neural-style.apk (lib/arm64-v8a/libandroid_app.so), without the NDK:
# - links with Debian's clang + lld against stub libraries generated from bionic's symbol maps
#   (../shared/android/*.map.txt, tools/android_stubs.py) for API level $API, undefined symbols
#   forbidden, so a symbol bionic lacks at that level is a link error; LLVM's libunwind (Debian's
#   arm64 build) linked statically, as the NDK does;
# - LOAD segments aligned to 16 KiB (16 KiB-page devices), any TLS segment to 64 bytes (bionic's
#   rule on arm64);
# - checks that the library exports ANativeActivity_onCreate and that each undefined symbol is in
#   the maps at $API; packages with aapt, zipalign and apksigner (a debug key made on the fly)
#   and verifies the signature.
# Needs: clang lld aapt zipalign apksigner android-framework-res (Debian), libunwind-14-dev:arm64
# (dpkg --add-architecture arm64), a JDK's keytool, python3, and the aarch64-linux-android Rust
# target. This APK has never run on a device here.
set -euo pipefail
out=$(realpath -m "${1:?usage: tools/android_apk.sh OUT_DIR}")
cd "$(dirname "$0")/.."
# The package name, SDK levels and version (shared with the Gradle project).
. examples/android_app/app.properties
API=$min_sdk
TARGET=aarch64-linux-android
maps=${NEURAL_STYLE_ANDROID_MAPS:-../shared/android}
# A fixed place under target/: the linker's path is part of cargo's fingerprint, so a new one
# each run would rebuild every crate.
work=$PWD/target/android-apk
rm -rf "$work"
mkdir -p "$out" "$work"

# Stub libraries with bionic's symbol versions.
python3 tools/android_stubs.py "$maps" "$API" arm64 "$work/stubs" >/dev/null
for c in "$work"/stubs/*.c; do
  lib=${c%.c}
  clang --target="$TARGET$API" -shared -nostdlib -fuse-ld=lld -fPIC -w \
    -Wl,--version-script="$lib.version" -Wl,-soname,"$(basename "$lib").so" -o "$lib.so" "$c"
done
# Alone in its directory, so that rustc's -lunwind finds the archive, not a shared libunwind.
mkdir -p "$work/unwind"
cp /usr/lib/aarch64-linux-gnu/libunwind.a "$work/unwind/"
unwind=$work/unwind
# Debian built it with glibc's _FORTIFY_SOURCE: its one fortified call, forwarded to bionic's
# vfprintf (no bionic headers here, so the declarations are written out).
cat > "$work/fortify_shim.c" <<'SHIM'
typedef __builtin_va_list va_list;
int vfprintf(void *stream, const char *format, va_list args);
__attribute__((visibility("hidden"))) int __fprintf_chk(void *stream, int flag, const char *format, ...) {
  (void)flag;
  va_list args;
  __builtin_va_start(args, format);
  int n = vfprintf(stream, format, args);
  __builtin_va_end(args);
  return n;
}
SHIM
clang --target="$TARGET$API" -c -fPIC -O2 -w -o "$work/fortify_shim.o" "$work/fortify_shim.c"

# The linker rustc calls: clang for the Android target against the stubs.
cat > "$work/linker" <<LINKER
#!/bin/sh
exec clang --target=$TARGET$API -fuse-ld=lld -nostartfiles -L"$work/stubs" -L"$unwind" \
  -Wl,--no-undefined -Wl,--no-dependent-libraries -Wl,-z,max-page-size=16384 -Wl,-z,common-page-size=16384 "\$@" "$work/fortify_shim.o"
LINKER
chmod +x "$work/linker"
CARGO_TARGET_AARCH64_LINUX_ANDROID_LINKER="$work/linker" \
  cargo build --release --target "$TARGET" --example android_app
lib=target/$TARGET/release/examples/libandroid_app.so

# The checks: the entry point, the alignment rules, and every undefined symbol in the maps.
readelf --dyn-syms -W "$lib" | awk '$7 != "UND" && $8 ~ /^ANativeActivity_onCreate/' | grep -q . \
  || { echo "error: $lib does not export ANativeActivity_onCreate" >&2; exit 1; }
# Alignments are the last column of readelf's program headers, in hex.
while read -r kind align; do
  if [ "$kind" = LOAD ] && (( align < 16384 )); then
    echo "error: a LOAD segment of $lib is aligned to $align bytes, under 16 KiB" >&2; exit 1
  fi
  if [ "$kind" = TLS ] && (( align < 64 )); then
    echo "error: the TLS segment of $lib is aligned to $align bytes, under 64" >&2; exit 1
  fi
done < <(readelf -l -W "$lib" | awk '$1 == "LOAD" || $1 == "TLS" {print $1, $NF}')
cat "$work"/stubs/*.symbols | sort -u > "$work/allowed"
# Weak references may be missing at run time (Rust's std looks up getrandom, API 28, that way).
readelf --dyn-syms -W "$lib" | awk '$7 == "UND" && $5 != "WEAK" && $8 != "" {sub(/@.*/, "", $8); print $8}' \
  | sort -u > "$work/undefined"
missing=$(comm -23 "$work/undefined" "$work/allowed")
if [ -n "$missing" ]; then
  echo "error: $lib needs symbols bionic does not export at API $API: $missing" >&2
  exit 1
fi

# The APK.
mkdir -p "$work/apk/lib/arm64-v8a"
cp "$lib" "$work/apk/lib/arm64-v8a/"
# aapt wants the package in the manifest (Gradle wants it out): added to a copy.
mkdir -p "$work/manifest"
sed "s|<manifest |<manifest package=\"$application_id\" |" examples/android_app/AndroidManifest.xml \
  > "$work/manifest/AndroidManifest.xml"
aapt package -f -M "$work/manifest/AndroidManifest.xml" --min-sdk-version "$min_sdk" \
  --target-sdk-version "$target_sdk" --version-code "$version_code" --version-name "$version_name" \
  -I /usr/share/android-framework-res/framework-res.apk -F "$work/unaligned.apk"
(cd "$work/apk" && aapt add "$work/unaligned.apk" lib/arm64-v8a/libandroid_app.so >/dev/null)
zipalign -f -p 4 "$work/unaligned.apk" "$work/aligned.apk"
keytool -genkeypair -keystore "$work/debug.jks" -storepass android -keypass android -alias debug \
  -keyalg RSA -keysize 2048 -validity 10000 -dname "CN=Android Debug,O=Android,C=US" >/dev/null 2>&1
apksigner sign --ks "$work/debug.jks" --ks-pass pass:android --out "$out/neural-style.apk" "$work/aligned.apk"
apksigner verify "$out/neural-style.apk"
echo "$out/neural-style.apk: $(stat -c %s "$out/neural-style.apk") bytes, API $API, arm64-v8a"
