//! `--precision`: an f16 evaluation and step match f32's, and repeat exactly; a whole 3-scale f16
//! run paints what f32 paints, by the quality measures; an adapter without 16-bit floats refuses
//! f16 in one line; `auto` says what it chose. The kernels' own f16
//! checks are in tests/kernels.rs and tests/backward.rs, the phone profile's in
//! tests/phone_profile.rs.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;
use neural_style::gpu::BackendChoice;

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect()
}

/// One scale at 96 px, `iterations` of the default optimizer at `precision` with `extra` flags,
/// every iteration reported; the GPU-shaped kernels (a measured variant choice changes the
/// trajectory by f32 rounding alone).
fn run(output: &Path, precision: &str, iterations: &str, extra: &[&str]) -> Output {
    let args = ["--size", "96", "--scales", "1", "--tune", "off", "--json", "--print-every", "1"];
    let out = stylize(output, &[&args[..], &["--precision", precision, "--iterations", iterations], extra].concat());
    assert!(out.status.success(), "{precision}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The losses (total, content, style) of the first evaluation (the starting image's).
fn first_losses(out: &Output) -> [f64; 3] {
    let first = json_lines(out).into_iter().find(|l| l.get("iteration") == Some(&0.into())).expect("iteration 0");
    ["loss", "content", "style"].map(|k| first[k].as_f64().unwrap())
}

/// Whether the Vulkan device has 16-bit floats (see [`has_f16`]).
fn vulkan_has_f16() -> bool {
    gpu_on(BackendChoice::Vulkan).is_some_and(|ctx| has_f16(&ctx))
}

#[test]
fn an_f16_evaluation_and_step_match_f32s_and_repeat_exactly() {
    // One evaluation (targets, forward, losses, backward with the gradient scale) and one
    // L-BFGS step from the same start, for the default loss, normalized gradients and the
    // classic loss: the losses within 0.5% (measured: 0.09% at most) and the stepped image
    // within 0.5/255 on average (measured: 0.16). Whole runs are not compared here: the
    // optimizer carries any rounding into different strokes (two f32 runs on different kernel
    // variants part by 8.5% in loss after 60 iterations), so f16's and f32's pictures differ
    // as much (BENCHMARKS.md, "Half precision on lavapipe").
    if !vulkan_has_f16() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let configurations: [&[&str]; 3] =
        [&[], &["--normalize-gradients"], &["--loss-normalization", "none", "--style-weight", "5000"]];
    for extra in configurations {
        let [full_path, half_path] = ["f32.png", "f16.png"].map(|n| dir.path().join(n));
        let full_run = run(&full_path, "f32", "2", extra);
        let half_run = run(&half_path, "f16", "2", extra);
        let plan = json_lines(&half_run).into_iter().find(|l| l.get("plan").is_some()).expect("a plan line");
        assert_eq!(plan["precision"], "f16");
        let (full, half) = (first_losses(&full_run), first_losses(&half_run));
        for (name, (f, h)) in ["total", "content", "style"].iter().zip(full.iter().zip(&half)) {
            let rel = (h - f).abs() / f.abs();
            assert!(rel <= 5e-3, "{extra:?} {name} loss: f16 {h}, f32 {f} (relative difference {rel:e})");
        }
        let (a, b) = (image::open(&full_path).unwrap().to_rgb8(), image::open(&half_path).unwrap().to_rgb8());
        let mad = a.as_raw().iter().zip(b.as_raw()).map(|(&x, &y)| (f64::from(x) - f64::from(y)).abs()).sum::<f64>()
            / a.as_raw().len() as f64;
        assert!(mad <= 0.5, "{extra:?}: f16's stepped image differs from f32's by {mad} (of 255) on average");
    }
    // The same f16 run twice: the same bytes.
    let [once, again] = ["once.png", "again.png"].map(|n| dir.path().join(n));
    run(&once, "f16", "12", &[]);
    run(&again, "f16", "12", &[]);
    assert!(std::fs::read(&once).unwrap() == std::fs::read(&again).unwrap(), "two f16 runs wrote different bytes");
}

#[test]
fn a_three_scale_f16_run_paints_what_f32_paints() {
    // 90 iterations of the default optimizer over three scales (40, 62 and 96 px), GPU-shaped
    // kernels. The pictures' strokes differ (an optimizer carries any rounding into other
    // strokes: two f32 runs on different kernel variants differ by 8.4/255 on average here, and
    // their final losses by 10%), so what is compared is what the picture is, by the quality
    // measures (palette, texture, content, style; no measure can be met by noise). Measured:
    // f16 within 0.023 of f32 on every measure, two f32 runs on different variants within
    // 0.009; a run whose style gradient vanished (style weight 0.001) stays the photo, 0.2–1.0
    // away on every measure.
    if !vulkan_has_f16() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let args = ["--size", "96", "--scales", "3", "--min-size", "40", "--iterations", "90", "--tune", "off"];
    let outputs = ["f32", "f16"].map(|precision| {
        let output = dir.path().join(format!("{precision}.png"));
        let out = stylize(&output, &[&args[..], &["--precision", precision]].concat());
        assert!(out.status.success(), "{precision}: {}", String::from_utf8_lossy(&out.stderr));
        output
    });
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_neural-style"))
        .args(["quality", "--json", "--content", &image("tubingen.jpg"), "--style", &image("starry_night.jpg")])
        .args(&outputs)
        .env("NEURAL_STYLE_WEIGHTS", default_weights())
        .output()
        .expect("run neural-style quality");
    assert!(out.status.success(), "quality: {}", String::from_utf8_lossy(&out.stderr));
    let [full, half] = [0, 1].map(|i| json_lines(&out)[i].clone());
    for measure in ["artifacts", "chroma", "luma", "texture", "content", "color", "style128"] {
        let (f, h) = (full[measure].as_f64().unwrap(), half[measure].as_f64().unwrap());
        assert!((f - h).abs() <= 0.05, "{measure}: f16 {h}, f32 {f}");
    }
}

#[test]
fn an_adapter_without_16_bit_floats_refuses_f16_in_one_line() {
    // wgpu's OpenGL backend never offers SHADER_F16 (and naga's GLSL has no 16-bit float).
    let Some(ctx) = gpu_on(BackendChoice::Gl) else { return };
    assert!(!ctx.has_f16(), "{} offers SHADER_F16 on OpenGL", ctx.info.name);
    let dir = tempfile::tempdir().unwrap();
    let out = stylize(&dir.path().join("out.png"), &["--backend", "gl", "--precision", "f16"]);
    assert_one_line_error(&out, "SHADER_F16");
    // `auto` falls back to f32 there and runs.
    let out = stylize(&dir.path().join("auto.png"), &["--backend", "gl", "--precision", "auto", "--iterations", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn auto_precision_reports_its_choice() {
    let Some(ctx) = gpu_on(BackendChoice::Vulkan) else { return };
    let dir = tempfile::tempdir().unwrap();
    let args = ["--backend", "vulkan", "--precision", "auto", "--iterations", "2", "--json"];
    let out = stylize(&dir.path().join("auto.png"), &args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan = json_lines(&out).into_iter().find(|l| l.get("plan").is_some()).expect("a plan line");
    let chosen = plan["precision"].as_str().unwrap().to_string();
    assert!(chosen == "f32" || (chosen == "f16" && ctx.has_f16()), "auto chose {chosen}");
}

#[test]
fn classify_refuses_f16_in_one_line() {
    // The classifier runs in f32 only; `auto` classifies in f32 wherever it would stylize in f16.
    let out = neural_style(&["classify", &image("grace_hopper.jpg"), "--precision", "f16"]);
    assert_one_line_error(&out, "f32 only");
}
