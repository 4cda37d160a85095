#!/usr/bin/env python3
"""The PyTorch twin of `neural-style bench`: the same network (the TFLite graph, executed op by op
in PyTorch eager by tools/reference_style.py), the same losses, layers and weights as the product's
defaults, the same optimizer and the same synthetic images, timed the same way (warm-up, then N
iterations back to back, one synchronization at the end). Prints the same fields, as a table or
`--json`.

    python3 tools/bench_pytorch.py --size 256,512 --iterations 20 --optimizer lbfgs-bounded [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_style as rs  # noqa: E402

# The product's defaults (src/stylize/mod.rs); the fixture settings of reference_style.py differ.
CONTENT_LAYERS = ["block4.expand"]
STYLE_LAYERS = [["stem", 1.0], ["block1.expand", 1.0], ["block3.expand", 1.0], ["block5.expand", 1.0]]
CONTENT_WEIGHT, STYLE_WEIGHT, TV_WEIGHT = 1.0, 5000.0, 1.0
ADAM_LR = 0.02
LBFGS_HISTORY = 10


def synthetic(size: int, formula) -> torch.Tensor:
    """A size x size image from a formula of (x/size, y/size, channel), rounded to 8 bits, [3, H, W]."""
    y, x = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64), indexing="ij")
    u, v = x / size, y / size
    planes = [np.clip(np.round(formula(u, v, float(c)) * 255.0), 0, 255) / 255.0 for c in range(3)]
    return torch.tensor(np.stack(planes), dtype=torch.float32)


def synthetic_content(size: int) -> torch.Tensor:
    """Same formula as bench::synthetic_content."""
    return synthetic(size, lambda u, v, c: 0.5 + 0.3 * np.sin(6.0 * u + 2.0 * c) * np.cos(5.0 * v - c)
                     + 0.15 * np.sin(40.0 * u * v + c))


def synthetic_style(size: int) -> torch.Tensor:
    """Same formula as bench::synthetic_style."""
    return synthetic(size, lambda u, v, c: 0.5 + 0.45 * np.sin(60.0 * u + 25.0 * v + 2.1 * c)
                     * np.sin(35.0 * v - 20.0 * u + c))


def move_net(net: rs.TfliteNet, device: torch.device) -> rs.TfliteNet:
    net.const = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in net.const.items()}
    return net


def sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(loss: rs.StyleLoss, content: torch.Tensor, optimizer: str):
    """-> (step function, function returning the current image)."""
    if optimizer == "adam":
        x = content.clone().requires_grad_(True)
        opt = torch.optim.Adam([x], lr=ADAM_LR, betas=(0.9, 0.999), eps=1e-8)

        def step():
            opt.zero_grad()
            loss.terms(x)[0].backward()
            opt.step()
            with torch.no_grad():
                x.clamp_(0.0, 1.0)

        return step, lambda: x
    bounded = optimizer == "lbfgs-bounded"
    if bounded:
        c = content.clamp(1e-3, 1.0 - 1e-3)
        var = torch.log(c / (1.0 - c)).requires_grad_(True)
        image = lambda: torch.sigmoid(var)  # noqa: E731
    else:
        var = content.clone().requires_grad_(True)
        image = lambda: var  # noqa: E731
    opt = torch.optim.LBFGS([var], lr=1.0, max_iter=1, history_size=LBFGS_HISTORY, line_search_fn=None,
                            tolerance_grad=1e-7, tolerance_change=1e-9)

    def closure():
        opt.zero_grad()
        total = loss.terms(image())[0]
        total.backward()
        return total

    return (lambda: opt.step(closure)), image


def profile_one(step, device: torch.device):
    """One more iteration (as `bench` profiles one); kernel launches and GPU time on CUDA."""
    if device.type != "cuda":
        step()
        return None
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        sync(device)
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    gpu_us = sum(e.device_time for e in kernels)
    return {"dispatches": len(kernels), "gpu_ms": gpu_us / 1e3, "families": [], "slowest": []}


def run_size(net, size: int, args, device: torch.device) -> dict:
    content = synthetic_content(size).to(device)
    style = synthetic_style(size).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    loss = rs.StyleLoss(net, content, style, CONTENT_LAYERS, STYLE_LAYERS, CONTENT_WEIGHT, STYLE_WEIGHT, TV_WEIGHT)
    step, image = make_step(loss, content, args.optimizer)
    for _ in range(args.warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(args.iterations):
        step()
    sync(device)
    seconds = time.perf_counter() - start
    profile = profile_one(step, device)
    with torch.no_grad():
        final = float(loss.terms(image())[0])
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {
        "size": size,
        "optimizer": args.optimizer,
        "iterations": args.iterations,
        "seconds": seconds,
        "iterations_per_second": args.iterations / seconds,
        "ms_per_iteration": seconds * 1e3 / args.iterations,
        "profile": profile,
        "plan_bytes": peak,
        "final_loss": final,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="256,512,1024", help="comma-separated square sizes")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--optimizer", choices=["lbfgs-bounded", "lbfgs", "adam"], default="lbfgs-bounded")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    parser.add_argument("--weights", type=Path, default=rs.DEFAULT_WEIGHTS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.iterations < 1:
        parser.error("--iterations must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    net = move_net(rs.TfliteNet(args.weights, torch.float32), device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    info = {"name": name, "backend": device.type, "threads": torch.get_num_threads(),
            "cuda": torch.version.cuda if device.type == "cuda" else None}
    results = []
    if not args.json:
        print(f"PyTorch {torch.__version__} on {device.type} ({name}, {torch.get_num_threads()} threads), "
              f"weights {args.weights}")
    for size in (int(s) for s in args.size.split(",")):
        r = run_size(net, size, args, device)
        results.append(r)
        if not args.json:
            extra = ""
            if r["profile"]:
                extra = f", {r['profile']['dispatches']} kernels/iteration, GPU {r['profile']['gpu_ms']:.2f} ms"
            if r["plan_bytes"]:
                extra += f", peak {r['plan_bytes'] / 2**20:.1f} MiB"
            print(f"{size}x{size} {args.optimizer}: {r['iterations_per_second']:.2f} it/s, "
                  f"{r['ms_per_iteration']:.1f} ms/iteration ({args.iterations} iterations){extra}, "
                  f"final loss {r['final_loss']:.4f}")
    if args.json:
        print(json.dumps({"tool": "pytorch", "version": torch.__version__, "device": info,
                          "weights": str(args.weights), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
