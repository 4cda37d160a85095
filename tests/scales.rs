//! The coarse-to-fine schedule and the output average at ≤ 96 px: the plan (sizes, iteration
//! split), one scale reproducing the single-scale entry point byte for byte, targets recomputed
//! at every scale, the average equal to a CPU average of the iterates, and the CLI's plan line,
//! JSON progress, snapshot names and determinism across scales, and the resize and logit kernels
//! against the CPU.

mod common;

use std::sync::Arc;

use common::*;
use image::RgbImage;
use neural_style::engine::FeatureNet;
use neural_style::stylize::{
    Control, Driver, Event, Init, LossValues, OptimizerKind, Scales, StylizeOptions, Stylizer, plan, scale_sides,
};
use neural_style::{image_io, weights};

#[test]
fn auto_goes_from_min_size_to_size_by_sqrt2_and_splits_the_iterations() {
    assert_eq!(scale_sides(&Scales::Auto, 512, 128).unwrap(), [128, 181, 256, 362, 512]);
    assert_eq!(scale_sides(&Scales::Auto, 96, 48).unwrap(), [48, 68, 96]);
    // At or below --min-size, one scale: today's runs.
    assert_eq!(scale_sides(&Scales::Auto, 96, 128).unwrap(), [96]);
    assert_eq!(scale_sides(&Scales::Auto, 128, 128).unwrap(), [128]);
    assert_eq!(scale_sides(&Scales::Count(1), 512, 128).unwrap(), [512]);
    assert_eq!(scale_sides(&Scales::Count(3), 512, 128).unwrap(), [128, 256, 512]);
    assert_eq!(scale_sides(&Scales::Sizes(vec![100, 200]), 300, 128).unwrap(), [100, 200, 300]);
    assert_eq!(scale_sides(&Scales::Sizes(vec![100, 300]), 300, 128).unwrap(), [100, 300]);
    assert!(scale_sides(&Scales::Sizes(vec![200, 100]), 300, 128).is_err());
    assert!(scale_sides(&Scales::Sizes(vec![400]), 300, 128).is_err());
    assert!(scale_sides(&Scales::Count(0), 300, 128).is_err());

    let options = StylizeOptions { size: 512, iterations: 502, scales: Scales::Auto, ..StylizeOptions::default() };
    let p = plan(1024, 768, &options).unwrap();
    let split: Vec<usize> = p.iter().map(|s| s.iterations).collect();
    assert_eq!(split, [101, 101, 100, 100, 100]);
    assert_eq!((p[0].width, p[0].height), (128, 96));
    assert_eq!((p[4].width, p[4].height), (512, 384));
    assert!(plan(1024, 768, &StylizeOptions { iterations: 4, ..options.clone() }).is_err());
    assert!(plan(1024, 768, &StylizeOptions { average: 1.0, ..options }).is_err());
}

#[test]
fn one_scale_gives_the_bytes_of_the_single_scale_entry_point() {
    let Some(stylizer) = stylizer() else { return };
    let (content, styles) = tubingen_and_starry_night();
    for optimizer in [OptimizerKind::LbfgsBounded, OptimizerKind::Adam] {
        let options = StylizeOptions {
            size: 48,
            iterations: 6,
            optimizer,
            scales: Scales::Count(1),
            min_size: 16,
            ..StylizeOptions::default()
        };
        let scheduled = stylizer.drive(&content, &styles, &options).unwrap().run(|_| Ok(Control::Continue)).unwrap();
        let mut session = stylizer.start(&content, &styles, &options).unwrap();
        while !session.is_done() {
            // The result is the last reported image: report the final one, as a driver does.
            let last = session.iteration() == session.total_iterations();
            session.step(last, false).unwrap();
        }
        let single = session.finish().unwrap();
        assert_eq!(scheduled.iterations, 6);
        assert!(scheduled.image == single.image, "{optimizer:?}: --scales 1 differs from the single-scale path");
    }
}

/// The losses at iteration 0 of each scale, and the image they were computed on.
fn scale_starts(driver: &mut Driver) -> Vec<(usize, LossValues, RgbImage)> {
    let mut starts = Vec::new();
    while !driver.is_finished() {
        let mut start = None;
        driver
            .advance(usize::MAX, &mut |event| {
                if let Event::Progress { iteration: 0, losses, scale, .. } = event {
                    start = Some((scale.index, losses));
                }
                Ok(Control::Continue)
            })
            .unwrap();
        if let Some((scale, losses)) = start {
            starts.push((scale, losses, driver.current_image().unwrap()));
        }
    }
    starts
}

#[test]
fn every_scale_starts_against_targets_computed_at_its_size() {
    let Some(stylizer) = stylizer() else { return };
    let (content, styles) = tubingen_and_starry_night();
    for optimizer in [OptimizerKind::LbfgsBounded, OptimizerKind::Adam] {
        let options = StylizeOptions {
            size: 64,
            scales: Scales::Auto,
            min_size: 32,
            iterations: 12,
            optimizer,
            style_scale: 0.8,
            report_every: 4,
            ..StylizeOptions::default()
        };
        let mut driver = stylizer.drive(&content, &styles, &options).unwrap();
        assert_eq!(driver.plan().iter().map(|s| s.side).collect::<Vec<_>>(), [32, 45, 64]);
        let starts = scale_starts(&mut driver);
        assert_eq!(starts.iter().map(|s| s.0).collect::<Vec<_>>(), [1, 2, 3]);
        for (scale, losses, image) in &starts[1..] {
            let side = driver.plan()[scale - 1].side;
            assert_eq!(image.width().max(image.height()), side);
            // The same image evaluated by a fresh single-scale run at that size: its targets are
            // computed there (content at `side`, style at side × style_scale).
            let independent = StylizeOptions {
                size: side,
                iterations: 1,
                scales: Scales::Count(1),
                init: Init::Image(image.clone()),
                ..options.clone()
            };
            let mut session = stylizer.start(&content, &styles, &independent).unwrap();
            let want = session.step(true, false).unwrap().losses.unwrap();
            for (name, got, want) in [("style", losses.style, want.style), ("content", losses.content, want.content)] {
                let rel = ((got - want) / want).abs();
                // The run's image is unrounded; the independent one is its 8-bit copy.
                assert!(rel < 2e-2, "{optimizer:?} scale {scale}: {name} loss {got} vs {want} (rel {rel})");
            }
        }
    }
}

#[test]
fn averaging_writes_the_bias_corrected_average_of_the_iterates() {
    let Some(ctx) = gpu() else { return };
    let ctx = Arc::new(ctx);
    let net = weights::load(&default_weights()).expect("weights");
    let stylizer = Stylizer::new(ctx.clone(), Arc::new(FeatureNet::new(&ctx, net)));
    let (content, styles) = tubingen_and_starry_night();
    let decay = 0.7f32;
    let iterations = 8;
    let base = StylizeOptions { size: 40, iterations, report_every: 1, ..StylizeOptions::default() };
    // Every iterate, in [0, 255]: after iteration k the image buffer holds the image evaluated
    // there (bounded L-BFGS updates u, the image is sigmoid(u) made before the evaluation).
    let mut iterates: Vec<Vec<f64>> = Vec::new();
    let mut driver = stylizer.drive(&content, &styles, &base).unwrap();
    let n = 3 * (driver.session().width() * driver.session().height());
    while !driver.is_finished() {
        if driver.advance(usize::MAX, &mut |_| Ok(Control::Continue)).unwrap().completed_iteration {
            let image = ctx.read_buffer(driver.session().image_buffer(), n).unwrap();
            iterates.push(image.iter().map(|&v| f64::from(v.clamp(0.0, 1.0)) * 255.0).collect());
        }
    }
    let plain = driver.finish().unwrap();
    assert_eq!(iterates.len(), iterations + 1);
    let averaged = stylizer
        .drive(&content, &styles, &StylizeOptions { average: decay, ..base.clone() })
        .unwrap()
        .run(|_| Ok(Control::Continue))
        .unwrap();
    let zero = stylizer
        .drive(&content, &styles, &StylizeOptions { average: 0.0, ..base })
        .unwrap()
        .run(|_| Ok(Control::Continue))
        .unwrap();
    assert!(zero.image == plain.image, "decay 0 is no averaging");
    assert!(averaged.image != plain.image, "the average is what is written");
    // The CPU average of the iterates (planar, as the image buffer).
    let mut biased = vec![0f64; n];
    for image in &iterates {
        for (b, &v) in biased.iter_mut().zip(image) {
            *b = f64::from(decay) * *b + (1.0 - f64::from(decay)) * v;
        }
    }
    let correction = 1.0 - f64::from(decay).powi(iterates.len() as i32);
    let written = image_io::to_chw(&averaged.image);
    let worst = biased
        .iter()
        .zip(&written)
        .map(|(b, &got)| (b / correction - f64::from(got) * 255.0).abs())
        .fold(0.0, f64::max);
    assert!(worst <= 1.0, "GPU average off the CPU average by {worst} levels");
}

#[test]
fn a_three_scale_run_prints_its_plan_reports_scales_and_names_snapshots_by_scale() {
    if gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.png");
    let args = [
        "--size",
        "96",
        "--scales",
        "auto",
        "--min-size",
        "48",
        "--iterations",
        "12",
        "--print-every",
        "2",
        "--save-every",
        "2",
    ];
    let run = stylize(&out, &[&args[..], &["--json", "--init", "noise", "--seed", "3"]].concat());
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&run.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let plan = &lines[0]["plan"];
    let sizes: Vec<[u64; 2]> = plan
        .as_array()
        .unwrap()
        .iter()
        .map(|s| [s["size"][0].as_u64().unwrap(), s["size"][1].as_u64().unwrap()])
        .collect();
    assert_eq!(sizes.len(), 3, "{plan}");
    assert_eq!(sizes.iter().map(|s| s[0].max(s[1])).collect::<Vec<_>>(), [48, 68, 96]);
    assert!(plan.as_array().unwrap().iter().all(|s| s["iterations"] == 4), "{plan}");
    let progress: Vec<&serde_json::Value> = lines.iter().filter(|l| l.get("iteration").is_some()).collect();
    let seen: Vec<(u64, u64)> =
        progress.iter().map(|l| (l["scale"].as_u64().unwrap(), l["iteration"].as_u64().unwrap())).collect();
    let want: Vec<(u64, u64)> = (1..=3).flat_map(|s| [(s, 0), (s, 2), (s, 4)]).collect();
    assert_eq!(seen, want);
    for l in &progress {
        let s = sizes[l["scale"].as_u64().unwrap() as usize - 1];
        assert_eq!([l["size"][0].as_u64().unwrap(), l["size"][1].as_u64().unwrap()], s, "{l}");
    }
    assert_eq!(lines.last().unwrap()["iterations"], 12);
    for scale in 1..=3 {
        for iteration in [2, 4] {
            let path = dir.path().join(format!("o_s{scale}_{iteration}.png"));
            let (w, h) = image_io::dimensions(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!([u64::from(w), u64::from(h)], sizes[scale - 1]);
        }
    }
    // Same seed, same bytes; the plan line on stderr without --json.
    let again = dir.path().join("again.png");
    let run = stylize(&again, &[&args[..], &["--init", "noise", "--seed", "3"]].concat());
    assert!(run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.lines().any(|l| l.starts_with("plan: 3 scales, 12 iterations: 48×")), "{stderr}");
    assert!(String::from_utf8_lossy(&run.stdout).contains("scale 3/3 (96×"));
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
}

#[test]
fn auto_at_or_below_min_size_is_the_one_scale_run() {
    if gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (auto, one) = (dir.path().join("auto.png"), dir.path().join("one.png"));
    let args = ["--size", "48", "--iterations", "5", "--save-every", "5"];
    let run = stylize(&auto, &[&args[..], &["--scales", "auto"]].concat());
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(!String::from_utf8_lossy(&run.stderr).contains("plan:"), "one scale prints no plan line");
    assert!(dir.path().join("auto_5.png").exists(), "one scale keeps the snapshot names");
    assert!(stylize(&one, &[&args[..], &["--scales", "1"]].concat()).status.success());
    assert_eq!(std::fs::read(&auto).unwrap(), std::fs::read(&one).unwrap());
    let bad = stylize(&one, &["--size", "48", "--scales", "x"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--scales must be"));
}

/// Bilinear with half-pixel centers and clamped edges, on the CPU.
fn resize_bilinear_cpu(src: &[f32], (sw, sh): (usize, usize), (dw, dh): (usize, usize)) -> Vec<f32> {
    let mut out = Vec::with_capacity(3 * dw * dh);
    for c in 0..3 {
        for y in 0..dh {
            for x in 0..dw {
                let sx = ((x as f32 + 0.5) * sw as f32 / dw as f32 - 0.5).max(0.0);
                let sy = ((y as f32 + 0.5) * sh as f32 / dh as f32 - 0.5).max(0.0);
                let (x0, y0) = ((sx.floor() as usize).min(sw - 1), (sy.floor() as usize).min(sh - 1));
                let (x1, y1) = ((x0 + 1).min(sw - 1), (y0 + 1).min(sh - 1));
                let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
                let at = |x: usize, y: usize| src[c * sw * sh + y * sw + x];
                let top = at(x0, y0) * (1.0 - fx) + at(x1, y0) * fx;
                let bottom = at(x0, y1) * (1.0 - fx) + at(x1, y1) * fx;
                out.push(top * (1.0 - fy) + bottom * fy);
            }
        }
    }
    out
}

#[test]
fn resize_and_logit_kernels_match_the_cpu() {
    use neural_style::kernels::scales::{AverageParams, Logit, Resize, ResizeParams};
    use neural_style::kernels::{self, Kernels};
    let Some(ctx) = gpu() else { return };
    let k = Kernels::new(&ctx);
    let mut rng = Rng::new(5);
    let (sw, sh) = (23, 17);
    let src: Vec<f32> = rng.vec(3 * sw * sh, 1.0).iter().map(|v| v * 0.5 + 0.5).collect();
    let src_buf = ctx.storage_buffer("src", &src);
    for (dw, dh) in [(33, 24), (46, 34), (23, 17), (12, 9)] {
        let dst = ctx.zeroed_buffer("dst", 3 * dw * dh);
        let p = ResizeParams { src_w: sw as u32, src_h: sh as u32, dst_w: dw as u32, dst_h: dh as u32 };
        kernels::run(&ctx, &[k.scales.resize_bilinear(&ctx, Resize { src: &src_buf, dst: &dst }, &p)]).unwrap();
        let got = ctx.read_buffer(&dst, 3 * dw * dh).unwrap();
        let want = resize_bilinear_cpu(&src, (sw, sh), (dw, dh));
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-5, "{dw}×{dh}: off by {worst}");
    }
    let n = src.len();
    let u = ctx.zeroed_buffer("u", n);
    let p = AverageParams::new(n, 0.0, 1);
    kernels::run(&ctx, &[k.scales.logit(&ctx, Logit { image: &src_buf, averaged: &u }, &p)]).unwrap();
    let got = ctx.read_buffer(&u, n).unwrap();
    for (g, &x) in got.iter().zip(&src) {
        let want = neural_style::stylize::optimizer::logit(x);
        assert!((g - want).abs() < 1e-4 * want.abs().max(1.0), "logit({x}) = {g}, want {want}");
    }
}
