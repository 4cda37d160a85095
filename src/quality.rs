//! How good a stylized image is: measures of an output O against its content photo P and style
//! image S.
//!
//! - [`artifacts`] = E_hf(O) / max(E_hf(P), E_hf(S)): pixel-level noise. E_hf is the mean of
//!   (Y − blur(Y))² over the image, Y the Rec. 601 luma in [0, 1] and blur a Gaussian of σ = 1 px
//!   ([`gaussian_blur`]). Noise makes it ≫ 1; clean results are about 0.5–2.
//! - [`color`] = SW₁(O, S) / SW₁(P, S), SW₁ the sliced Wasserstein-1 distance between the RGB
//!   pixel distributions ([`sliced_wasserstein`]). Below 1: the painting's palette is taken on.
//! - `style128` = E_style(O vs S) / E_style(P vs S) on [`STYLE_LAYERS`], all three images shrunk to
//!   longest side [`STYLE_SIDE`]: the large-scale look, blind to pixel noise.
//! - `content` = relative L2 distance of O's [`CONTENT_LAYER`] features from P's, at O's size.
//! - [`Reference::chroma`] = SW₁ between the (a*, b*) distributions (CIELAB, D65) of O and S over
//!   the same for P and S: the painting's palette (0: its colors; a grey painting wants grey).
//! - [`Reference::luma`] = W₁ between the L* distributions of O and S over the same for P and S.
//! - [`Reference::texture`] = SW₁ between the sets of 5×5 RGB patches of O and of S, summed over
//!   [`TEXTURE_LEVELS`] box-downsampled resolutions, over the same for P and S: the painting's
//!   strokes at every scale, with no network an optimizer could game through its features.
//!
//! P is resized (bicubic, [`image_io::resize_exact`]) to O's size wherever it is compared with
//! O; for `artifacts` and `color` so is S, for `chroma`, `luma` and `texture` S is resized to O's
//! longest side with its own aspect. All but `style128` and `content` are plain CPU arithmetic;
//! those two run the feature network on the GPU ([`Judge`]) and compute Gram matrices and
//! energies on the CPU in f64.
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
/// Directions of `chroma`'s sliced distance in the (a*, b*) plane, at evenly spaced angles over
/// a half turn.
pub const CHROMA_DIRECTIONS: usize = 64;
/// Side of `texture`'s square patches, in pixels.
pub const PATCH: usize = 5;
/// Random directions of `texture`'s sliced distance in the 3·[`PATCH`]² dimensional patch space.
pub const TEXTURE_DIRECTIONS: usize = 64;
/// Seed of `texture`'s directions.
pub const TEXTURE_SEED: u64 = 0x7E87_0BE5;
/// Resolutions `texture` compares: full, ½, ¼, ⅛ and 1/16 (2×2 box averages, repeated).
pub const TEXTURE_LEVELS: usize = 5;

/// The measures of one output.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Scores {
    /// High-frequency luma energy relative to the inputs' (≫ 1: noise).
    pub artifacts: f64,
    /// (a*, b*) distance from the style relative to the photo's (< 1: the painting's palette).
    pub chroma: f64,
    /// L* distance from the style relative to the photo's (< 1: the painting's tones).
    pub luma: f64,
    /// Patch distance from the style at five resolutions relative to the photo's (< 1: the
    /// painting's strokes).
    pub texture: f64,
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

/// `count` unit vectors of `dims` dimensions, uniform on the sphere: normalized Gaussian vectors
/// from a splitmix64 stream seeded with `seed` (Box–Muller for the normals).
pub fn random_directions(dims: usize, count: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut state = seed;
    let mut uniform = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64 // in (0, 1)
    };
    let mut normal = move || (-2.0 * uniform().ln()).sqrt() * (std::f64::consts::TAU * uniform()).cos();
    (0..count)
        .map(|_| {
            let d: Vec<f64> = (0..dims).map(|_| normal()).collect();
            let norm = d.iter().map(|v| v * v).sum::<f64>().sqrt();
            d.into_iter().map(|v| v / norm).collect()
        })
        .collect()
}

/// The [`DIRECTIONS`] unit vectors of `color`'s sliced Wasserstein distance in RGB space
/// ([`random_directions`] seeded with [`DIRECTION_SEED`]).
pub fn directions() -> Vec<[f64; 3]> {
    random_directions(3, DIRECTIONS, DIRECTION_SEED).into_iter().map(|d| [d[0], d[1], d[2]]).collect()
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
    quantile_distance(&quantiles(a), &quantiles(b))
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

/// CIELAB (D65 white) of an sRGB pixel: [L*, a*, b*].
pub fn lab(rgb: [u8; 3]) -> [f64; 3] {
    let linear = rgb.map(|v| {
        let c = v as f64 / 255.0;
        if c <= 0.04045 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) }
    });
    let [r, g, b] = linear;
    let x = (0.412_456_4 * r + 0.357_576_1 * g + 0.180_437_5 * b) / 0.950_47;
    let y = 0.212_672_9 * r + 0.715_152_2 * g + 0.072_175_0 * b;
    let z = (0.019_333_9 * r + 0.119_192_0 * g + 0.950_304_1 * b) / 1.088_83;
    const DELTA: f64 = 6.0 / 29.0;
    let f = |t: f64| if t > DELTA.powi(3) { t.cbrt() } else { t / (3.0 * DELTA * DELTA) + 4.0 / 29.0 };
    let (fx, fy, fz) = (f(x), f(y), f(z));
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

/// `img` with each 2×2 block averaged (odd last rows and columns dropped).
pub fn box_downsample(img: &RgbImage) -> RgbImage {
    let (w, h) = (img.width() / 2, img.height() / 2);
    RgbImage::from_fn(w, h, |x, y| {
        let sum =
            |c: usize| -> u32 { (0..4).map(|i| img.get_pixel(2 * x + i % 2, 2 * y + i / 2)[c] as u32).sum::<u32>() };
        image::Rgb([0, 1, 2].map(|c| ((sum(c) + 2) / 4) as u8))
    })
}

/// The distributions of one image that `chroma`, `luma` and `texture` compare, each kept as the
/// [`QUANTILES`] quantiles of its projections.
pub struct Signature {
    /// Per [`CHROMA_DIRECTIONS`] direction: quantiles of (a*, b*) projected on it.
    chroma: Vec<Vec<f64>>,
    /// Quantiles of L*.
    luma: Vec<f64>,
    /// Per resolution with room for a patch, per [`TEXTURE_DIRECTIONS`] direction: quantiles of
    /// the 5×5 RGB patches (values in [0, 1]) projected on it.
    texture: Vec<Vec<Vec<f64>>>,
}

impl Signature {
    /// The signature of `img`.
    pub fn new(img: &RgbImage) -> Self {
        let lab: Vec<[f64; 3]> = img.pixels().map(|p| lab(p.0)).collect();
        let chroma = (0..CHROMA_DIRECTIONS)
            .map(|k| {
                let angle = std::f64::consts::PI * k as f64 / CHROMA_DIRECTIONS as f64;
                let (s, c) = angle.sin_cos();
                quantiles(&mut lab.iter().map(|p| c * p[1] + s * p[2]).collect::<Vec<_>>())
            })
            .collect();
        let luma = quantiles(&mut lab.iter().map(|p| p[0]).collect::<Vec<_>>());
        let dirs = random_directions(3 * PATCH * PATCH, TEXTURE_DIRECTIONS, TEXTURE_SEED);
        let mut level = img.clone();
        let mut texture = Vec::new();
        for _ in 0..TEXTURE_LEVELS {
            if (level.width() as usize) < PATCH || (level.height() as usize) < PATCH {
                break;
            }
            texture.push(patch_quantiles(&level, &dirs));
            level = box_downsample(&level);
        }
        Self { chroma, luma, texture }
    }
}

/// Per direction of `dirs` (3·[`PATCH`]² long, channel-fastest within a pixel, pixels row by row
/// within the patch): the quantiles of every whole 5×5 patch of `img` projected on it.
fn patch_quantiles(img: &RgbImage, dirs: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let values: Vec<f64> = img.as_raw().iter().map(|&v| v as f64 / 255.0).collect();
    let (pw, ph) = (w + 1 - PATCH, h + 1 - PATCH);
    dirs.iter()
        .map(|d| {
            let mut projections = vec![0.0; pw * ph];
            for dy in 0..PATCH {
                for dx in 0..PATCH {
                    let tap = &d[3 * (dy * PATCH + dx)..3 * (dy * PATCH + dx) + 3];
                    for y in 0..ph {
                        let row = &values[3 * ((y + dy) * w + dx)..];
                        let out = &mut projections[y * pw..(y + 1) * pw];
                        for (x, o) in out.iter_mut().enumerate() {
                            let p = &row[3 * x..3 * x + 3];
                            *o += tap[0] * p[0] + tap[1] * p[1] + tap[2] * p[2];
                        }
                    }
                }
            }
            quantiles(&mut projections)
        })
        .collect()
}

/// The mean |difference| of two quantile vectors: W₁ of the distributions they describe.
fn quantile_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>() / a.len() as f64
}

/// The mean [`quantile_distance`] over matching directions.
fn sliced_distance(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    a.iter().zip(b).map(|(x, y)| quantile_distance(x, y)).sum::<f64>() / a.len() as f64
}

/// An output's `chroma`, `luma` and `texture` against a pair: the photo's and the style's
/// signatures, and the photo's distances from the style (the measures' denominators).
pub struct PaletteAndTexture {
    /// The style image's signature (at the outputs' longest side, its own aspect).
    style: Signature,
    /// The photo's distances from the style: chroma, luma, texture.
    baseline: [f64; 3],
    /// The size the photo and the style were resized for.
    size: (u32, u32),
}

impl PaletteAndTexture {
    /// The pair's signatures for outputs of `width`×`height`: the photo resized to that size,
    /// the style to its longest side with the style's aspect.
    pub fn new(content: &RgbImage, style: &RgbImage, width: u32, height: u32) -> Self {
        let style = Signature::new(&image_io::resize_max_side(style, width.max(height)));
        let photo = Signature::new(&image_io::resize_exact(content, width, height));
        let baseline = Self::distances(&photo, &style);
        Self { style, baseline, size: (width, height) }
    }

    /// Chroma, luma and texture distances of `a` from `b` (texture summed over the resolutions
    /// both have).
    fn distances(a: &Signature, b: &Signature) -> [f64; 3] {
        let texture = a.texture.iter().zip(&b.texture).map(|(x, y)| sliced_distance(x, y)).sum();
        [sliced_distance(&a.chroma, &b.chroma), quantile_distance(&a.luma, &b.luma), texture]
    }

    /// `chroma`, `luma` and `texture` of `output` (which must have the size this was made for).
    pub fn measure(&self, output: &RgbImage) -> [f64; 3] {
        assert_eq!(output.dimensions(), self.size, "output size");
        let own = Self::distances(&Signature::new(output), &self.style);
        [0, 1, 2].map(|i| own[i] / self.baseline[i])
    }
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

    /// All the measures of `output` against its content photo and style image.
    pub fn score(&self, output: &RgbImage, content: &RgbImage, style: &RgbImage) -> Result<Scores> {
        let [chroma, luma, texture] =
            PaletteAndTexture::new(content, style, output.width(), output.height()).measure(output);
        Ok(Scores {
            artifacts: artifacts(output, content, style),
            chroma,
            luma,
            texture,
            color: color(output, content, style),
            style128: self.style128(output, content, style)?,
            content: self.content(output, content)?,
        })
    }
}
