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
    let n = x.len();
    let mut order: Vec<usize> = (0..n).collect();
    for basis in bases() {
        for axis in &basis {
            let quantiles = Quantiles::new(&target, &weights, axis);
            let projected: Vec<f64> = x.iter().map(|p| dot(p, axis)).collect();
            order.sort_by(|&a, &b| projected[a].total_cmp(&projected[b]));
            for (rank, &i) in order.iter().enumerate() {
                let shift = quantiles.at((rank as f64 + 0.5) / n as f64) - projected[i];
                x[i] = [0, 1, 2].map(|k| x[i][k] + shift * axis[k]);
            }
        }
    }
    let mut out = content.clone();
    for (pixel, p) in out.pixels_mut().zip(&x) {
        pixel.0 = p.map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8);
    }
    out
}
