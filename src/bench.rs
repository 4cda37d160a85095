//! The stylize loop on synthetic images, timed: what `neural-style bench` reports. The images
//! are formulas (the same in `tools/bench_pytorch.py`), so no files are needed and both tools
//! optimize the same pixels.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Result, bail};
use image::RgbImage;

use crate::engine::{FeatureNet, Work};
use crate::gpu::GpuContext;
use crate::profile::IterationProfile;
use crate::stylize::{
    Init, LineSearch, LossNormalization, LossSpec, OptimizerKind, OptionError, StylizeOptions, Stylizer,
};
use crate::tuning::{Choice, Tune};

/// What to time.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Square image sizes (pixels per side).
    pub sizes: Vec<u32>,
    /// Timed iterations per size.
    pub iterations: usize,
    /// Untimed iterations first (pipeline creation, caches, clocks).
    pub warmup: usize,
    /// The optimizer of the loop.
    pub optimizer: OptimizerKind,
    /// The losses it optimizes.
    pub losses: BenchLosses,
}

impl Default for BenchOptions {
    /// The CLI's defaults: 256, 512 and 1024 px, 3 warm-up and 20 timed iterations of the
    /// default optimizer on the default losses.
    fn default() -> Self {
        Self {
            sizes: vec![256, 512, 1024],
            iterations: 20,
            warmup: 3,
            optimizer: StylizeOptions::default().optimizer,
            losses: BenchLosses::default(),
        }
    }
}

/// Which losses `bench` optimizes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BenchLosses {
    /// The product's defaults: what `neural-style stylize` optimizes without options.
    #[default]
    Default,
    /// What `tools/bench_pytorch.py` optimizes, for a comparison with PyTorch on the same
    /// algorithm: the classic loss (no per-layer normalization, no padding) on content
    /// `block4.expand` and style `stem`, `block1.expand`, `block3.expand`, `block5.expand`,
    /// weights 1 / 5000 / 1, from the content image, L-BFGS without a line search.
    Reference,
}

impl BenchLosses {
    /// The stylize options of this choice at `size` with `optimizer`, for `iterations`.
    fn stylize_options(self, size: u32, optimizer: OptimizerKind, iterations: usize) -> StylizeOptions {
        let options = StylizeOptions { size, optimizer, iterations, ..StylizeOptions::default() };
        match self {
            BenchLosses::Default => options,
            BenchLosses::Reference => {
                let layer = |name: &str| name.parse().expect("a layer name");
                let loss = LossSpec {
                    content_layers: vec![layer("block4.expand")],
                    style_layers: ["stem", "block1.expand", "block3.expand", "block5.expand"]
                        .map(|name| (layer(name), 1.0))
                        .to_vec(),
                    content_weight: 1.0,
                    style_weight: 5000.0,
                    tv_weight: 1.0,
                    gram_margin: 0,
                    padding: 0,
                    normalization: LossNormalization::None,
                    ..LossSpec::default()
                };
                StylizeOptions { loss, init: Init::Content, lbfgs_line_search: LineSearch::None, ..options }
            }
        }
    }
}

/// One size's numbers.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchResult {
    /// Pixels per side.
    pub size: u32,
    /// The optimizer.
    pub optimizer: OptimizerKind,
    /// The losses.
    pub losses: BenchLosses,
    /// Timed iterations.
    pub iterations: usize,
    /// Wall-clock seconds of the timed iterations (submitted back to back, one wait at the end).
    pub seconds: f64,
    /// Iterations per second.
    pub iterations_per_second: f64,
    /// Milliseconds per iteration.
    pub ms_per_iteration: f64,
    /// Milliseconds per iteration the host spent recording and submitting it: when this is near
    /// `ms_per_iteration`, the loop waits on the CPU, not on the GPU.
    pub host_ms_per_iteration: f64,
    /// Dispatches and GPU time per kernel family of one more iteration, timed dispatch by dispatch.
    pub profile: IterationProfile,
    /// Floating-point operations and bytes of one iteration, counted from the shapes.
    pub work: Work,
    /// Achieved rate: `work.flops` per measured iteration time, in GFLOP/s.
    pub gflops_per_second: f64,
    /// Bytes of GPU buffers allocated while planning this size (targets, activations,
    /// gradients, optimizer state, uniforms): an upper bound of the plan's peak.
    pub plan_bytes: u64,
    /// Bytes the device allocator still holds for the plan once planning is done (the
    /// targets' temporary plans freed), where the backend reports it (Vulkan, DX12).
    pub resident_bytes: Option<u64>,
    /// How activations and their gradients are stored.
    pub precision: crate::kernels::Precision,
    /// Bytes of the largest buffer (and binding) so far, the network's included: what must fit
    /// the device's storage-binding limit.
    pub largest_buffer_bytes: u64,
    /// The total loss after the last iteration (a finite number shows the loop really ran).
    pub final_loss: f32,
    /// How kernel variants were chosen.
    pub tune: Tune,
    /// The variant chosen (or read from the cache) for each shape this size's plan met first in
    /// the process (a shape an earlier size met is reported there), with the times measured;
    /// empty with `--tune off`.
    pub choices: Vec<Choice>,
}

impl BenchResult {
    /// Per family, how many of its shapes chose each variant.
    pub fn variant_counts(&self) -> BTreeMap<String, BTreeMap<String, usize>> {
        let mut counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        for c in &self.choices {
            *counts.entry(c.family.clone()).or_default().entry(c.variant.clone()).or_default() += 1;
        }
        counts
    }
}

/// The synthetic content image: smooth colour waves with finer detail.
pub fn synthetic_content(size: u32) -> RgbImage {
    synthetic(size, |u, v, c| {
        0.5 + 0.3 * (6.0 * u + 2.0 * c).sin() * (5.0 * v - c).cos() + 0.15 * (40.0 * u * v + c).sin()
    })
}

/// The synthetic style image: a busy coloured interference texture.
pub fn synthetic_style(size: u32) -> RgbImage {
    synthetic(size, |u, v, c| 0.5 + 0.45 * (60.0 * u + 25.0 * v + 2.1 * c).sin() * (35.0 * v - 20.0 * u + c).sin())
}

/// A size×size image from a formula of (x/size, y/size, channel) in [0, 1], rounded to 8 bits.
fn synthetic(size: u32, f: impl Fn(f64, f64, f64) -> f64) -> RgbImage {
    let s = f64::from(size);
    RgbImage::from_fn(size, size, |x, y| {
        image::Rgb(std::array::from_fn(|c| {
            (f(f64::from(x) / s, f64::from(y) / s, c as f64) * 255.0).round().clamp(0.0, 255.0) as u8
        }))
    })
}

/// Checks the options against the device before any work: iterations, and each size (a bad
/// value is an [`OptionError`]).
pub fn validate(ctx: &GpuContext, fnet: &FeatureNet, options: &BenchOptions) -> Result<()> {
    if options.iterations == 0 {
        return Err(OptionError::NoIterations.into());
    }
    for &size in &options.sizes {
        let stylize = options.losses.stylize_options(size, options.optimizer, 1);
        crate::stylize::validate(&fnet.net, &stylize, 1)?;
        crate::stylize::check_device(ctx, fnet, &stylize, size as usize, size as usize)?;
    }
    Ok(())
}

/// Times the loop at one size with the default losses and layers (after [`validate`]).
pub fn run_size(
    ctx: &Arc<GpuContext>,
    fnet: &Arc<FeatureNet>,
    size: u32,
    options: &BenchOptions,
) -> Result<BenchResult> {
    // Warm-up, timed, profiled, and the final evaluation that reads the loss.
    let iterations = options.warmup + options.iterations + 1;
    let stylize_options = options.losses.stylize_options(size, options.optimizer, iterations);
    let before = ctx.allocated_bytes();
    let resident_before = ctx.resident_bytes();
    let choices_before = ctx.tuner().choices().len();
    let mut session = Stylizer::new(ctx.clone(), fnet.clone()).start(
        &synthetic_content(size),
        &[synthetic_style(size)],
        &stylize_options,
    )?;
    let plan_bytes = ctx.allocated_bytes() - before;
    let resident_bytes = ctx.resident_bytes().zip(resident_before).map(|(after, before)| after.saturating_sub(before));
    let choices = ctx.tuner().choices().split_off(choices_before);
    for _ in 0..options.warmup {
        session.step(false, false)?;
    }
    ctx.finish()?;
    let start = std::time::Instant::now();
    for _ in 0..options.iterations {
        session.step(false, false)?;
    }
    let host_seconds = start.elapsed().as_secs_f64();
    ctx.finish()?;
    let seconds = start.elapsed().as_secs_f64();
    let profile = session.step_profiled()?;
    let final_loss = session.step(true, false)?.losses.map_or(f32::NAN, |l| l.loss);
    if !final_loss.is_finite() {
        bail!("the loss became {final_loss} during the benchmark at {size} px");
    }
    let n = options.iterations as f64;
    let work = session.work();
    Ok(BenchResult {
        work,
        gflops_per_second: work.flops * n / seconds / 1e9,
        size,
        optimizer: options.optimizer,
        losses: options.losses,
        iterations: options.iterations,
        seconds,
        iterations_per_second: n / seconds,
        ms_per_iteration: seconds * 1e3 / n,
        host_ms_per_iteration: host_seconds * 1e3 / n,
        profile,
        plan_bytes,
        resident_bytes,
        largest_buffer_bytes: ctx.largest_buffer_bytes(),
        precision: fnet.kernels.precision(),
        final_loss,
        tune: ctx.tuner().mode(),
        choices,
    })
}
