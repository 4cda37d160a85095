#!/usr/bin/env bash
# Rewrites the "Command-line reference" section of README.md from the built binary's help output
# (tests/cli.rs checks that the README shows the current help).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q
bin=target/debug/neural-style
{
  sed '/^## Command-line reference$/q' README.md
  echo
  echo '```text'
  $bin --help
  for c in devices classify features stylize bench view layers quality weights "weights list" "weights fetch" \
    "weights import" "weights path"; do
    echo
    echo "\$ neural-style $c -h"
    # shellcheck disable=SC2086 # "weights list" is two words
    $bin $c -h
  done
  echo '```'
} > README.md.new
mv README.md.new README.md
