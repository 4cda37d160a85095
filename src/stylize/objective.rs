//! The style-transfer objective on the GPU: targets computed once (content activations, blended
//! style Gram matrices), then per evaluation the forward pass in training mode, the three losses
//! and the backward pass to the image gradient, all as dispatches recorded into one pass.

use anyhow::{Result, bail};

use crate::arch::{LayerId, LayerInfo};
use crate::engine::{FeatureNet, ForwardPlan, GradientWrites, PlanOptions, Work};
use crate::gpu::GpuContext;
pub use crate::kernels::losses::LOSS_SLOTS;
use crate::kernels::losses::{
    ContentLoss, GradientL1, Interior, InteriorParams, LossParams, NormalizedAdd, PixelMajor, StyleLoss, TotalLoss,
    TvLoss, loss_groups,
};
use crate::kernels::pointwise::{PointwiseParams, ProductBuffers, flags, product_tiles, tile_shape};
use crate::kernels::scales::{Resize, ResizeParams, mirror_pad_size};
use crate::kernels::{self, BoundOp, Command, Family, Precision};
use crate::tuning::{Variant, scratch_like, time_op};

/// How each layer's loss is scaled before the weights apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LossNormalization {
    /// Each content layer's loss is divided by the mean square of its target (the photo's
    /// activations), each style layer's by the mean square of its target Gram matrix and by the
    /// number of style layers: every layer counts alike whatever its scale, and the style weight
    /// means the same for any size and layer set.
    PerLayer,
    /// The classic loss (jcjohnson/neural-style, the PyTorch reference): plain means.
    None,
}

/// Which layers the losses use, and how the terms are weighted.
#[derive(Clone, Debug, PartialEq)]
pub struct LossSpec {
    /// Content layers.
    pub content_layers: Vec<LayerId>,
    /// Style layers with their weights.
    pub style_layers: Vec<(LayerId, f32)>,
    /// Weight of E_content.
    pub content_weight: f32,
    /// Weight of E_style.
    pub style_weight: f32,
    /// Weight of E_tv.
    pub tv_weight: f32,
    /// jcjohnson's `-normalize_gradients`: each content and style loss sends back its gradient
    /// divided by its L1 norm, weight · g / (‖g‖₁ + 1e-8), g the gradient of that layer's
    /// unweighted loss (for a style layer, w_l · style_weight is the weight). The TV gradient is
    /// unchanged, and the losses are still the objective's values: the gradient is then no longer
    /// the gradient of the reported total.
    pub normalize_gradients: bool,
    /// Rows and columns at each edge of a style layer left out of its Gram matrix (and so given
    /// no style gradient) besides those of the [`LossSpec::padding`]: zero padding makes the
    /// activations there many times larger than inside, and their share of the Gram matrix would
    /// depend on the image's size and aspect. 0 keeps every pixel (the classic loss). A layer with
    /// no interior keeps every pixel too.
    pub gram_margin: u32,
    /// Pixels of mirror padding around the image (and each target image) before the network: a
    /// style layer's Gram matrix leaves out the rows and columns that come from the padding, so
    /// the image's own border is inside the network and is painted like the rest, and the zero
    /// padding's large edge activations fall outside the Gram matrices. At most the image's
    /// side − 1; 0: none.
    pub padding: u32,
    /// How each layer's loss is scaled ([`LossNormalization`]).
    pub normalization: LossNormalization,
    /// Multiplies the style weight: how painted the result is (1: the default look; 2 twice the
    /// style; the viewer's +/- keys double and halve it).
    pub strength: f32,
}

impl Default for LossSpec {
    /// The documented defaults (see the README and the `DEFAULT_*` constants).
    fn default() -> Self {
        let layer = |name: &str| name.parse().expect("the default layer names are layer names");
        Self {
            content_layers: super::DEFAULT_CONTENT_LAYERS.split(',').map(layer).collect(),
            style_layers: super::DEFAULT_STYLE_LAYERS.split(',').map(|name| (layer(name), 1.0)).collect(),
            content_weight: super::DEFAULT_CONTENT_WEIGHT,
            style_weight: super::DEFAULT_STYLE_WEIGHT,
            tv_weight: super::DEFAULT_TV_WEIGHT,
            normalize_gradients: false,
            gram_margin: super::DEFAULT_GRAM_MARGIN,
            padding: super::DEFAULT_PADDING,
            normalization: LossNormalization::PerLayer,
            strength: 1.0,
        }
    }
}

impl LossSpec {
    /// The deepest layer any loss uses ([`LayerId`]'s order is execution order).
    pub fn deepest_layer(&self) -> Option<LayerId> {
        self.content_layers.iter().chain(self.style_layers.iter().map(|(id, _)| id)).max().copied()
    }

    /// The margin of a style layer of `height`×`width` in a network run on an image of
    /// `input_height`×`input_width` mirror-padded by `pad`: the rows and columns the padding
    /// makes (pad · layer side / input side, rounded down) plus [`LossSpec::gram_margin`]; 0 when
    /// that would leave no interior.
    pub fn margin_for(&self, height: usize, width: usize, input: (usize, usize), pad: u32) -> u32 {
        let (input_height, input_width) = input;
        let padded = (pad as usize * height / input_height).min(pad as usize * width / input_width);
        let m = padded + self.gram_margin as usize;
        if height > 2 * m && width > 2 * m { m as u32 } else { 0 }
    }

    /// The style weight the losses use: [`LossSpec::style_weight`] · [`LossSpec::strength`].
    pub fn effective_style_weight(&self) -> f32 {
        self.style_weight * self.strength
    }

    /// The mirror padding of a `width`×`height` image ([`LossSpec::padding`], at most a side − 1).
    pub fn pad_for(&self, width: usize, height: usize) -> u32 {
        mirror_pad_size(self.padding, width as u32, height as u32)
    }
}

/// A forward plan on a mirror-padded image: the plan, the padding dispatch (if any), the padded
/// (height, width) and the pad.
type PaddedPlan = (ForwardPlan, Vec<BoundOp>, (usize, usize), u32);

/// A `width`×`height` image in `image` mirror-padded by `pad` into a new buffer: the buffer, the
/// dispatch and its parameters (for the adjoint).
fn mirror_padded(
    ctx: &GpuContext,
    fnet: &FeatureNet,
    image: &wgpu::Buffer,
    width: usize,
    height: usize,
    pad: u32,
) -> (wgpu::Buffer, BoundOp, ResizeParams) {
    let (w, h) = (width as u32, height as u32);
    let p = ResizeParams { src_w: w, src_h: h, dst_w: w + 2 * pad, dst_h: h + 2 * pad };
    let padded = ctx.zeroed_buffer("mirror-padded image", 3 * (p.dst_w * p.dst_h) as usize);
    let op = fnet.kernels.scales.mirror_pad(ctx, Resize { src: image, dst: &padded }, &p);
    (padded, op, p)
}

/// What a style layer's Gram matrix is made from: the layer's activations, or (with a margin)
/// a copy with the border set to 0 and the `interior` dispatch that writes it.
struct StyleFeatures {
    /// The `interior` dispatch, with a margin.
    mask: Option<BoundOp>,
    /// The features the style gradient reads (and the Gram product in
    /// [`GramLayout::Channels`]).
    buffer: wgpu::Buffer,
    /// The layer's activations.
    activations: wgpu::Buffer,
    /// The layer's shape and margin.
    shape: InteriorParams,
    /// Pixels per channel that count (the Gram matrix's normalization).
    pixels: usize,
}

impl StyleFeatures {
    /// The style features of layer `info` whose activations are `f`, in a network run on an
    /// `input` (height, width) image mirror-padded by `pad`.
    fn new(
        ctx: &GpuContext,
        fnet: &FeatureNet,
        spec: &LossSpec,
        info: &LayerInfo,
        f: &wgpu::Buffer,
        input: (usize, usize),
        pad: u32,
    ) -> Self {
        let shape = InteriorParams {
            channels: info.channels as u32,
            height: info.height as u32,
            width: info.width as u32,
            margin: spec.margin_for(info.height, info.width, input, pad),
        };
        let (mask, buffer) = if shape.margin == 0 {
            (None, f.clone())
        } else {
            let values = info.channels * info.height * info.width;
            let buffer = ctx.values_buffer("style features interior", values, fnet.kernels.precision());
            let mask = fnet.kernels.losses.interior(ctx, Interior { value: f, interior_value: &buffer }, &shape);
            (Some(mask), buffer)
        };
        Self { mask, buffer, activations: f.clone(), pixels: shape.kept_pixels(), shape }
    }

    /// The dispatches of the Gram product G (c×c) = scale · F Fᵀ / (c·pixels) (symmetric: half
    /// the tiles), the sum over pixels split into chunks of `k_chunk` whose partial products
    /// land one after another in `g` (see [`gram_split`]), in the layout the device's tuner
    /// chose for the layer's shape (see [`GramLayout`]).
    fn gram_ops(
        &self,
        ctx: &GpuContext,
        fnet: &FeatureNet,
        g: &wgpu::Buffer,
        scale: f32,
        k_chunk: u32,
    ) -> Vec<BoundOp> {
        let k = &fnet.kernels;
        let InteriorParams { channels: c, height, width, margin } = self.shape;
        let params = PointwiseParams {
            m: c,
            k: height * width,
            n: c,
            flags: flags::TRANSPOSE_B | flags::SYMMETRIC,
            alpha: scale / (c as usize * self.pixels) as f32,
            k_chunk,
            ..Default::default()
        };
        let aux = k.placeholder();
        let channels = |g: &wgpu::Buffer| {
            let f = &self.buffer;
            k.products.gram(ctx, ProductBuffers { input: f, weights: f, output: g, aux }, &params)
        };
        // The copy x is the size of the activations.
        let pixels = |g: &wgpu::Buffer, x: &wgpu::Buffer| {
            let transpose =
                k.losses.pixel_major(ctx, PixelMajor { value: &self.activations, pixel_value: x }, &self.shape);
            let p = PointwiseParams { flags: flags::TRANSPOSE_A | flags::SYMMETRIC, ..params };
            let product = k.products.gram(ctx, ProductBuffers { input: x, weights: x, output: g, aux }, &p);
            vec![transpose, product]
        };
        let shape = format!("layout c{c} {height}x{width} margin{margin}");
        let shape = kernels::precision_key(shape, k.precision());
        let layouts = [GramLayout::Channels, GramLayout::Pixels];
        let layout = ctx.tuner().pick(Family::Gram, &shape, &layouts, |layout, best| {
            // Stand-ins for the buffers the ops write, not counted in the plan's memory.
            let scratch = scratch_like(ctx, g);
            let ops = match layout {
                GramLayout::Channels => vec![channels(&scratch)],
                GramLayout::Pixels => pixels(&scratch, &scratch_like(ctx, &self.activations)),
            };
            ops.iter().map(|op| time_op(ctx, op, best)).sum()
        });
        match layout {
            GramLayout::Channels => vec![channels(g)],
            GramLayout::Pixels => {
                let values = (c * height * width) as usize;
                pixels(g, &ctx.values_buffer("style features pixel-major", values, k.precision()))
            }
        }
    }
}

/// Where a style layer's Gram product reads its features, chosen per layer shape by
/// measurement: both compute the same matrix, summing in other orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GramLayout {
    /// The features as the network stores them, [channel][pixel], with B read transposed: every
    /// operand load reads one value from each of several channel planes (a GPU's tiled product
    /// stages them in workgroup memory).
    Channels,
    /// A copy transposed to [pixel][channel] first (`losses::pixel_major`), read with A
    /// transposed: each load reads neighbouring values. On a CPU adapter the channel planes are
    /// a multiple of 4 KiB apart for most sizes, so the first layout's loads evict each other
    /// from the cache.
    Pixels,
}

impl Variant for GramLayout {
    fn name(self) -> &'static str {
        match self {
            GramLayout::Channels => "channels",
            GramLayout::Pixels => "pixels",
        }
    }
}

/// An RGB image in planar layout with its size.
#[derive(Clone, Debug)]
pub struct PlanarImage {
    /// Width.
    pub width: usize,
    /// Height.
    pub height: usize,
    /// `3·width·height` values: all red, then green, then blue.
    pub data: Vec<f32>,
}

/// target (1×len) = Σ_s partials[s] (`splits` rows of `len`), or added into it with
/// `accumulate`: a product with a row of ones.
fn sum_partials(
    ctx: &GpuContext,
    fnet: &FeatureNet,
    partials: &wgpu::Buffer,
    splits: u32,
    len: usize,
    target: &wgpu::Buffer,
    accumulate: bool,
) -> BoundOp {
    let ones = ctx.storage_buffer("ones", &vec![1.0; splits as usize]);
    let flags = if accumulate { flags::ACCUMULATE } else { 0 };
    let params = PointwiseParams { m: 1, k: splits, n: len as u32, flags, ..Default::default() };
    let k = &fnet.kernels;
    k.products.float_product(
        ctx,
        ProductBuffers { input: partials, weights: &ones, output: target, aux: k.placeholder() },
        &params,
    )
}

/// How the Gram product of a layer splits its sum over `pixels`: (chunk length, number of
/// chunks). A c×c product has few output tiles, so without splitting a few workgroups would walk
/// all pixels serially; chunks of at least 256 pixels are spread until about 256 workgroups run.
pub fn gram_split(channels: usize, pixels: usize) -> (u32, u32) {
    let c = channels as u32;
    let [tiles, _] = product_tiles(c, c, tile_shape(c, c, true), true);
    let tiles = tiles as usize;
    let splits = 256usize.div_ceil(tiles).clamp(1, pixels.div_ceil(256).max(1));
    let chunk = pixels.div_ceil(splits).div_ceil(16) * 16;
    (chunk as u32, pixels.div_ceil(chunk) as u32)
}

/// The power of two below which an f16 objective keeps its largest layer gradient
/// ([`Objective::calibrate`]).
const F16_GRADIENT_TOP: i32 = 12;

/// The starting gradient scale of an f16 objective whose largest loss gradient enters the
/// network with RMS `seed` (or of a normalized loss's own gradient, whose scale the
/// normalization removes), estimated from the targets: the power of two that brings it to
/// about one. [`Objective::calibrate`] then measures the gradients and corrects it (the estimate misses
/// by up to 1e4, the backward pass amplifying some losses far more than others); it only keeps
/// the calibrating evaluation itself in f16's range.
pub fn f16_gradient_scale(seed: f64) -> f32 {
    if !(seed.is_finite() && seed > 0.0) {
        return 1.0;
    }
    (-seed.log2().round()).clamp(-20.0, 60.0).exp2() as f32
}

/// The two dispatches that add `p.coef` · g / (‖g‖₁ + 1e-8) into `grad`, g = `own` (`p.count`
/// values), the norm's `p.groups` partial sums in `losses` from `p.partial` on.
fn normalized_add(
    ctx: &GpuContext,
    fnet: &FeatureNet,
    losses: &wgpu::Buffer,
    own: &wgpu::Buffer,
    grad: &wgpu::Buffer,
    p: &LossParams,
) -> [BoundOp; 2] {
    let k = &fnet.kernels.losses;
    [
        k.gradient_l1(ctx, GradientL1 { value: own, losses }, p),
        k.normalized_add(ctx, NormalizedAdd { value: own, grad, losses }, p),
    ]
}

/// Target values read back: content activations and style Gram matrices, per layer.
pub struct TargetValues {
    /// Content photo's activations at each content layer.
    pub content: Vec<Vec<f32>>,
    /// Blended style Gram matrix at each style layer.
    pub style: Vec<Vec<f32>>,
}

/// Computes the targets on the GPU: the content photo's activations at the content layers and the
/// blend-weighted Gram matrices of the style images at the style layers.
pub struct Targets {
    /// Each content layer's activations (stored in `precision`) and their count.
    content: Vec<(wgpu::Buffer, usize)>,
    precision: Precision,
    style: Vec<wgpu::Buffer>,
}

impl Targets {
    /// Runs the network on the content photo (at the output size) and on each style image (blend
    /// weights normalized to 1 by the caller).
    pub fn compute(
        ctx: &GpuContext,
        fnet: &FeatureNet,
        spec: &LossSpec,
        content: &PlanarImage,
        styles: &[(PlanarImage, f32)],
    ) -> Result<Self> {
        // The image mirror-padded as the objective pads its image, and a plan reading it.
        let padded_plan = |image: &PlanarImage, until: Option<LayerId>| -> Result<PaddedPlan> {
            let pad = spec.pad_for(image.width, image.height);
            let source = ctx.storage_buffer("target image", &image.data);
            let (input, pad_ops) = if pad == 0 {
                (source, Vec::new())
            } else {
                let (padded, op, _) = mirror_padded(ctx, fnet, &source, image.width, image.height, pad);
                (padded, vec![op])
            };
            let (w, h) = (image.width + 2 * pad as usize, image.height + 2 * pad as usize);
            let options = PlanOptions { until, ..Default::default() };
            let plan = ForwardPlan::with_input(ctx, fnet, w, h, &options, Some(input))?;
            Ok((plan, pad_ops, (h, w), pad))
        };
        let content_targets = if spec.content_layers.is_empty() {
            Vec::new()
        } else {
            let deepest = LossSpec { style_layers: Vec::new(), ..spec.clone() }.deepest_layer();
            let (plan, pad_ops, _, _) = padded_plan(content, deepest)?;
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            kernels::record(&mut encoder, &pad_ops);
            kernels::record(&mut encoder, plan.ops());
            let mut out = Vec::new();
            for &id in &spec.content_layers {
                let (info, buffer) = plan.layer_buffer(id)?;
                let n = info.channels * info.height * info.width;
                let copy = ctx.values_buffer("content target", n, fnet.kernels.precision());
                encoder.copy_buffer_to_buffer(buffer, 0, &copy, 0, copy.size());
                out.push((copy, n));
            }
            ctx.queue.submit([encoder.finish()]);
            ctx.finish()?;
            out
        };
        let style_targets = spec
            .style_layers
            .iter()
            .map(|&(id, _)| {
                let c = fnet.net.arch.layer(id)?.channels;
                Ok(ctx.zeroed_buffer("style target", c * c))
            })
            .collect::<Result<Vec<_>>>()?;
        if !spec.style_layers.is_empty() {
            let deepest = LossSpec { content_layers: Vec::new(), ..spec.clone() }.deepest_layer();
            for (i, (image, blend)) in styles.iter().enumerate() {
                let (plan, mut ops, input, pad) = padded_plan(image, deepest)?;
                ops.extend(plan.ops().iter().cloned());
                for (&(id, _), target) in spec.style_layers.iter().zip(&style_targets) {
                    // Split over pixels as in the objective (one long f32 sum would drift from
                    // the objective's chunked one), then the partials added into the target.
                    let (info, buffer) = plan.layer_buffer(id)?;
                    let (c, hw) = (info.channels, info.height * info.width);
                    let (k_chunk, splits) = gram_split(c, hw);
                    let partials = ctx.zeroed_buffer("target gram partials", splits as usize * c * c);
                    let features = StyleFeatures::new(ctx, fnet, spec, info, buffer, input, pad);
                    ops.extend(features.mask.clone());
                    ops.extend(features.gram_ops(ctx, fnet, &partials, *blend, k_chunk));
                    ops.push(sum_partials(ctx, fnet, &partials, splits, c * c, target, i > 0));
                }
                let mut encoder = ctx.device.create_command_encoder(&Default::default());
                kernels::record(&mut encoder, &ops);
                ctx.queue.submit([encoder.finish()]);
                ctx.finish()?;
            }
        }
        Ok(Self { content: content_targets, precision: fnet.kernels.precision(), style: style_targets })
    }

    /// The weight each layer's loss gets from `spec`'s [`LossNormalization`], in spec order:
    /// (content layers, style layers), from the targets' `values` (read back once per plan; not
    /// needed without normalization).
    fn normalization(spec: &LossSpec, values: Option<&TargetValues>) -> (Vec<f32>, Vec<f32>) {
        let (content, style) = (spec.content_layers.len(), spec.style_layers.len());
        let Some(values) = values.filter(|_| spec.normalization != LossNormalization::None) else {
            return (vec![1.0; content], vec![1.0; style]);
        };
        let mean_square = |v: &[f32]| v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>() / v.len() as f64;
        // A target of zeros (a black image through a layer that is 0 there) has nothing to
        // normalize by: the layer keeps its plain loss.
        let inverse = |m: f64, count: usize| if m > 0.0 { (1.0 / (m * count as f64)) as f32 } else { 1.0 };
        (
            values.content.iter().map(|t| inverse(mean_square(t), 1)).collect(),
            values.style.iter().map(|t| inverse(mean_square(t), style)).collect(),
        )
    }

    /// Estimates of the RMS of each loss's own gradient d loss / d layer at unit weight (the
    /// gradient the loss kernel writes with coefficient `unit_coef`, content, or `unit`, style),
    /// from the targets and the layers' sizes, in spec order (content layers, style layers):
    /// content, 2/n · layer weight · rms(P) (the distance to the target taken at the target's
    /// scale); style, R·F with R = unit · (G − A) at the scale of A and F's RMS read off A's
    /// diagonal (Σ_p F_ip² / (c·n)). `content_norms`: the content layers' weights of
    /// [`Targets::normalization`]; `layer_size(id)`: (channels, pixels) at the plan's size.
    fn unit_gradient_rms(
        values: &TargetValues,
        spec: &LossSpec,
        content_norms: &[f32],
        layer_size: impl Fn(LayerId) -> Result<(usize, usize)>,
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        let rms = |v: &[f32]| (v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / v.len().max(1) as f64).sqrt();
        let mut content = Vec::new();
        for ((p, &id), &norm) in values.content.iter().zip(&spec.content_layers).zip(content_norms) {
            let (c, hw) = layer_size(id)?;
            content.push(f64::from(norm) * 2.0 / (c * hw) as f64 * rms(p));
        }
        let mut style = Vec::new();
        for (a, &(id, _)) in values.style.iter().zip(&spec.style_layers) {
            let (c, hw) = layer_size(id)?;
            let (cf, n) = (c as f64, (c * hw) as f64);
            let diagonal = (0..c).map(|i| f64::from(a[i * c + i])).sum::<f64>() / cf;
            let rms_f = (cf * diagonal.max(0.0)).sqrt();
            style.push(4.0 / (cf * cf * n) * rms(a) * cf.sqrt() * rms_f);
        }
        Ok((content, style))
    }

    /// Reads the targets back (for tests), in spec order.
    pub fn read(&self, ctx: &GpuContext) -> Result<TargetValues> {
        let read = |b: &wgpu::Buffer| ctx.read_buffer(b, (b.size() / 4) as usize);
        Ok(TargetValues {
            content: self.content.iter().map(|(b, n)| ctx.read_values(b, *n, self.precision)).collect::<Result<_>>()?,
            style: self.style.iter().map(read).collect::<Result<_>>()?,
        })
    }
}

/// One evaluation of the objective at the image in `image`: losses into [`Objective::losses`]
/// (content, style, tv, total) and d total / d image into [`Objective::image_grad`].
///
/// With [`LossSpec::normalize_gradients`] each content and style loss writes its own gradient
/// into a buffer of its own (the content and style losses of one layer, and the gradient the
/// deeper layers send back, all add into the same layer gradient, so the norm must be taken
/// before they meet); `gradient_l1` then sums its |values| and `normalized_add` adds
/// weight · g / (‖g‖₁ + 1e-8) into the layer gradient, before the backward pass.
pub struct Objective {
    forward: ForwardPlan,
    /// d total / d image when the network reads a mirror-padded copy (the padded gradient folded
    /// back); `None`: the forward plan's own image gradient.
    folded_grad: Option<wgpu::Buffer>,
    ops: Vec<BoundOp>,
    losses: wgpu::Buffer,
    /// The weight-dependent loss dispatches: (index in `ops`, parameters at weight 1, which weight).
    weighted: Vec<(usize, LossParams, Term)>,
    /// Buffers of the losses' own gradients that are added into (content losses under
    /// `normalize_gradients`): cleared with the layer gradients.
    own_grads: Vec<wgpu::Buffer>,
    /// The layer gradients whose first writer adds into them: cleared before each evaluation
    /// (the others are overwritten by their first writer, see `engine::GradientWrites`).
    cleared_grads: Vec<wgpu::Buffer>,
    /// What the loss gradients entering the network are multiplied by (and the image gradient
    /// divided by): 1 in f32, a power of two in f16 (see [`Objective::calibrate`]).
    gradient_scale: f32,
    /// The index in `ops` of the stem's image gradient, which divides the scale out.
    image_gradient_op: usize,
    /// The normalized losses' own gradients (f16: each scaled on its own, see
    /// [`Objective::calibrate`]).
    own_scaled: Vec<OwnGradient>,
    work: Work,
    _targets: Targets,
}

/// A normalized loss's own gradient: its buffer, the loss dispatch that writes it (index in the
/// objective's ops), that dispatch's parameters at scale 1, and its scale.
struct OwnGradient {
    buffer: wgpu::Buffer,
    op: usize,
    unit: LossParams,
    scale: f32,
}

/// Which loss weight a dispatch's gradient coefficient scales with.
#[derive(Clone, Copy)]
enum Term {
    Content,
    Style,
    /// TV and the weighted total: they read the three weights themselves.
    Totals,
}

impl Objective {
    /// Plans the evaluation for a `width`×`height` image read from `image`.
    pub fn new(
        ctx: &GpuContext,
        fnet: &FeatureNet,
        spec: &LossSpec,
        targets: Targets,
        image: &wgpu::Buffer,
        width: usize,
        height: usize,
    ) -> Result<Self> {
        if spec.content_layers.is_empty() && spec.style_layers.is_empty() {
            bail!("no content or style layers");
        }
        let options = PlanOptions { train: true, until: spec.deepest_layer(), classify: false };
        let pad = spec.pad_for(width, height);
        let (input, pad_op) = if pad == 0 {
            (image.clone(), None)
        } else {
            let (padded, op, p) = mirror_padded(ctx, fnet, image, width, height, pad);
            (padded, Some((op, p)))
        };
        let input_size = (height + 2 * pad as usize, width + 2 * pad as usize);
        let forward = ForwardPlan::with_input(ctx, fnet, input_size.1, input_size.0, &options, Some(input))?;
        // The targets read back once, where the normalization or f16's gradient scale needs them.
        let precision = fnet.kernels.precision();
        let needed = spec.normalization != LossNormalization::None || precision == Precision::F16;
        let values = if needed { Some(targets.read(ctx)?) } else { None };
        let (content_norms, style_norms) = Targets::normalization(spec, values.as_ref());
        let style_weight = spec.effective_style_weight();
        let k = &fnet.kernels;
        // The slots, then one partial sum per workgroup of each loss dispatch: content layers',
        // style layers', then the TV loss's (and the squared image gradient's, written by the
        // same dispatch).
        let layer_size = |id: LayerId| forward.layer_buffer(id).map(|(i, _)| (i.channels, i.height * i.width));
        let mut content_groups = Vec::new();
        for &id in &spec.content_layers {
            let (c, hw) = layer_size(id)?;
            content_groups.push(loss_groups(c * hw));
        }
        let mut style_groups = Vec::new();
        // With normalize_gradients, one partial sum of ‖g‖₁ per workgroup of each content and
        // style gradient, after the TV partials.
        let mut norm_groups = 0;
        for &(id, _) in &spec.style_layers {
            let (c, hw) = layer_size(id)?;
            style_groups.push(loss_groups(c * c));
            norm_groups += loss_groups(c * hw);
        }
        norm_groups += content_groups.iter().sum::<u32>();
        let normalize = spec.normalize_gradients;
        // f16: the loss gradients entering the network, and (normalized) each loss's own
        // gradient, scaled into f16's range (see `f16_gradient_scale`); f32: unscaled.
        let (gradient_scale, content_own_scales, style_own_scales) = match k.precision() {
            Precision::F32 => (1.0, vec![1.0; spec.content_layers.len()], vec![1.0; spec.style_layers.len()]),
            Precision::F16 => {
                let values = values.as_ref().expect("read for f16");
                let (content_rms, style_rms) = Targets::unit_gradient_rms(values, spec, &content_norms, layer_size)?;
                let content_weight = f64::from(spec.content_weight);
                let entering: Vec<f64> = if normalize {
                    // A normalized gradient enters as weight · g / ‖g‖₁: about weight / n each.
                    let content = spec.content_layers.iter().map(|&id| (id, content_weight));
                    let style = spec.style_layers.iter().zip(&style_norms);
                    let style = style.map(|(&(id, w), &norm)| (id, f64::from(style_weight * w * norm)));
                    content
                        .chain(style)
                        .map(|(id, weight)| layer_size(id).map(|(c, hw)| weight / (c * hw) as f64))
                        .collect::<Result<_>>()?
                } else {
                    let content = content_rms.iter().map(|r| content_weight * r);
                    let style = style_rms.iter().zip(&spec.style_layers).zip(&style_norms);
                    content.chain(style.map(|((r, (_, w)), norm)| f64::from(style_weight * w * norm) * r)).collect()
                };
                let own = |rms: &[f64]| rms.iter().map(|&r| f16_gradient_scale(r)).collect::<Vec<_>>();
                (f16_gradient_scale(entering.into_iter().fold(0.0, f64::max)), own(&content_rms), own(&style_rms))
            }
        };
        let tv_groups = loss_groups(3 * width * height);
        let content_end = LOSS_SLOTS as u32 + content_groups.iter().sum::<u32>();
        let style_end = content_end + style_groups.iter().sum::<u32>();
        let tv_end = style_end + tv_groups;
        // The TV dispatch also writes one partial of Σ (d total / d image)² per workgroup.
        let gradient_end = tv_end + tv_groups;
        let losses = ctx.zeroed_buffer("losses", (gradient_end + if normalize { norm_groups } else { 0 }) as usize);
        let mut next_norm = gradient_end;
        let mut next_partial = LOSS_SLOTS as u32;
        let mut partials = |groups: u32| {
            next_partial += groups;
            next_partial - groups
        };
        let totals = LossParams {
            content_weight: spec.content_weight,
            style_weight,
            tv_weight: spec.tv_weight,
            height: height as u32,
            width: width as u32,
            ..Default::default()
        };
        let mut ops: Vec<BoundOp> = pad_op.iter().map(|(op, _)| op.clone()).collect();
        ops.extend(forward.ops().iter().cloned());
        let mut weighted = Vec::new();
        let mut own_grads = Vec::new();
        let mut writes = GradientWrites::default();
        let mut own_scaled = Vec::new();
        let pixels = (3 * width * height) as f64;
        // Network passes; TV (read the image, add into its gradient); losses' clears.
        let mut work = forward.work() + Work::new(14.0 * pixels, 3.0 * pixels);
        let content = spec.content_layers.iter().zip(&targets.content).zip(&content_groups).zip(&content_norms);
        for ((((&id, (target, _)), &groups), &layer_weight), own_scale) in content.zip(content_own_scales) {
            let (info, f) = forward.layer_buffer(id)?;
            let n = info.channels * info.height * info.width;
            let layer_grad = forward.grad_buffer(id)?;
            // The content loss and the normalized share add into the layer's gradient.
            writes.add(layer_grad);
            let unit_coef = layer_weight * 2.0 / n as f32;
            let coef = if normalize { own_scale * unit_coef } else { gradient_scale * spec.content_weight * unit_coef };
            let p = LossParams { count: n as u32, coef, layer_weight, groups, partial: partials(groups), ..totals };
            work = work + Work::new(5.0 * n as f64, 4.0 * n as f64);
            if normalize {
                // The loss's own gradient, then its normalized share added into the layer's.
                let own = ctx.values_buffer("content loss gradient", n, fnet.kernels.precision());
                let buffers = ContentLoss { value: f, target_value: target, grad: &own, losses: &losses };
                let unit = LossParams { coef: unit_coef, ..p };
                own_scaled.push(OwnGradient { buffer: own.clone(), op: ops.len(), unit, scale: own_scale });
                ops.push(k.losses.content(ctx, buffers, &p));
                let groups = loss_groups(n);
                let p = LossParams { count: n as u32, coef: 1.0, groups, partial: next_norm, ..totals };
                next_norm += groups;
                let weighted_p = LossParams { coef: gradient_scale * spec.content_weight, ..p };
                let [l1, add] = normalized_add(ctx, fnet, &losses, &own, layer_grad, &weighted_p);
                ops.push(l1);
                weighted.push((ops.len(), p, Term::Content));
                ops.push(add);
                work = work + Work::new(4.0 * n as f64, 5.0 * n as f64);
                own_grads.push(own);
            } else {
                weighted.push((ops.len(), LossParams { coef: unit_coef, ..p }, Term::Content));
                let buffers = ContentLoss { value: f, target_value: target, grad: layer_grad, losses: &losses };
                ops.push(k.losses.content(ctx, buffers, &p));
            }
        }
        let style = spec.style_layers.iter().zip(&targets.style).zip(&style_groups).zip(&style_norms);
        for (((((id, weight), target), &groups), norm), own_scale) in style.zip(style_own_scales) {
            let weight = &(weight * norm);
            let (info, f) = forward.layer_buffer(*id)?;
            let c = info.channels;
            let hw = info.height * info.width;
            let (k_chunk, splits) = gram_split(c, hw);
            // Gram (half of the c×c outputs), the loss over the partials, R·F accumulated.
            let (cf, hwf, sf) = (c as f64, hw as f64, f64::from(splits));
            work = work
                + Work::new(cf * (cf + 1.0) * hwf, cf * hwf + sf * cf * cf)
                + Work::new(4.0 * cf * cf, (sf + 2.0) * cf * cf)
                + Work::new(2.0 * cf * cf * hwf, cf * cf + 3.0 * cf * hwf);
            let gram = ctx.zeroed_buffer("gram partials", splits as usize * c * c);
            let r = ctx.zeroed_buffer("style residual", c * c);
            let features = StyleFeatures::new(ctx, fnet, spec, info, f, input_size, pad);
            if let Some(mask) = &features.mask {
                ops.push(mask.clone());
                work = work + Work::new(cf * hwf, 2.0 * cf * hwf);
            }
            ops.extend(features.gram_ops(ctx, fnet, &gram, 1.0, k_chunk));
            let unit = 4.0 / ((c * c) as f32 * (c * features.pixels) as f32);
            let unit_coef = weight * unit;
            // Normalized: R is the gradient of the layer's unweighted mean((G − A)²).
            let coef = if normalize { own_scale * unit } else { gradient_scale * style_weight * unit_coef };
            let p = LossParams {
                channels: c as u32,
                coef,
                layer_weight: *weight,
                splits,
                groups,
                partial: partials(groups),
                ..totals
            };
            let style_p = p;
            if !normalize {
                weighted.push((ops.len(), LossParams { coef: unit_coef, ..p }, Term::Style));
            }
            let buffers = StyleLoss { value: &gram, target_value: target, grad: &r, losses: &losses };
            let style_op = ops.len();
            ops.push(k.losses.style(ctx, buffers, &p));
            // dF += R · F, or normalized: g = R · F, then its normalized share added into dF.
            let layer_grad = forward.grad_buffer(*id)?;
            let own = normalize.then(|| ctx.values_buffer("style loss gradient", c * hw, fnet.kernels.precision()));
            // R·F overwrites where it is the layer gradient's first writer; the normalized share adds.
            let accumulate = if normalize {
                writes.add(layer_grad);
                false
            } else {
                writes.accumulate(layer_grad)
            };
            let p = PointwiseParams {
                m: c as u32,
                k: c as u32,
                n: hw as u32,
                flags: if accumulate { flags::ACCUMULATE } else { 0 },
                ..Default::default()
            };
            let output = own.as_ref().unwrap_or(layer_grad);
            // With a margin F is the masked copy: the border's columns of R·F are 0.
            let buffers = ProductBuffers { input: &features.buffer, weights: &r, output, aux: k.placeholder() };
            ops.push(k.products.style_gradient(ctx, buffers, &p));
            if let Some(own) = own {
                let unit = LossParams { coef: unit, ..style_p };
                own_scaled.push(OwnGradient { buffer: own.clone(), op: style_op, unit, scale: own_scale });
                let n = c * hw;
                let groups = loss_groups(n);
                let p = LossParams { count: n as u32, coef: *weight, groups, partial: next_norm, ..totals };
                next_norm += groups;
                let weighted_p = LossParams { coef: gradient_scale * style_weight * weight, ..p };
                let [l1, add] = normalized_add(ctx, fnet, &losses, &own, layer_grad, &weighted_p);
                ops.push(l1);
                weighted.push((ops.len(), p, Term::Style));
                ops.push(add);
                work = work + Work::new(4.0 * n as f64, 4.0 * n as f64);
            }
        }
        ops.extend(forward.backward_ops(ctx, k, gradient_scale, &mut writes)?);
        // The stem's image gradient comes last (the backward pass walks the layers in reverse).
        let image_gradient_op = ops.len() - 1;
        let padded_grad = forward.image_grad().expect("training plan");
        let folded_grad = pad_op.map(|(_, p)| {
            let folded = ctx.zeroed_buffer("image gradient", 3 * width * height);
            let p = ResizeParams { src_w: p.dst_w, src_h: p.dst_h, dst_w: p.src_w, dst_h: p.src_h };
            ops.push(k.scales.mirror_pad_backward(ctx, Resize { src: padded_grad, dst: &folded }, &p));
            folded
        });
        let image_grad = folded_grad.as_ref().unwrap_or(padded_grad);
        let tv = LossParams { groups: tv_groups, partial: partials(tv_groups), ..totals };
        weighted.push((ops.len(), tv, Term::Totals));
        ops.push(k.losses.tv(ctx, TvLoss { value: image, grad: image_grad, losses: &losses }, &tv));
        let total = LossParams { ends: [content_end, style_end, tv_end, gradient_end], ..totals };
        weighted.push((ops.len(), total, Term::Totals));
        ops.push(k.losses.total(ctx, TotalLoss { losses: &losses }, &total));
        Ok(Self {
            forward,
            folded_grad,
            ops,
            losses,
            weighted,
            own_grads,
            cleared_grads: writes.cleared().to_vec(),
            gradient_scale,
            image_gradient_op,
            own_scaled,
            work,
            _targets: targets,
        })
    }

    /// Changes the loss weights for the following evaluations (layers and targets stay).
    pub fn set_weights(&self, ctx: &GpuContext, content_weight: f32, style_weight: f32, tv_weight: f32) {
        for (index, base, term) in &self.weighted {
            let mut p = LossParams { content_weight, style_weight, tv_weight, ..*base };
            match term {
                Term::Content => p.coef *= content_weight * self.gradient_scale,
                Term::Style => p.coef *= style_weight * self.gradient_scale,
                Term::Totals => {}
            }
            self.ops[*index].update(ctx, &p);
        }
    }

    /// f16: runs one evaluation at the image as it is (the starting image, once per plan) and
    /// rescales the layer gradients (and each normalized loss's own gradient) by the power of two
    /// that brings the largest to between 2^11 and 2^12 (`F16_GRADIENT_TOP`): 16 times below
    /// f16's largest (65504), for gradients that grow during the run, and as far as possible
    /// above its smallest normal (6.1e-5), where the deep layers' smallest gradients lie 1e7–1e8
    /// times below the largest. The scale estimated from the targets when the objective was
    /// planned misses by up to 1e4 (the network's backward pass amplifies some losses' gradients
    /// far more than others), so it is only the start. An overflow measured brings the scale down
    /// 2^12 and measures again. `weights`: the current content, style and TV weights. f32: nothing.
    pub fn calibrate(&mut self, ctx: &GpuContext, weights: [f32; 3]) -> Result<()> {
        if self.forward.precision() == Precision::F32 {
            return Ok(());
        }
        let rescale = |largest: f32| {
            if largest == 0.0 {
                1.0
            } else if !largest.is_finite() {
                (-(F16_GRADIENT_TOP as f32)).exp2()
            } else {
                (std::env::var("NS_TOP").ok().and_then(|v| v.parse().ok()).unwrap_or(F16_GRADIENT_TOP) as f32
                    - largest.log2().ceil())
                .exp2()
            }
        };
        for _ in 0..4 {
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            self.record(&mut encoder);
            ctx.queue.submit([encoder.finish()]);
            ctx.finish()?;
            let largest = ctx.max_abs_f16(self.forward.layer_grad_buffers())?;
            let mut settled = largest.is_finite();
            self.gradient_scale *= rescale(largest);
            for own in &mut self.own_scaled {
                let largest = ctx.max_abs_f16([&own.buffer])?;
                settled &= largest.is_finite();
                own.scale *= rescale(largest);
                self.ops[own.op].update(ctx, &LossParams { coef: own.unit.coef * own.scale, ..own.unit });
            }
            let [content, style, tv] = weights;
            self.set_weights(ctx, content, style, tv);
            let stem = self.forward.image_gradient_params(self.gradient_scale).expect("the plan has a stem");
            self.ops[self.image_gradient_op].update(ctx, &stem);
            if settled {
                break;
            }
        }
        Ok(())
    }

    /// The commands of one evaluation: clear the gradients and losses, then every dispatch.
    pub fn commands(&self) -> Vec<Command> {
        let clears =
            self.cleared_grads.iter().chain(&self.own_grads).chain([&self.losses]).map(|b| Command::Clear(b.clone()));
        clears.chain(self.ops.iter().cloned().map(Command::Dispatch)).collect()
    }

    /// Records one evaluation.
    pub fn record(&self, encoder: &mut wgpu::CommandEncoder) {
        kernels::record_commands(encoder, &self.commands());
    }

    /// The work of one evaluation, counted from the shapes (see [`Work`]).
    pub fn work(&self) -> Work {
        self.work
    }

    /// The losses buffer: content, style, tv, total, ‖d total / d image‖² (see
    /// [`crate::kernels::losses::GRADIENT_SLOT`]).
    pub fn losses(&self) -> &wgpu::Buffer {
        &self.losses
    }

    /// The gradient at a layer's output after an evaluation: what its losses send back plus what
    /// the layers after it send back (for a layer whose activation's derivative the backward pass
    /// applies in place, the stem and the depthwise layers, the pre-activation's gradient).
    pub fn layer_grad(&self, id: LayerId) -> Result<&wgpu::Buffer> {
        self.forward.grad_buffer(id)
    }

    /// d total / d image.
    pub fn image_grad(&self) -> &wgpu::Buffer {
        self.folded_grad.as_ref().unwrap_or_else(|| self.forward.image_grad().expect("training plan"))
    }
}
