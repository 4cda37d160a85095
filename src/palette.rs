//! The content photo in the style's palette: its RGB pixels moved onto the style images' pixel
//! distribution by sliced optimal transport (Pitié et al. 2005, Rabin et al. 2011): in each of
//! [`ROTATIONS`] fixed random orthonormal bases, each coordinate of the photo's pixels is matched
//! to the style's by rank (1-D optimal transport). The layout and the lightness order of the
//! photo stay; its colors become the painting's. This is the default starting image
//! ([`crate::stylize::Init::Palette`]): the optimizer then starts from the painting's palette
//! instead of having to travel there through the network's features.

use image::RgbImage;

use crate::quality::random_directions;

/// Rotations of the sliced transport.
pub const ROTATIONS: usize = 30;
/// Pixels of the photo each 1-D matching step is learnt on.
pub const SAMPLES: usize = 16384;
/// Seed of the rotations (fixed: the same photo and style give the same start).
pub const SEED: u64 = 0x9A1E_77E5;

/// A weighted set of points in one direction, sorted, with the cumulative weight at each point:
/// the quantile function of the style's distribution along that direction.
struct Quantiles {
    values: Vec<f64>,
    cumulative: Vec<f64>,
}

impl Quantiles {
    fn new(points: &[[f64; 3]], weights: &[f64], axis: &[f64; 3]) -> Self {
        let mut projected: Vec<(f64, f64)> = points.iter().zip(weights).map(|(p, &w)| (dot(p, axis), w)).collect();
        projected.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total: f64 = weights.iter().sum();
        let mut sum = 0.0;
        let cumulative = projected
            .iter()
            .map(|&(_, w)| {
                sum += w / total;
                sum
            })
            .collect();
        Self { values: projected.into_iter().map(|(v, _)| v).collect(), cumulative }
    }

    /// The smallest value whose cumulative weight reaches `q` (in (0, 1)).
    fn at(&self, q: f64) -> f64 {
        let i = self.cumulative.partition_point(|&c| c < q);
        self.values[i.min(self.values.len() - 1)]
    }
}

/// Equal values of sorted `from` merged into one point that maps to the mean of their `to`: tied
/// pixels (a flat region) move to the middle of the quantiles they share.
fn merge_ties(from: &[f64], to: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let (mut merged_from, mut merged_to) = (Vec::new(), Vec::new());
    let mut start = 0;
    while start < from.len() {
        let end = start + from[start..].partition_point(|&f| f == from[start]);
        merged_from.push(from[start]);
        merged_to.push(to[start..end].iter().sum::<f64>() / (end - start) as f64);
        start = end;
    }
    (merged_from, merged_to)
}

/// The piecewise-linear map through the points (`from`[j], `to`[j]) (`from` sorted) at `v`;
/// outside `from`'s range, shifted as its end point is.
fn monotone_map(from: &[f64], to: &[f64], v: f64) -> f64 {
    let last = from.len() - 1;
    let j = from.partition_point(|&f| f <= v);
    if j == 0 {
        return v - from[0] + to[0];
    }
    if j > last {
        return v - from[last] + to[last];
    }
    let (a, b) = (from[j - 1], from[j]);
    let t = if b > a { (v - a) / (b - a) } else { 0.0 };
    to[j - 1] + t * (to[j] - to[j - 1])
}

fn dot(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// [`ROTATIONS`] orthonormal bases of RGB space: Gram–Schmidt on random directions.
fn bases() -> Vec<[[f64; 3]; 3]> {
    let dirs = random_directions(3, 3 * ROTATIONS, SEED);
    dirs.chunks(3)
        .map(|d| {
            let mut basis = [[0.0; 3]; 3];
            for i in 0..3 {
                let mut v = [d[i][0], d[i][1], d[i][2]];
                for b in &basis[..i] {
                    let along = dot(&v, b);
                    v = [0, 1, 2].map(|k| v[k] - along * b[k]);
                }
                let norm = dot(&v, &v).sqrt();
                basis[i] = v.map(|x| x / norm);
            }
            basis
        })
        .collect()
}

/// `content` with the palette of `styles` (each with its blend weight; a style's pixels weigh
/// its blend weight over its pixel count, so a large painting does not outweigh a small one),
/// clamped to [0, 255].
pub fn transfer(content: &RgbImage, styles: &[(&RgbImage, f32)]) -> RgbImage {
    let to_points =
        |img: &RgbImage| -> Vec<[f64; 3]> { img.pixels().map(|p| p.0.map(|v| f64::from(v) / 255.0)).collect() };
    let mut target = Vec::new();
    let mut weights = Vec::new();
    for (img, blend) in styles {
        let points = to_points(img);
        weights.extend(std::iter::repeat_n(f64::from(*blend) / points.len() as f64, points.len()));
        target.extend(points);
    }
    let mut x = to_points(content);
    if target.is_empty() || x.is_empty() || weights.iter().sum::<f64>() <= 0.0 {
        return content.clone();
    }
    // Each 1-D step is learnt on at most SAMPLES of the photo's pixels (evenly strided) as a
    // monotone piecewise-linear map from their sorted projections to the style's quantiles, and
    // applied to every pixel: the same map as matching ranks on small images, and a 2048 px photo
    // costs a few sorts of SAMPLES values, not of millions.
    let stride = x.len().div_ceil(SAMPLES);
    let sample: Vec<usize> = (0..x.len()).step_by(stride).collect();
    let m = sample.len();
    for basis in bases() {
        for axis in &basis {
            let quantiles = Quantiles::new(&target, &weights, axis);
            let mut source: Vec<f64> = sample.iter().map(|&i| dot(&x[i], axis)).collect();
            source.sort_by(f64::total_cmp);
            let mapped: Vec<f64> = (0..m).map(|j| quantiles.at((j as f64 + 0.5) / m as f64)).collect();
            let (source, mapped) = merge_ties(&source, &mapped);
            for p in x.iter_mut() {
                let v = dot(p, axis);
                let shift = monotone_map(&source, &mapped, v) - v;
                *p = [0, 1, 2].map(|k| p[k] + shift * axis[k]);
            }
        }
    }
    let mut out = content.clone();
    for (pixel, p) in out.pixels_mut().zip(&x) {
        pixel.0 = p.map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8);
    }
    out
}
