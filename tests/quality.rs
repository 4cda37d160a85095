//! The quality measures (`neural_style::quality`, `neural-style quality`) on small synthetic
//! images: noise raises `artifacts`, the style's palette lowers `color` and `chroma`, a grey
//! output of a grey painting has chroma 0, taking the colors away moves chroma and hardly luma,
//! noise and blur do not bring `texture` toward the painting's; the photo itself scores 1 on
//! every ratio and content 0, the style image itself scores color 0 and style128 0; and the blur, CIELAB and the
//! sliced Wasserstein distance on hand-checkable cases.

mod common;

use std::path::Path;

use common::*;
use image::{Rgb, RgbImage};
use neural_style::engine::FeatureNet;
use neural_style::quality::{self, Judge};
use neural_style::weights;

/// The synthetic content photo: smooth color ramps with a sharp-edged disc.
fn photo(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        let disc = ((fx - 0.6).powi(2) + (fy - 0.5).powi(2)).sqrt() < 0.25;
        let (r, g, b) = if disc { (0.9, 0.8, 0.2) } else { (0.2 + 0.5 * fx, 0.3 + 0.4 * fy, 0.6) };
        Rgb([r, g, b].map(|v: f32| (v * 255.0).round() as u8))
    })
}

/// The synthetic style image: soft diagonal bands in a palette unlike the photo's.
fn painting(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let t = (((x + y) as f32) * std::f32::consts::TAU / 24.0).sin() * 0.5 + 0.5;
        let (r, g, b) = (0.1 + 0.8 * t, 0.05 + 0.2 * t, 0.4 - 0.3 * t);
        Rgb([r, g, b].map(|v: f32| (v * 255.0).round() as u8))
    })
}

/// `img` with uniform noise of ±`amplitude` (in 0–255 units) added to every channel, clamped.
fn noisy(img: &RgbImage, amplitude: f32) -> RgbImage {
    let mut rng = Rng::new(7);
    let mut out = img.clone();
    for p in out.pixels_mut() {
        for c in 0..3 {
            p[c] = (p[c] as f32 + rng.next() * amplitude).round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// `img` with each channel's histogram matched to `target`'s (same pixel count): the k-th
/// smallest value of a channel becomes the k-th smallest of the target's.
fn match_histograms(img: &RgbImage, target: &RgbImage) -> RgbImage {
    assert_eq!(img.dimensions(), target.dimensions());
    let mut out = img.clone();
    for c in 0..3 {
        let mut order: Vec<usize> = (0..img.pixels().len()).collect();
        order.sort_by_key(|&i| img.as_raw()[3 * i + c]);
        let mut values: Vec<u8> = target.pixels().map(|p| p[c]).collect();
        values.sort();
        for (i, v) in order.into_iter().zip(values) {
            out.as_mut()[3 * i + c] = v;
        }
    }
    out
}

#[test]
fn gaussian_kernel_has_radius_three_sigma_and_sums_to_one() {
    let k = quality::gaussian_kernel(1.0);
    assert_eq!(k.len(), 7);
    // 1 + 2(e^-1/2 + e^-2 + e^-9/2) = 2.505970...
    let sum = 1.0 + 2.0 * ((-0.5f64).exp() + (-2.0f64).exp() + (-4.5f64).exp());
    for (i, w) in k.iter().enumerate() {
        let d = i as f64 - 3.0;
        assert!((w - (-d * d / 2.0).exp() / sum).abs() < 1e-15, "tap {i}: {w}");
    }
    assert!((k[3] - 0.399050).abs() < 1e-6);
}

#[test]
fn blur_spreads_an_impulse_into_the_separable_kernel_and_keeps_constants() {
    let (w, h) = (9, 9);
    let mut impulse = vec![0.0; w * h];
    impulse[4 * w + 4] = 1.0;
    let k = quality::gaussian_kernel(1.0);
    let blurred = quality::gaussian_blur(&impulse, w, h, 1.0);
    for y in 0..h {
        for x in 0..w {
            let (dy, dx) = (y as i64 - 4, x as i64 - 4);
            let want = if dx.abs() <= 3 && dy.abs() <= 3 { k[(dy + 3) as usize] * k[(dx + 3) as usize] } else { 0.0 };
            assert!((blurred[y * w + x] - want).abs() < 1e-15, "({x}, {y})");
        }
    }
    assert!((blurred[4 * w + 4] - 0.399050f64.powi(2)).abs() < 1e-6);
    // Clamped edges: a constant plane stays constant, also in the corners.
    let constant = quality::gaussian_blur(&[0.25; 12], 4, 3, 1.0);
    assert!(constant.iter().all(|v| (v - 0.25).abs() < 1e-15), "{constant:?}");
    // A step at the left edge of a 1-row plane: the first pixel sees the edge value repeated.
    let step = quality::gaussian_blur(&[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], 7, 1, 1.0);
    assert!((step[0] - (k[0] + k[1] + k[2] + k[3])).abs() < 1e-15);
}

#[test]
fn wasserstein_1d_is_the_mean_quantile_difference() {
    // One point in four moved by 1: a quarter of the quantiles differ by 1.
    assert_eq!(quality::wasserstein_1d(&mut [0.0, 1.0, 0.0, 0.0], &mut [0.0; 4]), 0.25);
    // A shift moves every quantile; order does not matter.
    assert_eq!(quality::wasserstein_1d(&mut [3.0, 1.0], &mut [0.5, 2.5]), 0.5);
    // Different sizes compare by quantiles: {0, 1} against {0, 0, 1, 1}.
    assert_eq!(quality::wasserstein_1d(&mut [0.0, 1.0], &mut [1.0, 0.0, 1.0, 0.0]), 0.0);
}

#[test]
fn sliced_wasserstein_of_a_translation_is_the_mean_projected_shift() {
    let dirs = quality::directions();
    assert_eq!(dirs.len(), quality::DIRECTIONS);
    assert_eq!(dirs, quality::directions(), "fixed seed");
    assert!(dirs.iter().all(|d| (d.iter().map(|v| v * v).sum::<f64>() - 1.0).abs() < 1e-12));
    let a: Vec<[f64; 3]> = (0..50).map(|i| [i as f64 / 50.0, (i * 7 % 50) as f64 / 50.0, 0.3]).collect();
    let shift = [0.1, -0.2, 0.05];
    let b: Vec<[f64; 3]> = a.iter().map(|p| [p[0] + shift[0], p[1] + shift[1], p[2] + shift[2]]).collect();
    let want = dirs.iter().map(|d| (d[0] * shift[0] + d[1] * shift[1] + d[2] * shift[2]).abs()).sum::<f64>()
        / dirs.len() as f64;
    assert!((quality::sliced_wasserstein(&a, &b) - want).abs() < 1e-12);
    assert_eq!(quality::sliced_wasserstein(&a, &a), 0.0);
}

#[test]
fn noise_raises_artifacts_and_blur_lowers_them() {
    let (p, s) = (photo(96, 64), painting(80, 80));
    let noise = quality::artifacts(&noisy(&p, 60.0), &p, &s);
    assert!(noise > 4.0, "noisy photo: artifacts {noise}");
    let blurred = quality::artifacts(&image::imageops::blur(&p, 2.0), &p, &s);
    assert!(blurred < 0.5, "blurred photo: artifacts {blurred}");
    assert!(quality::artifacts(&p, &p, &s) <= 1.0);
}

#[test]
fn the_styles_palette_lowers_color() {
    let (p, s) = (photo(96, 64), painting(80, 80));
    assert_eq!(quality::color(&p, &p, &s), 1.0);
    let recolored = match_histograms(&p, &image::imageops::resize(&s, 96, 64, image::imageops::FilterType::CatmullRom));
    let c = quality::color(&recolored, &p, &s);
    assert!(c < 0.2, "photo with the style's histograms: color {c}");
    assert_eq!(quality::color(&s, &p, &s), 0.0);
    let resized = neural_style::image_io::resize_exact(&s, 96, 64);
    assert!(quality::color(&resized, &p, &s) < 0.1);
}

#[test]
fn photo_scores_as_itself_and_style_image_matches_the_style() {
    let Some(ctx) = gpu() else { return };
    let fnet = FeatureNet::new(&ctx, weights::load(&default_weights()).unwrap());
    let judge = Judge::new(&ctx, &fnet);
    let (p, s) = (photo(96, 64), painting(80, 80));
    let own = judge.score(&p, &p, &s).unwrap();
    assert_eq!((own.color, own.style128, own.content), (1.0, 1.0, 0.0), "{own:?}");
    assert_eq!((own.chroma, own.luma, own.texture), (1.0, 1.0, 1.0), "{own:?}");
    assert!(own.artifacts <= 1.0, "{own:?}");
    let style = judge.score(&s, &p, &s).unwrap();
    assert_eq!(style.color, 0.0, "{style:?}");
    assert!(style.style128 < 1e-9, "{style:?}");
    assert!(style.content > 0.3, "{style:?}");
}

/// `img` in grey: every channel set to its Rec. 601 luma.
fn grey(img: &RgbImage) -> RgbImage {
    let mut out = img.clone();
    for p in out.pixels_mut() {
        let y = (0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32).round() as u8;
        p.0 = [y; 3];
    }
    out
}

#[test]
fn cielab_of_known_colors() {
    let close = |a: [f64; 3], b: [f64; 3]| a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 0.01);
    assert!(close(quality::lab([255, 255, 255]), [100.0, 0.0, 0.0]), "{:?}", quality::lab([255, 255, 255]));
    assert!(close(quality::lab([0, 0, 0]), [0.0, 0.0, 0.0]));
    // sRGB red, green and blue (D65), as colour-science tables give them.
    assert!(close(quality::lab([255, 0, 0]), [53.2408, 80.0925, 67.2032]), "{:?}", quality::lab([255, 0, 0]));
    assert!(close(quality::lab([0, 255, 0]), [87.7347, -86.1827, 83.1793]), "{:?}", quality::lab([0, 255, 0]));
    assert!(close(quality::lab([0, 0, 255]), [32.2970, 79.1875, -107.8602]), "{:?}", quality::lab([0, 0, 255]));
    for v in [1u8, 60, 128, 200] {
        let [_, a, b] = quality::lab([v; 3]);
        assert!(a.abs() < 1e-3 && b.abs() < 1e-3, "grey {v}: a* {a}, b* {b}");
    }
}

#[test]
fn box_downsample_averages_two_by_two_blocks() {
    let img = RgbImage::from_fn(5, 3, |x, y| Rgb([(10 * x + y) as u8, 100, (x * y) as u8]));
    let half = quality::box_downsample(&img);
    assert_eq!(half.dimensions(), (2, 1));
    // Block (0..2, 0..2): red 0, 1, 10, 11 → 5.5 → 6 (rounded half up); blue 0, 0, 0, 1 → 0.25 → 0.
    assert_eq!(half.get_pixel(0, 0).0, [6, 100, 0]);
    // Block (2..4, 0..2): red 20, 21, 30, 31 → 25.5 → 26; blue 0, 2, 0, 3 → 1.25 → 1.
    assert_eq!(half.get_pixel(1, 0).0, [26, 100, 1]);
}

#[test]
fn the_photo_scores_one_and_the_painting_zero_on_palette_and_texture() {
    let (p, s) = (photo(96, 64), painting(80, 80));
    let pair = quality::PaletteAndTexture::new(&p, &s, 96, 64);
    assert_eq!(pair.measure(&p), [1.0, 1.0, 1.0]);
    // The painting at the outputs' longest side with its own aspect is what the measures compare
    // with; its 96×64 crop has the same palette and strokes.
    let crop = image::imageops::crop_imm(&neural_style::image_io::resize_max_side(&s, 96), 0, 0, 96, 64).to_image();
    let [chroma, luma, texture] = pair.measure(&crop);
    assert!(chroma < 0.1 && luma < 0.1 && texture < 0.2, "the painting's crop: {chroma} {luma} {texture}");
}

#[test]
fn a_grey_output_of_a_grey_painting_has_no_chroma_distance() {
    let (p, s) = (photo(96, 64), grey(&painting(80, 80)));
    let pair = quality::PaletteAndTexture::new(&p, &s, 96, 64);
    let [chroma, ..] = pair.measure(&grey(&p));
    assert!(chroma < 0.01, "grey photo against a grey painting: chroma {chroma}");
    // The colored photo is at 1, by definition; the grey one is not, whatever its structure.
    assert_eq!(pair.measure(&p)[0], 1.0);
}

#[test]
fn a_palette_change_moves_chroma_and_not_luma() {
    let (p, s) = (photo(96, 64), painting(80, 80));
    let pair = quality::PaletteAndTexture::new(&p, &s, 96, 64);
    let recolored = match_histograms(&p, &neural_style::image_io::resize_exact(&s, 96, 64));
    let [chroma, luma, _] = pair.measure(&recolored);
    // Per-channel histograms are not the joint palette, but most of the way there.
    assert!(chroma < 0.35, "photo with the painting's histograms: chroma {chroma}");
    // The photo without its colors keeps its lightness: chroma moves, luma hardly.
    let [chroma_grey, luma_grey, _] = pair.measure(&grey(&p));
    assert!((chroma_grey - 1.0).abs() > 0.15, "grey photo: chroma {chroma_grey}");
    assert!((luma_grey - 1.0).abs() < (chroma_grey - 1.0).abs() / 2.0, "grey: luma {luma_grey}, chroma {chroma_grey}");
    assert!(luma < 1.0, "the painting's histograms also move luma toward it: {luma}");
}

#[test]
fn noise_and_blur_do_not_pass_for_the_paintings_texture() {
    let (p, s) = (photo(96, 64), painting(80, 80));
    let pair = quality::PaletteAndTexture::new(&p, &s, 96, 64);
    for (what, img) in [("noise", noisy(&p, 60.0)), ("blur", image::imageops::blur(&p, 2.0))] {
        let texture = pair.measure(&img)[2];
        assert!(texture > 0.85, "{what}: texture {texture}");
    }
}

fn save(img: &RgbImage, path: &Path) -> String {
    img.save(path).unwrap();
    path.to_str().unwrap().to_string()
}

/// The synthetic photo, painting and noisy photo written into `dir`: their paths.
fn pair_files(dir: &Path) -> [String; 3] {
    let p = photo(96, 64);
    [
        save(&p, &dir.join("photo.png")),
        save(&painting(80, 80), &dir.join("style.png")),
        save(&noisy(&p, 60.0), &dir.join("noisy.png")),
    ]
}

#[test]
fn cli_prints_the_measures_per_output_as_json() {
    if gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let [content, style, noise] = pair_files(dir.path());
    let out = neural_style(&["quality", "--json", "--content", &content, "--style", &style, &content, &noise]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["output"], content.as_str());
    assert_eq!(lines[0]["color"], 1.0);
    assert_eq!(lines[0]["style128"], 1.0);
    assert_eq!(lines[0]["content"], 0.0);
    assert_eq!(lines[1]["output"], noise.as_str());
    assert!(lines[1]["artifacts"].as_f64().unwrap() > 4.0, "{}", lines[1]);
    for key in ["chroma", "luma", "texture", "color", "style128", "content"] {
        assert!(lines[1][key].as_f64().unwrap().is_finite(), "{}", lines[1]);
    }
    assert!(lines[1].get("reference").is_none(), "{}", lines[1]);
}

#[test]
fn cli_scores_a_reference_picture_beside_each_output() {
    if gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let [content, style, noise] = pair_files(dir.path());
    // The reference is the photo at twice the size: scored at each output's size, it is the photo.
    let reference = save(&photo(192, 128), &dir.path().join("reference.png"));
    let args = ["quality", "--content", &content, "--style", &style, "--reference", &reference, &noise];
    let out = neural_style(&[&args[..], &["--json"][..]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line: serde_json::Value = serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    assert!(line["artifacts"].as_f64().unwrap() > 4.0, "{line}");
    let r = &line["reference"];
    for key in ["chroma", "luma", "texture"] {
        let v = r[key].as_f64().unwrap();
        assert!((v - 1.0).abs() < 0.1, "reference {key}: {line}");
    }
    assert!(r["content"].as_f64().unwrap() < 0.1, "{line}");
    let text = neural_style(&args);
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with(&format!("{noise}: artifacts ")) && lines[0].contains("chroma"), "{text}");
    assert!(lines[1].starts_with("  reference: artifacts ") && lines[1].contains("texture"), "{text}");
}

#[test]
fn cli_reports_a_bad_image_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let content = save(&photo(32, 32), &dir.path().join("photo.png"));
    let bad = dir.path().join("not-an-image.png");
    std::fs::write(&bad, "plain text").unwrap();
    let bad = bad.to_str().unwrap();
    for args in [
        ["quality", "--content", &content, "--style", bad, &content],
        ["quality", "--content", &content, "--style", &content, bad],
    ] {
        let out = neural_style(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "expected failure: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(lines[0].starts_with("error: ") && lines[0].contains("not-an-image.png"), "{stderr}");
    }
}
