//! Every WGSL kernel against the f64 CPU reference, on random inputs with odd sizes, both padding
//! rules, strides 1 and 2, kernels 3 and 5, each activation: relative L2 error ≤ 1e-4 in f32.
//! With activations stored in f16 (where the adapter has it) each family has its own bound
//! (`F16_*`: the output's rounding to f16, 2⁻¹¹ relative at most, and f32's rounding in the
//! kernel's sums), the inputs rounded to f16 for both the kernel and the reference.

mod common;

use common::*;
use neural_style::arch::{Activation, Padding};
use neural_style::gpu::GpuContext;
use neural_style::kernels::conv::{ConvForward, ConvParams, ConvVariant};
use neural_style::kernels::depthwise::{DepthwiseForward, DepthwiseParams, DepthwiseVariant};
use neural_style::kernels::losses::{InteriorParams, PixelMajor};
use neural_style::kernels::pointwise::Operands;
use neural_style::kernels::pointwise::{
    PointwiseParams, ProductBuffers, ProductVariant, ResidualForward, ResidualParams, flags,
};
use neural_style::kernels::squeeze_excite::{ChannelMean, ChannelScale, ReductionVariant, SeGate, SeParams};
use neural_style::kernels::{self, Kernels, Precision};
use neural_style::model::SqueezeExcite;
use neural_style::reference::{self, Tensor};
use neural_style::tuning::Variant;

/// f16 bound of the stem: its output rounded to f16 (the image and weights stay f32).
const F16_STEM: f64 = 1e-3;
/// f16 bound of the depthwise convolution: input and output rounded.
const F16_DEPTHWISE: f64 = 1e-3;
/// f16 bound of the 1×1 products and the residual add: input and output rounded.
const F16_POINTWISE: f64 = 1e-3;
/// f16 bound of squeeze-excite: input and output rounded (the means and gates are f32).
const F16_SQUEEZE_EXCITE: f64 = 1e-3;
/// f16 bound of the Gram products: the features rounded (the Gram matrix is f32).
const F16_GRAM: f64 = 1e-3;

#[test]
fn stem_convolution_matches_reference() {
    each_precision(stem_at);
}

fn stem_at(ctx: &GpuContext, precision: Precision) {
    let k = Kernels::with_precision(ctx, precision);
    let mut rng = Rng::new(1);
    let (h, w) = (23, 37);
    let input = rng.vec(3 * h * w, 1.0).iter().map(|v| v * 0.5 + 0.5).collect::<Vec<_>>();
    let input_buf = ctx.storage_buffer("input", &input);
    let scale = [2.0, 1.5, 0.7];
    let shift = [-1.0, -0.2, 0.3];
    for padding in [Padding::TfSame, Padding::Symmetric] {
        // 16 output channels (the stems) and 21 (a second, partial block of 16 per invocation).
        for (kernel, stride, out_c) in [(3, 2, 16), (3, 1, 21), (5, 2, 16)] {
            for act in ACTIVATIONS {
                let conv = random_conv(&mut rng, [out_c, 3, kernel, stride], false, act, 1.0);
                let want = reference::conv2d(&Tensor::from_f32(3, h, w, &input), &conv, padding, scale, shift);
                let params = ConvParams::new(&conv, padding, [3, h, w], scale, shift, false);
                let (oh, ow) = (params.out_h as usize, params.out_w as usize);
                let wb = conv_buffer(ctx, &conv);
                for variant in ConvVariant::offered(ctx) {
                    // Every value written by this variant: the output starts as NaN.
                    let out = nan_values(ctx, out_c * oh * ow, precision);
                    let buffers =
                        ConvForward { input: &input_buf, weights: &wb, output: &out, preact: k.placeholder() };
                    kernels::run(ctx, &[k.conv.forward_variant(ctx, variant, buffers, &params)]).unwrap();
                    let got = ctx.read_values(&out, out_c * oh * ow, precision).unwrap();
                    let name = format!(
                        "conv {} {precision:?} {padding:?} k{kernel} s{stride} {out_c} {act:?}",
                        variant.name()
                    );
                    check_within(&name, &got, &want, tolerance(precision, F16_STEM));
                }
            }
        }
    }
}

#[test]
fn depthwise_convolution_matches_reference() {
    each_precision(depthwise_at);
}

fn depthwise_at(ctx: &GpuContext, precision: Precision) {
    let k = Kernels::with_precision(ctx, precision);
    let mut rng = Rng::new(2);
    let (c, h, w) = (13, 23, 37);
    let input = stored(rng.vec(c * h * w, 2.0), precision);
    let input_buf = ctx.values_storage("input", &input, precision);
    for padding in [Padding::TfSame, Padding::Symmetric] {
        for kernel in [3, 5] {
            for stride in [1, 2] {
                for act in ACTIVATIONS {
                    let conv = random_conv(&mut rng, [c, c, kernel, stride], true, act, 1.0);
                    let want = reference::depthwise(&Tensor::from_f32(c, h, w, &input), &conv, padding);
                    let params = DepthwiseParams::new(&conv, padding, [h, w], false);
                    let (oh, ow) = (params.out_h as usize, params.out_w as usize);
                    let wb = conv_buffer(ctx, &conv);
                    for variant in DepthwiseVariant::ALL {
                        let out = nan_values(ctx, c * oh * ow, precision);
                        let buffers =
                            DepthwiseForward { input: &input_buf, weights: &wb, output: &out, preact: k.placeholder() };
                        kernels::run(ctx, &[k.depthwise.forward_variant(ctx, variant, buffers, &params)]).unwrap();
                        let got = ctx.read_values(&out, c * oh * ow, precision).unwrap();
                        let name = format!(
                            "depthwise {} {precision:?} {padding:?} k{kernel} s{stride} {act:?}",
                            variant.name()
                        );
                        check_within(&name, &got, &want, tolerance(precision, F16_DEPTHWISE));
                    }
                }
            }
        }
    }
}

#[test]
fn pointwise_product_with_and_without_residual_matches_reference() {
    each_precision(pointwise_at);
}

fn pointwise_at(ctx: &GpuContext, precision: Precision) {
    let k = Kernels::with_precision(ctx, precision);
    let mut rng = Rng::new(3);
    // Channel counts that are not multiples of the tiles or the 16-deep k step, and sizes that
    // pick every tile height and width (1, 2 or 4 rows and columns per invocation); the last two
    // fit the lanes variants too (multiples of 4), with rows left over in their last workgroup.
    let cases = [
        (37, 70, 23, 37),
        (16, 16, 1, 1),
        (96, 576, 3, 5),
        (130, 9, 17, 19),
        (40, 120, 5, 6),
        (24, 96, 8, 8),
        (16, 76, 6, 10),
    ];
    let mut variants_run = std::collections::BTreeSet::new();
    for (cin, cout, h, w) in cases {
        let input = stored(rng.vec(cin * h * w, 1.0), precision);
        let residual = stored(rng.vec(cout * h * w, 1.0), precision);
        let input_buf = ctx.values_storage("input", &input, precision);
        let residual_buf = ctx.values_storage("residual", &residual, precision);
        for act in ACTIVATIONS {
            for with_residual in [false, true] {
                let conv = random_conv(&mut rng, [cout, cin, 1, 1], false, act, 1.0);
                let res_t = Tensor::from_f32(cout, h, w, &residual);
                let want =
                    reference::pointwise(&Tensor::from_f32(cin, h, w, &input), &conv, with_residual.then_some(&res_t));
                let params = PointwiseParams::conv(&conv, h * w, false);
                let wb = conv_buffer(ctx, &conv);
                let probe =
                    ProductBuffers { input: &input_buf, weights: &wb, output: &input_buf, aux: k.placeholder() };
                let fits = |v: &ProductVariant| v.fits(&params, Operands::Features, &probe, precision);
                for variant in ProductVariant::offered(ctx).into_iter().filter(fits) {
                    let out = nan_values(ctx, cout * h * w, precision);
                    let buffers = ProductBuffers { output: &out, ..probe };
                    let mut ops = vec![k.products.variant(ctx, variant, Operands::Features, buffers, &params)];
                    let variant = variant.name();
                    let sum = ctx.values_buffer("sum", cout * h * w, precision);
                    if with_residual {
                        let buffers = ResidualForward { input: &out, addend: &residual_buf, sum: &sum };
                        ops.push(k.products.residual_forward(ctx, buffers, &ResidualParams::new(cout * h * w)));
                    }
                    kernels::run(ctx, &ops).unwrap();
                    let got = ctx.read_values(if with_residual { &sum } else { &out }, cout * h * w, precision);
                    let name = format!(
                        "pointwise {variant} {precision:?} {cin}->{cout} {h}x{w} {act:?} residual={with_residual}"
                    );
                    check_within(&name, &got.unwrap(), &want, tolerance(precision, F16_POINTWISE));
                    variants_run.insert(variant);
                }
            }
        }
    }
    let all: std::collections::BTreeSet<_> = ProductVariant::offered(ctx).iter().map(|v| v.name()).collect();
    assert_eq!(variants_run, all, "every product variant is checked");
}

#[test]
fn squeeze_excite_mean_gate_and_scale_match_reference() {
    each_precision(squeeze_excite_at);
}

fn squeeze_excite_at(ctx: &GpuContext, precision: Precision) {
    let k = Kernels::with_precision(ctx, precision);
    let mut rng = Rng::new(4);
    for (c, s, h, w, gate) in [
        (72, 24, 23, 37, (3.0, 6.0, 1.0 / 6.0)),
        (576, 144, 3, 5, (0.0, 5.9997, 0.1667)),
        (16, 8, 1, 1, (3.0, 6.0, 1.0 / 6.0)),
    ] {
        let input = stored(rng.vec(c * h * w, 2.0), precision);
        let x = Tensor::from_f32(c, h, w, &input);
        let se = SqueezeExcite {
            reduce: random_conv(&mut rng, [s, c, 1, 1], false, (Activation::Relu, 3.0), 1.0),
            expand: random_conv(&mut rng, [c, s, 1, 1], false, (Activation::None, f32::INFINITY), 1.0),
            gate_add: gate.0,
            gate_max: gate.1,
            gate_mul: gate.2,
        };
        let means_want = reference::channel_mean(&x);
        let gates_want = reference::se_gate(&means_want, &se);
        let want = reference::channel_scale(&x, &gates_want);

        let mut packed = se.reduce.weight.clone();
        packed.extend(&se.reduce.bias);
        packed.extend(&se.expand.weight);
        packed.extend(&se.expand.bias);
        let input_buf = ctx.values_storage("input", &input, precision);
        let weights = ctx.storage_buffer("se", &packed);
        let params = SeParams::new(&se, c, h * w);
        let se_kernels = &k.squeeze_excite;
        for variant in ReductionVariant::ALL {
            let means = ctx.zeroed_buffer("means", c);
            let gates = ctx.zeroed_buffer("gates", c);
            let out = nan_values(ctx, c * h * w, precision);
            let mean_buffers = ChannelMean { input: &input_buf, output: &means };
            let ops = [
                se_kernels.channel_mean_variant(ctx, variant, mean_buffers, &params),
                se_kernels.gate(ctx, SeGate { input: &means, aux: &weights, output: &gates }, &params),
                se_kernels.channel_scale(ctx, ChannelScale { input: &input_buf, aux: &gates, output: &out }, &params),
            ];
            kernels::run(ctx, &ops).unwrap();
            let means_got = ctx.read_buffer(&means, c).unwrap();
            let gates_got = ctx.read_buffer(&gates, c).unwrap();
            let got = ctx.read_values(&out, c * h * w, precision).unwrap();
            let tol = tolerance(precision, F16_SQUEEZE_EXCITE);
            let (means_want, gates_want) = (
                Tensor { c, h: 1, w: 1, data: means_want.clone() },
                Tensor { c, h: 1, w: 1, data: gates_want.clone() },
            );
            let variant = variant.name();
            check_within(&format!("channel mean {variant} {precision:?} c{c}"), &means_got, &means_want, tol);
            check_within(&format!("se gate {variant} {precision:?} c{c} s{s}"), &gates_got, &gates_want, tol);
            check_within(&format!("channel scale {variant} {precision:?} c{c}"), &got, &want, tol);
        }
    }
}

#[test]
fn symmetric_gram_products_split_or_accumulated_match_reference() {
    each_precision(gram_at);
}

fn gram_at(ctx: &GpuContext, precision: Precision) {
    let k = Kernels::with_precision(ctx, precision);
    let mut rng = Rng::new(11);
    // Channel counts that pick each square tile and odd numbers of tiles per side.
    for (c, hw) in [(16, 65536), (16, 600), (37, 143), (72, 300), (130, 97)] {
        let f = stored(rng.vec(c * hw, 1.0), precision);
        let gram = reference::gram(&Tensor::from_f32(c, hw, 1, &f), 0);
        let fb = ctx.values_storage("f", &f, precision);
        // The features as the network stores them (B read transposed), or transposed to
        // [pixel][channel] by `pixel_major` (A read transposed).
        let xb = ctx.values_buffer("f pixel-major", c * hw, precision);
        let shape = InteriorParams { channels: c as u32, height: 1, width: hw as u32, margin: 0 };
        kernels::run(ctx, &[k.losses.pixel_major(ctx, PixelMajor { value: &fb, pixel_value: &xb }, &shape)]).unwrap();
        for (layout, features, transpose) in
            [("channels", &fb, flags::TRANSPOSE_B), ("pixels", &xb, flags::TRANSPOSE_A)]
        {
            let base = PointwiseParams {
                m: c as u32,
                k: hw as u32,
                n: c as u32,
                flags: transpose | flags::SYMMETRIC,
                alpha: 1.0 / (c * hw) as f32,
                ..Default::default()
            };
            let mut variants_run = Vec::new();
            // Added into a matrix that already holds values.
            let start = rng.vec(c * c, 1.0);
            let want: Vec<f64> = gram.iter().zip(&start).map(|(g, s)| g + f64::from(*s)).collect();
            let params = PointwiseParams { flags: base.flags | flags::ACCUMULATE, ..base };
            let probe = ProductBuffers { input: features, weights: features, output: &fb, aux: k.placeholder() };
            for variant in
                ProductVariant::offered(ctx).into_iter().filter(|v| v.fits(&params, Operands::Gram, &probe, precision))
            {
                let out = ctx.storage_buffer("gram", &start);
                let buffers = ProductBuffers { output: &out, ..probe };
                kernels::run(ctx, &[k.products.variant(ctx, variant, Operands::Gram, buffers, &params)]).unwrap();
                let variant = variant.name();
                // One f32 sum over tens of thousands of pixels drifts by ~1e-3: long sums are split.
                if hw < 10000 {
                    check_within(
                        &format!("accumulated gram {layout} {variant} {precision:?} c={c}"),
                        &ctx.read_buffer(&out, c * c).unwrap(),
                        &Tensor { c, h: c, w: 1, data: want.clone() },
                        tolerance(precision, F16_GRAM),
                    );
                }
                variants_run.push(variant);
            }
            // Split over pixels into partial products.
            let chunk = if hw > 10000 { 256 } else { 48 };
            let splits = hw.div_ceil(chunk);
            let params = PointwiseParams { k_chunk: chunk as u32, ..base };
            for variant in
                ProductVariant::offered(ctx).into_iter().filter(|v| v.fits(&params, Operands::Gram, &probe, precision))
            {
                // Every partial entry written by this variant (each mirror image too).
                let partials = nan_buffer(ctx, splits * c * c);
                let buffers = ProductBuffers { output: &partials, ..probe };
                kernels::run(ctx, &[k.products.variant(ctx, variant, Operands::Gram, buffers, &params)]).unwrap();
                let variant = variant.name();
                let got = ctx.read_buffer(&partials, splits * c * c).unwrap();
                let summed: Vec<f32> = (0..c * c).map(|i| (0..splits).map(|s| got[s * c * c + i]).sum()).collect();
                let name = format!("split gram {layout} {variant} {precision:?} c={c}");
                let want = Tensor { c, h: c, w: 1, data: gram.clone() };
                check_within(&name, &summed, &want, tolerance(precision, F16_GRAM));
            }
            // The lanes variants read the channel layout four pixels at a time: they fit when
            // the pixels are a multiple of 4.
            let lanes_run = variants_run.iter().any(|v| v.starts_with("lanes"));
            assert_eq!(lanes_run, layout == "channels" && hw % 4 == 0, "{layout} c={c} hw={hw}: {variants_run:?}");
            assert!(variants_run.contains(&"tiled") && variants_run.contains(&"tiled1"), "{variants_run:?}");
        }
    }
}

#[test]
fn pixel_major_features_are_the_masked_features_transposed() {
    each_precision(pixel_major_at);
}

fn pixel_major_at(ctx: &GpuContext, precision: Precision) {
    let k = Kernels::with_precision(ctx, precision);
    let mut rng = Rng::new(12);
    // Channel counts below, at and past a multiple of four; margins 0 to past the middle.
    for (c, h, w, margin) in [(3, 5, 7, 0), (4, 6, 6, 1), (9, 7, 11, 2), (16, 4, 5, 3)] {
        let f = stored(rng.vec(c * h * w, 1.0), precision);
        let fb = ctx.values_storage("f", &f, precision);
        let xb = ctx.values_buffer("f pixel-major", c * h * w, precision);
        let shape = InteriorParams { channels: c as u32, height: h as u32, width: w as u32, margin: margin as u32 };
        kernels::run(ctx, &[k.losses.pixel_major(ctx, PixelMajor { value: &fb, pixel_value: &xb }, &shape)]).unwrap();
        let inside = |y: usize, x: usize| y >= margin && y + margin < h && x >= margin && x + margin < w;
        let want: Vec<f32> = (0..h * w)
            .flat_map(|pix| (0..c).map(move |ch| (pix, ch)))
            .map(|(pix, ch)| if inside(pix / w, pix % w) { f[ch * h * w + pix] } else { 0.0 })
            .collect();
        // A copy: exact in either precision.
        assert_eq!(
            ctx.read_values(&xb, c * h * w, precision).unwrap(),
            want,
            "pixel_major {precision:?} c{c} {h}x{w} margin {margin}"
        );
    }
}

/// A buffer of `len` NaNs: a value a kernel fails to write fails the comparison.
fn nan_buffer(ctx: &GpuContext, len: usize) -> wgpu::Buffer {
    ctx.storage_buffer("NaN-filled output", &vec![f32::NAN; len])
}
