//! Naive CPU reference of every operation, in f64, readable top to bottom. It is the truth the GPU
//! kernels are tested against; it is not used on the product's hot path.
//!
//! Tensors are `[channels][height][width]`, row-major, batch 1.

use crate::arch::{Activation, Padding};
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
        Self {
            c,
            h,
            w,
            data: vec![0.0; c * h * w],
        }
    }

    /// Wraps f32 data.
    pub fn from_f32(c: usize, h: usize, w: usize, data: &[f32]) -> Self {
        assert_eq!(data.len(), c * h * w);
        Self {
            c,
            h,
            w,
            data: data.iter().map(|&v| v as f64).collect(),
        }
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
pub fn conv2d(
    input: &Tensor,
    conv: &Conv,
    padding: Padding,
    scale: [f32; 3],
    shift: [f32; 3],
) -> Tensor {
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
                            if iy < 0 || ix < 0 || iy >= input.h as isize || ix >= input.w as isize
                            {
                                continue;
                            }
                            let v = input.at(i, iy as usize, ix as usize) * scale[i % 3] as f64
                                + shift[i % 3] as f64;
                            acc += conv.weight[((o * conv.in_channels + i) * k + ky) * k + kx]
                                as f64
                                * v;
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
                        acc += conv.weight[(c * k + ky) * k + kx] as f64
                            * input.at(c, iy as usize, ix as usize);
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
    (0..input.c)
        .map(|c| input.data[c * hw..(c + 1) * hw].iter().sum::<f64>() / hw as f64)
        .collect()
}

/// The squeeze-excite gate of each channel from the channel means.
pub fn se_gate(means: &[f64], se: &SqueezeExcite) -> Vec<f64> {
    let fc = |x: &[f64], conv: &Conv| -> Vec<f64> {
        (0..conv.out_channels)
            .map(|o| {
                let acc = conv.bias[o] as f64
                    + (0..conv.in_channels)
                        .map(|i| conv.weight[o * conv.in_channels + i] as f64 * x[i])
                        .sum::<f64>();
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

/// Runs the network on an RGB image in [0, 1] and returns every named layer (see
/// [`crate::arch::layers`]) in order, plus `logits` when the network has a classifier.
pub fn forward(net: &Network, image: &Tensor) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    let mut x = conv2d(
        image,
        &net.stem,
        net.padding,
        net.input_scale,
        net.input_shift,
    );
    out.push(("stem".to_string(), x.clone()));
    for (i, block) in net.blocks.iter().enumerate() {
        let input = x.clone();
        if let Some(expand) = &block.expand {
            x = pointwise(&x, expand, None);
            out.push((format!("block{i}.expand"), x.clone()));
        }
        x = depthwise(&x, &block.depthwise, net.padding);
        out.push((format!("block{i}.depthwise"), x.clone()));
        if let Some(se) = &block.se {
            x = channel_scale(&x, &se_gate(&channel_mean(&x), se));
            out.push((format!("block{i}.se"), x.clone()));
        }
        let projected = pointwise(&x, &block.project, None);
        out.push((format!("block{i}.project"), projected.clone()));
        x = if block.residual {
            pointwise(&x, &block.project, Some(&input))
        } else {
            projected
        };
        out.push((format!("block{i}"), x.clone()));
    }
    x = pointwise(&x, &net.head, None);
    out.push(("head".to_string(), x.clone()));
    if let Some(cls) = &net.classifier {
        let pooled = Tensor {
            c: x.c,
            h: 1,
            w: 1,
            data: channel_mean(&x),
        };
        let hidden = pointwise(&pooled, &cls.hidden, None);
        out.push(("logits".to_string(), pointwise(&hidden, &cls.logits, None)));
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
