#!/usr/bin/env python3
"""Independent PyTorch reference for the `neural-style` losses, image gradient and optimizers.

The TFLite MobileNetV3-Small graph is parsed with Google's generated flatbuffer
readers (PyPI `tflite`), its constants are dequantized here, and the graph is
re-executed op by op with PyTorch (float64 on CPU by default) so that autograd
gives d loss / d image. Nothing is shared with the Rust/wgpu implementation, and
only the `verify` sub-command touches tools/reference.py (the numpy float64
re-execution), to cross-check this forward pass against it.

Sub-commands
------------
verify   Compare the torch forward pass with tools/reference.py on a synthetic image,
         for every named layer (relative L2 error)::

             python3 tools/reference_style.py verify --size 52x40 --seed 1

fixture  Write tests/fixtures/style_chain.safetensors (losses, gradient, Gram and
         content targets, Adam and L-BFGS trajectories) and run a finite-difference
         check of the gradient::

             python3 tools/reference_style.py fixture --out tests/fixtures/style_chain.safetensors

time     Seconds per optimizer iteration (float32, CPU, all cores) on real photos::

             python3 tools/reference_style.py time --size 256 --iterations 5 --optimizer lbfgs

Layer names (NCHW, batch 1; outputs after their activation)
-----------------------------------------------------------
`stem` (first conv + hard-swish); for blocks i = 0..10: `block{i}.expand` (1x1
expansion conv after its activation; block0 has none), `block{i}.depthwise` (after
its activation), `block{i}.se` (after the squeeze-excite multiply; all blocks but 1
and 2), `block{i}.project` (project conv, before the residual), `block{i}` (after
the residual add, else = project); `head` (576-channel conv + hard-swish); `logits`.
Tensor names of the int8 file are unreliable; layers are found structurally (conv
ops in execution order matched against the architecture, then dataflow).

Float semantics (int8 model)
----------------------------
Constants real = (q - zero_point) * scale, per channel along quantized_dimension;
QUANTIZE/DEQUANTIZE are identities; the graph's own MUL/SUB constants map the
[0, 1] image to [-1, 1]; TF "SAME" padding: out = ceil(in / stride),
pad_total = max((out - 1) * stride + k - in, 0), pad_before = pad_total // 2.
The uint8-model clamping rules of tools/reference.py are not implemented (the
int8 model does not need them); a uint8 graph is refused.

Losses (features F of a layer reshaped C x HW)
----------------------------------------------
Gram G = F F^T / (C H W); style loss of a layer = mean over the C x C entries of
(G - A)^2; E_style = sum_l w_l * loss_l. E_content = sum over content layers of
mean((F - P)^2). E_tv = mean of squared vertical neighbour differences (over
3 (H-1) W entries) + mean of squared horizontal ones (over 3 H (W-1) entries).
Total = content_weight E_content + style_weight E_style + tv_weight E_tv.

Optimizers (PyTorch's own)
--------------------------
Adam(lr, betas (0.9, 0.999), eps 1e-8), x.clamp_(0, 1) after every step.
LBFGS(lr=1, max_iter=1, history_size=10, line_search_fn=None, tolerance_grad=1e-7,
tolerance_change=1e-9), one opt.step(closure) per iteration (one loss/gradient
evaluation each; note PyTorch's first step length is min(1, 1 / |g|_1) * lr), no
clamping. Trajectory entry k = total loss after k updates: the closure value at the
start of each step, plus one evaluation after the last update.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"
DEFAULT_WEIGHTS = SHARED / "weights" / "mobilenet_v3_small_100_224_int8.tflite"

# --------------------------------------------------------------------------------------
# Fixture settings (hard-coded; also stored as JSON in the fixture metadata "settings")
# --------------------------------------------------------------------------------------

CONTENT_LAYERS = ["block4.expand"]
STYLE_LAYERS = [["stem", 1.0], ["block1.expand", 1.0], ["block3.expand", 0.5], ["block5.expand", 1.0]]
CONTENT_WEIGHT = 1.0
# The brief suggested style 1000 / tv 0.5; at the fixture's init that gives weighted terms
# content 0.148, style 37.2, tv 0.026 (max/min 1400). With style 10 / tv 5 they are
# 0.148 / 0.372 / 0.261 and the three gradient contributions have comparable norms.
STYLE_WEIGHT = 10.0
TV_WEIGHT = 5.0
ADAM = {"lr": 0.02, "betas": [0.9, 0.999], "eps": 1e-8, "steps": 10, "clamp": [0.0, 1.0]}
LBFGS = {"lr": 1.0, "max_iter": 1, "history_size": 10, "line_search_fn": None,
         "tolerance_grad": 1e-7, "tolerance_change": 1e-9, "iterations": 5}
CONTENT_SIZE = (40, 52)  # (H, W)
STYLE_SIZE = (44, 36)  # (H, W)
SEEDS = {"content": 101, "style": 202, "init_noise": 303, "finite_difference": 404}
INIT_NOISE = 0.1


def settings_dict() -> dict:
    return {
        "content_layers": CONTENT_LAYERS,
        "style_layers": STYLE_LAYERS,
        "content_weight": CONTENT_WEIGHT,
        "style_weight": STYLE_WEIGHT,
        "tv_weight": TV_WEIGHT,
        "adam": ADAM,
        "lbfgs": LBFGS,
        "content_hw": list(CONTENT_SIZE),
        "style_hw": list(STYLE_SIZE),
        "seeds": SEEDS,
        "init": f"clip(content + {INIT_NOISE} * standard_normal, 0, 1)",
    }


# --------------------------------------------------------------------------------------
# TFLite flatbuffer reading
# --------------------------------------------------------------------------------------

TFL_FLOAT32, TFL_UINT8 = 0, 3
TFL_DTYPE = {0: "<f4", 1: "<f2", 2: "<i4", 3: "u1", 4: "<i8", 6: "?", 7: "<i2", 9: "i1", 10: "<f8"}
FUSED = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}
PADDING = {0: "SAME", 1: "VALID"}


@dataclass
class TflTensor:
    index: int
    type: int
    shape: tuple
    value: np.ndarray | None  # dequantized float64 constant (or raw ints), None for activations


@dataclass
class TflOp:
    index: int
    type: str
    inputs: list
    outputs: list
    options: dict


def _dequantize(raw: np.ndarray, ttype: int, q) -> np.ndarray:
    if q is None or q.ScaleLength() == 0 or ttype == TFL_FLOAT32:
        return raw.astype(np.float64) if raw.dtype.kind == "f" else raw
    scales = q.ScaleAsNumpy().astype(np.float64)
    zps = (q.ZeroPointAsNumpy().astype(np.float64) if q.ZeroPointLength()
           else np.zeros(scales.size))
    v = raw.astype(np.float64)
    if scales.size == 1:
        return (v - zps[0]) * scales[0]
    shape = [1] * v.ndim
    shape[q.QuantizedDimension()] = scales.size
    return (v - zps.reshape(shape)) * scales.reshape(shape)


def read_tflite(path: Path):
    """-> (tensors, ops, input index) of the single subgraph."""
    import tflite
    from tflite.BuiltinOperator import BuiltinOperator

    buf = Path(path).read_bytes()
    model = tflite.Model.GetRootAsModel(buf, 0)
    if model.SubgraphsLength() != 1:
        raise ValueError("expected one subgraph")
    g = model.Subgraphs(0)
    names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
    tensors = []
    for i in range(g.TensorsLength()):
        t = g.Tensors(i)
        shape = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        b = model.Buffers(t.Buffer())
        raw = None
        if b is not None and b.DataLength() > 0:
            raw = b.DataAsNumpy().tobytes()
        elif b is not None and b.Offset() > 1:
            raw = buf[b.Offset(): b.Offset() + b.Size()]
        value = None
        if raw is not None:
            arr = np.frombuffer(raw, dtype=TFL_DTYPE[t.Type()]).reshape(shape)
            value = _dequantize(arr, t.Type(), t.Quantization())
        tensors.append(TflTensor(i, t.Type(), shape, value))
    ops = []
    for i in range(g.OperatorsLength()):
        o = g.Operators(i)
        code = model.OperatorCodes(o.OpcodeIndex())
        name = names.get(code.BuiltinCode() or code.DeprecatedBuiltinCode(), "UNKNOWN")
        ops.append(TflOp(i, name, [int(v) for v in o.InputsAsNumpy()],
                         [int(v) for v in o.OutputsAsNumpy()], _options(name, o)))
    if g.InputsLength() != 1:
        raise ValueError("expected one graph input")
    return tensors, ops, int(g.Inputs(0))


def _options(name: str, op) -> dict:
    import tflite

    table = op.BuiltinOptions()
    if table is None:
        return {}

    def load(cls):
        o = cls()
        o.Init(table.Bytes, table.Pos)
        return o

    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        o = load(tflite.Conv2DOptions if name == "CONV_2D" else tflite.DepthwiseConv2DOptions)
        if (o.DilationHFactor(), o.DilationWFactor()) != (1, 1):
            raise NotImplementedError("dilated convolution")
        return dict(padding=PADDING[o.Padding()], stride=(o.StrideH(), o.StrideW()),
                    activation=FUSED[o.FusedActivationFunction()])
    if name == "AVERAGE_POOL_2D":
        o = load(tflite.Pool2DOptions)
        return dict(padding=PADDING[o.Padding()], stride=(o.StrideH(), o.StrideW()),
                    filter=(o.FilterHeight(), o.FilterWidth()),
                    activation=FUSED[o.FusedActivationFunction()])
    if name in ("ADD", "SUB", "MUL"):
        cls = {"ADD": tflite.AddOptions, "SUB": tflite.SubOptions, "MUL": tflite.MulOptions}[name]
        return dict(activation=FUSED[load(cls).FusedActivationFunction()])
    if name == "MEAN":
        return dict(keep_dims=bool(load(tflite.ReducerOptions).KeepDims()))
    if name == "RESHAPE":
        o = load(tflite.ReshapeOptions)
        return dict(new_shape=[int(v) for v in o.NewShapeAsNumpy()] if o.NewShapeLength() else None)
    return {}


# --------------------------------------------------------------------------------------
# Structural layer identification (MobileNetV3-Small)
# --------------------------------------------------------------------------------------

# (kernel, expanded, out, squeeze-excite, stride)
BLOCKS = [
    (3, 16, 16, True, 2), (3, 72, 24, False, 2), (3, 88, 24, False, 1),
    (5, 96, 40, True, 2), (5, 240, 40, True, 1), (5, 240, 40, True, 1),
    (5, 120, 48, True, 1), (5, 144, 48, True, 1), (5, 288, 96, True, 2),
    (5, 576, 96, True, 1), (5, 576, 96, True, 1),
]
STEM_CH, HEAD_CH = 16, 576


def identify_layers(tensors, ops) -> dict[str, int]:
    """{layer name: tensor index}, found from conv order + dataflow (names not used)."""
    convs = [op for op in ops if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    roles = [("stem", None, STEM_CH, 3, 2, False)]
    cin = STEM_CH
    for b, (k, exp, out, se, stride) in enumerate(BLOCKS):
        if exp != cin:
            roles.append(("expand", b, exp, 1, 1, False))
        roles.append(("depthwise", b, exp, k, stride, True))
        if se:
            roles += [("se1", b, None, 1, 1, False), ("se2", b, exp, 1, 1, False)]
        roles.append(("project", b, out, 1, 1, False))
        cin = out
    roles += [("head", None, HEAD_CH, 1, 1, False), ("conv2", None, None, 1, 1, False),
              ("logits", None, None, 1, 1, False)]
    if len(convs) != len(roles):
        raise ValueError(f"{len(convs)} convolutions, MobileNetV3-Small has {len(roles)}")
    conv = {}
    for op, (role, b, och, k, s, dw) in zip(convs, roles):
        w = tensors[op.inputs[1]].shape
        got_out = w[3] if dw else w[0]
        if ((op.type == "DEPTHWISE_CONV_2D") != dw or (och is not None and got_out != och)
                or w[1] != k or w[2] != k or op.options["stride"] != (s, s)):
            raise ValueError(f"op {op.index} {op.type} {w} does not match role {role} of block {b}")
        conv[(role, b)] = op
    producer = {t: op for op in ops for t in op.outputs}
    consumers: dict[int, list] = {}
    for op in ops:
        for t in op.inputs:
            consumers.setdefault(t, []).append(op)

    def activated(op) -> int:
        """Output of a conv after its activation (fused, or a following HARD_SWISH)."""
        out = op.outputs[0]
        hs = [c for c in consumers.get(out, []) if c.type == "HARD_SWISH"]
        if hs:
            if len(consumers[out]) != 1:
                raise ValueError(f"op {op.index}: hard-swish output has other consumers")
            return hs[0].outputs[0]
        return out

    layers = {"stem": activated(conv[("stem", None)])}
    x = layers["stem"]
    cin = STEM_CH
    for b, (_k, exp, out, se, stride) in enumerate(BLOCKS):
        p = f"block{b}"
        if ("expand", b) in conv:
            if conv[("expand", b)].inputs[0] != x:
                raise ValueError(f"{p}: expand conv does not read the block input")
            layers[f"{p}.expand"] = activated(conv[("expand", b)])
            dw_in = layers[f"{p}.expand"]
        else:
            dw_in = x
        dw = conv[("depthwise", b)]
        if dw.inputs[0] != dw_in:
            raise ValueError(f"{p}: depthwise conv does not read the expansion output")
        layers[f"{p}.depthwise"] = d = activated(dw)
        proj = conv[("project", b)]
        if se:
            se1, se2 = conv[("se1", b)], conv[("se2", b)]
            mean = producer[se1.inputs[0]]
            if mean.type not in ("MEAN", "AVERAGE_POOL_2D") or mean.inputs[0] != d:
                raise ValueError(f"{p}: squeeze does not pool the depthwise output")
            if producer[se2.inputs[0]] is not se1:
                raise ValueError(f"{p}: SE convs not chained")
            mul = producer[proj.inputs[0]]
            if mul.type != "MUL" or d not in mul.inputs:
                raise ValueError(f"{p}: project does not read the SE multiply")
            layers[f"{p}.se"] = proj.inputs[0]
        elif proj.inputs[0] != d:
            raise ValueError(f"{p}: project does not read the depthwise output")
        layers[f"{p}.project"] = po = proj.outputs[0]
        adds = [c for c in consumers.get(po, []) if c.type == "ADD" and x in c.inputs]
        if bool(adds) != (stride == 1 and cin == out):
            raise ValueError(f"{p}: residual add mismatch")
        x = adds[0].outputs[0] if adds else po
        layers[p] = x
        cin = out
    head = conv[("head", None)]
    if head.inputs[0] != x:
        raise ValueError("head conv does not read the last block")
    layers["head"] = activated(head)
    layers["logits"] = conv[("logits", None)].outputs[0]
    return layers


# --------------------------------------------------------------------------------------
# PyTorch re-execution (NCHW)
# --------------------------------------------------------------------------------------

NHWC_TO_NCHW_AXIS = [0, 2, 3, 1]


def same_pad(size: int, k: int, s: int) -> tuple[int, int]:
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def act(x, name):
    if name == "NONE":
        return x
    if name == "RELU":
        return torch.relu(x)
    if name == "RELU6":
        return torch.clamp(x, 0.0, 6.0)
    if name == "RELU_N1_TO_1":
        return torch.clamp(x, -1.0, 1.0)
    raise NotImplementedError(name)


def hard_swish(x):
    return x * torch.clamp(x + 3.0, 0.0, 6.0) / 6.0


class TfliteNet:
    """The graph as a differentiable function of an image [3, H, W] (or [1, 3, H, W])."""

    def __init__(self, path: Path = DEFAULT_WEIGHTS, dtype=torch.float64):
        tensors, ops, inp = read_tflite(path)
        if tensors[inp].type == TFL_UINT8:
            raise NotImplementedError("uint8 graphs need clamping rules not implemented here")
        if tensors[inp].type != TFL_FLOAT32:
            raise NotImplementedError(f"graph input type {tensors[inp].type}")
        self.dtype = dtype
        self.ops = ops
        self.input = inp
        self.layers = identify_layers(tensors, ops)
        self.layer_of = {t: name for name, t in self.layers.items()}
        self.const = {}
        for op in ops:
            for k, t in enumerate(op.inputs):
                if t < 0 or tensors[t].value is None or t in self.const:
                    continue
                v = tensors[t].value
                if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D") and k == 1:
                    # TFLite [O, kh, kw, I] / depthwise [1, kh, kw, C] -> torch [O, I/g, kh, kw]
                    v = v.transpose(0, 3, 1, 2) if op.type == "CONV_2D" else v.transpose(3, 0, 1, 2)
                elif op.type in ("MEAN", "RESHAPE") and k == 1:
                    self.const[t] = np.asarray(v).astype(np.int64)
                    continue
                elif v.ndim == 4:
                    v = v.transpose(0, 3, 1, 2)
                elif v.ndim == 1 and op.type in ("ADD", "SUB", "MUL"):
                    v = v.reshape(1, -1, 1, 1)
                self.const[t] = torch.tensor(np.ascontiguousarray(v), dtype=dtype)
        self.stored_shape = {t: tensors[t].shape for op in ops for t in op.inputs if t >= 0}
        self.order = {name: i for i, name in enumerate(self.layers)}

    def __call__(self, image, wanted=None) -> dict:
        """Named layer outputs; executes only up to the last wanted layer."""
        wanted = list(self.layers) if wanted is None else list(wanted)
        for w in wanted:
            if w not in self.layers:
                raise KeyError(f"unknown layer {w!r}")
        remaining = {self.layers[w] for w in wanted}
        x = image if image.dim() == 4 else image.unsqueeze(0)
        values = {self.input: x.to(self.dtype)}
        result = {}

        def val(t):
            return values[t] if t in values else self.const[t]

        for op in self.ops:
            if not remaining:
                break
            a = [val(t) if t >= 0 else None for t in op.inputs]
            o = op.options
            ty = op.type
            if ty in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                xin, w, b = a[0], a[1], a[2] if len(a) > 2 else None
                kh, kw = w.shape[2], w.shape[3]
                sh, sw = o["stride"]
                if o["padding"] == "SAME":
                    pt, pb = same_pad(xin.shape[2], kh, sh)
                    pl, pr = same_pad(xin.shape[3], kw, sw)
                    xin = F.pad(xin, (pl, pr, pt, pb))
                groups = xin.shape[1] if ty == "DEPTHWISE_CONV_2D" else 1
                if ty == "DEPTHWISE_CONV_2D" and w.shape[0] != xin.shape[1]:
                    raise NotImplementedError("depth multiplier != 1")
                y = act(F.conv2d(xin, w, b, stride=(sh, sw), groups=groups), o["activation"])
            elif ty == "HARD_SWISH":
                y = hard_swish(a[0])
            elif ty in ("QUANTIZE", "DEQUANTIZE"):
                y = a[0]
            elif ty in ("ADD", "SUB", "MUL"):
                p, q = a
                y = p + q if ty == "ADD" else (p - q if ty == "SUB" else p * q)
                y = act(y, o.get("activation", "NONE"))
            elif ty == "MEAN":
                axes = [NHWC_TO_NCHW_AXIS[int(v)] for v in np.atleast_1d(a[1])]
                y = a[0].mean(dim=axes, keepdim=o.get("keep_dims", False))
            elif ty == "AVERAGE_POOL_2D":
                stored = self.stored_shape[op.inputs[0]]
                fh, fw = o["filter"]
                if (fh, fw) == (1, 1) and o["stride"] == (1, 1):
                    y = a[0]
                elif len(stored) == 4 and (fh, fw) == stored[1:3] and o["padding"] == "VALID":
                    y = act(a[0].mean(dim=(2, 3), keepdim=True), o["activation"])
                else:
                    raise NotImplementedError("non-global average pool")
            elif ty == "RESHAPE":
                shape = o.get("new_shape")
                if len(a) > 1 and a[1] is not None:
                    shape = [int(v) for v in a[1]]
                y = a[0].permute(0, 2, 3, 1).reshape(shape) if a[0].dim() == 4 else a[0].reshape(shape)
            else:
                raise NotImplementedError(f"op {op.index}: {ty}")
            out = op.outputs[0]
            values[out] = y
            if out in remaining:
                remaining.discard(out)
        for w in wanted:
            result[w] = values[self.layers[w]]
        return result


# --------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------


def gram(feat):
    """feat [1, C, H, W] -> G = F F^T / (C H W)."""
    _, c, h, w = feat.shape
    f = feat.reshape(c, h * w)
    return f @ f.T / (c * h * w)


def tv_loss(img):
    """img [3, H, W]."""
    dv = img[:, 1:, :] - img[:, :-1, :]
    dh = img[:, :, 1:] - img[:, :, :-1]
    return (dv * dv).mean() + (dh * dh).mean()


class StyleLoss:
    def __init__(self, net: TfliteNet, content, style, content_layers, style_layers,
                 content_weight, style_weight, tv_weight):
        self.net = net
        self.content_layers = list(content_layers)
        self.style_layers = [(name, float(w)) for name, w in style_layers]
        self.cw, self.sw, self.tw = content_weight, style_weight, tv_weight
        names = self.content_layers + [n for n, _ in self.style_layers]
        self.wanted = sorted(set(names), key=net.order.__getitem__)
        with torch.no_grad():
            c = net(content, self.content_layers)
            s = net(style, [n for n, _ in self.style_layers])
            self.content_targets = {n: c[n].detach() for n in self.content_layers}
            self.gram_targets = {n: gram(s[n]).detach() for n, _ in self.style_layers}

    def terms(self, img):
        """-> (total, E_content, E_style, E_tv) as 0-d tensors."""
        feats = self.net(img, self.wanted)
        e_content = sum(((feats[n] - self.content_targets[n]) ** 2).mean() for n in self.content_layers)
        e_style = sum(w * ((gram(feats[n]) - self.gram_targets[n]) ** 2).mean()
                      for n, w in self.style_layers)
        e_tv = tv_loss(img)
        total = self.cw * e_content + self.sw * e_style + self.tw * e_tv
        return total, e_content, e_style, e_tv


def run_adam(loss: StyleLoss, init, steps, lr, record=True):
    x = init.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr, betas=tuple(ADAM["betas"]), eps=ADAM["eps"])
    traj = []
    for _ in range(steps):
        opt.zero_grad()
        total, ec, es, et = loss.terms(x)
        total.backward()
        if record:
            traj.append([total.item(), ec.item(), es.item(), et.item()])
        opt.step()
        with torch.no_grad():
            x.data.clamp_(*ADAM["clamp"])
    if record:
        with torch.no_grad():
            traj.append([t.item() for t in loss.terms(x)])
    return x.detach(), np.array(traj)


def make_lbfgs(x):
    return torch.optim.LBFGS([x], lr=LBFGS["lr"], max_iter=LBFGS["max_iter"],
                             history_size=LBFGS["history_size"], line_search_fn=LBFGS["line_search_fn"],
                             tolerance_grad=LBFGS["tolerance_grad"],
                             tolerance_change=LBFGS["tolerance_change"])


def run_lbfgs(loss: StyleLoss, init, iterations, record=True):
    x = init.detach().clone().requires_grad_(True)
    opt = make_lbfgs(x)
    traj = []
    calls = [0]

    def closure():
        calls[0] += 1
        opt.zero_grad()
        total, ec, es, et = loss.terms(x)
        total.backward()
        if record:
            traj.append([total.item(), ec.item(), es.item(), et.item()])
        return total

    for i in range(iterations):
        opt.step(closure)
        if calls[0] != i + 1:
            raise RuntimeError("L-BFGS evaluated the closure more than once per step")
    if record:
        with torch.no_grad():
            traj.append([t.item() for t in loss.terms(x)])
    return x.detach(), np.array(traj)


# --------------------------------------------------------------------------------------
# Synthetic images and fixture writing
# --------------------------------------------------------------------------------------


def smooth_image(height: int, width: int, seed: int) -> np.ndarray:
    """float32 [3, H, W] in [0, 1]: gradient + sinusoids + blob + noise, min-max scaled."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid((np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width,
                         indexing="ij")
    chans = []
    for _ in range(3):
        g = rng.uniform(-1, 1, 2)
        v = g[0] * (xx - 0.5) + g[1] * (yy - 0.5)
        for _ in range(3):
            f = rng.uniform(0.5, 5.0, 2) * rng.choice([-1.0, 1.0], 2)
            v = v + 0.25 * np.sin(2 * math.pi * (f[0] * xx + f[1] * yy) + rng.uniform(0, 2 * math.pi))
        cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.3)
        v = v + 0.6 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        v = v + 0.1 * rng.standard_normal((height, width))
        v = (v - v.min()) / (v.max() - v.min())
        chans.append(v)
    return np.stack(chans).astype(np.float32)


def save_safetensors(path: Path, tensors: dict, metadata: dict):
    """float32 safetensors with a deterministic (sorted) header."""
    header = {"__metadata__": dict(sorted(metadata.items()))}
    chunks, off = [], 0
    for name in sorted(tensors):
        data = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape),
                        "data_offsets": [off, off + len(data)]}
        chunks.append(data)
        off += len(data)
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        f.writelines(chunks)


def finite_difference_check(loss: StyleLoss, img, grad, count, seed, eps):
    rng = np.random.default_rng(seed)
    _, h, w = img.shape
    worst = 0.0
    rows = []
    for _ in range(count):
        c, y, x = int(rng.integers(3)), int(rng.integers(h)), int(rng.integers(w))
        with torch.no_grad():
            p, m = img.clone(), img.clone()
            p[c, y, x] += eps
            m[c, y, x] -= eps
            fd = (loss.terms(p)[0].item() - loss.terms(m)[0].item()) / (2 * eps)
        ag = grad[c, y, x].item()
        rel = abs(fd - ag) / max(abs(fd), abs(ag), 1e-300)
        worst = max(worst, rel)
        rows.append((c, y, x, ag, fd, rel))
    return worst, rows


def cmd_fixture(args):
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    net = TfliteNet(args.weights, torch.float64)
    ch, cw = CONTENT_SIZE
    sh, sw = STYLE_SIZE
    content32 = smooth_image(ch, cw, SEEDS["content"])
    style32 = smooth_image(sh, sw, SEEDS["style"])
    noise = np.random.default_rng(SEEDS["init_noise"]).standard_normal((3, ch, cw))
    init32 = np.clip(content32.astype(np.float64) + INIT_NOISE * noise, 0.0, 1.0).astype(np.float32)
    content = torch.tensor(content32, dtype=torch.float64)
    style = torch.tensor(style32, dtype=torch.float64)
    init = torch.tensor(init32, dtype=torch.float64)

    loss = StyleLoss(net, content, style, CONTENT_LAYERS, STYLE_LAYERS,
                     CONTENT_WEIGHT, STYLE_WEIGHT, TV_WEIGHT)
    x = init.clone().requires_grad_(True)
    total, ec, es, et = loss.terms(x)
    total.backward()
    grad = x.grad.detach().clone()
    print(f"at init: E_content {ec.item():.6e}  E_style {es.item():.6e}  E_tv {et.item():.6e}  "
          f"total {total.item():.6e}")
    weighted = [CONTENT_WEIGHT * ec.item(), STYLE_WEIGHT * es.item(), TV_WEIGHT * et.item()]
    ratio = max(weighted) / min(weighted)
    print(f"weighted terms: content {weighted[0]:.4e}  style {weighted[1]:.4e}  tv {weighted[2]:.4e}  "
          f"(max/min {ratio:.1f})")
    if ratio > 100:
        print("WARNING: weighted terms differ by more than a factor 100", file=sys.stderr)

    worst, rows = finite_difference_check(loss, init, grad, args.fd_points, SEEDS["finite_difference"],
                                          args.fd_eps)
    for c, y, xx, ag, fd, rel in rows:
        print(f"  fd ({c},{y:2d},{xx:2d}) autograd {ag:+.9e}  central-diff {fd:+.9e}  rel {rel:.2e}")
    print(f"finite-difference check: {len(rows)} pixels, eps {args.fd_eps:g}, max relative error {worst:.3e}")

    adam_final, adam_traj = run_adam(loss, init, ADAM["steps"], ADAM["lr"])
    lbfgs_final, lbfgs_traj = run_lbfgs(loss, init, LBFGS["iterations"])
    for name, tr in (("adam", adam_traj), ("lbfgs", lbfgs_traj)):
        print(f"{name} total: " + " ".join(f"{v:.6e}" for v in tr[:, 0]))

    tensors = {
        "content": content32, "style": style32, "init": init32,
        "loss_content": np.array([ec.item()]), "loss_style": np.array([es.item()]),
        "loss_tv": np.array([et.item()]), "loss_total": np.array([total.item()]),
        "grad": grad.numpy(),
        "adam_final": adam_final.numpy(), "lbfgs_final": lbfgs_final.numpy(),
    }
    for key, tr in (("adam", adam_traj), ("lbfgs", lbfgs_traj)):
        tensors[f"{key}_losses"] = tr[:, 0]
        tensors[f"{key}_content"] = tr[:, 1]
        tensors[f"{key}_style"] = tr[:, 2]
        tensors[f"{key}_tv"] = tr[:, 3]
    for n, g in loss.gram_targets.items():
        tensors[f"gram_target.{n}"] = g.numpy()
    for n, p in loss.content_targets.items():
        tensors[f"content_target.{n}"] = p[0].numpy()
    for name in args.omit:
        if name not in tensors:
            raise SystemExit(f"--omit {name}: no such tensor")
        del tensors[name]
    meta = {"generator": "tools/reference_style.py fixture", "weights": Path(args.weights).name,
            "settings": json.dumps(settings_dict(), sort_keys=True, separators=(",", ":"))}
    if args.omit:
        meta["omitted"] = ",".join(sorted(args.omit))
    save_safetensors(args.out, tensors, meta)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    for k in sorted(tensors):
        v = np.asarray(tensors[k])
        print(f"  {k:32s} {str(list(v.shape)):16s} {v.size * 4:7d} B  min {v.min():+.4e} max {v.max():+.4e}")


# --------------------------------------------------------------------------------------
# verify: torch forward vs tools/reference.py (numpy float64)
# --------------------------------------------------------------------------------------


def cmd_verify(args):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import reference as ref

    width, height = args.size
    image = ref.synthetic_image(width, height, args.seed)
    graph = ref.TfliteGraph(args.weights)
    values = ref.run_tflite(graph, image)
    ref_layers = ref.identify_small_layers(graph)
    net = TfliteNet(args.weights, torch.float64)
    for name, t in ref_layers.items():
        if net.layers[name] != t:
            raise SystemExit(f"layer {name}: tensor {net.layers[name]} here, {t} in tools/reference.py")
    with torch.no_grad():
        out = net(torch.tensor(image, dtype=torch.float64))
    worst = 0.0
    for name, t in net.layers.items():
        mine = out[name].numpy()
        theirs = values[t]
        theirs = theirs.transpose(0, 3, 1, 2) if theirs.ndim == 4 else theirs
        theirs = theirs.reshape(mine.shape)
        rel = np.linalg.norm(mine - theirs) / np.linalg.norm(theirs)
        worst = max(worst, rel)
        print(f"  {name:18s} {str(list(mine.shape)):20s} rel L2 {rel:.3e}")
    print(f"{len(net.layers)} layers, image {width}x{height} (WxH) seed {args.seed}: "
          f"max relative L2 {worst:.3e} ({'OK' if worst < 1e-10 else 'FAIL'})")
    if worst >= 1e-10:
        raise SystemExit(1)


# --------------------------------------------------------------------------------------
# time: seconds per iteration on real photos (float32, CPU)
# --------------------------------------------------------------------------------------


def load_image(path: Path, size: int) -> torch.Tensor:
    from PIL import Image

    img = Image.open(path).convert("RGB")
    w, h = img.size
    scale = size / max(w, h)
    img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)
    return torch.tensor(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def cmd_time(args):
    threads = args.threads or os.cpu_count()
    torch.set_num_threads(threads)
    net = TfliteNet(args.weights, torch.float32)
    content = load_image(args.content, args.size)
    style = load_image(args.style, args.size)
    loss = StyleLoss(net, content, style, CONTENT_LAYERS, STYLE_LAYERS,
                     CONTENT_WEIGHT, STYLE_WEIGHT, TV_WEIGHT)
    x = content.clone().requires_grad_(True)
    if args.optimizer == "adam":
        opt = torch.optim.Adam([x], lr=ADAM["lr"], betas=tuple(ADAM["betas"]), eps=ADAM["eps"])

        def step():
            opt.zero_grad()
            total = loss.terms(x)[0]
            total.backward()
            opt.step()
            with torch.no_grad():
                x.clamp_(0.0, 1.0)
            return total.item()
    else:
        opt = make_lbfgs(x)

        def closure():
            opt.zero_grad()
            total = loss.terms(x)[0]
            total.backward()
            return total

        def step():
            return float(opt.step(closure).detach())

    step()  # warm-up
    times, last = [], None
    for _ in range(args.iterations):
        t0 = time.perf_counter()
        last = step()
        times.append(time.perf_counter() - t0)
    dt = sum(times) / len(times)
    print(f"{args.optimizer} float32 CPU ({threads} threads) content {tuple(content.shape[1:])} "
          f"style {tuple(style.shape[1:])} (HxW): {dt:.4f} s/iteration (mean of {args.iterations}; "
          f"median {float(np.median(times)):.4f}, min {min(times):.4f}, max {max(times):.4f}; "
          f"loss {last:.4e})")


def parse_size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("verify", help="torch forward vs tools/reference.py")
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument("--size", type=parse_size, default=(52, 40), help="WxH")
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("fixture", help="write the style-transfer fixture")
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument("--out", type=Path, default=REPO_ROOT / "tests" / "fixtures" / "style_chain.safetensors")
    p.add_argument("--fd-points", type=int, default=20)
    p.add_argument("--fd-eps", type=float, default=1e-6)
    p.add_argument("--omit", action="append", default=[],
                   help="leave a tensor out of the file (repeatable), e.g. gram_target.block5.expand")
    p.set_defaults(func=cmd_fixture)

    p = sub.add_parser("time", help="seconds per optimizer iteration on real photos")
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument("--content", type=Path, default=SHARED / "images" / "tubingen.jpg")
    p.add_argument("--style", type=Path, default=SHARED / "images" / "starry_night.jpg")
    p.add_argument("--size", type=int, default=256, help="longer side in pixels")
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--optimizer", choices=["lbfgs", "adam"], default="lbfgs")
    p.add_argument("--threads", type=int, default=0, help="0 = all cores")
    p.set_defaults(func=cmd_time)

    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    sys.exit(main())
