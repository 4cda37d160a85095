//! `neural-style stylize` end to end at 48–64 px: losses fall, the output is written (atomically,
//! deterministically), progress is machine-readable, and bad input is one clear line with a
//! non-zero exit and no output file.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect()
}

fn assert_one_line_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panicked: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got: {stderr}");
    assert!(lines[0].starts_with("error: ") && lines[0].contains(needle), "error {:?} lacks {needle:?}", lines[0]);
}

fn dir_is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

#[test]
fn stylize_lowers_the_losses_and_reports_json_progress() {
    if gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.png");
    for optimizer in ["lbfgs-bounded", "lbfgs", "adam"] {
        let out = stylize(&output, &["--iterations", "40", "--print-every", "10", "--optimizer", optimizer, "--json"]);
        assert!(out.status.success(), "{optimizer}: {}", String::from_utf8_lossy(&out.stderr));
        let lines = json_lines(&out);
        let progress: Vec<&serde_json::Value> = lines.iter().filter(|l| l.get("iteration").is_some()).collect();
        let iterations: Vec<u64> = progress.iter().map(|l| l["iteration"].as_u64().unwrap()).collect();
        assert_eq!(iterations, [0, 10, 20, 30, 40], "{optimizer}");
        for l in &progress {
            for key in ["loss", "content", "style", "tv", "elapsed_s"] {
                assert!(l[key].as_f64().is_some_and(f64::is_finite), "{optimizer}: {key} missing in {l}");
            }
        }
        let (first, last) = (progress[0], progress[progress.len() - 1]);
        let f = |l: &serde_json::Value, k: &str| l[k].as_f64().unwrap();
        assert!(
            f(last, "loss") < 0.7 * f(first, "loss"),
            "{optimizer}: total loss {} → {}",
            f(first, "loss"),
            f(last, "loss")
        );
        assert!(
            f(last, "style") < 0.25 * f(first, "style"),
            "{optimizer}: style loss {} → {}",
            f(first, "style"),
            f(last, "style")
        );
        let done = lines.last().unwrap();
        assert_eq!(done["done"], true);
        assert_eq!(done["output"], output.to_str().unwrap());
        assert_eq!(done["iterations"], 40);
        assert!(done["seconds"].as_f64().unwrap() > 0.0 && done["iterations_per_s"].as_f64().unwrap() > 0.0);
        let written = image::open(&output).unwrap();
        assert_eq!((written.width(), written.height()), neural_style::image_io::scaled_size(1024, 768, 48));
    }
}

#[test]
fn opengl_paints_what_vulkan_paints() {
    // The CLI's loop on OpenGL (two scales, L-BFGS with its line search, original colors, the
    // averaged iterate, the write): the same losses and the same picture as on Vulkan. On the
    // previous defaults' loss: with the default loss (padding, per-layer normalization, six
    // layers) the two trajectories part by about 3% in 30 iterations at 64 px (f32 rounding that
    // the line search's accept/reject decisions amplify), while its kernels match the f64
    // reference on OpenGL (tests/padding.rs, run on GL by .ci/run).
    use neural_style::gpu::BackendChoice;
    if gpu_on(BackendChoice::Vulkan).is_none() || gpu_on(BackendChoice::Gl).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = |backend: &str| {
        let output = dir.path().join(format!("{backend}.png"));
        let args =
            ["--backend", backend, "--size", "64", "--min-size", "45", "--iterations", "30", "--print-every", "30"];
        let classic = [
            "--loss-normalization",
            "none",
            "--padding",
            "0",
            "--init",
            "content",
            "--style-weight",
            "5000",
            "--gram-margin",
            "1",
            "--style-layers",
            "stem,block1.expand,block3.expand,block5.expand",
        ];
        // The same kernels on both: variants are chosen per adapter, and a choice changes the
        // trajectory by rounding, which the line search amplifies.
        let flags = ["--original-colors", "--average", "0.9", "--json", "--tune", "off"];
        let out = stylize(&output, &[&args[..], &classic[..], &flags[..]].concat());
        assert!(out.status.success(), "{backend}: {}", String::from_utf8_lossy(&out.stderr));
        let last = json_lines(&out).into_iter().rfind(|l| l.get("loss").is_some()).unwrap();
        (last["loss"].as_f64().unwrap(), image::open(&output).unwrap().to_rgb8())
    };
    let (vulkan_loss, vulkan) = run("vulkan");
    let (gl_loss, gl) = run("gl");
    let rel = (gl_loss - vulkan_loss).abs() / vulkan_loss;
    assert!(rel <= 1e-3, "final loss: OpenGL {gl_loss}, Vulkan {vulkan_loss} (relative difference {rel:e})");
    assert_eq!(gl.dimensions(), vulkan.dimensions());
    let diff: f64 = gl.as_raw().iter().zip(vulkan.as_raw()).map(|(&a, &b)| (a as f64 - b as f64).abs()).sum::<f64>()
        / gl.as_raw().len() as f64;
    assert!(diff < 0.5, "OpenGL's picture differs from Vulkan's: mean absolute difference {diff} (of 255)");
}

#[test]
fn same_seed_gives_identical_bytes_and_snapshots_are_written() {
    if gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, extra: &[&str]| -> PathBuf {
        let output = dir.path().join(name);
        let mut args = vec!["--iterations", "12", "--init", "noise"];
        if !extra.contains(&"--seed") {
            args.extend(["--seed", "7"]);
        }
        args.extend(extra);
        let out = stylize(&output, &args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        output
    };
    let a = std::fs::read(run("a.png", &["--save-every", "5"])).unwrap();
    let b = std::fs::read(run("b.png", &[])).unwrap();
    assert_eq!(a, b, "same seed, same device: identical output bytes");
    let c = std::fs::read(run("c.png", &["--seed", "8"])).unwrap();
    assert_ne!(a, c, "another seed starts from other noise");
    assert!(dir.path().join("a_5.png").is_file() && dir.path().join("a_10.png").is_file());
    let jpg = run("d.jpg", &[]);
    assert_eq!(image::ImageFormat::from_path(&jpg).unwrap(), image::ImageFormat::Jpeg);
    assert!(image::open(&jpg).is_ok());
}

#[test]
fn non_finite_loss_stops_keeps_the_last_finite_image_and_says_so() {
    if gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.png");
    // The photo's own content loss is 0, so iteration 0 is finite; Adam's first step of 1 moves
    // every pixel to 0 or 1, and 3e38 × the content loss then overflows at iteration 1.
    let args = [
        "--iterations",
        "5",
        "--print-every",
        "1",
        "--optimizer",
        "adam",
        "--learning-rate",
        "1",
        "--content-weight",
        "3e38",
        // The photo as the start and the classic loss, whose units the weight above is for.
        "--init",
        "content",
        "--loss-normalization",
        "none",
    ];
    let out = stylize(&output, &args);
    assert_one_line_error(&out, "NaN or infinite by iteration 1");
    let written = image::open(&output).expect("the last finite image is written").to_rgb8();
    let photo = neural_style::image_io::load_rgb(Path::new(&image("tubingen.jpg"))).unwrap();
    assert_eq!(written, neural_style::image_io::resize_max_side(&photo, 48), "the last finite image is the photo");
}

#[test]
fn bad_stylize_input_is_a_one_line_error_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.png");
    let corrupt = dir.path().join("corrupt.jpg");
    std::fs::write(&corrupt, b"\xFF\xD8\xFF\xE0 not really a jpeg").unwrap();
    let corrupt = corrupt.to_str().unwrap().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--iterations".into(), "0".into()], "--iterations must be at least 1"),
        (vec!["--iterations".into(), "-3".into()], "--iterations must be at least 1"),
        (vec!["--style-weight".into(), "-1".into()], "--style-weight must be a finite number ≥ 0"),
        (vec!["--tv-weight".into(), "-0.5".into()], "--tv-weight must be a finite number ≥ 0"),
        (vec!["--style-blend-weights".into(), "3,7".into()], "2 values for 1 style images"),
        (vec!["--style-layers".into(), "stem,block42.expand".into()], "unknown layer \"block42.expand\""),
        (vec!["--content-layers".into(), "nope".into()], "unknown layer \"nope\""),
        (vec!["--init".into(), "/nonexistent/init.png".into()], "/nonexistent/init.png"),
        (vec!["--lbfgs-history".into(), "0".into()], "--lbfgs-history must be between 1 and 1000"),
        (vec!["--lbfgs-history".into(), "5000".into()], "--lbfgs-history must be between 1 and 1000"),
        (vec!["--size".into(), "100000".into()], "is too large for this device"),
        (vec!["--style-scale".into(), "2000".into()], "style image (see --style-scale): image"),
    ];
    for (extra, needle) in cases {
        let args: Vec<&str> = extra.iter().map(String::as_str).collect();
        assert_one_line_error(&stylize(&output, &args), needle);
        assert!(dir_is_empty(dir.path()) || !output.exists(), "{needle}: output written");
    }
    let run = |content: &str, style: &str, output: &Path| {
        Command::new(env!("CARGO_BIN_EXE_neural-style"))
            .args([
                "stylize",
                "--content",
                content,
                "--style",
                style,
                "--output",
                output.to_str().unwrap(),
                "--size",
                "32",
            ])
            .env("NEURAL_STYLE_WEIGHTS", default_weights())
            .output()
            .unwrap()
    };
    assert_one_line_error(&run("/nonexistent/c.jpg", &image("starry_night.jpg"), &output), "/nonexistent/c.jpg");
    assert_one_line_error(&run(&image("tubingen.jpg"), "/nonexistent/s.jpg", &output), "/nonexistent/s.jpg");
    assert_one_line_error(&run(&corrupt, &image("starry_night.jpg"), &output), "corrupt.jpg");
    assert_one_line_error(&run(&image("tubingen.jpg"), &corrupt, &output), "corrupt.jpg");
    assert!(!output.exists());
    let missing_dir = Path::new("/nonexistent/dir/out.png");
    assert_one_line_error(&run(&image("tubingen.jpg"), &image("starry_night.jpg"), missing_dir), "does not exist");
    let bad_ext = dir.path().join("out.bmp");
    assert_one_line_error(
        &run(&image("tubingen.jpg"), &image("starry_night.jpg"), &bad_ext),
        "must end in .png, .jpg or .jpeg",
    );
    assert!(!bad_ext.exists());
}
