//! `neural_style::palette::transfer` (the default starting image, `--init palette`): the photo
//! takes the painting's colors and keeps its layout.

use image::{Rgb, RgbImage};
use neural_style::{palette, quality};

/// A photo-like image: a blue-to-green ramp with a bright orange disc.
fn photo(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        let disc = ((fx - 0.6).powi(2) + (fy - 0.5).powi(2)).sqrt() < 0.25;
        let (r, g, b) = if disc { (0.95, 0.6, 0.1) } else { (0.1 + 0.2 * fx, 0.3 + 0.5 * fy, 0.8 - 0.3 * fx) };
        Rgb([r, g, b].map(|v: f32| (v * 255.0).round() as u8))
    })
}

/// A painting-like image: dark reds and yellows in diagonal bands.
fn painting(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let t = (((x + 2 * y) as f32) * std::f32::consts::TAU / 17.0).sin() * 0.5 + 0.5;
        Rgb([0.3 + 0.6 * t, 0.1 + 0.6 * t * t, 0.05 + 0.1 * t].map(|v: f32| (v * 255.0).round() as u8))
    })
}

fn luma(p: &Rgb<u8>) -> f64 {
    0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64
}

/// Pearson correlation of two images' lumas.
fn luma_correlation(a: &RgbImage, b: &RgbImage) -> f64 {
    let (x, y): (Vec<f64>, Vec<f64>) = a.pixels().zip(b.pixels()).map(|(p, q)| (luma(p), luma(q))).unzip();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (mx, my) = (mean(&x), mean(&y));
    let cov: f64 = x.iter().zip(&y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let var = |v: &[f64], m: f64| v.iter().map(|a| (a - m).powi(2)).sum::<f64>();
    cov / (var(&x, mx) * var(&y, my)).sqrt()
}

#[test]
fn the_photo_takes_the_paintings_palette_and_keeps_its_layout() {
    let (p, s) = (photo(64, 48), painting(50, 70));
    let out = palette::transfer(&p, &[(&s, 1.0)]);
    assert_eq!(out.dimensions(), p.dimensions());
    let measures = quality::PaletteAndTexture::new(&p, &s, 64, 48);
    let [chroma, luma, _] = measures.measure(&out);
    assert!(chroma < 0.15, "chroma {chroma}");
    assert!(luma < 0.3, "luma {luma}");
    // The disc and the ramp are still where they were: the lightness order is kept.
    let r = luma_correlation(&out, &p);
    assert!(r > 0.6, "luma correlation with the photo {r}");
    assert_eq!(out, palette::transfer(&p, &[(&s, 1.0)]), "the same inputs give the same start");
}

#[test]
fn a_grey_painting_makes_a_grey_start() {
    let p = photo(40, 30);
    let grey = RgbImage::from_fn(30, 30, |x, y| Rgb([((x * 7 + y * 3) % 200 + 20) as u8; 3]));
    let out = palette::transfer(&p, &[(&grey, 1.0)]);
    let spreads: Vec<u8> = out.pixels().map(|q| q.0.iter().max().unwrap() - q.0.iter().min().unwrap()).collect();
    let mean = spreads.iter().map(|&v| f64::from(v)).sum::<f64>() / spreads.len() as f64;
    // The photo's own spread is about 150 (blue against orange).
    assert!(mean <= 6.0, "mean channel spread {mean}");
}

#[test]
fn blend_weights_choose_whose_palette_counts() {
    let p = photo(40, 30);
    let red = RgbImage::from_pixel(10, 10, Rgb([200, 20, 20]));
    let blue = RgbImage::from_pixel(50, 50, Rgb([20, 20, 200]));
    let mean_red = |img: &RgbImage| img.pixels().map(|q| q[0] as f64).sum::<f64>() / img.pixels().len() as f64;
    // Weights count per image, not per pixel: the small red image at 0.9 outweighs the large blue.
    let mostly_red = palette::transfer(&p, &[(&red, 0.9), (&blue, 0.1)]);
    let mostly_blue = palette::transfer(&p, &[(&red, 0.1), (&blue, 0.9)]);
    assert!(mean_red(&mostly_red) > 150.0, "{}", mean_red(&mostly_red));
    assert!(mean_red(&mostly_blue) < 60.0, "{}", mean_red(&mostly_blue));
    // Nothing to take a palette from: the photo itself.
    assert_eq!(palette::transfer(&p, &[(&red, 0.0)]), p);
}
