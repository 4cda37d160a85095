//! Naive CPU reference of every operation, in f64, readable top to bottom. It is the truth the GPU
//! kernels are tested against; it is not used on the product's hot path.
//!
//! Tensors are `[channels][height][width]`, row-major, batch 1.

use crate::arch::{Activation, BlockPart, LayerId, LayerOp, LayerSpec, Padding};
use crate::model::{Conv, Network, SqueezeExcite};

/// A CHW tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Values, `c·h·w` of them.
    pub data: Vec<f64>,
}

impl Tensor {
    /// A zero tensor.
    pub fn zeros(c: usize, h: usize, w: usize) -> Self {
        Self { c, h, w, data: vec![0.0; c * h * w] }
    }

    /// Wraps f32 data.
    pub fn from_f32(c: usize, h: usize, w: usize, data: &[f32]) -> Self {
        assert_eq!(data.len(), c * h * w);
        Self { c, h, w, data: data.iter().map(|&v| v as f64).collect() }
    }

    fn at(&self, c: usize, y: usize, x: usize) -> f64 {
        self.data[(c * self.h + y) * self.w + x]
    }
}

/// Applies an activation and the upper clamp `cap`.
pub fn activate(x: f64, activation: Activation, cap: f32) -> f64 {
    let y = match activation {
        Activation::None => x,
        Activation::Relu => x.max(0.0),
        Activation::HardSwish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
    };
    y.min(cap as f64)
}

/// Full convolution (the stem), with per-channel input normalization `x·scale + shift` applied
/// before zero padding, then bias and activation.
pub fn conv2d(input: &Tensor, conv: &Conv, padding: Padding, scale: [f32; 3], shift: [f32; 3]) -> Tensor {
    let k = conv.kernel;
    let (oh, pad_y) = padding.geometry(input.h, k, conv.stride);
    let (ow, pad_x) = padding.geometry(input.w, k, conv.stride);
    let mut out = Tensor::zeros(conv.out_channels, oh, ow);
    for o in 0..conv.out_channels {
        for y in 0..oh {
            for x in 0..ow {
                let mut acc = conv.bias[o] as f64;
                for i in 0..conv.in_channels {
                    for ky in 0..k {
                        for kx in 0..k {
                            let iy = (y * conv.stride + ky) as isize - pad_y as isize;
                            let ix = (x * conv.stride + kx) as isize - pad_x as isize;
                            if iy < 0 || ix < 0 || iy >= input.h as isize || ix >= input.w as isize {
                                continue;
                            }
                            let v = input.at(i, iy as usize, ix as usize) * scale[i % 3] as f64 + shift[i % 3] as f64;
                            acc += conv.weight[((o * conv.in_channels + i) * k + ky) * k + kx] as f64 * v;
                        }
                    }
                }
                out.data[(o * oh + y) * ow + x] = activate(acc, conv.activation, conv.cap);
            }
        }
    }
    out
}

/// Depthwise convolution, bias, activation.
pub fn depthwise(input: &Tensor, conv: &Conv, padding: Padding) -> Tensor {
    let k = conv.kernel;
    let (oh, pad_y) = padding.geometry(input.h, k, conv.stride);
    let (ow, pad_x) = padding.geometry(input.w, k, conv.stride);
    let mut out = Tensor::zeros(input.c, oh, ow);
    for c in 0..input.c {
        for y in 0..oh {
            for x in 0..ow {
                let mut acc = conv.bias[c] as f64;
                for ky in 0..k {
                    for kx in 0..k {
                        let iy = (y * conv.stride + ky) as isize - pad_y as isize;
                        let ix = (x * conv.stride + kx) as isize - pad_x as isize;
                        if iy < 0 || ix < 0 || iy >= input.h as isize || ix >= input.w as isize {
                            continue;
                        }
                        acc += conv.weight[(c * k + ky) * k + kx] as f64 * input.at(c, iy as usize, ix as usize);
                    }
                }
                out.data[(c * oh + y) * ow + x] = activate(acc, conv.activation, conv.cap);
            }
        }
    }
    out
}

/// 1×1 convolution, bias, activation, and an optional residual added last.
pub fn pointwise(input: &Tensor, conv: &Conv, residual: Option<&Tensor>) -> Tensor {
    let hw = input.h * input.w;
    let mut out = Tensor::zeros(conv.out_channels, input.h, input.w);
    for o in 0..conv.out_channels {
        for p in 0..hw {
            let mut acc = conv.bias[o] as f64;
            for i in 0..conv.in_channels {
                acc += conv.weight[o * conv.in_channels + i] as f64 * input.data[i * hw + p];
            }
            let mut v = activate(acc, conv.activation, conv.cap);
            if let Some(r) = residual {
                v += r.data[o * hw + p];
            }
            out.data[o * hw + p] = v;
        }
    }
    out
}

/// Mean of each channel.
pub fn channel_mean(input: &Tensor) -> Vec<f64> {
    let hw = input.h * input.w;
    (0..input.c).map(|c| input.data[c * hw..(c + 1) * hw].iter().sum::<f64>() / hw as f64).collect()
}

/// The squeeze-excite gate of each channel from the channel means.
pub fn se_gate(means: &[f64], se: &SqueezeExcite) -> Vec<f64> {
    let fc = |x: &[f64], conv: &Conv| -> Vec<f64> {
        (0..conv.out_channels)
            .map(|o| {
                let acc = conv.bias[o] as f64
                    + (0..conv.in_channels).map(|i| conv.weight[o * conv.in_channels + i] as f64 * x[i]).sum::<f64>();
                activate(acc, conv.activation, conv.cap)
            })
            .collect()
    };
    let hidden = fc(means, &se.reduce);
    fc(&hidden, &se.expand)
        .iter()
        .map(|&x| (x + se.gate_add as f64).clamp(0.0, se.gate_max as f64) * se.gate_mul as f64)
        .collect()
}

/// Multiplies each channel by its gate.
pub fn channel_scale(input: &Tensor, gate: &[f64]) -> Tensor {
    let hw = input.h * input.w;
    let mut out = input.clone();
    for (i, v) in out.data.iter_mut().enumerate() {
        *v *= gate[i / hw];
    }
    out
}

/// Every layer's output, in execution order, and the classifier's.
#[derive(Clone, Debug)]
pub struct Activations {
    /// Each layer of the architecture walk with its output.
    pub layers: Vec<(LayerId, Tensor)>,
    /// The logits (classes × 1 × 1), when the network has a classifier.
    pub logits: Option<Tensor>,
    /// Height and width of the image the network ran on.
    pub input: (usize, usize),
}

impl Activations {
    /// The output of layer `id`.
    pub fn layer(&self, id: LayerId) -> Option<&Tensor> {
        self.layers.iter().find(|(l, _)| *l == id).map(|(_, t)| t)
    }
}

/// The convolution of layer `id`; the loaders build every layer of the walk.
fn conv_of(net: &Network, id: LayerId) -> &Conv {
    net.conv(id).unwrap_or_else(|| panic!("the network has no convolution for layer {id}"))
}

/// The squeeze-and-excite of layer `id`.
fn se_of(net: &Network, id: LayerId) -> &SqueezeExcite {
    net.squeeze_excite(id).unwrap_or_else(|| panic!("the network has no squeeze-and-excite for layer {id}"))
}

/// For each layer of `walk`, the position of the block input a residual adds (`None` elsewhere).
fn residual_inputs(walk: &[LayerSpec]) -> Vec<Option<usize>> {
    let mut block_input = 0;
    walk.iter()
        .enumerate()
        .map(|(i, l)| {
            let skip = (l.op == LayerOp::Residual).then_some(block_input);
            if matches!(l.id, LayerId::Stem | LayerId::Block { part: BlockPart::Output, .. }) {
                block_input = i;
            }
            skip
        })
        .collect()
}

/// Runs the network on an RGB image in [0, 1]: every layer of the architecture walk (see
/// [`crate::arch::Arch::walk`]) in order, and the logits when the network has a classifier.
pub fn forward(net: &Network, image: &Tensor) -> Activations {
    let walk = net.arch.walk();
    let skips = residual_inputs(&walk);
    let mut layers: Vec<(LayerId, Tensor)> = Vec::with_capacity(walk.len());
    for (layer, skip) in walk.iter().zip(skips) {
        let id = layer.id;
        let x = layers.last().map_or(image, |(_, t)| t);
        let out = match layer.op {
            LayerOp::Stem(_) => conv2d(image, conv_of(net, id), net.padding, net.input_scale, net.input_shift),
            LayerOp::Pointwise(_) => pointwise(x, conv_of(net, id), None),
            LayerOp::Depthwise(_) => depthwise(x, conv_of(net, id), net.padding),
            LayerOp::SqueezeExcite { .. } => channel_scale(x, &se_gate(&channel_mean(x), se_of(net, id))),
            LayerOp::Residual => {
                let mut sum = x.clone();
                let block_input = &layers[skip.expect("a residual has a block input")].1;
                sum.data.iter_mut().zip(&block_input.data).for_each(|(a, b)| *a += b);
                sum
            }
            LayerOp::Alias => x.clone(),
        };
        layers.push((id, out));
    }
    let logits = net.classifier.as_ref().map(|cls| {
        let head = &layers.last().expect("the walk ends with the head").1;
        let pooled = Tensor { c: head.c, h: 1, w: 1, data: channel_mean(head) };
        pointwise(&pointwise(&pooled, &cls.hidden, None), &cls.logits, None)
    });
    Activations { layers, logits, input: (image.h, image.w) }
}

/// YCbCr (BT.601, full range) of an RGB pixel in [0, 1]: Y = 0.299 R + 0.587 G + 0.114 B,
/// Cb = 0.5 + (B − Y)/1.772, Cr = 0.5 + (R − Y)/1.402.
pub fn ycbcr(rgb: [f64; 3]) -> [f64; 3] {
    let y = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
    [y, 0.5 + (rgb[2] - y) / 1.772, 0.5 + (rgb[0] - y) / 1.402]
}

/// The inverse of [`ycbcr`].
pub fn rgb_from_ycbcr([y, cb, cr]: [f64; 3]) -> [f64; 3] {
    let r = y + 1.402 * (cr - 0.5);
    let b = y + 1.772 * (cb - 0.5);
    [r, (y - 0.299 * r - 0.114 * b) / 0.587, b]
}

/// jcjohnson's `-original_colors 1` on planar RGB images of one size: the luma of `image`
/// (clamped to [0, 1]) with the chroma of `photo`, clamped to [0, 1].
pub fn original_colors(image: &Tensor, photo: &Tensor) -> Tensor {
    let n = image.h * image.w;
    let mut out = Tensor::zeros(3, image.h, image.w);
    for i in 0..n {
        let pixel = |t: &Tensor| -> [f64; 3] { std::array::from_fn(|c| t.data[c * n + i]) };
        let [y, _, _] = ycbcr(pixel(image).map(|v| v.clamp(0.0, 1.0)));
        let [_, cb, cr] = ycbcr(pixel(photo));
        for (c, v) in rgb_from_ycbcr([y, cb, cr]).into_iter().enumerate() {
            out.data[c * n + i] = v.clamp(0.0, 1.0);
        }
    }
    out
}

/// Relative L2 error ‖a − b‖ / ‖b‖.
pub fn relative_l2(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}

// ---- Backward (gradients with respect to inputs), and the style-transfer losses ----

/// Derivative of [`activate`] with respect to its input (PyTorch's conventions at the kinks).
pub fn activate_grad(z: f64, activation: Activation, cap: f32) -> f64 {
    if activate(z, activation, f32::INFINITY) > cap as f64 {
        return 0.0;
    }
    match activation {
        Activation::None => 1.0,
        Activation::Relu => (z > 0.0) as u8 as f64,
        Activation::HardSwish if z < -3.0 => 0.0,
        Activation::HardSwish if z > 3.0 => 1.0,
        Activation::HardSwish => z / 3.0 + 0.5,
    }
}

/// Multiplies `grad_out` by the activation derivative at the pre-activation `pre`.
fn through_activation(grad_out: &Tensor, pre: &Tensor, conv: &Conv) -> Tensor {
    let mut g = grad_out.clone();
    for (v, &z) in g.data.iter_mut().zip(&pre.data) {
        *v *= activate_grad(z, conv.activation, conv.cap);
    }
    g
}

/// The same layer without its activation: the pre-activation.
fn linear_part(conv: &Conv) -> Conv {
    Conv { activation: Activation::None, cap: f32::INFINITY, ..conv.clone() }
}

/// Gradient of [`conv2d`] with respect to its (unnormalized) input image.
pub fn conv2d_backward(
    input: &Tensor,
    conv: &Conv,
    padding: Padding,
    scale: [f32; 3],
    shift: [f32; 3],
    grad_out: &Tensor,
) -> Tensor {
    let pre = conv2d(input, &linear_part(conv), padding, scale, shift);
    let dz = through_activation(grad_out, &pre, conv);
    let k = conv.kernel;
    let (_, pad_y) = padding.geometry(input.h, k, conv.stride);
    let (_, pad_x) = padding.geometry(input.w, k, conv.stride);
    let mut grad = Tensor::zeros(input.c, input.h, input.w);
    for o in 0..conv.out_channels {
        for y in 0..dz.h {
            for x in 0..dz.w {
                let d = dz.at(o, y, x);
                for i in 0..conv.in_channels {
                    for ky in 0..k {
                        for kx in 0..k {
                            let iy = (y * conv.stride + ky) as isize - pad_y as isize;
                            let ix = (x * conv.stride + kx) as isize - pad_x as isize;
                            if iy < 0 || ix < 0 || iy >= input.h as isize || ix >= input.w as isize {
                                continue;
                            }
                            let w = conv.weight[((o * conv.in_channels + i) * k + ky) * k + kx] as f64;
                            grad.data[(i * input.h + iy as usize) * input.w + ix as usize] +=
                                w * d * scale[i % 3] as f64;
                        }
                    }
                }
            }
        }
    }
    grad
}

/// Gradient of [`depthwise`] with respect to its input.
pub fn depthwise_backward(input: &Tensor, conv: &Conv, padding: Padding, grad_out: &Tensor) -> Tensor {
    let dz = through_activation(grad_out, &depthwise(input, &linear_part(conv), padding), conv);
    let k = conv.kernel;
    let (_, pad_y) = padding.geometry(input.h, k, conv.stride);
    let (_, pad_x) = padding.geometry(input.w, k, conv.stride);
    let mut grad = Tensor::zeros(input.c, input.h, input.w);
    for c in 0..input.c {
        for y in 0..dz.h {
            for x in 0..dz.w {
                for ky in 0..k {
                    for kx in 0..k {
                        let iy = (y * conv.stride + ky) as isize - pad_y as isize;
                        let ix = (x * conv.stride + kx) as isize - pad_x as isize;
                        if iy < 0 || ix < 0 || iy >= input.h as isize || ix >= input.w as isize {
                            continue;
                        }
                        grad.data[(c * input.h + iy as usize) * input.w + ix as usize] +=
                            conv.weight[(c * k + ky) * k + kx] as f64 * dz.at(c, y, x);
                    }
                }
            }
        }
    }
    grad
}

/// Gradient of [`pointwise`] (without residual) with respect to its input.
pub fn pointwise_backward(input: &Tensor, conv: &Conv, grad_out: &Tensor) -> Tensor {
    let dz = through_activation(grad_out, &pointwise(input, &linear_part(conv), None), conv);
    let hw = input.h * input.w;
    let mut grad = Tensor::zeros(input.c, input.h, input.w);
    for o in 0..conv.out_channels {
        for i in 0..conv.in_channels {
            let w = conv.weight[o * conv.in_channels + i] as f64;
            for p in 0..hw {
                grad.data[i * hw + p] += w * dz.data[o * hw + p];
            }
        }
    }
    grad
}

/// Gradient of squeeze-excite (`channel_scale(x, se_gate(channel_mean(x)))`) with respect to x.
pub fn squeeze_excite_backward(input: &Tensor, se: &SqueezeExcite, grad_out: &Tensor) -> Tensor {
    let hw = input.h * input.w;
    let means = channel_mean(input);
    let gates = se_gate(&means, se);
    // dL/dgate[c] = Σ_p dy[c,p] · x[c,p].
    let grad_gates: Vec<f64> =
        (0..input.c).map(|c| (0..hw).map(|p| grad_out.data[c * hw + p] * input.data[c * hw + p]).sum()).collect();
    // Back through the gate clamp, the expand layer, the reduce activation and the reduce layer.
    let fc = |x: &[f64], conv: &Conv| -> Vec<f64> {
        (0..conv.out_channels)
            .map(|o| {
                conv.bias[o] as f64
                    + (0..conv.in_channels).map(|i| conv.weight[o * conv.in_channels + i] as f64 * x[i]).sum::<f64>()
            })
            .collect()
    };
    let hidden_pre = fc(&means, &se.reduce);
    let hidden: Vec<f64> = hidden_pre.iter().map(|&z| activate(z, se.reduce.activation, se.reduce.cap)).collect();
    let gate_pre: Vec<f64> = fc(&hidden, &se.expand).iter().map(|&a| a + se.gate_add as f64).collect();
    let grad_gate_pre: Vec<f64> = (0..input.c)
        .map(|c| {
            if gate_pre[c] > 0.0 && gate_pre[c] < se.gate_max as f64 { grad_gates[c] * se.gate_mul as f64 } else { 0.0 }
        })
        .collect();
    let s_n = se.reduce.out_channels;
    let grad_hidden: Vec<f64> = (0..s_n)
        .map(|s| {
            let g: f64 = (0..input.c).map(|c| se.expand.weight[c * s_n + s] as f64 * grad_gate_pre[c]).sum();
            g * activate_grad(hidden_pre[s], se.reduce.activation, se.reduce.cap)
        })
        .collect();
    let grad_means: Vec<f64> = (0..input.c)
        .map(|c| (0..s_n).map(|s| se.reduce.weight[s * input.c + c] as f64 * grad_hidden[s]).sum())
        .collect();
    let mut grad = Tensor::zeros(input.c, input.h, input.w);
    for c in 0..input.c {
        for p in 0..hw {
            grad.data[c * hw + p] = grad_out.data[c * hw + p] * gates[c] + grad_means[c] / hw as f64;
        }
    }
    grad
}

/// F with the `margin` outermost rows and columns of each channel set to 0 (unchanged when that
/// would leave no interior), and the pixels per channel kept.
pub fn interior(f: &Tensor, margin: usize) -> (Tensor, usize) {
    if margin == 0 || f.h <= 2 * margin || f.w <= 2 * margin {
        return (f.clone(), f.h * f.w);
    }
    let mut out = f.clone();
    for (i, v) in out.data.iter_mut().enumerate() {
        let (y, x) = ((i / f.w) % f.h, i % f.w);
        if y < margin || y + margin >= f.h || x < margin || x + margin >= f.w {
            *v = 0.0;
        }
    }
    (out, (f.h - 2 * margin) * (f.w - 2 * margin))
}

/// Gram matrix F Fᵀ / (C·n), C×C row-major, over the pixels inside `margin` (n of them per
/// channel; see [`interior`]).
pub fn gram(f: &Tensor, margin: usize) -> Vec<f64> {
    let (f, pixels) = interior(f, margin);
    let hw = f.h * f.w;
    let norm = (f.c * pixels) as f64;
    let mut g = vec![0.0; f.c * f.c];
    for a in 0..f.c {
        for b in 0..f.c {
            g[a * f.c + b] = (0..hw).map(|p| f.data[a * hw + p] * f.data[b * hw + p]).sum::<f64>() / norm;
        }
    }
    g
}

/// Style loss of one layer, mean((G − A)²) with G = [`gram`]`(F, margin)`, and its gradient with
/// respect to F (0 on the margin).
pub fn style_loss(f: &Tensor, target_gram: &[f64], margin: usize) -> (f64, Tensor) {
    let c = f.c;
    let hw = f.h * f.w;
    let g = gram(f, margin);
    let (masked, pixels) = interior(f, margin);
    let diff: Vec<f64> = g.iter().zip(target_gram).map(|(a, b)| a - b).collect();
    let loss = diff.iter().map(|d| d * d).sum::<f64>() / (c * c) as f64;
    let coef = 4.0 / ((c * c) as f64 * (c * pixels) as f64);
    let mut grad = Tensor::zeros(f.c, f.h, f.w);
    for a in 0..c {
        for b in 0..c {
            let r = coef * diff[a * c + b];
            for p in 0..hw {
                grad.data[a * hw + p] += r * masked.data[b * hw + p];
            }
        }
    }
    (loss, grad)
}

/// Content loss of one layer, mean((F − P)²), and its gradient with respect to F.
pub fn content_loss(f: &Tensor, target: &Tensor) -> (f64, Tensor) {
    let n = f.data.len() as f64;
    let mut grad = f.clone();
    let mut loss = 0.0;
    for (g, (&a, &b)) in grad.data.iter_mut().zip(f.data.iter().zip(&target.data)) {
        loss += (a - b) * (a - b) / n;
        *g = 2.0 * (a - b) / n;
    }
    (loss, grad)
}

/// Total variation: mean of squared vertical plus mean of squared horizontal neighbour
/// differences, and its gradient.
pub fn tv_loss(x: &Tensor) -> (f64, Tensor) {
    let (h, w) = (x.h, x.w);
    let n_v = (x.c * (h - 1) * w) as f64;
    let n_h = (x.c * h * (w - 1)) as f64;
    let mut loss = 0.0;
    let mut grad = Tensor::zeros(x.c, h, w);
    for c in 0..x.c {
        for y in 0..h {
            for xx in 0..w {
                let i = (c * h + y) * w + xx;
                if y + 1 < h {
                    let d = x.data[i + w] - x.data[i];
                    loss += d * d / n_v;
                    grad.data[i + w] += 2.0 * d / n_v;
                    grad.data[i] -= 2.0 * d / n_v;
                }
                if xx + 1 < w {
                    let d = x.data[i + 1] - x.data[i];
                    loss += d * d / n_h;
                    grad.data[i + 1] += 2.0 * d / n_h;
                    grad.data[i] -= 2.0 * d / n_h;
                }
            }
        }
    }
    (loss, grad)
}

/// What the style-transfer objective compares against, per layer.
#[derive(Clone, Debug, Default)]
pub struct Objective {
    /// Content layers and the content photo's activations there.
    pub content: Vec<(LayerId, Tensor)>,
    /// Style layers, their weight, and the style target's Gram matrix there.
    pub style: Vec<(LayerId, f64, Vec<f64>)>,
    /// Weight of the content term.
    pub content_weight: f64,
    /// Weight of the style term.
    pub style_weight: f64,
    /// Weight of the total-variation term.
    pub tv_weight: f64,
    /// Rows and columns at each edge of a style layer left out of its Gram matrix, besides
    /// those of the padding.
    pub gram_margin: usize,
    /// Mirror padding of the image before the network ([`mirror_pad`]); a style layer then also
    /// leaves out the rows and columns that come from it ([`style_margin`]).
    pub padding: usize,
}

/// `x` mirror-padded by `pad` on each side (PyTorch's "reflect": about the edge pixel; `pad` at
/// most each side − 1).
pub fn mirror_pad(x: &Tensor, pad: usize) -> Tensor {
    assert!(pad < x.h && pad < x.w, "mirror pad {pad} of a {}×{} image", x.w, x.h);
    let (h, w) = (x.h + 2 * pad, x.w + 2 * pad);
    let mirror = |i: usize, n: usize| -> usize {
        let v = i as i64 - pad as i64;
        let last = n as i64 - 1;
        (if v < 0 {
            -v
        } else if v > last {
            2 * last - v
        } else {
            v
        }) as usize
    };
    let mut out = Tensor::zeros(x.c, h, w);
    for c in 0..x.c {
        for y in 0..h {
            for xx in 0..w {
                out.data[(c * h + y) * w + xx] = x.data[(c * x.h + mirror(y, x.h)) * x.w + mirror(xx, x.w)];
            }
        }
    }
    out
}

/// The adjoint of [`mirror_pad`]: the gradient of a padded image folded back onto the
/// `h`×`w` image (each padded pixel's value added to the pixel it was read from).
pub fn mirror_pad_adjoint(g: &Tensor, pad: usize, h: usize, w: usize) -> Tensor {
    let mut out = Tensor::zeros(g.c, h, w);
    let ones = Tensor { data: (0..g.c * h * w).map(|i| i as f64).collect(), ..Tensor::zeros(g.c, h, w) };
    // The padded image of the indices says where each padded pixel reads from.
    let source = mirror_pad(&ones, pad);
    for (v, &i) in g.data.iter().zip(&source.data) {
        out.data[i as usize] += v;
    }
    out
}

/// The Gram margin of a style layer of `layer_h`×`layer_w` in a network run on an image of
/// `input_h`×`input_w` that was mirror-padded by `pad`: pad · layer side / input side (rounded
/// down, the smaller of the two) plus `gram_margin`.
pub fn style_margin(
    layer_h: usize,
    layer_w: usize,
    input_h: usize,
    input_w: usize,
    pad: usize,
    gram_margin: usize,
) -> usize {
    (pad * layer_h / input_h).min(pad * layer_w / input_w) + gram_margin
}

/// The unweighted terms and the weighted total.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Losses {
    /// Σ over content layers of mean((F − P)²).
    pub content: f64,
    /// Σ over style layers of w_l · mean((G − A)²).
    pub style: f64,
    /// Total variation of the image.
    pub tv: f64,
    /// content_weight·content + style_weight·style + tv_weight·tv.
    pub total: f64,
}

/// How each content and style loss's gradient enters its layer's gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GradientRule {
    /// weight · g, g = ∂(the layer's unweighted loss)/∂F: the gradient of the total.
    Exact,
    /// weight · g / (‖g‖₁ + 1e-8) (jcjohnson's `-normalize_gradients`); a style layer's weight is
    /// style_weight · w_l.
    L1Normalized,
}

/// g / (‖g‖₁ + 1e-8).
pub fn l1_normalized(g: &Tensor) -> Tensor {
    let norm: f64 = g.data.iter().map(|v| v.abs()).sum();
    Tensor { data: g.data.iter().map(|v| v / (norm + 1e-8)).collect(), ..g.clone() }
}

/// Losses of `image` and the gradient of the total with respect to it, through the network.
pub fn objective_and_grad(net: &Network, image: &Tensor, objective: &Objective) -> (Losses, Tensor) {
    objective_and_grad_with(net, image, objective, GradientRule::Exact)
}

/// The content and style losses of the activations `acts` (TV and total left 0) and what they
/// send back to each loss layer under `rule` (the content and style losses of a layer summed).
pub fn layer_gradients(
    acts: &Activations,
    objective: &Objective,
    rule: GradientRule,
) -> (Losses, Vec<(LayerId, Tensor)>) {
    let find = |id: LayerId| acts.layer(id).unwrap_or_else(|| panic!("layer {id} not computed"));
    let shape = |g: Tensor| match rule {
        GradientRule::Exact => g,
        GradientRule::L1Normalized => l1_normalized(&g),
    };
    let mut grads: Vec<(LayerId, Tensor)> = Vec::new();
    let mut add = |id: LayerId, g: Tensor, scale: f64| match grads.iter_mut().find(|(n, _)| *n == id) {
        Some((_, t)) => t.data.iter_mut().zip(&g.data).for_each(|(a, b)| *a += scale * b),
        None => grads.push((id, Tensor { data: g.data.iter().map(|v| v * scale).collect(), ..g })),
    };
    let mut losses = Losses::default();
    for &(id, ref target) in &objective.content {
        let (l, g) = content_loss(find(id), target);
        losses.content += l;
        add(id, shape(g), objective.content_weight);
    }
    for &(id, weight, ref target) in &objective.style {
        let f = find(id);
        let (input_h, input_w) = acts.input;
        let margin = style_margin(f.h, f.w, input_h, input_w, objective.padding, objective.gram_margin);
        let (l, g) = style_loss(f, target, margin);
        losses.style += weight * l;
        add(id, shape(g), objective.style_weight * weight);
    }
    (losses, grads)
}

/// Losses of `image` and the image gradient that the layer gradients of `rule` (see
/// [`layer_gradients`]) and the TV gradient send back through the network (with
/// [`GradientRule::Exact`], the gradient of the total).
pub fn objective_and_grad_with(
    net: &Network,
    image: &Tensor,
    objective: &Objective,
    rule: GradientRule,
) -> (Losses, Tensor) {
    let padded = mirror_pad(image, objective.padding);
    let acts = forward(net, &padded);
    let (mut losses, grads) = layer_gradients(&acts, objective, rule);
    let (tv, tv_grad) = tv_loss(image);
    losses.tv = tv;
    losses.total =
        objective.content_weight * losses.content + objective.style_weight * losses.style + objective.tv_weight * tv;
    let padded_grad = backward(net, &padded, &acts, &grads);
    let mut grad = mirror_pad_adjoint(&padded_grad, objective.padding, image.h, image.w);
    grad.data.iter_mut().zip(&tv_grad.data).for_each(|(a, b)| *a += objective.tv_weight * b);
    (losses, grad)
}

/// Back-propagates layer gradients through the network to the input image, layer by layer
/// against the architecture walk: each layer's gradient is its own (from `layer_grads`) plus what
/// the layers reading it send back.
pub fn backward(net: &Network, image: &Tensor, acts: &Activations, layer_grads: &[(LayerId, Tensor)]) -> Tensor {
    let act = |id: LayerId| acts.layer(id).unwrap_or_else(|| panic!("layer {id} not computed"));
    let seed = |id: LayerId, like: &Tensor| -> Tensor {
        layer_grads
            .iter()
            .find(|(n, _)| *n == id)
            .map(|(_, g)| g.clone())
            .unwrap_or_else(|| Tensor::zeros(like.c, like.h, like.w))
    };
    let plus = |mut a: Tensor, b: &Tensor| {
        a.data.iter_mut().zip(&b.data).for_each(|(x, y)| *x += y);
        a
    };
    let walk = net.arch.walk();
    let skips = residual_inputs(&walk);
    // What the layers after each one send back to it.
    let mut incoming: Vec<Option<Tensor>> = vec![None; walk.len()];
    let send = |incoming: &mut [Option<Tensor>], to: usize, g: Tensor| {
        incoming[to] = Some(match incoming[to].take() {
            Some(sum) => plus(sum, &g),
            None => g,
        });
    };
    let mut image_grad = None;
    for i in (0..walk.len()).rev() {
        let id = walk[i].id;
        let own = seed(id, act(id));
        let g = match incoming[i].take() {
            Some(sent) => plus(own, &sent),
            None => own,
        };
        let input = if i == 0 { image } else { act(walk[i - 1].id) };
        let g_input = match walk[i].op {
            LayerOp::Stem(_) => {
                conv2d_backward(input, conv_of(net, id), net.padding, net.input_scale, net.input_shift, &g)
            }
            LayerOp::Pointwise(_) => pointwise_backward(input, conv_of(net, id), &g),
            LayerOp::Depthwise(_) => depthwise_backward(input, conv_of(net, id), net.padding, &g),
            LayerOp::SqueezeExcite { .. } => squeeze_excite_backward(input, se_of(net, id), &g),
            LayerOp::Residual => {
                send(&mut incoming, skips[i].expect("a residual has a block input"), g.clone());
                g
            }
            LayerOp::Alias => g,
        };
        match i.checked_sub(1) {
            Some(before) => send(&mut incoming, before, g_input),
            None => image_grad = Some(g_input),
        }
    }
    image_grad.expect("the walk starts with the stem")
}

/// `torch.optim.LBFGS(lr, history_size, line_search_fn=None)` stepped once per evaluation, written
/// as PyTorch writes it (the two-loop recursion over the vectors): the reference for the GPU's
/// dot-product formulation.
pub struct Lbfgs {
    history: usize,
    lr: f64,
    line_search: bool,
    /// The loss and g · d at the last accepted point, and whether x moved from it.
    accepted: (f64, f64, bool),
    n_iter: usize,
    /// Curvature pairs (y, s, 1/yᵀs), oldest first.
    pairs: Vec<(Vec<f64>, Vec<f64>, f64)>,
    h_diag: f64,
    d: Vec<f64>,
    t: f64,
    g_prev: Vec<f64>,
    /// Pairs rejected because yᵀs ≤ 1e-10 so far.
    pub rejected: usize,
    /// Backtracks so far.
    pub backtracks: usize,
}

impl Lbfgs {
    /// A fresh optimizer, PyTorch's.
    pub fn new(history: usize, lr: f64) -> Self {
        Self::with_line_search(history, lr, false)
    }

    /// A fresh optimizer that, with `line_search`, backtracks as the GPU's does (see
    /// [`Lbfgs::step_at`]).
    pub fn with_line_search(history: usize, lr: f64, line_search: bool) -> Self {
        Self {
            history,
            lr,
            line_search,
            accepted: (0.0, 0.0, false),
            n_iter: 0,
            pairs: Vec::new(),
            h_diag: 1.0,
            d: Vec::new(),
            t: 0.0,
            g_prev: Vec::new(),
            rejected: 0,
            backtracks: 0,
        }
    }

    /// One iteration: updates `x` from its gradient `g` (PyTorch's, without a line search).
    pub fn step(&mut self, x: &mut [f64], g: &[f64]) {
        self.step_at(x, g, 0.0);
    }

    /// One iteration from the loss `f` and gradient `g` at `x`. With the line search, when the
    /// last step from the accepted point did not satisfy Armijo's condition f ≤ f₀ + 1e-4·t·g₀ᵀd,
    /// x moves back along d to t' = the minimizer of the quadratic through f₀, g₀ᵀd and f,
    /// clamped to [0.1 t, 0.5 t] (0.5 t when f is not finite or the quadratic not convex),
    /// and nothing else changes.
    pub fn step_at(&mut self, x: &mut [f64], g: &[f64], f: f64) {
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f64>();
        if g.iter().fold(0.0f64, |m, v| m.max(v.abs())) <= 1e-7 {
            return;
        }
        let (f0, gtd0, moved) = self.accepted;
        // Written so that a NaN loss fails the condition.
        let sufficient = f <= f0 + 1e-4 * self.t * gtd0;
        if self.line_search && self.n_iter >= 1 && moved && !sufficient {
            let t = self.t;
            let curvature = 2.0 * (f - f0 - gtd0 * t);
            let t_new = if f.is_finite() && curvature > 0.0 {
                (-gtd0 * t * t / curvature).clamp(0.1 * t, 0.5 * t)
            } else {
                0.5 * t
            };
            x.iter_mut().zip(&self.d).for_each(|(x, d)| *x += (t_new - t) * d);
            self.t = t_new;
            self.backtracks += 1;
            return;
        }
        self.n_iter += 1;
        if self.n_iter == 1 {
            self.d = g.iter().map(|v| -v).collect();
            self.pairs.clear();
            self.h_diag = 1.0;
        } else {
            let y: Vec<f64> = g.iter().zip(&self.g_prev).map(|(a, b)| a - b).collect();
            let s: Vec<f64> = self.d.iter().map(|v| v * self.t).collect();
            let ys = dot(&y, &s);
            if ys > 1e-10 {
                if self.pairs.len() == self.history {
                    self.pairs.remove(0);
                }
                self.h_diag = ys / dot(&y, &y);
                self.pairs.push((y, s, 1.0 / ys));
            } else {
                self.rejected += 1;
            }
            let mut q: Vec<f64> = g.iter().map(|v| -v).collect();
            let mut alpha = vec![0.0; self.pairs.len()];
            for (i, (y, s, rho)) in self.pairs.iter().enumerate().rev() {
                alpha[i] = dot(s, &q) * rho;
                q.iter_mut().zip(y).for_each(|(q, y)| *q -= alpha[i] * y);
            }
            let mut r: Vec<f64> = q.iter().map(|v| v * self.h_diag).collect();
            for (i, (y, s, rho)) in self.pairs.iter().enumerate() {
                let beta = dot(y, &r) * rho;
                r.iter_mut().zip(s).for_each(|(r, s)| *r += (alpha[i] - beta) * s);
            }
            self.d = r;
        }
        self.g_prev = g.to_vec();
        self.t =
            if self.n_iter == 1 { (1.0 / g.iter().map(|v| v.abs()).sum::<f64>()).min(1.0) * self.lr } else { self.lr };
        let gtd = dot(g, &self.d);
        self.accepted = (f, gtd, gtd <= -1e-9);
        if gtd > -1e-9 {
            return;
        }
        x.iter_mut().zip(&self.d).for_each(|(x, d)| *x += self.t * d);
    }
}
