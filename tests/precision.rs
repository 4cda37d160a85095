//! `--precision`: f16 activations paint the picture f32 paints, deterministically; an adapter
//! without 16-bit floats refuses f16 in one line; `auto` says what it chose. The kernels' own f16
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

/// The final losses (total, content, style) of a `--json` run.
fn final_losses(out: &Output) -> [f64; 3] {
    let last = json_lines(out).into_iter().rfind(|l| l.get("loss").is_some()).expect("a loss line");
    ["loss", "content", "style"].map(|k| last[k].as_f64().unwrap())
}

/// Three scales up to 96 px, 12 iterations of the default optimizer, at `precision`; the GPU-
/// shaped kernels for both precisions (a measured variant choice changes the trajectory by f32
/// rounding alone).
fn run(output: &Path, precision: &str) -> Output {
    let args = ["--size", "96", "--scales", "3", "--iterations", "12", "--tune", "off", "--json"];
    let out = stylize(output, &[&args[..], &["--precision", precision]].concat());
    assert!(out.status.success(), "{precision}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn f16_paints_what_f32_paints_and_the_same_run_writes_the_same_bytes() {
    let Some(ctx) = gpu_on(BackendChoice::Vulkan) else { return };
    if !ctx.has_f16() {
        assert!(!gpu_required(), "lavapipe offers SHADER_F16; this adapter does not: {}", ctx.info.name);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let [full_path, half_path, again_path] = ["f32.png", "f16.png", "f16 again.png"].map(|n| dir.path().join(n));
    let full = final_losses(&run(&full_path, "f32"));
    let half_run = run(&half_path, "f16");
    let half = final_losses(&half_run);
    // The plan line says how activations are stored.
    let plan = json_lines(&half_run).into_iter().find(|l| l.get("plan").is_some()).expect("a plan line");
    assert_eq!(plan["precision"], "f16");
    for (name, (f, h)) in ["total", "content", "style"].iter().zip(full.iter().zip(&half)) {
        let rel = (h - f).abs() / f.abs();
        assert!(rel <= 0.02, "{name} loss: f16 {h}, f32 {f} (relative difference {rel:e})");
    }
    let (a, b) = (image::open(&full_path).unwrap().to_rgb8(), image::open(&half_path).unwrap().to_rgb8());
    assert_eq!(a.dimensions(), b.dimensions());
    let mad = a.as_raw().iter().zip(b.as_raw()).map(|(&x, &y)| (f64::from(x) - f64::from(y)).abs()).sum::<f64>()
        / a.as_raw().len() as f64;
    assert!(mad <= 2.0, "f16's picture differs from f32's: mean absolute difference {mad} (of 255)");
    run(&again_path, "f16");
    assert!(
        std::fs::read(&half_path).unwrap() == std::fs::read(&again_path).unwrap(),
        "two f16 runs wrote different bytes"
    );
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
