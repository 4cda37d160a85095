#!/usr/bin/env python3
"""Markdown tables for BENCHMARKS.md from `neural-style bench --json` and
`tools/bench_pytorch.py --json` outputs of one run on one device.

    python3 tools/bench_table.py --peak-gflops 166 --peak-gbps 28 OUT/neural-style_*.json OUT/pytorch_*.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def load(paths):
    runs = []
    for p in paths:
        data = json.loads(Path(p).read_text())
        for r in data["results"]:
            runs.append((data["tool"], r))
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+")
    parser.add_argument("--peak-gflops", type=float, required=True, help="device f32 peak, GFLOP/s")
    parser.add_argument("--peak-gbps", type=float, required=True, help="device memory bandwidth, GB/s")
    args = parser.parse_args()
    runs = load(args.files)
    ours = {(r["size"], r["optimizer"]): r for tool, r in runs if tool == "neural-style"}
    theirs = {(r["size"], r["optimizer"]): r for tool, r in runs if tool == "pytorch"}

    print("| size | optimizer | neural-style ms/it | it/s | PyTorch ms/it | it/s | PyTorch ÷ neural-style time "
          "| GFLOP/it | MB/it | floor ms/it | neural-style ÷ floor | dispatches (PyTorch kernels) "
          "| plan MiB | final loss (PyTorch) |")
    print("|---" * 14 + "|")
    for key in sorted(ours):
        r = ours[key]
        t = theirs.get(key)
        flops, bytes_ = r["work"]["flops"], r["work"]["bytes"]
        floor_ms = max(flops / (args.peak_gflops * 1e9), bytes_ / (args.peak_gbps * 1e9)) * 1e3
        pt_ms = f"{t['ms_per_iteration']:.1f}" if t else "—"
        pt_ips = f"{t['iterations_per_second']:.2f}" if t else "—"
        ratio = f"{t['ms_per_iteration'] / r['ms_per_iteration']:.3f}" if t else "—"
        kernels = f" ({t['profile']['dispatches']})" if t and t.get("profile") else ""
        loss = f"{r['final_loss']:.4f}" + (f" ({t['final_loss']:.4f})" if t else "")
        print(f"| {key[0]} | {key[1]} | {r['ms_per_iteration']:.1f} | {r['iterations_per_second']:.2f} | {pt_ms} "
              f"| {pt_ips} | {ratio} | {flops / 1e9:.3f} | {bytes_ / 1e6:.1f} | {floor_ms:.2f} "
              f"| {r['ms_per_iteration'] / floor_ms:.0f}× | {r['profile']['dispatches']}{kernels} "
              f"| {r['plan_bytes'] / 2**20:.1f} | {loss} |")

    print()
    print("GPU time per kernel family (one profiled iteration, a timestamp pair around every dispatch), ms:")
    print()
    families = ["stem", "depthwise", "pointwise", "squeeze-excite", "gram", "losses", "optimizer"]
    print("| size | optimizer | " + " | ".join(families) + " | total |")
    print("|---" * (len(families) + 3) + "|")
    for key in sorted(ours):
        p = ours[key]["profile"]
        if p.get("gpu_ms") is None:
            continue
        by = {f["family"]: f for f in p["families"]}
        cells = [f"{by[f]['gpu_ms']:.2f} ({by[f]['dispatches']})" if f in by else "—" for f in families]
        print(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + f" | {p['gpu_ms']:.2f} ({p['dispatches']}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
