//! Gradient checks. The CPU reference's backward of every op against central finite differences
//! in f64, and every GPU backward kernel against the CPU reference backward (relative L2 ≤ 1e-4;
//! with activations and gradients stored in f16, where the adapter has it, each family's `F16_*`
//! bound), on random odd-sized inputs, both padding rules, strides 1 and 2, kernels 3 and 5.

mod common;

use common::*;
use neural_style::arch::{Activation, LayerId, Padding};
use neural_style::gpu::GpuContext;
use neural_style::kernels::conv::{ActivationBackward, ConvBackward, ConvForward, ConvParams, ConvVariant};
use neural_style::kernels::depthwise::{DepthwiseBackward, DepthwiseForward, DepthwiseParams, DepthwiseVariant};
use neural_style::kernels::losses::{ContentLoss, GRADIENT_SLOT, LOSS_SLOTS, LossParams, StyleLoss, TotalLoss, TvLoss};
use neural_style::kernels::pointwise::{
    Operands, PointwiseParams, ProductBuffers, ProductVariant, ResidualBackward, ResidualParams, flags,
};
use neural_style::kernels::squeeze_excite::{
    ChannelDot, ChannelMean, ReductionVariant, SeGate, SeGateBackward, SeInputBackward, SeParams,
};
use neural_style::kernels::{self, Command, Family, Kernels, Precision};
use neural_style::model::SqueezeExcite;
use neural_style::reference::{self, Tensor};
use neural_style::tuning::Variant;

fn random_tensor(rng: &mut Rng, c: usize, h: usize, w: usize, scale: f32) -> Tensor {
    Tensor::from_f32(c, h, w, &rng.vec(c * h * w, scale))
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    a.data.iter().zip(&b.data).map(|(x, y)| x * y).sum()
}

/// Checks `grad` = d/dx of the scalar `loss(x)` at 12 random coordinates by central differences.
fn check_fd(name: &str, x: &Tensor, grad: &Tensor, loss: impl Fn(&Tensor) -> f64) {
    let mut rng = Rng::new(99);
    let eps = 1e-6;
    for _ in 0..12 {
        let i = ((rng.next() as f64 + 1.0) / 2.0 * x.data.len() as f64) as usize % x.data.len();
        let (mut plus, mut minus) = (x.clone(), x.clone());
        plus.data[i] += eps;
        minus.data[i] -= eps;
        let fd = (loss(&plus) - loss(&minus)) / (2.0 * eps);
        let an = grad.data[i];
        let tol = 1e-6 + 1e-5 * fd.abs().max(an.abs());
        assert!((fd - an).abs() <= tol, "{name}: d/dx[{i}] finite difference {fd} vs backward {an}");
    }
}

#[test]
fn reference_conv_backward_matches_finite_differences() {
    let mut rng = Rng::new(1);
    let scale = [2.0, 1.5, 0.7];
    let shift = [-1.0, -0.2, 0.3];
    for padding in [Padding::TfSame, Padding::Symmetric] {
        for act in ACTIVATIONS {
            let x = random_tensor(&mut rng, 3, 9, 11, 1.0);
            let conv = random_conv(&mut rng, [5, 3, 3, 2], false, act, 1.5);
            let y = reference::conv2d(&x, &conv, padding, scale, shift);
            let gy = random_tensor(&mut rng, y.c, y.h, y.w, 1.0);
            let gx = reference::conv2d_backward(&x, &conv, padding, scale, shift, &gy);
            check_fd(&format!("conv {padding:?} {act:?}"), &x, &gx, |x| {
                dot(&reference::conv2d(x, &conv, padding, scale, shift), &gy)
            });
        }
    }
}

#[test]
fn reference_depthwise_and_pointwise_backward_match_finite_differences() {
    let mut rng = Rng::new(2);
    for padding in [Padding::TfSame, Padding::Symmetric] {
        for (kernel, stride) in [(3, 1), (3, 2), (5, 1), (5, 2)] {
            for act in ACTIVATIONS {
                let x = random_tensor(&mut rng, 4, 9, 7, 2.0);
                let conv = random_conv(&mut rng, [4, 4, kernel, stride], true, act, 1.5);
                let y = reference::depthwise(&x, &conv, padding);
                let gy = random_tensor(&mut rng, y.c, y.h, y.w, 1.0);
                let gx = reference::depthwise_backward(&x, &conv, padding, &gy);
                check_fd(&format!("depthwise {padding:?} k{kernel} s{stride} {act:?}"), &x, &gx, |x| {
                    dot(&reference::depthwise(x, &conv, padding), &gy)
                });
            }
        }
    }
    for act in ACTIVATIONS {
        let x = random_tensor(&mut rng, 7, 5, 3, 2.0);
        let conv = random_conv(&mut rng, [6, 7, 1, 1], false, act, 1.5);
        let y = reference::pointwise(&x, &conv, None);
        let gy = random_tensor(&mut rng, y.c, y.h, y.w, 1.0);
        let gx = reference::pointwise_backward(&x, &conv, &gy);
        check_fd(&format!("pointwise {act:?}"), &x, &gx, |x| dot(&reference::pointwise(x, &conv, None), &gy));
    }
}

fn random_se(rng: &mut Rng, c: usize, s: usize, gate: (f32, f32, f32)) -> SqueezeExcite {
    SqueezeExcite {
        reduce: random_conv(rng, [s, c, 1, 1], false, (Activation::Relu, 2.5), 1.5),
        expand: random_conv(rng, [c, s, 1, 1], false, (Activation::None, f32::INFINITY), 1.5),
        gate_add: gate.0,
        gate_max: gate.1,
        gate_mul: gate.2,
    }
}

fn se_forward(x: &Tensor, se: &SqueezeExcite) -> Tensor {
    reference::channel_scale(x, &reference::se_gate(&reference::channel_mean(x), se))
}

#[test]
fn reference_squeeze_excite_and_losses_match_finite_differences() {
    let mut rng = Rng::new(3);
    let x = random_tensor(&mut rng, 12, 5, 7, 2.0);
    let se = random_se(&mut rng, 12, 8, (3.0, 6.0, 1.0 / 6.0));
    let y = se_forward(&x, &se);
    let gy = random_tensor(&mut rng, y.c, y.h, y.w, 1.0);
    let gx = reference::squeeze_excite_backward(&x, &se, &gy);
    check_fd("squeeze-excite", &x, &gx, |x| dot(&se_forward(x, &se), &gy));

    let f = random_tensor(&mut rng, 6, 5, 7, 1.0);
    let target_gram = reference::gram(&random_tensor(&mut rng, 6, 4, 3, 1.0), 0);
    let (_, g) = reference::style_loss(&f, &target_gram, 0);
    check_fd("style loss", &f, &g, |f| reference::style_loss(f, &target_gram, 0).0);
    // Without the border: its gradient is 0 there, and finite differences agree.
    let (_, g) = reference::style_loss(&f, &target_gram, 1);
    assert!(g.data[..7].iter().all(|&v| v == 0.0), "the top row of a margin-1 style loss has no gradient");
    assert!(g.data.iter().any(|&v| v != 0.0));
    check_fd("style loss, margin 1", &f, &g, |f| reference::style_loss(f, &target_gram, 1).0);
    let p = random_tensor(&mut rng, 6, 5, 7, 1.0);
    let (_, g) = reference::content_loss(&f, &p);
    check_fd("content loss", &f, &g, |f| reference::content_loss(f, &p).0);
    let img = random_tensor(&mut rng, 3, 6, 9, 1.0);
    let (_, g) = reference::tv_loss(&img);
    check_fd("tv loss", &img, &g, |x| reference::tv_loss(x).0);
}

#[test]
fn reference_whole_network_gradient_matches_finite_differences() {
    let net = neural_style::weights::load(&default_weights()).unwrap();
    let mut rng = Rng::new(4);
    let (h, w) = (23, 17);
    let image = Tensor::from_f32(3, h, w, &rng.vec(3 * h * w, 0.5).iter().map(|v| v + 0.5).collect::<Vec<_>>());
    let other = Tensor::from_f32(3, h, w, &rng.vec(3 * h * w, 0.5).iter().map(|v| v + 0.5).collect::<Vec<_>>());
    let acts = reference::forward(&net, &other);
    let layer = |n: &str| -> LayerId { n.parse().unwrap() };
    let find = |n: &str| acts.layer(layer(n)).unwrap().clone();
    let objective = reference::Objective {
        content: vec![(layer("block4.expand"), find("block4.expand")), (layer("block2"), find("block2"))],
        style: vec![
            (layer("stem"), 1.0, reference::gram(&find("stem"), 1)),
            (layer("block3.se"), 0.5, reference::gram(&find("block3.se"), 1)),
        ],
        content_weight: 1.0,
        style_weight: 10.0,
        tv_weight: 2.0,
        gram_margin: 1,
        padding: 0,
    };
    let (_, grad) = reference::objective_and_grad(&net, &image, &objective);
    check_fd("whole network", &image, &grad, |x| reference::objective_and_grad(&net, x, &objective).0.total);
    // Mirror-padded by 5 (the padding's rows and columns out of the Gram matrices, its gradient
    // folded back onto the image): still the gradient of the total.
    // The content targets are the padded photo's activations, as `Targets` makes them.
    let padded_acts = reference::forward(&net, &reference::mirror_pad(&other, 5));
    let content = objective.content.iter().map(|(id, _)| (*id, padded_acts.layer(*id).unwrap().clone())).collect();
    let padded = reference::Objective { padding: 5, gram_margin: 0, content, ..objective };
    let (_, grad) = reference::objective_and_grad(&net, &image, &padded);
    check_fd("whole network, mirror-padded", &image, &grad, |x| {
        reference::objective_and_grad(&net, x, &padded).0.total
    });
}

#[test]
fn mirror_padding_reads_about_the_edge_and_its_adjoint_folds_back() {
    let mut rng = Rng::new(12);
    let x = random_tensor(&mut rng, 2, 4, 6, 1.0);
    let p = reference::mirror_pad(&x, 3);
    assert_eq!((p.c, p.h, p.w), (2, 10, 12));
    let at = |t: &Tensor, c: usize, y: usize, xx: usize| t.data[(c * t.h + y) * t.w + xx];
    // Padded (y, x) reads source (|y − 3|, |x − 3|) mirrored about the last row and column.
    assert_eq!(at(&p, 1, 0, 0), at(&x, 1, 3, 3));
    assert_eq!(at(&p, 0, 3, 3), at(&x, 0, 0, 0));
    assert_eq!(at(&p, 0, 9, 11), at(&x, 0, 0, 2));
    assert_eq!(at(&p, 0, 7, 9), at(&x, 0, 2, 4));
    // ⟨pad(x), y⟩ = ⟨x, padᵀ(y)⟩.
    let y = random_tensor(&mut rng, 2, 10, 12, 1.0);
    let folded = reference::mirror_pad_adjoint(&y, 3, 4, 6);
    let (lhs, rhs) = (dot(&p, &y), dot(&x, &folded));
    assert!((lhs - rhs).abs() <= 1e-12 * lhs.abs().max(1.0), "{lhs} vs {rhs}");
}

// ---- GPU backward kernels against the reference ----

fn buffer(ctx: &GpuContext, t: &Tensor) -> wgpu::Buffer {
    values(ctx, t, Precision::F32)
}

/// A random tensor as `precision` stores it (the reference computed from the values the kernel
/// reads).
fn random_stored(rng: &mut Rng, [c, h, w]: [usize; 3], scale: f32, precision: Precision) -> Tensor {
    Tensor::from_f32(c, h, w, &stored(rng.vec(c * h * w, scale), precision))
}

/// `t` stored in `precision`.
fn values(ctx: &GpuContext, t: &Tensor, precision: Precision) -> wgpu::Buffer {
    ctx.values_storage("tensor", &t.data.iter().map(|&v| v as f32).collect::<Vec<_>>(), precision)
}

/// f16 bound of the stem's backward: the stored gradients' rounding (the image gradient is f32).
const F16_STEM: f64 = 1e-3;
/// f16 bound of the depthwise backward.
const F16_DEPTHWISE: f64 = 1e-3;
/// f16 bound of the 1×1 products' backward.
const F16_POINTWISE: f64 = 1e-3;

/// The layer without its activation (the pre-activation's).
fn linear_part(conv: &neural_style::model::Conv) -> neural_style::model::Conv {
    neural_style::model::Conv { activation: Activation::None, cap: f32::INFINITY, ..conv.clone() }
}

/// dL/dZ = dL/dY ⊙ act'(Z) with Z as the forward stores it in `precision`: an f16 pre-activation
/// that rounding moves across a kink of the activation (ReLU6's cap, hard-swish's ±3) takes the
/// derivative on its side, as the kernels do (against the exact Z, such values cost up to 1e-2
/// of relative error on these random layers).
fn through_stored_activation(
    gy: &Tensor,
    pre: &Tensor,
    conv: &neural_style::model::Conv,
    precision: Precision,
) -> Tensor {
    let stored = |z: f64| match precision {
        Precision::F32 => z,
        Precision::F16 => f64::from(half::f16::from_f64(z)),
    };
    let data = gy
        .data
        .iter()
        .zip(&pre.data)
        .map(|(g, &z)| g * reference::activate_grad(stored(z), conv.activation, conv.cap))
        .collect();
    Tensor { data, ..*gy }
}
/// f16 bound of squeeze-excite's backward: the rounding of the stored gradients.
const F16_SQUEEZE_EXCITE: f64 = 1e-3;
/// f16 bound of the loss gradients (content, style R·F) and the Gram partials.
const F16_LOSSES: f64 = 1e-3;

/// `grad` plus `before` where the kernel adds into what its buffer held (`accumulate` 1), else
/// `grad` alone.
fn added(grad: &Tensor, before: &Tensor, accumulate: u32) -> Tensor {
    let data = grad.data.iter().zip(&before.data).map(|(g, b)| g + f64::from(accumulate) * b).collect();
    Tensor { data, ..*grad }
}

#[test]
fn gpu_residual_backward_adds_or_copies_the_block_output_gradient() {
    each_precision(|ctx, precision| {
        let k = Kernels::with_precision(ctx, precision);
        let mut rng = Rng::new(8);
        let n = 1037;
        let (grad, before) =
            (random_stored(&mut rng, [1, 1, n], 1.0, precision), random_stored(&mut rng, [1, 1, n], 1.0, precision));
        for accumulate in [0, 1] {
            let (addend, sum) = (values(ctx, &grad, precision), values(ctx, &before, precision));
            let p = ResidualParams { accumulate, ..ResidualParams::new(n) };
            kernels::run(
                ctx,
                &[k.products.residual_backward(ctx, ResidualBackward { addend: &addend, sum: &sum }, &p)],
            )
            .unwrap();
            check_within(
                &format!("residual backward {precision:?} accumulate {accumulate}"),
                &ctx.read_values(&sum, n, precision).unwrap(),
                &added(&grad, &before, accumulate),
                tolerance(precision, F16_POINTWISE),
            );
        }
    });
}

#[test]
fn gpu_conv_and_depthwise_backward_match_reference() {
    each_precision(conv_and_depthwise_at);
}

fn conv_and_depthwise_at(ctx: &GpuContext, precision: Precision) {
    let k = Kernels::with_precision(ctx, precision);
    let mut rng = Rng::new(5);
    let scale = [2.0, 1.5, 0.7];
    let shift = [-1.0, -0.2, 0.3];
    // Each case's input gradient either adds into what the buffer holds or overwrites it (its
    // first writer), alternating so that every variant does both.
    let mut case = 0;
    for padding in [Padding::TfSame, Padding::Symmetric] {
        for (kernel, stride) in [(3, 1), (3, 2), (5, 1), (5, 2)] {
            for act in ACTIVATIONS {
                case += 1;
                // Stem-style full convolution.
                let x = random_tensor(&mut rng, 3, 23, 37, 1.0);
                let conv = random_conv(&mut rng, [16, 3, kernel, stride], false, act, 1.5);
                let y = reference::conv2d(&x, &conv, padding, scale, shift);
                let gy = random_stored(&mut rng, [y.c, y.h, y.w], 1.0, precision);
                let linear = linear_part(&conv);
                let pre = reference::conv2d(&x, &linear, padding, scale, shift);
                let dz = through_stored_activation(&gy, &pre, &conv, precision);
                let want = reference::conv2d_backward(&x, &linear, padding, scale, shift, &dz);
                // An unclamped ReLU's derivative is read from the output: no pre-activation stored.
                let from_output = conv.derivative_from_output();
                let params = ConvParams::new(&conv, padding, [3, x.h, x.w], scale, shift, !from_output);
                let before = random_tensor(&mut rng, 3, x.h, x.w, 1.0);
                // Forward (keeping the pre-activation), activation backward in place, input
                // gradient; each variant from fresh buffers.
                for (i, variant) in ConvVariant::offered(ctx).into_iter().enumerate() {
                    let accumulate = ((case + i) % 2) as u32;
                    let params = ConvParams { accumulate, ..params };
                    let want = added(&want, &before, accumulate);
                    let (xb, wb, gyb) = (buffer(ctx, &x), conv_buffer(ctx, &conv), values(ctx, &gy, precision));
                    let (yb, pre, gx) = (
                        ctx.values_buffer("y", y.data.len(), precision),
                        ctx.values_buffer("pre", y.data.len(), precision),
                        buffer(ctx, &before),
                    );
                    let activation =
                        ActivationBackward { preact_in: if from_output { &yb } else { &pre }, grad_inout: &gyb };
                    let forward = ConvForward { input: &xb, weights: &wb, output: &yb, preact: &pre };
                    let backward = ConvBackward { grad_output: &gyb, weights: &wb, grad_input: &gx };
                    let ops = [
                        k.conv.forward_variant(ctx, variant, forward, &params),
                        k.conv.activation_backward(ctx, activation, &params.activation_backward(), Family::Stem),
                        k.conv.backward_variant(ctx, variant, backward, &params),
                    ];
                    kernels::run(ctx, &ops).unwrap();
                    check_within(
                        &format!(
                            "conv backward {} {precision:?} {padding:?} k{kernel} s{stride} {act:?} accumulate {accumulate}",
                            variant.name()
                        ),
                        &ctx.read_buffer(&gx, x.data.len()).unwrap(),
                        &want,
                        tolerance(precision, F16_STEM),
                    );
                }

                // Depthwise.
                let c = 13;
                let x = random_stored(&mut rng, [c, 23, 37], 2.0, precision);
                let conv = random_conv(&mut rng, [c, c, kernel, stride], true, act, 1.5);
                let y = reference::depthwise(&x, &conv, padding);
                let gy = random_stored(&mut rng, [y.c, y.h, y.w], 1.0, precision);
                let linear = linear_part(&conv);
                let dz = through_stored_activation(&gy, &reference::depthwise(&x, &linear, padding), &conv, precision);
                let want = reference::depthwise_backward(&x, &linear, padding, &dz);
                // An unclamped ReLU's derivative is read from the output: no pre-activation stored.
                let from_output = conv.derivative_from_output();
                let params = DepthwiseParams::new(&conv, padding, [x.h, x.w], !from_output);
                let before = random_stored(&mut rng, [c, x.h, x.w], 1.0, precision);
                for (i, variant) in DepthwiseVariant::ALL.into_iter().enumerate() {
                    let accumulate = ((case + i) % 2) as u32;
                    let params = DepthwiseParams { accumulate, ..params };
                    let want = added(&want, &before, accumulate);
                    let (xb, wb, gyb) =
                        (values(ctx, &x, precision), conv_buffer(ctx, &conv), values(ctx, &gy, precision));
                    let (yb, pre, gx) = (
                        ctx.values_buffer("y", y.data.len(), precision),
                        ctx.values_buffer("pre", y.data.len(), precision),
                        values(ctx, &before, precision),
                    );
                    let forward = DepthwiseForward { input: &xb, weights: &wb, output: &yb, preact: &pre };
                    let activation =
                        ActivationBackward { preact_in: if from_output { &yb } else { &pre }, grad_inout: &gyb };
                    let backward = DepthwiseBackward { grad_output: &gyb, weights: &wb, grad_input: &gx };
                    let ops = [
                        k.depthwise.forward_variant(ctx, variant, forward, &params),
                        k.conv.activation_backward(ctx, activation, &params.activation_backward(), Family::Depthwise),
                        k.depthwise.backward_variant(ctx, variant, backward, &params),
                    ];
                    kernels::run(ctx, &ops).unwrap();
                    check_within(
                        &format!(
                            "depthwise backward {} {precision:?} {padding:?} k{kernel} s{stride} {act:?} accumulate {accumulate}",
                            variant.name()
                        ),
                        &ctx.read_values(&gx, x.data.len(), precision).unwrap(),
                        &want,
                        tolerance(precision, F16_DEPTHWISE),
                    );
                }
            }
        }
    }
}

#[test]
fn gpu_pointwise_and_squeeze_excite_backward_match_reference() {
    each_precision(pointwise_and_squeeze_excite_at);
}

fn pointwise_and_squeeze_excite_at(ctx: &GpuContext, precision: Precision) {
    let k = Kernels::with_precision(ctx, precision);
    let mut rng = Rng::new(6);
    let mut variants_run = std::collections::BTreeSet::new();
    // The last two fit the lanes variants (multiples of 4), rows left over in the last workgroup.
    let cases = [(37, 70, 23, 37), (96, 576, 3, 5), (130, 9, 17, 19), (40, 120, 5, 6), (24, 96, 8, 8), (96, 76, 3, 4)];
    for (cin, cout, h, w) in cases {
        for act in ACTIVATIONS {
            let x = random_stored(&mut rng, [cin, h, w], 1.0, precision);
            let conv = random_conv(&mut rng, [cout, cin, 1, 1], false, act, 1.5);
            let gy = random_stored(&mut rng, [cout, h, w], 1.0, precision);
            let linear = linear_part(&conv);
            let dz = through_stored_activation(&gy, &reference::pointwise(&x, &linear, None), &conv, precision);
            let want = reference::pointwise_backward(&x, &linear, &dz);
            // An unclamped ReLU's derivative is read from the output: no pre-activation stored.
            let from_output = conv.derivative_from_output();
            let forward = PointwiseParams::conv(&conv, h * w, !from_output);
            let backward = forward.input_gradient();
            let (xb, wb, gyb) = (values(ctx, &x, precision), conv_buffer(ctx, &conv), values(ctx, &gy, precision));
            let (yb, pre, gx) = (
                ctx.values_buffer("y", cout * h * w, precision),
                ctx.values_buffer("pre", cout * h * w, precision),
                ctx.values_buffer("gx", cin * h * w, precision),
            );
            // The forward stores the pre-activation the backward reads: each variant runs both.
            let forward_buffers = ProductBuffers { input: &xb, weights: &wb, output: &yb, aux: &pre };
            let backward_buffers = ProductBuffers { input: &gyb, weights: &wb, output: &gx, aux: &pre };
            for variant in ProductVariant::offered(ctx) {
                let fits = |p, buffers| variant.fits(p, Operands::Features, buffers, precision);
                if !fits(&forward, &forward_buffers) || !fits(&backward, &backward_buffers) {
                    continue;
                }
                // Fresh outputs: the pre-activation the backward reads is this variant's.
                let (yb, pre) = (nan_values(ctx, cout * h * w, precision), nan_values(ctx, cout * h * w, precision));
                let forward_buffers = ProductBuffers { output: &yb, aux: &pre, ..forward_buffers };
                let backward_buffers = ProductBuffers { aux: if from_output { &yb } else { &pre }, ..backward_buffers };
                let ops = [
                    Command::Clear(gx.clone()),
                    Command::Dispatch(k.products.variant(ctx, variant, Operands::Features, forward_buffers, &forward)),
                    Command::Dispatch(k.products.variant(
                        ctx,
                        variant,
                        Operands::Features,
                        backward_buffers,
                        &backward,
                    )),
                ];
                let mut encoder = ctx.device.create_command_encoder(&Default::default());
                kernels::record_commands(&mut encoder, &ops);
                ctx.queue.submit([encoder.finish()]);
                ctx.finish().unwrap();
                check_within(
                    &format!("pointwise backward {} {precision:?} {cin}->{cout} {act:?}", variant.name()),
                    &ctx.read_values(&gx, cin * h * w, precision).unwrap(),
                    &want,
                    tolerance(precision, F16_POINTWISE),
                );
                variants_run.insert(variant.name());
            }
        }
    }
    let all: std::collections::BTreeSet<_> = ProductVariant::offered(ctx).iter().map(|v| v.name()).collect();
    assert_eq!(variants_run, all, "every product variant is checked");
    for (c, s, h, w, gate) in [
        (72, 24, 23, 37, (3.0, 6.0, 1.0 / 6.0)),
        (576, 144, 3, 5, (0.0, 5.9997, 0.1667)),
        (960, 240, 2, 3, (3.0, 6.0, 1.0 / 6.0)),
    ] {
        let x = random_stored(&mut rng, [c, h, w], 2.0, precision);
        let se = random_se(&mut rng, c, s, gate);
        let gy = random_stored(&mut rng, [c, h, w], 1.0, precision);
        let want = reference::squeeze_excite_backward(&x, &se, &gy);
        let mut packed = se.reduce.weight.clone();
        packed.extend(&se.reduce.bias);
        packed.extend(&se.expand.weight);
        packed.extend(&se.expand.bias);
        let params = SeParams::new(&se, c, h * w);
        let (xb, wb, gyb) =
            (values(ctx, &x, precision), ctx.storage_buffer("se", &packed), values(ctx, &gy, precision));
        let se_kernels = &k.squeeze_excite;
        for variant in ReductionVariant::ALL {
            let [means, gates, grad_gates, grad_means] =
                ["means", "gates", "grad gates", "grad means"].map(|l| ctx.zeroed_buffer(l, c));
            let gx = ctx.values_buffer("gx", c * h * w, precision);
            let dot_buffers = ChannelDot { input: &xb, output: &grad_gates, grad: &gyb };
            let ops = [
                se_kernels.channel_mean_variant(ctx, variant, ChannelMean { input: &xb, output: &means }, &params),
                se_kernels.gate(ctx, SeGate { input: &means, aux: &wb, output: &gates }, &params),
                se_kernels.channel_dot_variant(ctx, variant, dot_buffers, &params),
                se_kernels.gate_backward(
                    ctx,
                    SeGateBackward { input: &means, aux: &wb, output: &grad_means, grad: &grad_gates },
                    &params,
                ),
                se_kernels.input_backward(
                    ctx,
                    SeInputBackward { input: &grad_means, aux: &gates, grad: &gyb, grad_input: &gx },
                    &params,
                ),
            ];
            kernels::run(ctx, &ops).unwrap();
            check_within(
                &format!("squeeze-excite backward {} {precision:?} c{c} s{s}", variant.name()),
                &ctx.read_values(&gx, c * h * w, precision).unwrap(),
                &want,
                tolerance(precision, F16_SQUEEZE_EXCITE),
            );
        }
    }
}

#[test]
fn gpu_losses_and_their_gradients_match_reference() {
    each_precision(losses_at);
}

fn losses_at(ctx: &GpuContext, precision: Precision) {
    let k = Kernels::with_precision(ctx, precision);
    let mut rng = Rng::new(7);
    let (c, h, w) = (37, 13, 11);
    let f = random_stored(&mut rng, [c, h, w], 1.0, precision);
    let p = random_stored(&mut rng, [c, h, w], 1.0, precision);
    let target = reference::gram(&random_tensor(&mut rng, c, 9, 7, 1.0), 0);
    let img = random_tensor(&mut rng, 3, 29, 23, 1.0);
    let (content_want, content_grad) = reference::content_loss(&f, &p);
    // The loss gradients scaled as an f16 objective scales them (into f16's range: unscaled, R·F
    // is about 1e-7 here); the losses themselves are not.
    let gradient_scale = if precision == Precision::F16 { 2f32.powi(20) } else { 1.0 };
    let (style_want, style_grad) = reference::style_loss(&f, &target, 0);
    let (tv_want, tv_grad) = reference::tv_loss(&img);

    let (fb, pb, ib) = (values(ctx, &f, precision), values(ctx, &p, precision), buffer(ctx, &img));
    let tb = ctx.storage_buffer("target", &target.iter().map(|&v| v as f32).collect::<Vec<_>>());
    // The Gram product split over pixels into three partial products, summed by the style loss.
    let (k_chunk, splits) = (48, 3);
    let gram = ctx.zeroed_buffer("gram partials", splits * c * c);
    let r = ctx.zeroed_buffer("r", c * c);
    let [g_content, g_style] = ["g content", "g style"].map(|l| ctx.values_buffer(l, c * h * w, precision));
    let g_img = ctx.zeroed_buffer("g image", img.data.len());
    // Several workgroups per loss, each writing a partial sum after the slots (from first = LOSS_SLOTS):
    // content's 3 at first..first+3, style's 2 at +3..+5, TV's 3 at +5..+8 and the squared image
    // gradient's 3 (written by the TV dispatch) at +8..+11; total_loss adds them up.
    let (content_groups, style_groups, tv_groups) = (3, 2, 3);
    let first = LOSS_SLOTS as u32;
    let losses = ctx.zeroed_buffer("losses", LOSS_SLOTS + 11);
    let n = c * h * w;
    let base = LossParams {
        content_weight: 1.0,
        style_weight: 1.0,
        tv_weight: 1.0,
        height: 29,
        width: 23,
        ..Default::default()
    };
    let hw = (h * w) as u32;
    let gram_params = PointwiseParams {
        m: c as u32,
        k: hw,
        n: c as u32,
        flags: flags::TRANSPOSE_B | flags::SYMMETRIC,
        alpha: 1.0 / (c as f32 * hw as f32),
        k_chunk,
        ..Default::default()
    };
    let rf_params = PointwiseParams { m: c as u32, k: c as u32, n: hw, flags: flags::ACCUMULATE, ..Default::default() };
    let none = k.placeholder();
    let ops = [
        k.losses.content(
            ctx,
            ContentLoss { value: &fb, target_value: &pb, grad: &g_content, losses: &losses },
            &LossParams {
                count: n as u32,
                coef: gradient_scale * 2.0 / n as f32,
                layer_weight: 1.0,
                groups: content_groups,
                partial: first,
                ..base
            },
        ),
        k.products.gram(ctx, ProductBuffers { input: &fb, weights: &fb, output: &gram, aux: none }, &gram_params),
        k.losses.style(
            ctx,
            StyleLoss { value: &gram, target_value: &tb, grad: &r, losses: &losses },
            &LossParams {
                channels: c as u32,
                coef: gradient_scale * 4.0 / ((c * c) as f32 * n as f32),
                layer_weight: 1.0,
                splits: splits as u32,
                groups: style_groups,
                partial: first + 3,
                ..base
            },
        ),
        k.products.style_gradient(
            ctx,
            ProductBuffers { input: &fb, weights: &r, output: &g_style, aux: none },
            &rf_params,
        ),
        k.losses.tv(
            ctx,
            TvLoss { value: &ib, grad: &g_img, losses: &losses },
            &LossParams { groups: tv_groups, partial: first + 5, ..base },
        ),
        k.losses.total(
            ctx,
            TotalLoss { losses: &losses },
            &LossParams { ends: [first + 3, first + 5, first + 8, first + 11], ..base },
        ),
    ];
    kernels::run(ctx, &ops).unwrap();
    let l = ctx.read_buffer(&losses, LOSS_SLOTS).unwrap();
    // The image gradient here is the TV gradient alone (g_img started at 0).
    let tv_grad_sq: f64 = tv_grad.data.iter().map(|g| g * g).sum();
    for (got, want, name) in [
        (l[0], content_want, "content"),
        (l[1], style_want, "style"),
        (l[2], tv_want, "tv"),
        (l[3], content_want + style_want + tv_want, "total"),
        (l[GRADIENT_SLOT], tv_grad_sq, "squared image gradient"),
    ] {
        let tol = tolerance(precision, F16_LOSSES);
        assert!(
            ((got as f64 - want) / want).abs() <= tol,
            "{name} loss ({precision:?}): GPU {got} vs reference {want}"
        );
    }
    let partials = ctx.read_buffer(&gram, splits * c * c).unwrap();
    let summed: Vec<f32> = (0..c * c).map(|i| (0..splits).map(|s| partials[s * c * c + i]).sum()).collect();
    let tol = tolerance(precision, F16_LOSSES);
    let gram_want = Tensor { c, h: c, w: 1, data: reference::gram(&f, 0) };
    check_within(&format!("gram (sum of the partial products) {precision:?}"), &summed, &gram_want, tol);
    let unscaled = |b: &wgpu::Buffer| -> Vec<f32> {
        ctx.read_values(b, n, precision).unwrap().iter().map(|g| g / gradient_scale).collect()
    };
    check_within(&format!("content gradient {precision:?}"), &unscaled(&g_content), &content_grad, tol);
    check_within(&format!("style gradient {precision:?}"), &unscaled(&g_style), &style_grad, tol);
    // The image and its gradient are f32 in either precision.
    check(&format!("tv gradient {precision:?}"), &ctx.read_buffer(&g_img, img.data.len()).unwrap(), &tv_grad);
}
