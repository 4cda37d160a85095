//! `--original-colors`: the `original_colors` kernel against its CPU reference, and a run whose
//! written image (and snapshot) keeps the content photo's chroma but not its luma.

mod common;

use std::process::Command;
use std::sync::Arc;

use common::*;
use image::RgbImage;
use neural_style::engine::FeatureNet;
use neural_style::kernels::Kernels;
use neural_style::kernels::color::{ColorParams, OriginalColors};
use neural_style::reference::{self, Tensor};
use neural_style::stylize::{Control, Event, Init, OptimizerKind, StylizeOptions, Stylizer};
use neural_style::{image_io, weights};

fn load(name: &str) -> RgbImage {
    image_io::load_rgb(&shared().join("images").join(name)).expect("image")
}

#[test]
fn original_colors_kernel_matches_cpu_reference() {
    let Some(ctx) = gpu() else { return };
    let k = Kernels::new(&ctx);
    let mut rng = Rng::new(11);
    let (h, w) = (23, 37);
    let n = 3 * h * w;
    // The optimized image may leave [0, 1] (plain L-BFGS): values in [-0.2, 1.2).
    let image: Vec<f32> = rng.vec(n, 0.7).iter().map(|v| v + 0.5).collect();
    let photo: Vec<f32> = rng.vec(n, 0.5).iter().map(|v| v + 0.5).collect();
    let (ib, pb) = (ctx.storage_buffer("image", &image), ctx.storage_buffer("photo", &photo));
    let out = ctx.zeroed_buffer("out", n);
    let op = k.color.original_colors(
        &ctx,
        OriginalColors { image: &ib, photo: &pb, output: &out },
        &ColorParams::new(h * w),
    );
    neural_style::kernels::run(&ctx, &[op]).unwrap();
    let got = ctx.read_buffer(&out, n).unwrap();
    let want = reference::original_colors(&Tensor::from_f32(3, h, w, &image), &Tensor::from_f32(3, h, w, &photo));
    let max = got.iter().zip(&want.data).map(|(&g, &w)| (g as f64 - w).abs()).fold(0.0, f64::max);
    eprintln!("original_colors: max |GPU − CPU| = {max:.2e}");
    assert!(max <= 1e-5, "original_colors: GPU differs from the CPU reference by {max:e}");
}

#[test]
fn reference_ycbcr_round_trips() {
    let mut rng = Rng::new(3);
    for _ in 0..100 {
        let rgb: [f64; 3] = std::array::from_fn(|_| (rng.next() as f64 + 1.0) / 2.0);
        let back = reference::rgb_from_ycbcr(reference::ycbcr(rgb));
        for c in 0..3 {
            assert!((back[c] - rgb[c]).abs() < 1e-12, "{rgb:?} → {back:?}");
        }
        let gray = reference::ycbcr([rgb[0]; 3]);
        assert!((gray[1] - 0.5).abs() < 1e-12 && (gray[2] - 0.5).abs() < 1e-12, "gray has chroma: {gray:?}");
    }
}

fn pixel(img: &RgbImage, x: u32, y: u32) -> [f64; 3] {
    img.get_pixel(x, y).0.map(|v| v as f64 / 255.0)
}

/// Over the pixels of `out` where no channel is clipped at 0 or 255 (the final clamp changes
/// the chroma there): the largest chroma difference from `photo` and the fraction of pixels
/// compared; and over all pixels the mean |luma difference|.
fn compare(out: &RgbImage, photo: &RgbImage) -> (f64, f64, f64) {
    assert_eq!(out.dimensions(), photo.dimensions());
    let (mut chroma, mut compared, mut luma) = (0.0f64, 0usize, 0.0);
    for (x, y, p) in out.enumerate_pixels() {
        let (o, s) = (reference::ycbcr(pixel(out, x, y)), reference::ycbcr(pixel(photo, x, y)));
        luma += (o[0] - s[0]).abs();
        if p.0.iter().all(|&v| v > 0 && v < 255) {
            chroma = chroma.max((o[1] - s[1]).abs()).max((o[2] - s[2]).abs());
            compared += 1;
        }
    }
    let pixels = (out.width() * out.height()) as f64;
    (chroma, compared as f64 / pixels, luma / pixels)
}

#[test]
fn original_colors_keeps_photo_chroma_but_not_its_luma() {
    let Some(ctx) = gpu() else { return };
    let ctx = Arc::new(ctx);
    let net = weights::load(&default_weights()).unwrap();
    let stylizer = Stylizer::new(ctx.clone(), Arc::new(FeatureNet::new(&ctx, net)));
    let content = load("tubingen.jpg");
    let options = StylizeOptions {
        size: 48,
        iterations: 16,
        init: Init::Content,
        snapshot_every: Some(8),
        original_colors: true,
        // Adam's bounded steps: the luma moves clearly, yet most pixels stay unclipped.
        optimizer: OptimizerKind::Adam,
        ..StylizeOptions::default()
    };
    let mut snapshots = Vec::new();
    let outcome = stylizer
        .run(&content, &[load("starry_night.jpg")], &options, |event| {
            if let Event::Snapshot { image, .. } = event {
                snapshots.push(image.clone());
            }
            Control::Continue
        })
        .unwrap();
    // The photo as the run sees it: resized to the output size.
    let photo = image_io::resize_max_side(&content, options.size);
    assert_eq!(snapshots.len(), 2, "snapshots at 8 and 16");
    for (name, image) in [("written image", &outcome.image), ("snapshot", &snapshots[0])] {
        let (chroma, compared, luma) = compare(image, &photo);
        eprintln!(
            "{name}: max |Δ chroma| {:.2}/255 over {:.0}% of the pixels, mean |Δ luma| {luma:.3}",
            chroma * 255.0,
            compared * 100.0
        );
        assert!(compared >= 0.5, "{name}: only {:.0}% of the pixels unclipped", compared * 100.0);
        assert!(chroma <= 1.5 / 255.0, "{name}: chroma differs from the photo's by {:.2}/255", chroma * 255.0);
        assert!(luma >= 0.03, "{name}: luma barely differs from the photo's (mean {luma})");
    }
}

#[test]
fn cli_original_colors_and_normalize_gradients_write_an_image() {
    if gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.png");
    let images = shared().join("images");
    let status = Command::new(env!("CARGO_BIN_EXE_neural-style"))
        .args(["stylize", "--size", "32", "--iterations", "3", "--original-colors", "--normalize-gradients"])
        .arg("--content")
        .arg(images.join("tubingen.jpg"))
        .arg("--style")
        .arg(images.join("starry_night.jpg"))
        .arg("--output")
        .arg(&output)
        .arg("--weights")
        .arg(default_weights())
        .output()
        .unwrap();
    assert!(status.status.success(), "stylize failed: {}", String::from_utf8_lossy(&status.stderr));
    let written = image::open(&output).unwrap().to_rgb8();
    let photo = image_io::resize_max_side(&load("tubingen.jpg"), 32);
    let (chroma, compared, _) = compare(&written, &photo);
    assert!(compared >= 0.5 && chroma <= 1.5 / 255.0, "chroma {chroma} over {compared}");
}
