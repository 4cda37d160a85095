//! Style transfer (Gatys et al.): optimize an image so its MobileNetV3 features keep a content
//! photo's content and take the style images' Gram statistics. [`Stylizer`] is the library entry
//! point: options in, images in, image out, with a progress callback that can stop the run.
//!
//! A run is a [`Session`] (the planned GPU work of one output, stepped an iteration at a time)
//! paced by a [`Driver`] (reporting and snapshot cadence, non-finite stops, cancellation); the
//! CLI, [`Stylizer::run`] and the viewer all drive their sessions with it.

pub mod objective;
pub mod optimizer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Result, bail};
use image::RgbImage;

use crate::arch::LayerId;
use crate::engine::FeatureNet;
use crate::gpu::GpuContext;
use crate::image_io;
use crate::kernels::Precision;
use crate::kernels::color::{ColorParams, OriginalColors};
use crate::kernels::losses::GRADIENT_SLOT;
use crate::kernels::scales::{
    Average, AverageParams, KEPT_EVALUATED, KEPT_SLOTS, KEPT_VALID, KeepCopy, KeepParams, KeepSelect, Logit, Resize,
    ResizeParams,
};
use crate::kernels::{BoundOp, Command};
pub use objective::{LOSS_SLOTS, LossNormalization, LossSpec, Objective, PlanarImage, Targets};
use optimizer::{Adam, Lbfgs, Squash, logit};

/// Default content layers (comma-separated).
pub const DEFAULT_CONTENT_LAYERS: &str = "block4.expand";
/// Default style layers (comma-separated, optional `:weight`).
pub const DEFAULT_STYLE_LAYERS: &str = "stem,block1.expand,block3.expand,block4.expand,block6.expand,block9.expand";
/// Default weight of E_content.
pub const DEFAULT_CONTENT_WEIGHT: f32 = 1.0;
/// Default weight of E_style (with [`LossNormalization::PerLayer`], the default).
pub const DEFAULT_STYLE_WEIGHT: f32 = 1000.0;
/// Default weight of E_tv.
pub const DEFAULT_TV_WEIGHT: f32 = 1.0;
/// Default [`LossSpec::gram_margin`].
pub const DEFAULT_GRAM_MARGIN: u32 = 0;
/// Default [`LossSpec::padding`].
pub const DEFAULT_PADDING: u32 = 32;

/// Which optimizer updates the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// L-BFGS as torch.optim.LBFGS (lr 1, no line search); pixels may leave [0, 1] and are
    /// clamped only when the image is written.
    Lbfgs,
    /// L-BFGS over u with image = sigmoid(u): pixels cannot leave [0, 1].
    LbfgsBounded,
    /// Adam with a clamp to [0, 1] after each step.
    Adam,
}

/// What L-BFGS does after a step that does not decrease the loss enough (Armijo's condition,
/// checked on the GPU from the loss of the next evaluation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LineSearch {
    /// Moves back along the direction to a shorter step (0.1–0.5 of it, by quadratic
    /// interpolation) and evaluates again; the history is untouched. Each evaluation is one
    /// iteration.
    Backtracking,
    /// Nothing: PyTorch's `torch.optim.LBFGS(line_search_fn=None)`, whose unchecked steps can
    /// throw the image into noise at large sizes.
    None,
}

/// The starting image.
#[derive(Clone, Debug)]
pub enum Init {
    /// The content photo in the style images' palette ([`crate::palette::transfer`]): the
    /// photo's layout with the painting's colors.
    Palette,
    /// The content photo.
    Content,
    /// Uniform noise in [0, 1] from the seed.
    Noise,
    /// A given image (resized to the output size).
    Image(RgbImage),
}

/// Which sizes a run goes through, coarse to fine (see [`plan`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Scales {
    /// From `min_size` to `size`, ×√2 per scale, the last one `size`; one scale when `size` ≤
    /// `min_size`.
    Auto,
    /// This many scales from `min_size` to `size`, evenly spaced in log size.
    Count(usize),
    /// These longest sides (strictly increasing, at most `size`), then `size` if the list does not
    /// end with it.
    Sizes(Vec<u32>),
}

/// Everything a run needs besides the images.
#[derive(Clone, Debug)]
pub struct StylizeOptions {
    /// Longest side of the output; the content photo is resized to it.
    pub size: u32,
    /// Style images get longest side `size · style_scale`.
    pub style_scale: f32,
    /// Optimizer updates.
    pub iterations: usize,
    /// Which optimizer.
    pub optimizer: OptimizerKind,
    /// Adam's learning rate.
    pub learning_rate: f32,
    /// L-BFGS history size.
    pub lbfgs_history: usize,
    /// What L-BFGS does when a step does not decrease the loss enough.
    pub lbfgs_line_search: LineSearch,
    /// Layers and weights of the losses.
    pub loss: LossSpec,
    /// Blend weights of the style images (normalized to sum to 1); `None`: equal.
    pub style_blend_weights: Option<Vec<f32>>,
    /// Starting image.
    pub init: Init,
    /// Seed of the noise initialization.
    pub seed: u64,
    /// Report progress (and read the losses back) every this many iterations, and at the end.
    pub report_every: usize,
    /// Also hand out the current image every this many iterations (`None`: never).
    pub snapshot_every: Option<usize>,
    /// jcjohnson's `-original_colors 1`: the result and the snapshots keep the content photo's
    /// colors, taking only the optimized image's luma (done on the GPU as they are read, see
    /// [`crate::kernels::color`]).
    pub original_colors: bool,
    /// The coarse-to-fine schedule, used by [`Stylizer::drive`] and [`Stylizer::run`]
    /// ([`Stylizer::start`] prepares one scale at `size`).
    pub scales: Scales,
    /// Longest side of the first scale of [`Scales::Auto`] and [`Scales::Count`] (never above
    /// `size`).
    pub min_size: u32,
    /// Decay of the exponential moving average of the iterates (bias corrected) that is written
    /// and seeds the next scale; 0: no averaging.
    pub average: f32,
}

impl Default for StylizeOptions {
    /// The CLI's defaults: 512 px, 500 iterations of bounded L-BFGS from the content photo, coarse
    /// to fine from 128 px ([`Scales::Auto`]).
    fn default() -> Self {
        Self {
            size: 512,
            style_scale: 1.0,
            iterations: 500,
            optimizer: OptimizerKind::LbfgsBounded,
            learning_rate: 0.02,
            lbfgs_history: 10,
            lbfgs_line_search: LineSearch::Backtracking,
            loss: LossSpec::default(),
            style_blend_weights: None,
            init: Init::Palette,
            seed: 0,
            report_every: 50,
            snapshot_every: None,
            original_colors: false,
            scales: Scales::Auto,
            min_size: 128,
            average: 0.0,
        }
    }
}

/// Losses of one evaluated image: the unweighted terms and the weighted total.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct LossValues {
    /// Weighted total.
    pub loss: f32,
    /// E_content.
    pub content: f32,
    /// E_style.
    pub style: f32,
    /// E_tv.
    pub tv: f32,
}

/// What the callback hears.
pub enum Event<'a> {
    /// Progress after `iteration` updates, with the losses of the scale's result so far: the
    /// image that is written (and starts the next scale) if the run ends now, the evaluated image
    /// with the lowest loss, never a step the L-BFGS line search rejected (with
    /// [`StylizeOptions::average`], the average of the iterates, whose losses are those of the
    /// latest iterate until the scale's last evaluation, which evaluates the average itself).
    Progress {
        /// Updates made so far at this scale (each scale reports its iteration 0 first).
        iteration: usize,
        /// The losses of the result so far.
        losses: LossValues,
        /// Seconds since the optimization started (all scales).
        elapsed_s: f64,
        /// The scale the image is at.
        scale: ScaleInfo,
    },
    /// The result so far after `iteration` updates (see `snapshot_every`): the image whose losses
    /// the last [`Event::Progress`] reported.
    Snapshot {
        /// Updates made so far at the current scale (that of the last [`Event::Progress`]).
        iteration: usize,
        /// The image, clamped to [0, 1].
        image: &'a RgbImage,
    },
}

/// The callback's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Keep going.
    Continue,
    /// Stop now and return the result so far (with [`StylizeOptions::average`] after one more
    /// evaluation, of the average, reported as progress).
    Stop,
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The result, clamped to [0, 1]: the last scale's evaluated image with the lowest loss (with
    /// [`StylizeOptions::average`], the last average whose evaluation was finite).
    pub image: RgbImage,
    /// The losses of `image` as it was evaluated (unclamped); `None` when no evaluation was finite.
    pub losses: Option<LossValues>,
    /// Updates made.
    pub iterations: usize,
    /// Seconds spent optimizing.
    pub seconds: f64,
    /// Set when the loss or its gradient became NaN or infinite: the image is the best one whose
    /// evaluation was finite, or only the starting image when [`NonFinite::at_start`].
    pub non_finite_at: Option<NonFinite>,
}

/// The evaluation that ended a run by being NaN or infinite (see [`Outcome::non_finite_at`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NonFinite {
    /// The iteration of its scale (0: the scale's starting image).
    pub iteration: usize,
    /// The scale (0-based index into the schedule, [`Driver::plan`]).
    pub scale: usize,
    /// `false`: the loss was NaN or infinite. `true`: the loss was finite but the image gradient
    /// was not, or its squared norm overflowed f32 (the optimizers' dot products and Adam's g²
    /// would then make NaN or zero updates).
    pub gradient: bool,
}

impl NonFinite {
    /// Whether it was the run's starting image: then no evaluated image was finite, and
    /// [`Outcome::image`] is only the starting image, not a result.
    pub fn at_start(&self) -> bool {
        self.iteration == 0 && self.scale == 0
    }
}

/// An option of [`StylizeOptions`] (or of its [`LossSpec`]) that an [`OptionError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionName {
    /// [`StylizeOptions::size`].
    Size,
    /// [`StylizeOptions::style_scale`].
    StyleScale,
    /// [`StylizeOptions::iterations`].
    Iterations,
    /// [`StylizeOptions::learning_rate`].
    LearningRate,
    /// [`StylizeOptions::lbfgs_history`].
    LbfgsHistory,
    /// [`LossSpec::content_weight`].
    ContentWeight,
    /// [`LossSpec::style_weight`].
    StyleWeight,
    /// [`LossSpec::tv_weight`].
    TvWeight,
    /// [`LossSpec::strength`].
    Strength,
    /// [`LossSpec::content_layers`].
    ContentLayers,
    /// [`LossSpec::style_layers`].
    StyleLayers,
    /// [`StylizeOptions::style_blend_weights`].
    StyleBlendWeights,
    /// [`StylizeOptions::scales`].
    Scales,
    /// [`StylizeOptions::min_size`].
    MinSize,
    /// [`StylizeOptions::average`].
    Average,
}

impl OptionName {
    /// The field's path from [`StylizeOptions`], e.g. `loss.style_weight`.
    pub fn field(self) -> &'static str {
        match self {
            OptionName::Size => "size",
            OptionName::StyleScale => "style_scale",
            OptionName::Iterations => "iterations",
            OptionName::LearningRate => "learning_rate",
            OptionName::LbfgsHistory => "lbfgs_history",
            OptionName::ContentWeight => "loss.content_weight",
            OptionName::StyleWeight => "loss.style_weight",
            OptionName::TvWeight => "loss.tv_weight",
            OptionName::Strength => "loss.strength",
            OptionName::ContentLayers => "loss.content_layers",
            OptionName::StyleLayers => "loss.style_layers",
            OptionName::StyleBlendWeights => "style_blend_weights",
            OptionName::Scales => "scales",
            OptionName::MinSize => "min_size",
            OptionName::Average => "average",
        }
    }
}

/// A value of [`StylizeOptions`] that cannot be run. Its [`Display`](std::fmt::Display) names the
/// option by its field; a front end names it its own way with [`OptionError::message`] (the CLI
/// says `--style-weight`).
#[derive(Clone, Debug, PartialEq)]
pub enum OptionError {
    /// `iterations` is 0.
    NoIterations,
    /// `size` is 0.
    ZeroSize,
    /// `style_scale` is not a positive finite number.
    StyleScale,
    /// A loss weight is negative or not finite.
    LossWeight {
        /// Which weight.
        option: OptionName,
        /// Its value.
        value: f32,
    },
    /// A style layer's weight is negative or not finite.
    StyleLayerWeight,
    /// `learning_rate` is not a positive finite number (with [`OptimizerKind::Adam`], the only
    /// optimizer that uses it).
    LearningRate,
    /// `lbfgs_history` is outside 1..=1000.
    LbfgsHistory(usize),
    /// `style_blend_weights` has a value count other than the style image count.
    BlendWeightCount {
        /// Values given.
        values: usize,
        /// Style images given.
        styles: usize,
    },
    /// `style_blend_weights` has a negative or non-finite value, or its sum (in f64) is not
    /// finite and positive.
    BlendWeights,
    /// A layer is listed twice among the content layers or among the style layers.
    DuplicateLayer {
        /// Which list.
        option: OptionName,
        /// The layer.
        layer: LayerId,
    },
    /// A style image scaled by `style_scale` does not fit the device.
    StyleImageTooLarge(String),
    /// `min_size` is 0.
    ZeroMinSize,
    /// `scales` cannot be planned: what is wrong with it ("must increase").
    Scales(String),
    /// `iterations` is below the number of scales.
    TooFewIterations {
        /// Iterations given.
        iterations: usize,
        /// Scales in the schedule.
        scales: usize,
    },
    /// `average` is outside [0, 1).
    Average(f32),
}

impl OptionError {
    /// The option the error is about.
    pub fn option(&self) -> OptionName {
        match self {
            OptionError::NoIterations | OptionError::TooFewIterations { .. } => OptionName::Iterations,
            OptionError::ZeroMinSize => OptionName::MinSize,
            OptionError::Scales(_) => OptionName::Scales,
            OptionError::Average(_) => OptionName::Average,
            OptionError::ZeroSize => OptionName::Size,
            OptionError::StyleScale | OptionError::StyleImageTooLarge(_) => OptionName::StyleScale,
            OptionError::LossWeight { option, .. } => *option,
            OptionError::StyleLayerWeight => OptionName::StyleLayers,
            OptionError::LearningRate => OptionName::LearningRate,
            OptionError::LbfgsHistory(_) => OptionName::LbfgsHistory,
            OptionError::BlendWeightCount { .. } | OptionError::BlendWeights => OptionName::StyleBlendWeights,
            OptionError::DuplicateLayer { option, .. } => *option,
        }
    }

    /// The one-line message, naming the option `name`.
    pub fn message(&self, name: &str) -> String {
        match self {
            OptionError::NoIterations | OptionError::ZeroSize | OptionError::ZeroMinSize => {
                format!("{name} must be at least 1")
            }
            OptionError::StyleScale | OptionError::LearningRate => format!("{name} must be positive and finite"),
            OptionError::Scales(problem) => format!("{name} {problem}"),
            OptionError::TooFewIterations { iterations, scales } => {
                format!("{name} ({iterations}) must be at least the number of scales ({scales})")
            }
            OptionError::Average(value) => format!("{name} must be at least 0 and below 1, got {value}"),
            OptionError::LossWeight { value, .. } => format!("{name} must be a finite number ≥ 0, got {value}"),
            OptionError::StyleLayerWeight => "style layer weights must be finite numbers ≥ 0".into(),
            OptionError::LbfgsHistory(h) => format!("{name} must be between 1 and 1000, got {h}"),
            OptionError::BlendWeightCount { values, styles } => {
                format!("{name} has {values} values for {styles} style images")
            }
            OptionError::BlendWeights => format!("{name} must be non-negative with a positive sum"),
            OptionError::StyleImageTooLarge(reason) => format!("style image (see {name}): {reason}"),
            OptionError::DuplicateLayer { layer, .. } => format!("layer \"{layer}\" is listed twice in {name}"),
        }
    }
}

impl std::fmt::Display for OptionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message(self.option().field()))
    }
}

impl std::error::Error for OptionError {}

/// Checks run options against a network before any work: one clear error per problem, an
/// [`OptionError`] for a bad value.
pub fn validate(net: &crate::model::Network, options: &StylizeOptions, style_count: usize) -> Result<()> {
    let spec = &options.loss;
    let fail = |e: OptionError| Err(anyhow::Error::new(e));
    if options.iterations == 0 {
        return fail(OptionError::NoIterations);
    }
    if options.size == 0 {
        return fail(OptionError::ZeroSize);
    }
    if !(options.style_scale > 0.0 && options.style_scale.is_finite()) {
        return fail(OptionError::StyleScale);
    }
    for (option, value) in [
        (OptionName::ContentWeight, spec.content_weight),
        (OptionName::StyleWeight, spec.style_weight),
        (OptionName::TvWeight, spec.tv_weight),
        (OptionName::Strength, spec.strength),
    ] {
        if !(value >= 0.0 && value.is_finite()) {
            return fail(OptionError::LossWeight { option, value });
        }
    }
    if spec.style_layers.iter().any(|(_, w)| !(*w >= 0.0 && w.is_finite())) {
        return fail(OptionError::StyleLayerWeight);
    }
    let uses_learning_rate = options.optimizer == OptimizerKind::Adam;
    if uses_learning_rate && !(options.learning_rate > 0.0 && options.learning_rate.is_finite()) {
        return fail(OptionError::LearningRate);
    }
    if !(1..=1000).contains(&options.lbfgs_history) {
        return fail(OptionError::LbfgsHistory(options.lbfgs_history));
    }
    let layers: Vec<_> = spec.content_layers.iter().copied().chain(spec.style_layers.iter().map(|l| l.0)).collect();
    for &id in &layers {
        net.arch.layer(id)?;
    }
    if layers.is_empty() {
        bail!("no content or style layers given");
    }
    let style_ids: Vec<LayerId> = spec.style_layers.iter().map(|l| l.0).collect();
    for (option, ids) in [(OptionName::ContentLayers, &spec.content_layers), (OptionName::StyleLayers, &style_ids)] {
        if let Some(&layer) = ids.iter().enumerate().find_map(|(i, id)| ids[..i].contains(id).then_some(id)) {
            return fail(OptionError::DuplicateLayer { option, layer });
        }
    }
    if style_count == 0 && !spec.style_layers.is_empty() {
        bail!("no style image given");
    }
    if let Some(b) = &options.style_blend_weights {
        if b.len() != style_count {
            return fail(OptionError::BlendWeightCount { values: b.len(), styles: style_count });
        }
        let sum: f64 = b.iter().map(|&w| f64::from(w)).sum();
        if b.iter().any(|w| !(*w >= 0.0 && w.is_finite())) || !(sum.is_finite() && sum > 0.0) {
            return fail(OptionError::BlendWeights);
        }
    }
    Ok(())
}

/// Runs style transfer on a GPU with a loaded network, both shared: every [`Session`] it starts
/// keeps the device alive, so stylizers and sessions can be created and dropped any number of
/// times in a process.
#[derive(Clone)]
pub struct Stylizer {
    ctx: Arc<GpuContext>,
    fnet: Arc<FeatureNet>,
}

/// Checks that an output of `width`×`height` fits the device: every layer, and for L-BFGS one
/// curvature pair (the history is kept on pages of as many pairs as one binding holds).
pub fn check_device(
    ctx: &GpuContext,
    fnet: &FeatureNet,
    options: &StylizeOptions,
    width: usize,
    height: usize,
) -> Result<()> {
    let pad = 2 * options.loss.pad_for(width, height) as usize;
    crate::engine::check_size(ctx, fnet, width + pad, height + pad)?;
    if options.optimizer == OptimizerKind::Adam {
        return Ok(());
    }
    crate::engine::check_fits(ctx, "an L-BFGS curvature pair", 2 * 3 * width * height, Precision::F32, [width, height])
}

/// One scale of a run's schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ScalePlan {
    /// Longest side.
    pub side: u32,
    /// Width of the image at this scale.
    pub width: u32,
    /// Height of the image at this scale.
    pub height: u32,
    /// Optimizer updates at this scale.
    pub iterations: usize,
}

/// The longest sides of the schedule for output side `size` (see [`Scales`]).
pub fn scale_sides(scales: &Scales, size: u32, min_size: u32) -> Result<Vec<u32>> {
    let fail = |e: OptionError| Err(anyhow::Error::new(e));
    let bad_scales = |problem: String| fail(OptionError::Scales(problem));
    if size == 0 {
        return fail(OptionError::ZeroSize);
    }
    if min_size == 0 {
        return fail(OptionError::ZeroMinSize);
    }
    let low = min_size.min(size);
    let mut sides = match scales {
        Scales::Auto => {
            let mut sides = Vec::new();
            let mut k = 0;
            loop {
                let side = (f64::from(low) * 2f64.sqrt().powi(k)).round() as u32;
                if side >= size {
                    break;
                }
                sides.push(side);
                k += 1;
            }
            sides
        }
        Scales::Count(0) => return bad_scales("must be at least 1".into()),
        Scales::Count(n) => {
            let ratio = f64::from(size) / f64::from(low);
            (0..n - 1).map(|i| (f64::from(low) * ratio.powf(i as f64 / (n - 1) as f64)).round() as u32).collect()
        }
        Scales::Sizes(list) => {
            if list.is_empty() || list.contains(&0) {
                return bad_scales("must be sizes of at least 1".into());
            }
            if list.windows(2).any(|w| w[0] >= w[1]) {
                return bad_scales("must increase".into());
            }
            if list.iter().any(|&s| s > size) {
                return bad_scales(format!("must not exceed the size ({size})"));
            }
            list.clone()
        }
    };
    if sides.last() != Some(&size) {
        sides.push(size);
    }
    sides.dedup();
    Ok(sides)
}

/// The schedule of a run on a `width`×`height` content photo: each scale's size and updates.
/// `iterations` is the total budget, split evenly over the scales (the first scales get one more
/// when it does not divide), so a schedule costs about what its last scale alone costs at the
/// same budget, or less.
pub fn plan(width: u32, height: u32, options: &StylizeOptions) -> Result<Vec<ScalePlan>> {
    let sides = scale_sides(&options.scales, options.size, options.min_size)?;
    if options.iterations < sides.len() {
        let e = OptionError::TooFewIterations { iterations: options.iterations, scales: sides.len() };
        return Err(e.into());
    }
    if !(0.0..1.0).contains(&options.average) {
        return Err(OptionError::Average(options.average).into());
    }
    let (each, extra) = (options.iterations / sides.len(), options.iterations % sides.len());
    Ok(sides
        .iter()
        .enumerate()
        .map(|(i, &side)| {
            let (w, h) = image_io::scaled_size(width, height, side);
            ScalePlan { side, width: w, height: h, iterations: each + usize::from(i < extra) }
        })
        .collect())
}

/// The image a scale's session starts from.
enum SessionInit<'a> {
    /// [`StylizeOptions::init`].
    Options,
    /// The previous scale's result (planar, `width`×`height`), resized on the GPU.
    Upsample { image: &'a wgpu::Buffer, width: usize, height: usize },
}

fn planar(img: &RgbImage) -> PlanarImage {
    PlanarImage { width: img.width() as usize, height: img.height() as usize, data: image_io::to_chw(img) }
}

impl Stylizer {
    /// A stylizer on this device and network (the network loaded onto this device).
    pub fn new(ctx: Arc<GpuContext>, fnet: Arc<FeatureNet>) -> Self {
        Self { ctx, fnet }
    }

    /// Checks the options against the network before any work.
    pub fn validate(&self, options: &StylizeOptions, style_count: usize) -> Result<()> {
        validate(&self.fnet.net, options, style_count)
    }

    /// Prepares a run: targets computed, every buffer and dispatch planned. The returned
    /// [`Session`] is then stepped, usually by a [`Driver`] (see [`Stylizer::drive`]).
    pub fn start(&self, content: &RgbImage, styles: &[RgbImage], options: &StylizeOptions) -> Result<Session> {
        self.validate(options, styles.len())?;
        self.check_scale(content, styles, options, options.size)?;
        self.start_scale(content, styles, options, options.size, options.iterations, SessionInit::Options)
    }

    /// Checks that the output and the style images at longest side `side` fit the device.
    fn check_scale(&self, content: &RgbImage, styles: &[RgbImage], options: &StylizeOptions, side: u32) -> Result<()> {
        let (ctx, fnet) = (&*self.ctx, &*self.fnet);
        let (w, h) = image_io::scaled_size(content.width(), content.height(), side);
        check_device(ctx, fnet, options, w as usize, h as usize)?;
        let style_side = ((side as f32 * options.style_scale).round() as u32).max(1);
        for s in styles {
            let (sw, sh) = image_io::scaled_size(s.width(), s.height(), style_side);
            let pad = 2 * options.loss.pad_for(sw as usize, sh as usize);
            crate::engine::check_size(ctx, fnet, (sw + pad) as usize, (sh + pad) as usize)
                .map_err(|e| OptionError::StyleImageTooLarge(format!("{e:#}")))?;
        }
        Ok(())
    }

    /// Prepares one scale (longest side `side`, `iterations` updates), checked by
    /// [`Stylizer::check_scale`]: targets at that size, the starting image from `init`.
    fn start_scale(
        &self,
        content: &RgbImage,
        styles: &[RgbImage],
        options: &StylizeOptions,
        side: u32,
        iterations: usize,
        from: SessionInit,
    ) -> Result<Session> {
        let ctx = &*self.ctx;
        let fnet = &*self.fnet;
        let (w, h) = image_io::scaled_size(content.width(), content.height(), side);
        let (w, h) = (w as usize, h as usize);
        let n = 3 * w * h;
        let style_side = ((side as f32 * options.style_scale).round() as u32).max(1);
        let content = image_io::resize_max_side(content, side);
        let blend = options.style_blend_weights.clone().unwrap_or_else(|| vec![1.0; styles.len()]);
        // Normalized in f64: large weights would overflow an f32 sum.
        let total: f64 = blend.iter().map(|&b| f64::from(b)).sum();
        let styles: Vec<(RgbImage, f32)> = styles
            .iter()
            .zip(&blend)
            .map(|(s, &b)| (image_io::resize_max_side(s, style_side), (f64::from(b) / total) as f32))
            .collect();
        let palette = || {
            let styles: Vec<(&RgbImage, f32)> = styles.iter().map(|(s, b)| (s, *b)).collect();
            image_io::to_chw(&crate::palette::transfer(&content, &styles))
        };
        let styles: Vec<(PlanarImage, f32)> = styles.iter().map(|(s, b)| (planar(s), *b)).collect();
        let content_planar = planar(&content);
        let targets = Targets::compute(ctx, fnet, &options.loss, &content_planar, &styles)?;

        // The first scale starts from the options' image on the CPU; a later one from the
        // previous result resized on the GPU into `x` (and, bounded, u = logit(x) there too).
        let init = match (&from, &options.init) {
            (SessionInit::Upsample { .. }, _) => None,
            (SessionInit::Options, Init::Content) => Some(content_planar.data.clone()),
            (SessionInit::Options, Init::Palette) => Some(palette()),
            (SessionInit::Options, Init::Noise) => Some(noise(3 * w * h, options.seed)),
            (SessionInit::Options, Init::Image(img)) => {
                Some(image_io::to_chw(&image_io::resize_exact(img, w as u32, h as u32)))
            }
        };
        let k = &fnet.kernels;
        let buffer = |label: &str| match &init {
            Some(data) => ctx.storage_buffer(label, data),
            None => ctx.zeroed_buffer(label, n),
        };
        let x = buffer("image");
        let mut setup = Vec::new();
        if let SessionInit::Upsample { image, width, height } = from {
            let p = ResizeParams { src_w: width as u32, src_h: height as u32, dst_w: w as u32, dst_h: h as u32 };
            setup.push(Command::Dispatch(k.scales.resize_bilinear(ctx, Resize { src: image, dst: &x }, &p)));
        }
        let mut objective = Objective::new(ctx, fnet, &options.loss, targets, &x, w, h)?;
        // Normalized gradients are not the loss's gradient, so Armijo's condition does not apply.
        let backtracks = options.lbfgs_line_search == LineSearch::Backtracking && !options.loss.normalize_gradients;
        let line_search = backtracks.then(|| objective.losses());
        let optimizer = match options.optimizer {
            OptimizerKind::Adam => {
                Optimizer::Adam(Adam::new(ctx, k, &x, objective.image_grad(), n, options.learning_rate))
            }
            OptimizerKind::Lbfgs => Optimizer::Lbfgs(Lbfgs::new(
                ctx,
                k,
                &x,
                objective.image_grad(),
                n,
                options.lbfgs_history,
                1.0,
                line_search,
            )),
            OptimizerKind::LbfgsBounded => {
                let u = match &init {
                    Some(data) => ctx.storage_buffer("u", &data.iter().map(|&v| logit(v)).collect::<Vec<_>>()),
                    None => {
                        let u = ctx.zeroed_buffer("u", n);
                        let p = AverageParams::new(n, 0.0, 1);
                        setup.push(Command::Dispatch(k.scales.logit(ctx, Logit { image: &x, averaged: &u }, &p)));
                        u
                    }
                };
                let grad_u = ctx.zeroed_buffer("grad u", n);
                let squash = Squash::new(ctx, k, &u, &x, objective.image_grad(), &grad_u, n);
                let lbfgs = Lbfgs::new(ctx, k, &u, &grad_u, n, options.lbfgs_history, 1.0, line_search);
                Optimizer::Bounded { squash, lbfgs, _u: [u, grad_u] }
            }
        };
        let content = ctx.storage_buffer("content", &content_planar.data);
        let average = (options.average > 0.0).then(|| OutputAverage::new(ctx, k, &x, n, options.average));
        // Without averaging the result is the evaluated image with the lowest loss; with it, the
        // latest average whose evaluation was finite.
        let written = average.as_ref().map_or(&x, |a| &a.averaged);
        let kept = Kept::new(ctx, k, objective.losses(), written, buffer("result"), n, average.is_none());
        let original_colors = options.original_colors.then(|| {
            let output = ctx.zeroed_buffer("original colors", n);
            let p = ColorParams::new(w * h);
            let recolor = OriginalColors { image: &kept.image, photo: &content, output: &output };
            OriginalColorsOps { op: k.color.original_colors(ctx, recolor, &p), output: output.clone() }
        });
        if init.is_none() {
            setup.push(Command::Copy(x.clone(), kept.image.clone(), x.size()));
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            crate::kernels::record_commands(&mut encoder, &setup);
            ctx.queue.submit([encoder.finish()]);
        }
        // f16: the gradient scale measured at the starting image (x holds it now).
        let weights = [options.loss.content_weight, options.loss.effective_style_weight(), options.loss.tv_weight];
        objective.calibrate(ctx, weights)?;
        Ok(Session {
            ctx: self.ctx.clone(),
            width: w,
            height: h,
            iterations,
            weights,
            content,
            kept,
            average,
            losses_readback: ctx.readback_buffer(KEPT_SLOTS),
            image_readback: ctx.readback_buffer(n),
            x,
            objective,
            optimizer,
            iteration: 0,
            start: Instant::now(),
            clock_stopped: None,
            paused: std::time::Duration::ZERO,
            original_colors,
        })
    }

    /// Prepares a run through the options' schedule ([`plan`]): every scale checked against the
    /// device, the first one's [`Session`] started, and a [`Driver`] that starts each next scale
    /// from the previous result, with the options' reporting and snapshot cadence.
    pub fn drive(&self, content: &RgbImage, styles: &[RgbImage], options: &StylizeOptions) -> Result<Driver> {
        self.validate(options, styles.len())?;
        let plan = plan(content.width(), content.height(), options)?;
        // Largest first: what does not fit at the output size is what to report.
        for scale in plan.iter().rev() {
            self.check_scale(content, styles, options, scale.side)?;
        }
        let first = plan[0];
        let session = self.start_scale(content, styles, options, first.side, first.iterations, SessionInit::Options)?;
        let mut driver = Driver::new(session, options);
        if plan.len() > 1 {
            driver.schedule = Some(Schedule {
                stylizer: self.clone(),
                content: content.clone(),
                styles: styles.to_vec(),
                options: options.clone(),
            });
        }
        driver.plan = plan;
        Ok(driver)
    }

    /// Optimizes an image; `callback` hears progress (every `report_every` iterations and at the
    /// end) and snapshots, and may stop the run.
    pub fn run(
        &self,
        content: &RgbImage,
        styles: &[RgbImage],
        options: &StylizeOptions,
        mut callback: impl FnMut(Event) -> Control,
    ) -> Result<Outcome> {
        self.drive(content, styles, options)?.run(|event| Ok(callback(event)))
    }
}

/// What one [`Session::step`] read back.
pub struct Step {
    /// The losses of the evaluated image (when asked to report).
    pub losses: Option<LossValues>,
    /// The losses of the result so far (when asked to report and an evaluation was finite): see
    /// [`Event::Progress`].
    pub result: Option<LossValues>,
    /// Whether the image gradient was finite, its squared norm in f32 included (see
    /// [`crate::kernels::losses::GRADIENT_SLOT`]); `true` when the losses were not read.
    pub gradient_finite: bool,
    /// The evaluated image (when asked for a snapshot).
    pub image: Option<RgbImage>,
}

/// An iteration planned by [`Session::begin`], submitted by [`Session::advance`].
struct PendingStep {
    commands: Vec<Command>,
    next: usize,
    report: bool,
    snapshot: bool,
}

/// A prepared run, stepped one iteration at a time. Iteration k evaluates the image after k
/// updates and, while k < `iterations`, updates it: one command encoder, one submit. It shares
/// the device ([`GpuContext`]) it runs on, so it can outlive the [`Stylizer`] that started it and
/// move to another thread. A [`Driver`] paces it: reports, snapshots, stops.
pub struct Session {
    ctx: Arc<GpuContext>,
    width: usize,
    height: usize,
    iterations: usize,
    weights: [f32; 3],
    x: wgpu::Buffer,
    content: wgpu::Buffer,
    kept: Kept,
    losses_readback: wgpu::Buffer,
    image_readback: wgpu::Buffer,
    objective: Objective,
    optimizer: Optimizer,
    average: Option<OutputAverage>,
    iteration: usize,
    start: Instant,
    /// When the clock was stopped (paused, or the run completed), and the paused time so far.
    clock_stopped: Option<Instant>,
    paused: std::time::Duration,
    original_colors: Option<OriginalColorsOps>,
}

/// The `original_colors` dispatch of a run (the content photo's chroma with the luma of the
/// result so far) and its output.
struct OriginalColorsOps {
    op: BoundOp,
    output: wgpu::Buffer,
}

/// The result of a session, kept on the GPU after each evaluation by `keep_select` and
/// `keep_copy` (`shaders/scales.wgsl`), with its losses: nothing is read back to keep it.
struct Kept {
    select: BoundOp,
    copy: BoundOp,
    /// Its losses and the last evaluation's ([`KEPT_SLOTS`] floats).
    state: wgpu::Buffer,
    /// The image (planar RGB, unclamped).
    image: wgpu::Buffer,
}

impl Kept {
    /// Keeps `written` (n values, evaluated with `losses`) in `image` (holding the starting image):
    /// the lowest-loss one when `lowest`, else the latest with finite losses.
    fn new(
        ctx: &GpuContext,
        k: &crate::kernels::Kernels,
        losses: &wgpu::Buffer,
        written: &wgpu::Buffer,
        image: wgpu::Buffer,
        n: usize,
        lowest: bool,
    ) -> Self {
        let state = ctx.zeroed_buffer("kept losses", KEPT_SLOTS);
        let p = KeepParams::new(n, lowest);
        let select = k.scales.keep_select(ctx, KeepSelect { evaluated: losses, kept: &state }, &p);
        let copy = k.scales.keep_copy(ctx, KeepCopy { kept: &state, candidate: written, result: &image }, &p);
        Self { select, copy, state, image }
    }
}

/// Loss values from the first slots of a losses buffer.
fn loss_values(l: &[f32]) -> LossValues {
    LossValues { content: l[0], style: l[1], tv: l[2], loss: l[3] }
}

impl Session {
    /// The next iteration to evaluate (= updates made so far).
    pub fn iteration(&self) -> usize {
        self.iteration
    }

    /// Iterations the run was planned for.
    pub fn total_iterations(&self) -> usize {
        self.iterations
    }

    /// Whether the final image (after `iterations` updates) has been evaluated.
    pub fn is_done(&self) -> bool {
        self.iteration > self.iterations
    }

    /// Makes the next iteration the last: it evaluates (and reports) the current image without
    /// updating it.
    fn end_at_next_evaluation(&mut self) {
        self.iterations = self.iterations.min(self.iteration);
    }

    /// Seconds spent optimizing: since the session was prepared, without pauses, up to the last
    /// iteration.
    pub fn elapsed(&self) -> f64 {
        let end = self.clock_stopped.unwrap_or_else(Instant::now);
        (end.duration_since(self.start).saturating_sub(self.paused)).as_secs_f64()
    }

    /// Stops or restarts the clock behind [`Session::elapsed`] (a viewer's pause).
    pub fn pause_clock(&mut self, paused: bool) {
        match (paused, self.clock_stopped) {
            (true, None) => self.clock_stopped = Some(Instant::now()),
            (false, Some(at)) if !self.is_done() => {
                self.paused += at.elapsed();
                self.clock_stopped = None;
            }
            _ => {}
        }
    }

    /// The image as it is written (planar RGB), for presenting straight from the GPU: the
    /// iterate, or with [`StylizeOptions::average`] the average of the iterates so far.
    pub fn image_buffer(&self) -> &wgpu::Buffer {
        self.average.as_ref().map_or(&self.x, |a| &a.averaged)
    }

    /// Width of the image.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height of the image.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The result so far on the GPU (planar RGB, unclamped): what the next scale starts from.
    fn result_buffer(&self) -> &wgpu::Buffer {
        &self.kept.image
    }

    /// Whether the last report of a session carries its result's losses: always without
    /// averaging; with it only once the average itself was evaluated (the last evaluation).
    fn reports_result(&self) -> bool {
        self.average.is_none() || self.is_done()
    }

    /// The losses of the result so far, read back (`None`: no evaluation was finite).
    fn result_losses(&self) -> Result<Option<LossValues>> {
        let l = self.ctx.read_buffer(&self.kept.state, KEPT_SLOTS)?;
        Ok((l[KEPT_VALID] != 0.0).then(|| loss_values(&l)))
    }

    /// The content photo at the output size (planar RGB).
    pub fn content_buffer(&self) -> &wgpu::Buffer {
        &self.content
    }

    /// The work of one iteration (evaluation and update), counted from the shapes.
    pub fn work(&self) -> crate::engine::Work {
        let update = match &self.optimizer {
            Optimizer::Adam(adam) => adam.work(),
            Optimizer::Lbfgs(lbfgs) => lbfgs.work(),
            Optimizer::Bounded { squash, lbfgs, .. } => squash.work() + lbfgs.work(),
        };
        self.objective.work() + update
    }

    /// Current content, style and TV weights.
    pub fn weights(&self) -> [f32; 3] {
        self.weights
    }

    /// Runs one iteration (one encoder, one submit); with `report`, reads its losses and the
    /// result's back (a few bytes), with `snapshot` also the result. A non-finite loss or gradient
    /// never becomes the result.
    pub fn step(&mut self, report: bool, snapshot: bool) -> Result<Step> {
        let mut pending = self.begin(report, snapshot);
        loop {
            if let (_, Some(step)) = self.advance(&mut pending, usize::MAX)? {
                return Ok(step);
            }
        }
    }

    /// Plans the next iteration without submitting it: (image from u), (average; the last
    /// evaluation evaluates it), evaluation, keeping the result, (copies for the caller),
    /// update. [`Driver::advance`] submits it in pieces with [`Session::advance`] so a viewer
    /// keeps redrawing on a slow device.
    fn begin(&mut self, report: bool, snapshot: bool) -> PendingStep {
        let report = report || snapshot;
        let bytes = self.x.size();
        let last = self.iteration >= self.iterations;
        let mut commands = Vec::new();
        if let Optimizer::Bounded { squash, .. } = &self.optimizer {
            commands.push(Command::Dispatch(squash.forward.clone()));
        }
        if let Some(average) = &mut self.average {
            commands.push(Command::Dispatch(average.next(&self.ctx).clone()));
            if last {
                // No update follows: the image evaluated is the one written.
                commands.push(Command::Copy(average.averaged.clone(), self.x.clone(), bytes));
            }
        }
        commands.extend(self.objective.commands());
        commands.extend([&self.kept.select, &self.kept.copy].map(|op| Command::Dispatch(op.clone())));
        if report {
            let state = self.kept.state.clone();
            commands.push(Command::Copy(state, self.losses_readback.clone(), (KEPT_SLOTS * 4) as u64));
        }
        if snapshot {
            let snapshot = match &self.original_colors {
                Some(colors) => {
                    commands.push(Command::Dispatch(colors.op.clone()));
                    colors.output.clone()
                }
                None => self.kept.image.clone(),
            };
            commands.push(Command::Copy(snapshot, self.image_readback.clone(), bytes));
        }
        if !last {
            commands.extend(self.optimizer.commands(&self.ctx));
        }
        PendingStep { commands, next: 0, report, snapshot }
    }

    /// Submits up to `max_commands` more commands of a pending iteration (one encoder, one
    /// submit); returns how many it submitted and, once the iteration is complete, what it read.
    fn advance(&mut self, pending: &mut PendingStep, max_commands: usize) -> Result<(usize, Option<Step>)> {
        let ctx = &*self.ctx;
        let end = pending.next.saturating_add(max_commands.max(1)).min(pending.commands.len());
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        crate::kernels::record_commands(&mut encoder, &pending.commands[pending.next..end]);
        ctx.queue.submit([encoder.finish()]);
        let used = end - pending.next;
        pending.next = end;
        if end < pending.commands.len() {
            return Ok((used, None));
        }
        Ok((used, Some(self.complete(pending)?)))
    }

    /// Runs one iteration (without reading anything back) with every dispatch timed where the
    /// adapter allows (see [`crate::profile`]); slower than [`Session::step`], for benchmarks.
    pub fn step_profiled(&mut self) -> Result<crate::profile::IterationProfile> {
        let mut pending = self.begin(false, false);
        let profile = crate::profile::run(&self.ctx, &pending.commands)?;
        pending.next = pending.commands.len();
        self.complete(&pending)?;
        Ok(profile)
    }

    /// Bookkeeping after the last command of an iteration was submitted, and its readback.
    fn complete(&mut self, pending: &PendingStep) -> Result<Step> {
        let ctx = &*self.ctx;
        self.iteration += 1;
        if self.is_done() && self.clock_stopped.is_none() {
            self.clock_stopped = Some(Instant::now());
        }
        if !pending.report {
            return Ok(Step { losses: None, result: None, gradient_finite: true, image: None });
        }
        let l: Vec<f32> = ctx.read_mapped(&self.losses_readback, KEPT_SLOTS)?;
        let evaluated = &l[KEPT_EVALUATED..];
        let gradient_finite = evaluated[GRADIENT_SLOT].is_finite();
        let result = (l[KEPT_VALID] != 0.0).then(|| loss_values(&l));
        let image = if pending.snapshot && result.is_some() {
            let n = 3 * self.width * self.height;
            Some(to_image(&ctx.read_mapped(&self.image_readback, n)?, self.width, self.height))
        } else {
            None
        };
        Ok(Step { losses: Some(loss_values(evaluated)), result, gradient_finite, image })
    }

    /// Changes the loss weights (content, style, tv); the targets stay and the optimizer starts
    /// afresh from the current image. Losses under the old weights do not compare with the new
    /// ones: the next evaluated image becomes the result.
    pub fn set_weights(&mut self, weights: [f32; 3]) {
        self.weights = weights;
        self.objective.set_weights(&self.ctx, weights[0], weights[1], weights[2]);
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        self.optimizer.reset(&mut encoder);
        encoder.clear_buffer(&self.kept.state, 0, None);
        self.ctx.queue.submit([encoder.finish()]);
    }

    /// Reads the result so far (clamped to [0, 1]; with `original_colors`, recolored on the GPU
    /// first): the evaluated image with the lowest loss, or with averaging the latest average
    /// whose evaluation was finite.
    pub fn current_image(&mut self) -> Result<RgbImage> {
        let n = 3 * self.width * self.height;
        let image = match &self.original_colors {
            Some(colors) => {
                let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
                crate::kernels::record(&mut encoder, std::slice::from_ref(&colors.op));
                self.ctx.queue.submit([encoder.finish()]);
                colors.output.clone()
            }
            None => self.kept.image.clone(),
        };
        Ok(to_image(&self.ctx.read_buffer(&image, n)?, self.width, self.height))
    }

    /// Ends the run with its result (see [`Session::current_image`]) and the result's losses.
    pub fn finish(mut self) -> Result<Outcome> {
        let image = self.current_image()?;
        let losses = self.result_losses()?;
        self.ctx.finish()?;
        Ok(Outcome {
            image,
            losses,
            iterations: self.iteration.saturating_sub(1).min(self.iterations),
            seconds: self.elapsed(),
            non_finite_at: None,
        })
    }
}

/// What one [`Driver::advance`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Advanced {
    /// GPU commands submitted.
    pub commands: usize,
    /// Whether an iteration was completed (its events, if any, have been handed out).
    pub completed_iteration: bool,
}

/// The one loop around a [`Session`]: it decides when losses are read back and progress
/// reported (every `report_every` iterations, and at the end), when the result is handed out
/// (every `snapshot_every`), and when the run ends: all iterations done, a NaN or infinite loss
/// or image gradient (the result is then the best image whose evaluation was finite), the event
/// handler answering [`Control::Stop`], or the cancel flag set (checked between iterations, so
/// another thread, a Ctrl-C handler or an app's stop button, ends the run after the current
/// iteration). The result of a scale and of the run is never an unevaluated step: it is the
/// evaluated image with the lowest loss (see [`Event::Progress`]), and the last progress
/// reported is its losses: when the run ends on an iteration whose losses were not read (or,
/// with averaging, before the average was evaluated), the image the last update produced is
/// evaluated and reported once more, without an update.
///
/// [`Driver::run`] drives a whole run; [`Driver::advance`] submits a bounded amount of work, for
/// a viewer that interleaves optimization with frames (on a slow device one iteration spreads
/// over several calls).
pub struct Driver {
    session: Session,
    /// What later scales are made from (`None`: one scale).
    schedule: Option<Schedule>,
    plan: Vec<ScalePlan>,
    /// Index of the current scale in `plan`.
    scale: usize,
    /// Updates and seconds of the finished scales.
    finished_scales: (usize, f64),
    report_every: usize,
    snapshot_every: Option<usize>,
    read_every_iteration: bool,
    cancel: Arc<AtomicBool>,
    /// The iteration in flight, and whether it reports progress.
    pending: Option<(PendingStep, bool)>,
    /// Loss weights to apply once the iteration in flight is complete.
    next_weights: Option<[f32; 3]>,
    latest: Option<(usize, LossValues)>,
    non_finite_at: Option<NonFinite>,
    /// Whether the last completed iteration read back finite losses (the result's losses were
    /// reported if the run ends now).
    last_reported: bool,
    /// The cancel flag was seen: the run ends once the current scale's session is done.
    cancelled: bool,
    stopped: bool,
}

impl Driver {
    /// Drives `session` with the cadence of `options` (`report_every`, `snapshot_every`).
    pub fn new(session: Session, options: &StylizeOptions) -> Self {
        let plan = vec![ScalePlan {
            side: session.width.max(session.height) as u32,
            width: session.width as u32,
            height: session.height as u32,
            iterations: session.iterations,
        }];
        Self {
            session,
            schedule: None,
            plan,
            scale: 0,
            finished_scales: (0, 0.0),
            report_every: options.report_every.max(1),
            snapshot_every: options.snapshot_every.filter(|&n| n > 0),
            read_every_iteration: false,
            cancel: Arc::new(AtomicBool::new(false)),
            pending: None,
            next_weights: None,
            latest: None,
            non_finite_at: None,
            last_reported: false,
            cancelled: false,
            stopped: false,
        }
    }

    /// Also reads the losses of every iteration (a few bytes each), for a live display of
    /// [`Driver::latest`]; progress is still reported at the cadence. Every iteration's loss is
    /// then checked for NaN or infinity.
    pub fn read_every_iteration(mut self) -> Self {
        self.read_every_iteration = true;
        self
    }

    /// Uses `flag` as the cancel flag (see [`Driver::cancel_flag`]).
    pub fn with_cancel_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancel = flag;
        self
    }

    /// The cancel flag: set it (from any thread) to end the run after the current iteration.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// The session being driven: the current scale's.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The schedule: every scale's size and updates.
    pub fn plan(&self) -> &[ScalePlan] {
        &self.plan
    }

    /// The current scale (0-based index into [`Driver::plan`]).
    pub fn scale(&self) -> usize {
        self.scale
    }

    /// Whether the run has ended: all iterations of the last scale done, a non-finite loss or
    /// gradient, a stop or a cancel.
    pub fn is_finished(&self) -> bool {
        self.stopped
            || self.non_finite_at.is_some()
            || (self.session.is_done() && (self.cancelled || self.scale + 1 >= self.plan.len()))
    }

    /// Replaces the finished session by the next scale's, started from its result resized.
    fn next_scale(&mut self) -> Result<()> {
        let Some(schedule) = &self.schedule else { bail!("no next scale") };
        let next = self.plan[self.scale + 1];
        let (width, height) = (self.session.width, self.session.height);
        let image = self.session.result_buffer().clone();
        let Schedule { stylizer, content, styles, options } = schedule;
        let from = SessionInit::Upsample { image: &image, width, height };
        let mut session = stylizer.start_scale(content, styles, options, next.side, next.iterations, from)?;
        if session.weights() != self.session.weights() {
            session.set_weights(self.session.weights());
        }
        let (iterations, seconds) = self.finished_scales;
        self.finished_scales = (iterations + self.session.iterations, seconds + self.session.elapsed());
        self.session = session;
        self.scale += 1;
        Ok(())
    }

    /// The evaluation whose loss or gradient was NaN or infinite, if that ended the run.
    pub fn non_finite_at(&self) -> Option<NonFinite> {
        self.non_finite_at
    }

    /// The last losses read back, with their iteration.
    pub fn latest(&self) -> Option<(usize, LossValues)> {
        self.latest
    }

    /// Submits up to `max_commands` GPU commands (at least one) of the current iteration,
    /// starting the next one if none is in flight and the run has not ended. When an iteration
    /// completes, `on_event` hears its progress and snapshot, at the cadence.
    pub fn advance(
        &mut self,
        max_commands: usize,
        on_event: &mut impl FnMut(Event) -> Result<Control>,
    ) -> Result<Advanced> {
        let idle = Advanced { commands: 0, completed_iteration: false };
        if self.pending.is_none() {
            if self.cancel.load(Ordering::Relaxed) && !self.cancelled {
                self.end_run();
            }
            if self.is_finished() {
                return Ok(idle);
            }
            if self.session.is_done() {
                self.next_scale()?;
            }
            let it = self.session.iteration();
            let report = it.is_multiple_of(self.report_every) || it == self.session.total_iterations();
            let snapshot = self.snapshot_every.is_some_and(|n| it > 0 && it.is_multiple_of(n));
            self.pending = Some((self.session.begin(report || self.read_every_iteration, snapshot), report));
        }
        let Some((pending, report)) = &mut self.pending else { return Ok(idle) };
        let report = *report;
        let (commands, step) = self.session.advance(pending, max_commands)?;
        let Some(step) = step else { return Ok(Advanced { commands, completed_iteration: false }) };
        self.pending = None;
        if let Some(weights) = self.next_weights.take() {
            self.session.set_weights(weights);
        }
        let completed = Advanced { commands, completed_iteration: true };
        let iteration = self.session.iteration() - 1;
        self.last_reported = false;
        let Some(losses) = step.losses else { return Ok(completed) };
        if !losses.loss.is_finite() || !step.gradient_finite {
            let gradient = losses.loss.is_finite();
            self.non_finite_at = Some(NonFinite { iteration, scale: self.scale, gradient });
            return Ok(completed);
        }
        self.last_reported = true;
        let losses = step.result.unwrap_or(losses);
        self.latest = Some((iteration, losses));
        let mut stop = false;
        if report {
            let elapsed_s = self.finished_scales.1 + self.session.elapsed();
            let scale = self.scale_info();
            stop |= on_event(Event::Progress { iteration, losses, elapsed_s, scale })? == Control::Stop;
        }
        if let Some(image) = &step.image {
            stop |= on_event(Event::Snapshot { iteration, image })? == Control::Stop;
        }
        if stop {
            self.end_run();
        }
        Ok(completed)
    }

    /// Ends the run after the current iteration: at once when the result's losses were the last
    /// reported, else after one more evaluation, without an update, that reports them.
    fn end_run(&mut self) {
        self.cancelled = true;
        if self.session.is_done() || (self.last_reported && self.session.reports_result()) {
            self.stopped = true;
        } else {
            self.session.end_at_next_evaluation();
        }
    }

    /// Runs until the run ends (see [`Driver`]) and returns its outcome; `on_event` hears
    /// progress and snapshots, and may stop the run or fail it.
    pub fn run(mut self, mut on_event: impl FnMut(Event) -> Result<Control>) -> Result<Outcome> {
        while !self.is_finished() {
            self.advance(usize::MAX, &mut on_event)?;
        }
        self.finish()
    }

    /// Current content, style and TV weights (including a change waiting for the iteration in
    /// flight).
    pub fn weights(&self) -> [f32; 3] {
        self.next_weights.unwrap_or_else(|| self.session.weights())
    }

    /// Changes the loss weights (see [`Session::set_weights`]) as soon as the iteration in flight
    /// is complete.
    pub fn set_weights(&mut self, weights: [f32; 3]) {
        if self.pending.is_some() {
            self.next_weights = Some(weights);
        } else {
            self.session.set_weights(weights);
        }
    }

    /// Stops or restarts the run's clock (see [`Session::pause_clock`]).
    pub fn pause_clock(&mut self, paused: bool) {
        self.session.pause_clock(paused);
    }

    /// The result so far (see [`Session::current_image`]).
    pub fn current_image(&mut self) -> Result<RgbImage> {
        self.session.current_image()
    }

    /// Where the run is in its schedule.
    pub fn scale_info(&self) -> ScaleInfo {
        ScaleInfo {
            index: self.scale + 1,
            count: self.plan.len(),
            width: self.session.width as u32,
            height: self.session.height as u32,
        }
    }

    /// Ends the run: the result is the current scale's (see [`Session::current_image`]), and
    /// [`Outcome::non_finite_at`] says whether a non-finite loss or gradient ended it. Updates
    /// and seconds count every scale.
    pub fn finish(self) -> Result<Outcome> {
        let mut outcome = self.session.finish()?;
        outcome.non_finite_at = self.non_finite_at;
        outcome.iterations += self.finished_scales.0;
        outcome.seconds += self.finished_scales.1;
        Ok(outcome)
    }
}

/// What a [`Driver`] makes its later scales from.
struct Schedule {
    stylizer: Stylizer,
    content: RgbImage,
    styles: Vec<RgbImage>,
    options: StylizeOptions,
}

/// Which scale of the schedule an event is from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScaleInfo {
    /// The scale, from 1.
    pub index: usize,
    /// Scales in the schedule.
    pub count: usize,
    /// Width of the image at this scale.
    pub width: u32,
    /// Height of the image at this scale.
    pub height: u32,
}

/// The exponential moving average of the iterates, bias corrected (see
/// [`StylizeOptions::average`]): one dispatch per evaluated image, before its evaluation.
struct OutputAverage {
    op: BoundOp,
    params: AverageParams,
    iterates: usize,
    averaged: wgpu::Buffer,
    _biased: wgpu::Buffer,
}

impl OutputAverage {
    fn new(ctx: &GpuContext, k: &crate::kernels::Kernels, image: &wgpu::Buffer, n: usize, decay: f32) -> Self {
        let biased = ctx.zeroed_buffer("average (biased)", n);
        let averaged = ctx.zeroed_buffer("average", n);
        let params = AverageParams::new(n, decay, 1);
        let op = k.scales.average(ctx, Average { image, biased: &biased, averaged: &averaged }, &params);
        Self { op, params, iterates: 0, averaged, _biased: biased }
    }

    /// The dispatch that adds the next iterate, its bias correction set.
    fn next(&mut self, ctx: &GpuContext) -> &BoundOp {
        self.iterates += 1;
        self.params = AverageParams::new(self.params.n as usize, self.params.decay, self.iterates);
        self.op.update(ctx, &self.params);
        &self.op
    }
}

/// The optimizer of a run, with what it needs around the objective.
enum Optimizer {
    Adam(Adam),
    Lbfgs(Lbfgs),
    Bounded { squash: Squash, lbfgs: Lbfgs, _u: [wgpu::Buffer; 2] },
}

impl Optimizer {
    /// Forgets the optimizer state (after the objective changed).
    fn reset(&mut self, encoder: &mut wgpu::CommandEncoder) {
        match self {
            Optimizer::Adam(adam) => adam.reset(encoder),
            Optimizer::Lbfgs(lbfgs) | Optimizer::Bounded { lbfgs, .. } => lbfgs.reset(encoder),
        }
    }

    /// The commands of one update after the evaluation.
    fn commands(&mut self, ctx: &GpuContext) -> Vec<Command> {
        match self {
            Optimizer::Adam(adam) => vec![Command::Dispatch(adam.next_step(ctx).clone())],
            Optimizer::Lbfgs(lbfgs) => lbfgs.ops().iter().cloned().map(Command::Dispatch).collect(),
            Optimizer::Bounded { squash, lbfgs, .. } => {
                std::iter::once(&squash.backward).chain(lbfgs.ops()).cloned().map(Command::Dispatch).collect()
            }
        }
    }
}

/// Uniform noise in [0, 1] (xorshift64*), reproducible from the seed.
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

/// Planar floats to an 8-bit image, clamped to [0, 1] and rounded.
fn to_image(data: &[f32], w: usize, h: usize) -> RgbImage {
    let n = w * h;
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let i = y as usize * w + x as usize;
        image::Rgb(std::array::from_fn(|c| (data[c * n + i].clamp(0.0, 1.0) * 255.0).round() as u8))
    })
}
