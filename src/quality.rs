//! How good a stylized image is: four measures of an output O against its content photo P and
//! style image S (issue 10's "How quality is measured").
//!
//! - [`artifacts`] = E_hf(O) / max(E_hf(P), E_hf(S)): pixel-level noise. E_hf is the mean of
//!   (Y − blur(Y))² over the image, Y the Rec. 601 luma in [0, 1] and blur a Gaussian of σ = 1 px
//!   ([`gaussian_blur`]). Noise makes it ≫ 1; clean results are about 0.5–2.
//! - [`color`] = SW₁(O, S) / SW₁(P, S), SW₁ the sliced Wasserstein-1 distance between the RGB
//!   pixel distributions ([`sliced_wasserstein`]). Below 1: the painting's palette is taken on.
//! - `style128` = E_style(O vs S) / E_style(P vs S) on [`STYLE_LAYERS`], all three images shrunk to
//!   longest side [`STYLE_SIDE`]: the large-scale look, blind to pixel noise.
//! - `content` = relative L2 distance of O's [`CONTENT_LAYER`] features from P's, at O's size.
//!
//! P and S are resized (bicubic, [`image_io::resize_exact`]) to O's size wherever they are compared
//! with it pixel for pixel. The first two measures are plain CPU arithmetic; the last two run the
//! feature network on the GPU ([`Judge`]) and compute Gram matrices and energies on the CPU in f64.
//! A ratio whose denominator is 0 (P identical to S, or both flat) is infinite or NaN.

use anyhow::Result;
use image::RgbImage;
use serde::Serialize;

use crate::arch::{BlockPart, LayerId};
use crate::engine::{FeatureNet, ForwardPlan, PlanOptions};
use crate::gpu::GpuContext;
use crate::image_io;
use crate::reference::{self, Tensor};

/// The layers `style128` compares, shallowest first (the last is the deepest the forward pass runs to).
pub const STYLE_LAYERS: [LayerId; 5] = [
    LayerId::Stem,
    LayerId::Block { index: 1, part: BlockPart::Expand },
    LayerId::Block { index: 3, part: BlockPart::Expand },
    LayerId::Block { index: 4, part: BlockPart::Expand },
    LayerId::Block { index: 6, part: BlockPart::Expand },
];
/// The layer `content` compares.
pub const CONTENT_LAYER: LayerId = LayerId::Block { index: 4, part: BlockPart::Expand };
/// Rows and columns at each edge of a layer that `style128`'s Gram matrices leave out, as the
/// default style loss does: with every pixel, the zero-padded edge of `block1.expand` alone made
/// up 99% of E_style between a 128 px portrait and a painting of another aspect, and no image
/// could move it.
pub const STYLE_MARGIN: usize = 1;
/// Longest side of the three images `style128` compares.
pub const STYLE_SIDE: u32 = 128;
/// σ of the Gaussian blur in `artifacts`, in pixels.
pub const BLUR_SIGMA: f64 = 1.0;
/// Random directions of the sliced Wasserstein distance.
pub const DIRECTIONS: usize = 128;
/// Quantiles per direction of the sliced Wasserstein distance.
pub const QUANTILES: usize = 256;
/// Seed of the sliced Wasserstein directions (fixed, so every run uses the same ones).
pub const DIRECTION_SEED: u64 = 0x5EED_C010;

/// The four measures of one output.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Scores {
    /// High-frequency luma energy relative to the inputs' (≫ 1: noise).
    pub artifacts: f64,
    /// Palette distance from the style relative to the photo's (< 1: the style's colors).
    pub color: f64,
    /// Gram style energy at longest side 128 relative to the photo's (< 1: the style's look).
    pub style128: f64,
    /// Relative L2 distance of the content-layer features from the photo's (0: the photo's content).
    pub content: f64,
}

/// Rec. 601 luma (0.299 R + 0.587 G + 0.114 B) in [0, 1], row-major.
pub fn luma(img: &RgbImage) -> Vec<f64> {
    img.pixels().map(|p| (0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64) / 255.0).collect()
}

/// The normalized 1-D Gaussian kernel of `sigma` (taps −r…r, r = ⌈3σ⌉).
pub fn gaussian_kernel(sigma: f64) -> Vec<f64> {
    let radius = (3.0 * sigma).ceil() as i64;
    let taps: Vec<f64> = (-radius..=radius).map(|i| (-((i * i) as f64) / (2.0 * sigma * sigma)).exp()).collect();
    let sum: f64 = taps.iter().sum();
    taps.into_iter().map(|t| t / sum).collect()
}

/// Gaussian blur of a row-major `width`×`height` plane: the separable kernel of
/// [`gaussian_kernel`], along rows then columns, reading coordinates outside the plane at the
/// nearest edge pixel (clamped edges).
pub fn gaussian_blur(plane: &[f64], width: usize, height: usize, sigma: f64) -> Vec<f64> {
    assert_eq!(plane.len(), width * height, "plane size");
    let kernel = gaussian_kernel(sigma);
    let radius = (kernel.len() / 2) as i64;
    let tap = |i: usize, k: usize, n: usize| (i as i64 + k as i64 - radius).clamp(0, n as i64 - 1) as usize;
    let mut rows = vec![0.0; plane.len()];
    for y in 0..height {
        for x in 0..width {
            rows[y * width + x] = kernel.iter().enumerate().map(|(k, w)| w * plane[y * width + tap(x, k, width)]).sum();
        }
    }
    let mut out = vec![0.0; plane.len()];
    for y in 0..height {
        for x in 0..width {
            out[y * width + x] = kernel.iter().enumerate().map(|(k, w)| w * rows[tap(y, k, height) * width + x]).sum();
        }
    }
    out
}

/// E_hf: the mean of (Y − blur(Y))², Y the [`luma`], blur of σ = [`BLUR_SIGMA`].
pub fn high_frequency_energy(img: &RgbImage) -> f64 {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let y = luma(img);
    let blurred = gaussian_blur(&y, w, h, BLUR_SIGMA);
    y.iter().zip(&blurred).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / y.len() as f64
}

/// `artifacts` = E_hf(O) / max(E_hf(P), E_hf(S)), P and S resized to O's size.
pub fn artifacts(output: &RgbImage, content: &RgbImage, style: &RgbImage) -> f64 {
    let (w, h) = output.dimensions();
    let reference = high_frequency_energy(&image_io::resize_exact(content, w, h))
        .max(high_frequency_energy(&image_io::resize_exact(style, w, h)));
    high_frequency_energy(output) / reference
}

/// The [`DIRECTIONS`] unit vectors of the sliced Wasserstein distance: normalized Gaussian
/// 3-vectors (uniform on the sphere) from a splitmix64 stream seeded with [`DIRECTION_SEED`]
/// (Box–Muller for the normals).
pub fn directions() -> Vec<[f64; 3]> {
    let mut state = DIRECTION_SEED;
    let mut uniform = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64 // in (0, 1)
    };
    let mut normal = move || (-2.0 * uniform().ln()).sqrt() * (std::f64::consts::TAU * uniform()).cos();
    (0..DIRECTIONS)
        .map(|_| {
            let d = [normal(), normal(), normal()];
            let norm = d.iter().map(|v| v * v).sum::<f64>().sqrt();
            d.map(|v| v / norm)
        })
        .collect()
}

/// The [`QUANTILES`] quantiles of `values`: sorted, quantile k (0-based) is the sorted value at
/// index ⌊(k + ½)/K · n⌋ (the midpoint of the k-th of K equal probability bins).
pub fn quantiles(values: &mut [f64]) -> Vec<f64> {
    assert!(!values.is_empty(), "quantiles of nothing");
    values.sort_by(f64::total_cmp);
    let n = values.len();
    (0..QUANTILES).map(|k| values[(((k as f64 + 0.5) / QUANTILES as f64 * n as f64) as usize).min(n - 1)]).collect()
}

/// W₁ between two 1-D distributions: the mean |quantile difference| over the [`QUANTILES`] quantiles.
pub fn wasserstein_1d(a: &mut [f64], b: &mut [f64]) -> f64 {
    let (qa, qb) = (quantiles(a), quantiles(b));
    qa.iter().zip(&qb).map(|(x, y)| (x - y).abs()).sum::<f64>() / QUANTILES as f64
}

/// Sliced Wasserstein-1 distance between two sets of RGB points: the mean over [`directions`] of
/// the [`wasserstein_1d`] distance between the points' projections on the direction.
pub fn sliced_wasserstein(a: &[[f64; 3]], b: &[[f64; 3]]) -> f64 {
    let project = |points: &[[f64; 3]], d: &[f64; 3]| -> Vec<f64> {
        points.iter().map(|p| p[0] * d[0] + p[1] * d[1] + p[2] * d[2]).collect()
    };
    let dirs = directions();
    dirs.iter().map(|d| wasserstein_1d(&mut project(a, d), &mut project(b, d))).sum::<f64>() / dirs.len() as f64
}

/// An image's pixels as RGB points in [0, 1]³.
pub fn rgb_points(img: &RgbImage) -> Vec<[f64; 3]> {
    img.pixels().map(|p| [p[0], p[1], p[2]].map(|v| v as f64 / 255.0)).collect()
}

/// `color` = SW₁(O, S) / SW₁(P, S), P and S resized to O's size.
pub fn color(output: &RgbImage, content: &RgbImage, style: &RgbImage) -> f64 {
    let (w, h) = output.dimensions();
    let style = rgb_points(&image_io::resize_exact(style, w, h));
    let content = rgb_points(&image_io::resize_exact(content, w, h));
    sliced_wasserstein(&rgb_points(output), &style) / sliced_wasserstein(&content, &style)
}

/// E_style of one image's Gram matrices against another's: Σ over layers (weight 1 each) of the
/// mean over the C×C entries of (G − A)², as the README defines it.
pub fn style_energy(grams: &[Vec<f64>], targets: &[Vec<f64>]) -> f64 {
    grams
        .iter()
        .zip(targets)
        .map(|(g, a)| g.iter().zip(a).map(|(x, y)| (x - y).powi(2)).sum::<f64>() / g.len() as f64)
        .sum()
}

/// Computes the measures that need the feature network, on a device.
pub struct Judge<'a> {
    ctx: &'a GpuContext,
    fnet: &'a FeatureNet,
}

impl<'a> Judge<'a> {
    /// A judge running `fnet` on `ctx`.
    pub fn new(ctx: &'a GpuContext, fnet: &'a FeatureNet) -> Self {
        Self { ctx, fnet }
    }

    /// The activations of `layers` for `img`; the forward pass runs up to the last of `layers`,
    /// which must be the deepest.
    fn features(&self, img: &RgbImage, layers: &[LayerId]) -> Result<Vec<Tensor>> {
        let (w, h) = (img.width() as usize, img.height() as usize);
        crate::engine::check_size(self.ctx, self.fnet, w, h)?;
        let until = layers.last().copied();
        let plan = ForwardPlan::new(self.ctx, self.fnet, w, h, &PlanOptions { until, ..Default::default() })?;
        plan.run(self.ctx, &image_io::to_chw(img))?;
        layers
            .iter()
            .map(|&id| {
                let info = plan.layer_buffer(id)?.0;
                Ok(Tensor::from_f32(info.channels, info.height, info.width, &plan.read_layer(self.ctx, id)?))
            })
            .collect()
    }

    /// The Gram matrices of [`STYLE_LAYERS`] for `img`, without their [`STYLE_MARGIN`].
    fn grams(&self, img: &RgbImage) -> Result<Vec<Vec<f64>>> {
        Ok(self.features(img, &STYLE_LAYERS)?.iter().map(|f| reference::gram(f, STYLE_MARGIN)).collect())
    }

    /// `style128` = E_style(O vs S) / E_style(P vs S) on [`STYLE_LAYERS`]: O resized to longest
    /// side [`STYLE_SIDE`] keeping its aspect, P resized to that same size, S resized to longest
    /// side [`STYLE_SIDE`] keeping its own aspect.
    pub fn style128(&self, output: &RgbImage, content: &RgbImage, style: &RgbImage) -> Result<f64> {
        let output = image_io::resize_max_side(output, STYLE_SIDE);
        let content = image_io::resize_exact(content, output.width(), output.height());
        let style = self.grams(&image_io::resize_max_side(style, STYLE_SIDE))?;
        Ok(style_energy(&self.grams(&output)?, &style) / style_energy(&self.grams(&content)?, &style))
    }

    /// `content` = ‖F_O − F_P‖ / ‖F_P‖, F the [`CONTENT_LAYER`] activations at O's size (P resized to it).
    pub fn content(&self, output: &RgbImage, content: &RgbImage) -> Result<f64> {
        let content = image_io::resize_exact(content, output.width(), output.height());
        let f_out = &self.features(output, &[CONTENT_LAYER])?[0].data;
        let f_photo = &self.features(&content, &[CONTENT_LAYER])?[0].data;
        Ok(reference::relative_l2(f_out, f_photo))
    }

    /// All four measures of `output` against its content photo and style image.
    pub fn score(&self, output: &RgbImage, content: &RgbImage, style: &RgbImage) -> Result<Scores> {
        Ok(Scores {
            artifacts: artifacts(output, content, style),
            color: color(output, content, style),
            style128: self.style128(output, content, style)?,
            content: self.content(output, content)?,
        })
    }
}
