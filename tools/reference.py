#!/usr/bin/env python3
"""Independent float64 numpy reference for the `neural-style` MobileNetV3 feature engine.

This script produces the small safetensors fixtures that the Rust tests compare
against. It deliberately shares no code, no data layout decisions and no
language with the Rust/wgpu implementation: it parses the .tflite flatbuffer
with Google's generated Python readers (PyPI package `tflite`), dequantizes the
constants itself and re-executes the graph op by op in float64 NHWC numpy, with
textbook loop-over-kernel-taps convolutions. The torchvision branch builds the
state_dict layout and the forward pass from torchvision's MobileNetV3 definition
(eval mode) without torch. Agreement between the two independent
implementations is what the fixtures test.

Sub-commands
------------
tflite       Re-execute a TFLite MobileNetV3-Small graph in float on a synthetic
             image of ANY size and record named layer outputs::

                 python3 tools/reference.py tflite \
                     --weights ../shared/weights/mobilenet_v3_small_100_224_int8.tflite \
                     --out tests/fixtures/tflite_int8_37x23.safetensors --size 37x23 --seed 1

torchvision  Run torchvision's mobilenet_v3_small / mobilenet_v3_large (width 1.0)
             with synthetic, formula-defined weights::

                 python3 tools/reference.py torchvision --arch small \
                     --out tests/fixtures/torchvision_small_41x29.safetensors --size 41x29 --seed 3

             Also writes `torchvision_<arch>_tensors.json` ([[name, shape], ...] in
             state_dict order) next to the output file.

classify     Sanity check of the TFLite re-execution on real photos (224x224, PIL
             bicubic resize, pixel/255), printing the top-5 logits::

                 python3 tools/reference.py classify \
                     --weights ../shared/weights/mobilenet_v3_small_100_224_int8.tflite \
                     ../shared/images/grace_hopper.jpg ../shared/images/cat.png

Output format (all float32)
---------------------------
`input`  [3, H, W]  the synthetic RGB image in [0, 1] (CHW)
`stem`, `block0` .. `blockN`, `head`  [1, C, h, w] (NCHW)
`logits` [1, 1001] (TFLite, index 0 = background) or [1, 1000] (torchvision)
With `--dump-all` (tflite only) every op output is added as `op<NNN>_<OPTYPE>`.

Float semantics of the TFLite graphs
------------------------------------
* Constants: real = (q - zero_point) * scale, per channel along
  `quantized_dimension` when there are several scales; float32 constants as is.
* QUANTIZE / DEQUANTIZE are identities.
* A quantized graph input (uint8 model: scale 1/127, zero point 128) is fed
  q = 255 * pixel (not rounded), real = (q - zero_point) * scale.
* uint8 graphs only: every op output of type UINT8 with zero point 0 whose name
  ends in `Relu` or `Relu6` is clamped to its quantized range [0, 255 * scale]
  (some ReLUs of that graph exist only as quantization ranges).
* SAME padding uses TF's convention (extra padding after); AVERAGE_POOL_2D
  whose filter equals the stored input size is a global average over the
  actual input size, a 1x1 pool is the identity.

Synthetic torchvision weights
-----------------------------
Tensors are enumerated in state_dict order (num_batches_tracked skipped) with
index t; element i (flat, row-major) gets
    u = ((i + 1) * 2654435761 + (t + 1) * 97531) mod 2**32,  r = u / 2**32
and, computed in float64 then rounded to float32:
    tensors with >= 2 dims (conv / linear weights): (r - 0.5) * 2 * sqrt(6 / fan_in),
        fan_in = product of all dims but the first;
    1-D `.weight` (BN gamma) and `.running_var`: 0.5 + r;
    1-D `.bias` (conv, linear and BN) and `.running_mean`: (r - 0.5) * 0.2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WEIGHTS = REPO_ROOT.parent / "shared" / "weights" / "mobilenet_v3_small_100_224_int8.tflite"

# --------------------------------------------------------------------------------------
# Synthetic input image
# --------------------------------------------------------------------------------------


def synthetic_image(width: int, height: int, seed: int) -> np.ndarray:
    """Deterministic RGB test image, float32 [3, H, W], each channel spread over [0, 1].

    Per channel: a linear gradient in a random direction, two sinusoids with random
    frequencies and phases, and white noise; the sum is then min-max normalised to
    exactly [0, 1] so that every fixture covers the full input range.
    """
    rng = np.random.default_rng(seed)
    ys = (np.arange(height, dtype=np.float64) + 0.5) / height
    xs = (np.arange(width, dtype=np.float64) + 0.5) / width
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    channels = []
    for _ in range(3):
        gx, gy = rng.uniform(-1.0, 1.0, size=2)
        value = gx * (xx - 0.5) + gy * (yy - 0.5)
        for _ in range(2):
            fx, fy = rng.uniform(0.5, 4.0, size=2) * rng.choice([-1.0, 1.0], size=2)
            phase = rng.uniform(0.0, 2.0 * math.pi)
            value = value + 0.3 * np.sin(2.0 * math.pi * (fx * xx + fy * yy) + phase)
        value = value + 0.15 * rng.standard_normal((height, width))
        lo, hi = value.min(), value.max()
        value = (value - lo) / (hi - lo) if hi > lo else np.full_like(value, 0.5)
        channels.append(value)
    return np.stack(channels).astype(np.float32)


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' -> (width, height)."""
    try:
        w, h = text.lower().split("x")
        width, height = int(w), int(h)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"size must look like WxH, got {text!r}") from exc
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return width, height


# --------------------------------------------------------------------------------------
# Generic float NHWC kernels (batch 1)
# --------------------------------------------------------------------------------------


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int, int]:
    """TF 'SAME': (out, pad_before, pad_after); the odd pixel of padding goes after."""
    eff = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + eff - size, 0)
    return out, total // 2, total - total // 2


def valid_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int, int]:
    eff = (kernel - 1) * dilation + 1
    out = (size - eff) // stride + 1
    if out < 1:
        raise ValueError(f"VALID conv: input {size} smaller than kernel {eff}")
    return out, 0, 0


def symmetric_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int, int]:
    """PyTorch-style padding of (k - 1) // 2 * dilation on both sides."""
    pad = (kernel - 1) // 2 * dilation
    eff = (kernel - 1) * dilation + 1
    out = (size + 2 * pad - eff) // stride + 1
    return out, pad, pad


def _taps(x, kh, kw, stride, dilation, pads):
    """Yield (i, j, strided input view [oh, ow, C]) for every kernel tap."""
    (oh, pt, pb), (ow, pl, pr) = pads
    xp = np.pad(x, ((pt, pb), (pl, pr), (0, 0)))
    sh, sw = stride
    dh, dw = dilation
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dh, j * dw
            yield i, j, xp[r0 : r0 + (oh - 1) * sh + 1 : sh, c0 : c0 + (ow - 1) * sw + 1 : sw, :]


def conv2d(x, weight, bias, stride, dilation, pad_fn):
    """x: [1, H, W, Cin]; weight: [Cout, kh, kw, Cin]; returns [1, oh, ow, Cout]."""
    _, h, w, cin = x.shape
    cout, kh, kw, wcin = weight.shape
    if wcin != cin:
        raise ValueError(f"conv2d: input has {cin} channels, weights expect {wcin}")
    pads = (pad_fn(h, kh, stride[0], dilation[0]), pad_fn(w, kw, stride[1], dilation[1]))
    out = np.zeros((pads[0][0], pads[1][0], cout), dtype=np.float64)
    for i, j, patch in _taps(x[0], kh, kw, stride, dilation, pads):
        out += patch @ weight[:, i, j, :].T
    if bias is not None:
        out += bias
    return out[None]


def depthwise_conv2d(x, weight, bias, stride, dilation, pad_fn):
    """x: [1, H, W, C]; weight: [1, kh, kw, C] (depth multiplier 1)."""
    _, h, w, c = x.shape
    _, kh, kw, wc = weight.shape
    if wc != c:
        raise ValueError(f"depthwise: input has {c} channels, weights have {wc} (multiplier != 1?)")
    pads = (pad_fn(h, kh, stride[0], dilation[0]), pad_fn(w, kw, stride[1], dilation[1]))
    out = np.zeros((pads[0][0], pads[1][0], c), dtype=np.float64)
    for i, j, patch in _taps(x[0], kh, kw, stride, dilation, pads):
        out += patch * weight[0, i, j, :]
    if bias is not None:
        out += bias
    return out[None]


def relu6(x):
    return np.clip(x, 0.0, 6.0)


def hard_swish(x):
    return x * relu6(x + 3.0) / 6.0


def hard_sigmoid(x):
    return relu6(x + 3.0) / 6.0


def to_nchw(x: np.ndarray) -> np.ndarray:
    """[1, H, W, C] -> float32 [1, C, H, W] (contiguous)."""
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)).astype(np.float32)


# --------------------------------------------------------------------------------------
# TFLite flatbuffer reading
# --------------------------------------------------------------------------------------

# TensorType enum values (schema.fbs)
TFL_FLOAT32, TFL_INT32, TFL_UINT8, TFL_INT64, TFL_INT16, TFL_INT8 = 0, 2, 3, 4, 7, 9
TFL_NUMPY_DTYPE = {
    0: "<f4", 1: "<f2", 2: "<i4", 3: "u1", 4: "<i8", 6: "?", 7: "<i2", 9: "i1", 10: "<f8",
}
FUSED_ACTIVATION = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}
PADDING = {0: "SAME", 1: "VALID"}


@dataclass
class Tensor:
    index: int
    name: str
    type: int
    shape: tuple[int, ...]
    scales: np.ndarray | None  # float64, len 1 or per channel
    zero_points: np.ndarray | None  # int64
    quantized_dimension: int
    data: np.ndarray | None  # raw constant values (stored dtype), None for activations

    @property
    def is_quantized(self) -> bool:
        return self.scales is not None and self.type != TFL_FLOAT32

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """real = (q - zero_point) * scale, per channel along quantized_dimension."""
        q = q.astype(np.float64)
        if not self.is_quantized:
            return q
        scales, zps = self.scales, self.zero_points.astype(np.float64)
        if scales.size == 1:
            return (q - zps.reshape(-1)[0]) * scales[0]
        axis = self.quantized_dimension
        shape = [1] * q.ndim
        shape[axis] = scales.size
        return (q - zps.reshape(shape)) * scales.reshape(shape)

    def constant(self) -> np.ndarray:
        """The dequantized constant as float64."""
        if self.data is None:
            raise ValueError(f"tensor {self.index} ({self.name}) is not a constant")
        return self.dequantize(self.data)


@dataclass
class Op:
    index: int
    type: str
    inputs: list[int]
    outputs: list[int]
    options: dict


class TfliteGraph:
    """The first subgraph of a .tflite file, with constants and op options decoded."""

    def __init__(self, path: Path):
        import tflite  # generated flatbuffer readers (PyPI `tflite`)
        from tflite.BuiltinOperator import BuiltinOperator

        self.path = Path(path)
        buf = self.path.read_bytes()
        model = tflite.Model.GetRootAsModel(buf, 0)
        if model.SubgraphsLength() != 1:
            raise ValueError(f"{path}: expected one subgraph, found {model.SubgraphsLength()}")
        graph = model.Subgraphs(0)
        op_names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}

        self.tensors: list[Tensor] = []
        for i in range(graph.TensorsLength()):
            t = graph.Tensors(i)
            q = t.Quantization()
            scales = zps = None
            qdim = 0
            if q is not None and q.ScaleLength() > 0:
                scales = q.ScaleAsNumpy().astype(np.float64)
                zps = (q.ZeroPointAsNumpy().astype(np.int64) if q.ZeroPointLength()
                       else np.zeros(scales.size, np.int64))
                qdim = q.QuantizedDimension()
            shape = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
            data = None
            b = model.Buffers(t.Buffer())
            raw = None
            if b is not None and b.DataLength() > 0:
                raw = b.DataAsNumpy().tobytes()
            elif b is not None and b.Offset() > 1:  # large-model layout: data after the flatbuffer
                raw = buf[b.Offset() : b.Offset() + b.Size()]
            if raw is not None:
                data = np.frombuffer(raw, dtype=TFL_NUMPY_DTYPE[t.Type()]).reshape(shape)
            self.tensors.append(Tensor(i, t.Name().decode(), t.Type(), shape, scales, zps, qdim, data))

        self.ops: list[Op] = []
        for i in range(graph.OperatorsLength()):
            o = graph.Operators(i)
            code = model.OperatorCodes(o.OpcodeIndex())
            # Newer files set builtin_code; older ones only deprecated_builtin_code (< 127).
            builtin = code.BuiltinCode() or code.DeprecatedBuiltinCode()
            name = op_names.get(builtin, f"BUILTIN_{builtin}")
            self.ops.append(Op(i, name, [int(v) for v in o.InputsAsNumpy()],
                               [int(v) for v in o.OutputsAsNumpy()], self._options(name, o)))
        self.inputs = [int(v) for v in graph.InputsAsNumpy()]
        self.outputs = [int(v) for v in graph.OutputsAsNumpy()]

    @staticmethod
    def _options(name: str, op) -> dict:
        import tflite

        table = op.BuiltinOptions()
        if table is None:
            return {}

        def load(cls):
            opts = cls()
            opts.Init(table.Bytes, table.Pos)
            return opts

        if name == "CONV_2D":
            o = load(tflite.Conv2DOptions)
            return dict(padding=PADDING[o.Padding()], stride=(o.StrideH(), o.StrideW()),
                        dilation=(o.DilationHFactor(), o.DilationWFactor()),
                        activation=FUSED_ACTIVATION[o.FusedActivationFunction()])
        if name == "DEPTHWISE_CONV_2D":
            o = load(tflite.DepthwiseConv2DOptions)
            return dict(padding=PADDING[o.Padding()], stride=(o.StrideH(), o.StrideW()),
                        dilation=(o.DilationHFactor(), o.DilationWFactor()),
                        depth_multiplier=o.DepthMultiplier(),
                        activation=FUSED_ACTIVATION[o.FusedActivationFunction()])
        if name == "AVERAGE_POOL_2D":
            o = load(tflite.Pool2DOptions)
            return dict(padding=PADDING[o.Padding()], stride=(o.StrideH(), o.StrideW()),
                        filter=(o.FilterHeight(), o.FilterWidth()),
                        activation=FUSED_ACTIVATION[o.FusedActivationFunction()])
        if name in ("ADD", "SUB", "MUL"):
            cls = {"ADD": tflite.AddOptions, "SUB": tflite.SubOptions, "MUL": tflite.MulOptions}[name]
            return dict(activation=FUSED_ACTIVATION[load(cls).FusedActivationFunction()])
        if name == "MEAN":
            return dict(keep_dims=bool(load(tflite.ReducerOptions).KeepDims()))
        if name == "SOFTMAX":
            return dict(beta=float(load(tflite.SoftmaxOptions).Beta()))
        if name == "RESHAPE":
            o = load(tflite.ReshapeOptions)
            return dict(new_shape=[int(v) for v in o.NewShapeAsNumpy()] if o.NewShapeLength() else None)
        return {}

    def consumers(self) -> dict[int, list[Op]]:
        result: dict[int, list[Op]] = {}
        for op in self.ops:
            for t in op.inputs:
                if t >= 0:
                    result.setdefault(t, []).append(op)
        return result

    def producers(self) -> dict[int, Op]:
        return {t: op for op in self.ops for t in op.outputs}


# --------------------------------------------------------------------------------------
# TFLite float re-execution
# --------------------------------------------------------------------------------------


def apply_activation(x: np.ndarray, name: str) -> np.ndarray:
    if name == "NONE":
        return x
    if name == "RELU":
        return np.maximum(x, 0.0)
    if name == "RELU6":
        return relu6(x)
    if name == "RELU_N1_TO_1":
        return np.clip(x, -1.0, 1.0)
    raise NotImplementedError(f"fused activation {name}")


def run_tflite(graph: TfliteGraph, image_chw: np.ndarray, clamp_relu_ranges: bool | None = None):
    """Execute `graph` in float64 on an RGB image [3, H, W] in [0, 1].

    Returns {tensor index: float64 value} for the graph input and every op output.
    `clamp_relu_ranges` enables the uint8 ReLU-by-quantization-range rule; by default
    it is on exactly when the graph input is UINT8.
    """
    if len(graph.inputs) != 1:
        raise ValueError("expected a single graph input")
    inp = graph.tensors[graph.inputs[0]]
    pixels = image_chw.astype(np.float64).transpose(1, 2, 0)[None]  # [1, H, W, 3]
    if inp.type == TFL_FLOAT32:
        x = pixels
    elif inp.type == TFL_UINT8 and inp.is_quantized:
        # The quantized input is fed the (unrounded) 8-bit pixel value q = 255 * p.
        x = inp.dequantize(255.0 * pixels)
    else:
        raise NotImplementedError(f"graph input type {inp.type}")
    if clamp_relu_ranges is None:
        clamp_relu_ranges = inp.type == TFL_UINT8

    values: dict[int, np.ndarray] = {inp.index: x}

    def value(t: int) -> np.ndarray:
        if t in values:
            return values[t]
        tensor = graph.tensors[t]
        if tensor.data is None:
            raise ValueError(f"tensor {t} ({tensor.name}) used before being computed")
        values[t] = tensor.constant()
        return values[t]

    for op in graph.ops:
        args = [value(t) if t >= 0 else None for t in op.inputs]
        out = execute_op(graph, op, args)
        out_tensor = graph.tensors[op.outputs[0]]
        if (clamp_relu_ranges and out_tensor.type == TFL_UINT8 and out_tensor.is_quantized
                and out_tensor.zero_points.size == 1 and out_tensor.zero_points[0] == 0
                and out_tensor.name.endswith(("Relu", "Relu6"))):
            out = np.clip(out, 0.0, 255.0 * out_tensor.scales[0])
        values[op.outputs[0]] = out
    return values


def execute_op(graph: TfliteGraph, op: Op, args: list) -> np.ndarray:
    o = op.options
    t = op.type
    if t in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        x, w, b = args[0], args[1], args[2] if len(args) > 2 else None
        pad_fn = same_padding if o["padding"] == "SAME" else valid_padding
        if t == "CONV_2D":
            y = conv2d(x, w, b, o["stride"], o["dilation"], pad_fn)
        else:
            if o.get("depth_multiplier", 1) not in (0, 1) and w.shape[3] != x.shape[3]:
                raise NotImplementedError("depthwise depth_multiplier != 1")
            y = depthwise_conv2d(x, w, b, o["stride"], o["dilation"], pad_fn)
        return apply_activation(y, o["activation"])
    if t == "HARD_SWISH":
        return hard_swish(args[0])
    if t in ("QUANTIZE", "DEQUANTIZE"):
        return args[0]
    if t in ("ADD", "SUB", "MUL"):
        a, b = args
        y = a + b if t == "ADD" else (a - b if t == "SUB" else a * b)
        return apply_activation(y, o.get("activation", "NONE"))
    if t == "MEAN":
        axes = tuple(int(v) for v in np.atleast_1d(args[1]))
        return args[0].mean(axis=axes, keepdims=o.get("keep_dims", False))
    if t == "AVERAGE_POOL_2D":
        x = args[0]
        stored = graph.tensors[op.inputs[0]].shape
        fh, fw = o["filter"]
        if (fh, fw) == (1, 1) and o["stride"] == (1, 1):
            return x
        if len(stored) == 4 and (fh, fw) == (stored[1], stored[2]) and o["padding"] == "VALID":
            # A global pool in the 224x224 graph: average over the actual spatial size.
            return apply_activation(x.mean(axis=(1, 2), keepdims=True), o["activation"])
        raise NotImplementedError(f"op {op.index}: non-global AVERAGE_POOL_2D {fh}x{fw}")
    if t == "RESHAPE":
        shape = o.get("new_shape")
        if len(args) > 1 and args[1] is not None:
            shape = [int(v) for v in args[1]]
        return args[0].reshape(shape)
    if t == "SOFTMAX":
        z = args[0] * o.get("beta", 1.0)
        z = np.exp(z - z.max(axis=-1, keepdims=True))
        return z / z.sum(axis=-1, keepdims=True)
    raise NotImplementedError(f"op {op.index}: {t}")


# --------------------------------------------------------------------------------------
# Structural identification of MobileNetV3-Small layers in a TFLite graph
# --------------------------------------------------------------------------------------

# (kernel, expanded channels, out channels, squeeze-excite, activation, stride)
SMALL_BLOCKS = [
    (3, 16, 16, True, "RE", 2),
    (3, 72, 24, False, "RE", 2),
    (3, 88, 24, False, "RE", 1),
    (5, 96, 40, True, "HS", 2),
    (5, 240, 40, True, "HS", 1),
    (5, 240, 40, True, "HS", 1),
    (5, 120, 48, True, "HS", 1),
    (5, 144, 48, True, "HS", 1),
    (5, 288, 96, True, "HS", 2),
    (5, 576, 96, True, "HS", 1),
    (5, 576, 96, True, "HS", 1),
]
SMALL_STEM_CHANNELS = 16
SMALL_HEAD_CHANNELS = 576


@dataclass
class ConvRole:
    role: str  # stem, expand, depthwise, se1, se2, project, head, conv2, logits
    block: int | None
    out_channels: int | None
    kernel: int | None
    stride: int | None


def expected_small_convs(num_classes: int = 1001) -> list[ConvRole]:
    roles = [ConvRole("stem", None, SMALL_STEM_CHANNELS, 3, 2)]
    in_ch = SMALL_STEM_CHANNELS
    for b, (k, exp, out, se, _act, stride) in enumerate(SMALL_BLOCKS):
        if exp != in_ch:
            roles.append(ConvRole("expand", b, exp, 1, 1))
        roles.append(ConvRole("depthwise", b, exp, k, stride))
        if se:
            roles.append(ConvRole("se1", b, None, 1, 1))
            roles.append(ConvRole("se2", b, exp, 1, 1))
        roles.append(ConvRole("project", b, out, 1, 1))
        in_ch = out
    roles += [ConvRole("head", None, SMALL_HEAD_CHANNELS, 1, 1),
              ConvRole("conv2", None, 1024, 1, 1),
              ConvRole("logits", None, num_classes, 1, 1)]
    return roles


def identify_small_layers(graph: TfliteGraph) -> dict[str, int]:
    """Map our layer names to tensor indices by following the dataflow.

    Tensor names are not trusted (the int8 file reuses them wrongly); conv ops are
    matched in execution order against the MobileNetV3-Small architecture and their
    channel counts, kernel sizes and strides are checked.
    """
    convs = [op for op in graph.ops if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    roles = expected_small_convs(graph.tensors[convs[-1].inputs[1]].shape[0] if convs else 1001)
    if len(convs) != len(roles):
        raise ValueError(f"expected {len(roles)} convolutions for MobileNetV3-Small, found {len(convs)}")
    for op, role in zip(convs, roles):
        w = graph.tensors[op.inputs[1]].shape
        is_dw = op.type == "DEPTHWISE_CONV_2D"
        out_ch = w[3] if is_dw else w[0]
        ok = (is_dw == (role.role == "depthwise")
              and (role.out_channels is None or out_ch == role.out_channels)
              and w[1] == w[2] == role.kernel and op.options["stride"] == (role.stride, role.stride))
        if not ok:
            raise ValueError(f"op {op.index} ({op.type}, weights {w}, stride {op.options['stride']}) "
                             f"does not match expected {role}")

    consumers = graph.consumers()

    def only_consumer(tensor: int, op_type: str) -> Op:
        ops = [op for op in consumers.get(tensor, []) if op.type == op_type]
        if len(ops) != 1:
            raise ValueError(f"tensor {tensor}: expected one {op_type} consumer, found {len(ops)}")
        return ops[0]

    layers: dict[str, int] = {}
    conv_of = {(r.role, r.block): op for op, r in zip(convs, roles)}
    layers["stem"] = only_consumer(conv_of[("stem", None)].outputs[0], "HARD_SWISH").outputs[0]
    block_input = layers["stem"]
    in_ch = SMALL_STEM_CHANNELS
    for b, (_k, _exp, out, _se, _act, stride) in enumerate(SMALL_BLOCKS):
        first = conv_of.get(("expand", b)) or conv_of[("depthwise", b)]
        if first.inputs[0] != block_input:
            raise ValueError(f"block{b}: first conv (op {first.index}) does not read the previous block output")
        project_out = conv_of[("project", b)].outputs[0]
        residual = [op for op in consumers.get(project_out, [])
                    if op.type == "ADD" and block_input in op.inputs]
        expect_residual = stride == 1 and in_ch == out
        if bool(residual) != expect_residual:
            raise ValueError(f"block{b}: residual ADD {'missing' if expect_residual else 'unexpected'}")
        block_input = residual[0].outputs[0] if residual else project_out
        layers[f"block{b}"] = block_input
        in_ch = out
    head_conv = conv_of[("head", None)]
    if head_conv.inputs[0] != block_input:
        raise ValueError("head conv does not read the last block output")
    layers["head"] = only_consumer(head_conv.outputs[0], "HARD_SWISH").outputs[0]
    layers["logits"] = conv_of[("logits", None)].outputs[0]
    return layers


def tflite_features(graph: TfliteGraph, image_chw: np.ndarray, dump_all: bool = False):
    """Run the graph and return {name: float32 array} in the fixture layout."""
    values = run_tflite(graph, image_chw)
    layers = identify_small_layers(graph)
    result = {"input": image_chw.astype(np.float32)}
    for name, t in layers.items():
        v = values[t]
        result[name] = v.reshape(1, -1).astype(np.float32) if name == "logits" else to_nchw(v)
    if dump_all:
        for op in graph.ops:
            v = values[op.outputs[0]]
            key = f"op{op.index:03d}_{op.type}"
            result[key] = to_nchw(v) if v.ndim == 4 else v.astype(np.float32)
    return result


# --------------------------------------------------------------------------------------
# torchvision MobileNetV3 (numpy, eval mode)
# --------------------------------------------------------------------------------------

# (kernel, expanded channels, out channels, squeeze-excite, activation, stride)
TV_SMALL = [
    (3, 16, 16, True, "RE", 2), (3, 72, 24, False, "RE", 2), (3, 88, 24, False, "RE", 1),
    (5, 96, 40, True, "HS", 2), (5, 240, 40, True, "HS", 1), (5, 240, 40, True, "HS", 1),
    (5, 120, 48, True, "HS", 1), (5, 144, 48, True, "HS", 1), (5, 288, 96, True, "HS", 2),
    (5, 576, 96, True, "HS", 1), (5, 576, 96, True, "HS", 1),
]
TV_LARGE = [
    (3, 16, 16, False, "RE", 1), (3, 64, 24, False, "RE", 2), (3, 72, 24, False, "RE", 1),
    (5, 72, 40, True, "RE", 2), (5, 120, 40, True, "RE", 1), (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2), (3, 200, 80, False, "HS", 1), (3, 184, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1), (3, 480, 112, True, "HS", 1), (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2), (5, 960, 160, True, "HS", 1), (5, 960, 160, True, "HS", 1),
]
TV_ARCH = {
    # blocks, stem channels, last conv channels, classifier hidden
    "small": (TV_SMALL, 16, 576, 1024),
    "large": (TV_LARGE, 16, 960, 1280),
}
TV_NUM_CLASSES = 1000
TV_BN_EPS = 0.001
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """torchvision.models._utils._make_divisible."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def torchvision_state_dict_layout(arch: str) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every state_dict tensor, in order, num_batches_tracked skipped."""
    blocks, stem_ch, last_ch, hidden = TV_ARCH[arch]
    layout: list[tuple[str, tuple[int, ...]]] = []

    def conv_bn(prefix: str, cin_per_group: int, cout: int, k: int):
        layout.append((f"{prefix}.0.weight", (cout, cin_per_group, k, k)))
        for p in ("weight", "bias", "running_mean", "running_var"):
            layout.append((f"{prefix}.1.{p}", (cout,)))

    conv_bn("features.0", 3, stem_ch, 3)
    in_ch = stem_ch
    for n, (k, exp, out, se, _act, _stride) in enumerate(blocks, start=1):
        idx = 0
        if exp != in_ch:
            conv_bn(f"features.{n}.block.{idx}", in_ch, exp, 1)
            idx += 1
        conv_bn(f"features.{n}.block.{idx}", 1, exp, k)
        idx += 1
        if se:
            sq = make_divisible(exp // 4, 8)
            p = f"features.{n}.block.{idx}"
            layout += [(f"{p}.fc1.weight", (sq, exp, 1, 1)), (f"{p}.fc1.bias", (sq,)),
                       (f"{p}.fc2.weight", (exp, sq, 1, 1)), (f"{p}.fc2.bias", (exp,))]
            idx += 1
        conv_bn(f"features.{n}.block.{idx}", exp, out, 1)
        in_ch = out
    conv_bn(f"features.{len(blocks) + 1}", in_ch, last_ch, 1)
    layout += [("classifier.0.weight", (hidden, last_ch)), ("classifier.0.bias", (hidden,)),
               ("classifier.3.weight", (TV_NUM_CLASSES, hidden)), ("classifier.3.bias", (TV_NUM_CLASSES,))]
    return layout


def synthetic_tensor(t: int, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """The formula-defined weight tensor number `t` (see module docstring), as float32."""
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.uint64)
    u = ((i + np.uint64(1)) * np.uint64(2654435761) + np.uint64((t + 1) * 97531)) % np.uint64(2**32)
    r = u.astype(np.float64) / 2.0**32
    if len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        v = (r - 0.5) * 2.0 * math.sqrt(6.0 / fan_in)
    elif name.endswith((".weight", ".running_var")):
        v = 0.5 + r
    elif name.endswith((".bias", ".running_mean")):
        v = (r - 0.5) * 0.2
    else:
        raise ValueError(f"no synthetic formula for {name}")
    return v.astype(np.float32).reshape(shape)


def torchvision_synthetic_state_dict(arch: str) -> dict[str, np.ndarray]:
    return {name: synthetic_tensor(t, name, shape)
            for t, (name, shape) in enumerate(torchvision_state_dict_layout(arch))}


def torchvision_forward(arch: str, sd: dict[str, np.ndarray], image_chw: np.ndarray) -> dict[str, np.ndarray]:
    """torchvision MobileNetV3 forward in eval mode, float64; returns fixture tensors."""
    blocks, _stem_ch, _last_ch, _hidden = TV_ARCH[arch]
    p = {k: v.astype(np.float64) for k, v in sd.items()}

    def conv(x, prefix, stride, groups_depthwise=False):
        w = p[f"{prefix}.weight"]  # [out, in/groups, kh, kw]
        bias = p.get(f"{prefix}.bias")
        if groups_depthwise:
            return depthwise_conv2d(x, w.transpose(1, 2, 3, 0), bias, (stride, stride), (1, 1), symmetric_padding)
        return conv2d(x, w.transpose(0, 2, 3, 1), bias, (stride, stride), (1, 1), symmetric_padding)

    def bn(x, prefix):
        g, b = p[f"{prefix}.weight"], p[f"{prefix}.bias"]
        m, v = p[f"{prefix}.running_mean"], p[f"{prefix}.running_var"]
        return (x - m) / np.sqrt(v + TV_BN_EPS) * g + b

    def act(x, kind):
        return {"RE": lambda a: np.maximum(a, 0.0), "HS": hard_swish, None: lambda a: a}[kind](x)

    def conv_bn_act(x, prefix, stride, kind, depthwise=False):
        return act(bn(conv(x, f"{prefix}.0", stride, depthwise), f"{prefix}.1"), kind)

    mean = np.array(IMAGENET_MEAN).reshape(3, 1, 1)
    std = np.array(IMAGENET_STD).reshape(3, 1, 1)
    x = ((image_chw.astype(np.float64) - mean) / std).transpose(1, 2, 0)[None]

    out = {"input": image_chw.astype(np.float32)}
    x = conv_bn_act(x, "features.0", 2, "HS")
    out["stem"] = to_nchw(x)
    in_ch = x.shape[3]
    for n, (_k, exp, oc, se, kind, stride) in enumerate(blocks, start=1):
        y, idx = x, 0
        if exp != in_ch:
            y = conv_bn_act(y, f"features.{n}.block.{idx}", 1, kind)
            idx += 1
        y = conv_bn_act(y, f"features.{n}.block.{idx}", stride, kind, depthwise=True)
        idx += 1
        if se:
            pre = f"features.{n}.block.{idx}"
            s = y.mean(axis=(1, 2), keepdims=True)
            s = np.maximum(conv(s, f"{pre}.fc1", 1), 0.0)
            s = hard_sigmoid(conv(s, f"{pre}.fc2", 1))
            y = y * s
            idx += 1
        y = conv_bn_act(y, f"features.{n}.block.{idx}", 1, None)
        if stride == 1 and in_ch == oc:
            y = y + x
        x, in_ch = y, oc
        out[f"block{n - 1}"] = to_nchw(x)
    x = conv_bn_act(x, f"features.{len(blocks) + 1}", 1, "HS")
    out["head"] = to_nchw(x)
    v = x.mean(axis=(1, 2)).reshape(1, -1)
    v = hard_swish(v @ p["classifier.0.weight"].T + p["classifier.0.bias"])
    v = v @ p["classifier.3.weight"].T + p["classifier.3.bias"]  # dropout: identity in eval
    out["logits"] = v.astype(np.float32)
    return out


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def save_fixture(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]):
    """Write a float32 safetensors file with a deterministic (sorted) header.

    safetensors' own writer orders `__metadata__` through a hash map, so regenerated
    files would differ byte-wise; the format is simple enough to write directly:
    u64 little-endian header length, JSON header (space-padded to 8 bytes), data.
    """
    header: dict = {"__metadata__": dict(sorted(metadata.items()))}
    chunks, offset = [], 0
    for name in sorted(tensors):
        data = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        f.writelines(chunks)


def summarize(tensors: dict[str, np.ndarray]):
    for name, v in tensors.items():
        if name.startswith("op"):
            continue
        print(f"  {name:8s} {str(list(v.shape)):22s} min {v.min():+10.4f} max {v.max():+10.4f} "
              f"mean|x| {np.abs(v).mean():9.4f}  finite {bool(np.isfinite(v).all())}")


def cmd_tflite(args):
    width, height = args.size
    graph = TfliteGraph(args.weights)
    image = synthetic_image(width, height, args.seed)
    tensors = tflite_features(graph, image, dump_all=args.dump_all)
    meta = {"generator": "tools/reference.py tflite", "weights": Path(args.weights).name,
            "size": f"{width}x{height}", "seed": str(args.seed)}
    save_fixture(args.out, tensors, meta)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    summarize(tensors)


def cmd_torchvision(args):
    width, height = args.size
    layout = torchvision_state_dict_layout(args.arch)
    sd = torchvision_synthetic_state_dict(args.arch)
    image = synthetic_image(width, height, args.seed)
    tensors = torchvision_forward(args.arch, sd, image)
    meta = {"generator": "tools/reference.py torchvision", "arch": args.arch,
            "size": f"{width}x{height}", "seed": str(args.seed)}
    save_fixture(args.out, tensors, meta)
    sidecar = args.out.parent / f"torchvision_{args.arch}_tensors.json"
    sidecar.write_text("[\n" + ",\n".join(json.dumps([n, list(s)]) for n, s in layout) + "\n]\n")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) and {sidecar} ({len(layout)} tensors)")
    summarize(tensors)


def load_labels(weights: Path) -> dict[int, str]:
    path = Path(weights).parent / "imagenet_labels_1001.txt"
    labels = {}
    if path.exists():
        for line in path.read_text().splitlines():
            idx, _, label = line.partition(":")
            if idx.strip().isdigit():
                labels[int(idx)] = label.strip()
    return labels


def cmd_classify(args):
    from PIL import Image

    graph = TfliteGraph(args.weights)
    labels = load_labels(args.weights)
    layers = identify_small_layers(graph)
    for image_path in args.images:
        img = Image.open(image_path).convert("RGB").resize((args.resolution, args.resolution), Image.BICUBIC)
        chw = (np.asarray(img, dtype=np.float32) / 255.0).transpose(2, 0, 1)
        logits = run_tflite(graph, chw)[layers["logits"]].reshape(-1)
        top = np.argsort(-logits)[: args.top]
        print(f"{image_path}: top-1 {top[0]} ({labels.get(int(top[0]), '?')}) logit {logits[top[0]]:.3f}")
        for k in top:
            print(f"    {k:5d} {logits[k]:8.3f}  {labels.get(int(k), '')}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("tflite", help="float re-execution of a TFLite MobileNetV3-Small graph")
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--size", type=parse_size, required=True, help="WxH")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dump-all", action="store_true", help="also store every op output")
    p.set_defaults(func=cmd_tflite)

    p = sub.add_parser("torchvision", help="torchvision MobileNetV3 with synthetic weights")
    p.add_argument("--arch", choices=sorted(TV_ARCH), required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--size", type=parse_size, required=True, help="WxH")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_torchvision)

    p = sub.add_parser("classify", help="top-k classification of images (sanity check)")
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--top", type=int, default=5)
    p.add_argument("images", nargs="+", type=Path)
    p.set_defaults(func=cmd_classify)

    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    sys.exit(main())
