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

use crate::engine::FeatureNet;
use crate::gpu::GpuContext;
use crate::image_io;
use crate::kernels::color::{ColorParams, OriginalColors};
use crate::kernels::{BoundOp, Command};
pub use objective::{LOSS_SLOTS, LossSpec, Objective, PlanarImage, Targets};
use optimizer::{Adam, Lbfgs, Squash, logit};

/// Default content layers (comma-separated).
pub const DEFAULT_CONTENT_LAYERS: &str = "block4.expand";
/// Default style layers (comma-separated, optional `:weight`).
pub const DEFAULT_STYLE_LAYERS: &str = "stem,block1.expand,block3.expand,block5.expand";
/// Default weight of E_content.
pub const DEFAULT_CONTENT_WEIGHT: f32 = 1.0;
/// Default weight of E_style.
pub const DEFAULT_STYLE_WEIGHT: f32 = 5000.0;
/// Default weight of E_tv.
pub const DEFAULT_TV_WEIGHT: f32 = 1.0;

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

/// The starting image.
#[derive(Clone, Debug)]
pub enum Init {
    /// The content photo.
    Content,
    /// Uniform noise in [0, 1] from the seed.
    Noise,
    /// A given image (resized to the output size).
    Image(RgbImage),
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
}

impl Default for StylizeOptions {
    /// The CLI's defaults: 512 px, 500 iterations of bounded L-BFGS from the content photo.
    fn default() -> Self {
        Self {
            size: 512,
            style_scale: 1.0,
            iterations: 500,
            optimizer: OptimizerKind::LbfgsBounded,
            learning_rate: 0.02,
            lbfgs_history: 10,
            loss: LossSpec::default(),
            style_blend_weights: None,
            init: Init::Content,
            seed: 0,
            report_every: 50,
            snapshot_every: None,
            original_colors: false,
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
    /// Losses of the image after `iteration` updates.
    Progress {
        /// Updates made so far.
        iteration: usize,
        /// Its losses.
        losses: LossValues,
        /// Seconds since the optimization started.
        elapsed_s: f64,
    },
    /// The image after `iteration` updates (see `snapshot_every`).
    Snapshot {
        /// Updates made so far.
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
    /// Stop now and return the current image.
    Stop,
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The result, clamped to [0, 1].
    pub image: RgbImage,
    /// Updates made.
    pub iterations: usize,
    /// Seconds spent optimizing.
    pub seconds: f64,
    /// Set when the loss became NaN or infinite: the image is the last one with a finite loss.
    pub non_finite_at: Option<usize>,
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
    /// [`LossSpec::style_layers`].
    StyleLayers,
    /// [`StylizeOptions::style_blend_weights`].
    StyleBlendWeights,
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
            OptionName::StyleLayers => "loss.style_layers",
            OptionName::StyleBlendWeights => "style_blend_weights",
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
    /// `learning_rate` is not a positive finite number.
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
    /// `style_blend_weights` has a negative or non-finite value, or sums to 0.
    BlendWeights,
    /// A style image scaled by `style_scale` does not fit the device.
    StyleImageTooLarge(String),
}

impl OptionError {
    /// The option the error is about.
    pub fn option(&self) -> OptionName {
        match self {
            OptionError::NoIterations => OptionName::Iterations,
            OptionError::ZeroSize => OptionName::Size,
            OptionError::StyleScale | OptionError::StyleImageTooLarge(_) => OptionName::StyleScale,
            OptionError::LossWeight { option, .. } => *option,
            OptionError::StyleLayerWeight => OptionName::StyleLayers,
            OptionError::LearningRate => OptionName::LearningRate,
            OptionError::LbfgsHistory(_) => OptionName::LbfgsHistory,
            OptionError::BlendWeightCount { .. } | OptionError::BlendWeights => OptionName::StyleBlendWeights,
        }
    }

    /// The one-line message, naming the option `name`.
    pub fn message(&self, name: &str) -> String {
        match self {
            OptionError::NoIterations | OptionError::ZeroSize => format!("{name} must be at least 1"),
            OptionError::StyleScale | OptionError::LearningRate => format!("{name} must be positive"),
            OptionError::LossWeight { value, .. } => format!("{name} must be a finite number ≥ 0, got {value}"),
            OptionError::StyleLayerWeight => "style layer weights must be finite numbers ≥ 0".into(),
            OptionError::LbfgsHistory(h) => format!("{name} must be between 1 and 1000, got {h}"),
            OptionError::BlendWeightCount { values, styles } => {
                format!("{name} has {values} values for {styles} style images")
            }
            OptionError::BlendWeights => format!("{name} must be non-negative with a positive sum"),
            OptionError::StyleImageTooLarge(reason) => format!("style image (see {name}): {reason}"),
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
    ] {
        if !(value >= 0.0 && value.is_finite()) {
            return fail(OptionError::LossWeight { option, value });
        }
    }
    if spec.style_layers.iter().any(|(_, w)| !(*w >= 0.0 && w.is_finite())) {
        return fail(OptionError::StyleLayerWeight);
    }
    if !(options.learning_rate > 0.0 && options.learning_rate.is_finite()) {
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
    if style_count == 0 && !spec.style_layers.is_empty() {
        bail!("no style image given");
    }
    if let Some(b) = &options.style_blend_weights {
        if b.len() != style_count {
            return fail(OptionError::BlendWeightCount { values: b.len(), styles: style_count });
        }
        if b.iter().any(|w| !(*w >= 0.0 && w.is_finite())) || b.iter().sum::<f32>() <= 0.0 {
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

/// Checks that an output of `width`×`height` fits the device: every layer, and the optimizer's
/// history (one buffer of 2m + 2 image-sized vectors for L-BFGS).
pub fn check_device(
    ctx: &GpuContext,
    fnet: &FeatureNet,
    options: &StylizeOptions,
    width: usize,
    height: usize,
) -> Result<()> {
    crate::engine::check_size(ctx, fnet, width, height)?;
    let history = match options.optimizer {
        OptimizerKind::Adam => 0,
        _ => Lbfgs::state_floats(3 * width * height, options.lbfgs_history),
    };
    crate::engine::check_fits(ctx, "the L-BFGS history", history, width, height)
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
        let ctx = &*self.ctx;
        let fnet = &*self.fnet;
        // Every size is checked against the device before any image is resized.
        let (w, h) = image_io::scaled_size(content.width(), content.height(), options.size);
        let (w, h) = (w as usize, h as usize);
        check_device(ctx, fnet, options, w, h)?;
        let n = 3 * w * h;
        let style_side = ((options.size as f32 * options.style_scale).round() as u32).max(1);
        for s in styles {
            let (sw, sh) = image_io::scaled_size(s.width(), s.height(), style_side);
            crate::engine::check_size(ctx, fnet, sw as usize, sh as usize)
                .map_err(|e| OptionError::StyleImageTooLarge(format!("{e:#}")))?;
        }
        let content = image_io::resize_max_side(content, options.size);
        let blend = options.style_blend_weights.clone().unwrap_or_else(|| vec![1.0; styles.len()]);
        let total: f32 = blend.iter().sum();
        let styles: Vec<(PlanarImage, f32)> = styles
            .iter()
            .zip(&blend)
            .map(|(s, b)| (planar(&image_io::resize_max_side(s, style_side)), b / total))
            .collect();
        let content_planar = planar(&content);
        let targets = Targets::compute(ctx, fnet, &options.loss, &content_planar, &styles)?;

        let init = match &options.init {
            Init::Content => content_planar.data.clone(),
            Init::Noise => noise(3 * w * h, options.seed),
            Init::Image(img) => image_io::to_chw(&image_io::resize_exact(img, w as u32, h as u32)),
        };
        let x = ctx.storage_buffer("image", &init);
        let objective = Objective::new(ctx, fnet, &options.loss, targets, &x, w, h)?;
        let k = &fnet.kernels;
        let optimizer = match options.optimizer {
            OptimizerKind::Adam => {
                Optimizer::Adam(Adam::new(ctx, k, &x, objective.image_grad(), n, options.learning_rate))
            }
            OptimizerKind::Lbfgs => {
                Optimizer::Lbfgs(Lbfgs::new(ctx, k, &x, objective.image_grad(), n, options.lbfgs_history, 1.0))
            }
            OptimizerKind::LbfgsBounded => {
                let u = ctx.storage_buffer("u", &init.iter().map(|&v| logit(v)).collect::<Vec<_>>());
                let grad_u = ctx.zeroed_buffer("grad u", n);
                let squash = Squash::new(ctx, k, &u, &x, objective.image_grad(), &grad_u, n);
                let lbfgs = Lbfgs::new(ctx, k, &u, &grad_u, n, options.lbfgs_history, 1.0);
                Optimizer::Bounded { squash, lbfgs, _u: [u, grad_u] }
            }
        };
        let content = ctx.storage_buffer("content", &content_planar.data);
        let confirmed = ctx.storage_buffer("last finite image", &init);
        let original_colors = options.original_colors.then(|| {
            let output = ctx.zeroed_buffer("original colors", n);
            let p = ColorParams::new(w * h);
            let recolor =
                |image| k.color.original_colors(ctx, OriginalColors { image, photo: &content, output: &output }, &p);
            OriginalColorsOps { current: recolor(&x), confirmed: recolor(&confirmed), output: output.clone() }
        });
        Ok(Session {
            ctx: self.ctx.clone(),
            width: w,
            height: h,
            iterations: options.iterations,
            weights: [options.loss.content_weight, options.loss.style_weight, options.loss.tv_weight],
            content,
            candidate: ctx.zeroed_buffer("candidate image", n),
            confirmed,
            losses_readback: ctx.readback_buffer(LOSS_SLOTS),
            image_readback: ctx.readback_buffer(n),
            x,
            objective,
            optimizer,
            iteration: 0,
            confirm_pending: false,
            start: Instant::now(),
            clock_stopped: None,
            paused: std::time::Duration::ZERO,
            original_colors,
        })
    }

    /// Prepares a run ([`Stylizer::start`]) and a [`Driver`] for it with the options' reporting
    /// and snapshot cadence.
    pub fn drive(&self, content: &RgbImage, styles: &[RgbImage], options: &StylizeOptions) -> Result<Driver> {
        Ok(Driver::new(self.start(content, styles, options)?, options))
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
    candidate: wgpu::Buffer,
    confirmed: wgpu::Buffer,
    losses_readback: wgpu::Buffer,
    image_readback: wgpu::Buffer,
    objective: Objective,
    optimizer: Optimizer,
    iteration: usize,
    confirm_pending: bool,
    start: Instant,
    /// When the clock was stopped (paused, or the run completed), and the paused time so far.
    clock_stopped: Option<Instant>,
    paused: std::time::Duration,
    original_colors: Option<OriginalColorsOps>,
}

/// `original_colors` dispatches of a run (the content photo's chroma with the luma of the
/// image being optimized, or of the last image with a finite loss) and their output.
struct OriginalColorsOps {
    current: BoundOp,
    confirmed: BoundOp,
    output: wgpu::Buffer,
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

    /// The image being optimized (planar RGB), for presenting straight from the GPU.
    pub fn image_buffer(&self) -> &wgpu::Buffer {
        &self.x
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

    /// Runs one iteration (one encoder, one submit); with `report`, reads its losses back (a few
    /// bytes), with `snapshot` also the image. A non-finite loss leaves the last finite reported
    /// image as the result.
    pub fn step(&mut self, report: bool, snapshot: bool) -> Result<Step> {
        let mut pending = self.begin(report, snapshot);
        loop {
            if let (_, Some(step)) = self.advance(&mut pending, usize::MAX)? {
                return Ok(step);
            }
        }
    }

    /// Plans the next iteration without submitting it: (keep the last image whose loss was
    /// finite), (image from u), evaluation, (copies for the caller), update. [`Driver::advance`]
    /// submits it in pieces with [`Session::advance`] so a viewer keeps redrawing on a slow device.
    fn begin(&mut self, report: bool, snapshot: bool) -> PendingStep {
        let report = report || snapshot;
        let bytes = self.x.size();
        let mut commands = Vec::new();
        if std::mem::take(&mut self.confirm_pending) {
            commands.push(Command::Copy(self.candidate.clone(), self.confirmed.clone(), bytes));
        }
        if let Optimizer::Bounded { squash, .. } = &self.optimizer {
            commands.push(Command::Dispatch(squash.forward.clone()));
        }
        commands.extend(self.objective.commands());
        if report {
            commands.push(Command::Copy(self.x.clone(), self.candidate.clone(), bytes));
            let losses = self.objective.losses().clone();
            commands.push(Command::Copy(losses, self.losses_readback.clone(), (LOSS_SLOTS * 4) as u64));
        }
        if snapshot {
            let snapshot = match &self.original_colors {
                Some(colors) => {
                    commands.push(Command::Dispatch(colors.current.clone()));
                    colors.output.clone()
                }
                None => self.x.clone(),
            };
            commands.push(Command::Copy(snapshot, self.image_readback.clone(), bytes));
        }
        if self.iteration < self.iterations {
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
            return Ok(Step { losses: None, image: None });
        }
        let l = ctx.read_mapped(&self.losses_readback, LOSS_SLOTS)?;
        let losses = LossValues { content: l[0], style: l[1], tv: l[2], loss: l[3] };
        let finite = losses.loss.is_finite();
        self.confirm_pending = finite;
        let image = if pending.snapshot && finite {
            let n = 3 * self.width * self.height;
            Some(to_image(&ctx.read_mapped(&self.image_readback, n)?, self.width, self.height))
        } else {
            None
        };
        Ok(Step { losses: Some(losses), image })
    }

    /// Changes the loss weights (content, style, tv); the targets stay and the optimizer starts
    /// afresh from the current image.
    pub fn set_weights(&mut self, weights: [f32; 3]) {
        self.weights = weights;
        self.objective.set_weights(&self.ctx, weights[0], weights[1], weights[2]);
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        self.optimizer.reset(&mut encoder);
        self.ctx.queue.submit([encoder.finish()]);
    }

    /// Reads the last image with a finite reported loss (clamped to [0, 1]; with
    /// `original_colors`, recolored on the GPU first).
    pub fn current_image(&mut self) -> Result<RgbImage> {
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        if std::mem::take(&mut self.confirm_pending) {
            encoder.copy_buffer_to_buffer(&self.candidate, 0, &self.confirmed, 0, self.x.size());
        }
        let image = match &self.original_colors {
            Some(colors) => {
                crate::kernels::record(&mut encoder, std::slice::from_ref(&colors.confirmed));
                &colors.output
            }
            None => &self.confirmed,
        };
        self.ctx.queue.submit([encoder.finish()]);
        Ok(to_image(&self.ctx.read_buffer(image, 3 * self.width * self.height)?, self.width, self.height))
    }

    /// Ends the run: the result is the last image with a finite reported loss.
    pub fn finish(mut self) -> Result<Outcome> {
        let image = self.current_image()?;
        self.ctx.finish()?;
        Ok(Outcome {
            image,
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
/// reported (every `report_every` iterations, and at the end), when the image is handed out
/// (every `snapshot_every`), and when the run ends: all iterations done, a NaN or infinite loss
/// (the result is then the last image with a finite loss), the event handler answering
/// [`Control::Stop`], or the cancel flag set (checked between iterations, so another thread, a
/// Ctrl-C handler or an app's stop button, ends the run after the current iteration).
///
/// [`Driver::run`] drives a whole run; [`Driver::advance`] submits a bounded amount of work, for
/// a viewer that interleaves optimization with frames (on a slow device one iteration spreads
/// over several calls).
pub struct Driver {
    session: Session,
    report_every: usize,
    snapshot_every: Option<usize>,
    read_every_iteration: bool,
    cancel: Arc<AtomicBool>,
    /// The iteration in flight, and whether it reports progress.
    pending: Option<(PendingStep, bool)>,
    /// Loss weights to apply once the iteration in flight is complete.
    next_weights: Option<[f32; 3]>,
    latest: Option<(usize, LossValues)>,
    non_finite_at: Option<usize>,
    stopped: bool,
}

impl Driver {
    /// Drives `session` with the cadence of `options` (`report_every`, `snapshot_every`).
    pub fn new(session: Session, options: &StylizeOptions) -> Self {
        Self {
            session,
            report_every: options.report_every.max(1),
            snapshot_every: options.snapshot_every.filter(|&n| n > 0),
            read_every_iteration: false,
            cancel: Arc::new(AtomicBool::new(false)),
            pending: None,
            next_weights: None,
            latest: None,
            non_finite_at: None,
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

    /// The session being driven.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Whether the run has ended: all iterations done, a non-finite loss, a stop or a cancel.
    pub fn is_finished(&self) -> bool {
        self.stopped || self.non_finite_at.is_some() || self.session.is_done()
    }

    /// The iteration whose loss was NaN or infinite, if that ended the run.
    pub fn non_finite_at(&self) -> Option<usize> {
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
            if self.cancel.load(Ordering::Relaxed) {
                self.stopped = true;
            }
            if self.is_finished() {
                return Ok(idle);
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
        let Some(losses) = step.losses else { return Ok(completed) };
        if !losses.loss.is_finite() {
            self.non_finite_at = Some(iteration);
            return Ok(completed);
        }
        self.latest = Some((iteration, losses));
        let mut stop = false;
        if report {
            let elapsed_s = self.session.elapsed();
            stop |= on_event(Event::Progress { iteration, losses, elapsed_s })? == Control::Stop;
        }
        if let Some(image) = &step.image {
            stop |= on_event(Event::Snapshot { iteration, image })? == Control::Stop;
        }
        self.stopped |= stop;
        Ok(completed)
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

    /// The last image with a finite reported loss (see [`Session::current_image`]).
    pub fn current_image(&mut self) -> Result<RgbImage> {
        self.session.current_image()
    }

    /// Ends the run: the result is the last image with a finite reported loss, and
    /// [`Outcome::non_finite_at`] says whether a non-finite loss ended it.
    pub fn finish(self) -> Result<Outcome> {
        let mut outcome = self.session.finish()?;
        outcome.non_finite_at = self.non_finite_at;
        Ok(outcome)
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
