//! `neural-style bench`: what it reports (rates, dispatches, per-family GPU times, counted work,
//! memory, a finite loss) and its one-line errors. No timing is asserted, only consistency.

mod common;

use std::process::{Command, Output};

use common::*;
use serde_json::Value;

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_neural-style"))
        .arg("bench")
        .args(args)
        .env("NEURAL_STYLE_WEIGHTS", default_weights())
        .output()
        .expect("run neural-style bench")
}

fn f(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} missing in {v}"))
}

#[test]
fn bench_reports_rates_dispatches_kernel_times_and_work_per_size() {
    if gpu().is_none() {
        return;
    }
    // The GPU-shaped kernels (`--tune off`), whose dispatches per layer are fixed: tuned, a style
    // layer's Gram product may read a transposed copy of its features, one dispatch more.
    let args: Vec<&str> =
        "--size 40,64 --iterations 2 --warmup 1 --optimizer lbfgs --tune off --json".split(' ').collect();
    let out = bench(&args);
    assert!(out.status.success(), "bench failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(report["tool"], "neural-style");
    let results = report["results"].as_array().expect("results");
    assert_eq!(results.len(), 2);
    let timestamps = report["device"]["timestamps"].as_bool().expect("timestamps flag");
    for r in results {
        assert_eq!(r["optimizer"], "lbfgs");
        let ips = f(r, "iterations_per_second");
        assert!(ips.is_finite() && ips > 0.0);
        assert!((f(r, "ms_per_iteration") * ips - 1000.0).abs() < 1e-6 * 1000.0);
        // Recording and submitting is part of the iteration's wall time.
        assert!(f(r, "host_ms_per_iteration") > 0.0 && f(r, "host_ms_per_iteration") <= f(r, "ms_per_iteration"));
        assert_eq!(r["losses"], "default");
        assert!(f(r, "final_loss").is_finite());
        assert!(f(r, "plan_bytes") > 0.0);
        // The largest buffer is at least the image's 3·w·h floats and within the device's limit.
        let largest = f(r, "largest_buffer_bytes");
        assert!(
            largest >= 12.0 * f(r, "size").powi(2)
                && largest <= f(&report["device"], "max_storage_buffer_binding_size")
        );
        let p = &r["profile"];
        let families = p["families"].as_array().expect("families");
        let count =
            |name: &str| families.iter().find(|x| x["family"] == name).map_or(0, |x| x["dispatches"].as_u64().unwrap());
        let total: u64 = families.iter().map(|x| x["dispatches"].as_u64().unwrap()).sum();
        assert_eq!(total, p["dispatches"].as_u64().unwrap(), "families add up to the dispatch count");
        // L-BFGS is five dispatches with its history on one page (dots, solve, store, direction,
        // step), keeping the best image two more, and the mirror padding and its adjoint two
        // more; each of the six default style layers has a Gram product
        // and a style-gradient product; the stem is its forward pass, its activation's backward
        // and its input gradient.
        assert_eq!(count("optimizer"), 9);
        assert_eq!(count("gram"), 12);
        assert_eq!(count("stem"), 3);
        assert!(count("depthwise") > 0 && count("pointwise") > 0);
        if timestamps {
            let sum: f64 = families.iter().map(|x| f(x, "gpu_ms")).sum();
            assert!(f(p, "gpu_ms") > 0.0 && (sum - f(p, "gpu_ms")).abs() <= 1e-6 * sum.max(1.0));
            let slowest = p["slowest"].as_array().expect("slowest");
            assert!(!slowest.is_empty() && slowest.windows(2).all(|w| f(&w[0], "gpu_ms") >= f(&w[1], "gpu_ms")));
        }
    }
    // Work is counted from the shapes: about proportional to the pixels the network sees, the
    // image mirror-padded by the default padding on each side (without padding 64² / 40² = 2.56,
    // and the bounds below were 2.0–3.2 for FLOPs and 1.5–3.2 for bytes; they are scaled alike).
    let padded = |side: f64| (side + 2.0 * f64::from(neural_style::stylize::DEFAULT_PADDING)).powi(2);
    let pixel_ratio = padded(64.0) / padded(40.0);
    let work = |r: &Value| (f(&r["work"], "flops"), f(&r["work"], "bytes"));
    let ((f40, b40), (f64_, b64)) = (work(&results[0]), work(&results[1]));
    assert!(f40 > 0.0 && b40 > 0.0);
    let (flop_ratio, byte_ratio) = (f64_ / f40 / pixel_ratio, b64 / b40 / pixel_ratio);
    assert!(
        (2.0 / 2.56..3.2 / 2.56).contains(&flop_ratio),
        "FLOPs grew {flop_ratio}× the padded pixels from 40 to 64 px"
    );
    assert!(
        (1.5 / 2.56..3.2 / 2.56).contains(&byte_ratio),
        "bytes grew {byte_ratio}× the padded pixels from 40 to 64 px"
    );
    assert!(f(&results[1], "plan_bytes") > f(&results[0], "plan_bytes"));
}

#[test]
fn bench_reference_losses_are_the_four_unpadded_style_layers_pytorch_twin_computes() {
    if gpu().is_none() {
        return;
    }
    // Untuned: fixed dispatch counts (see above).
    let args =
        ["--size", "48", "--iterations", "1", "--warmup", "0", "--optimizer", "lbfgs", "--tune", "off", "--json"];
    let run = |losses: &str| {
        let out = bench(&[&args[..], &["--losses", losses]].concat());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
        report["results"][0].clone()
    };
    let (default, reference) = (run("default"), run("reference"));
    assert_eq!((&default["losses"], &reference["losses"]), (&"default".into(), &"reference".into()));
    let count = |r: &Value, name: &str| {
        let families = r["profile"]["families"].as_array().expect("families");
        families.iter().find(|x| x["family"] == name).map_or(0, |x| x["dispatches"].as_u64().unwrap())
    };
    // tools/bench_pytorch.py's four style layers (the default has six), each a Gram and a
    // style-gradient product; L-BFGS and keeping the best image without the default's mirror
    // padding and its adjoint.
    assert_eq!((count(&default, "gram"), count(&reference, "gram")), (12, 8));
    assert_eq!((count(&default, "optimizer"), count(&reference, "optimizer")), (9, 7));
    // Unpadded, the network sees 48² pixels instead of 112².
    assert!(f(&reference["work"], "flops") < 0.5 * f(&default["work"], "flops"));
}

#[test]
fn bench_text_output_lists_each_family() {
    if gpu().is_none() {
        return;
    }
    let out = bench(&["--size", "32", "--iterations", "1", "--warmup", "0", "--optimizer", "adam"]);
    assert!(out.status.success(), "bench failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("32x32") && text.contains("it/s") && text.contains("GFLOP"), "{text}");
    for family in ["stem", "depthwise", "pointwise", "squeeze-excite", "gram", "losses", "optimizer"] {
        assert!(text.lines().any(|l| l.trim_start().starts_with(family)), "no {family} line in:\n{text}");
    }
}

#[test]
fn bad_bench_options_are_one_line_errors() {
    if gpu().is_none() {
        return;
    }
    for (args, needle) in [
        (vec!["--size", "0"], "--size must be at least 1"),
        (vec!["--iterations", "0", "--size", "32"], "--iterations must be at least 1"),
        (vec!["--size", "64,100000"], "too large for this device"),
    ] {
        let out = bench(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && !stderr.contains("panicked"), "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        assert!(lines[0].starts_with("error: ") && lines[0].contains(needle), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty() || !String::from_utf8_lossy(&out.stdout).contains("it/s"));
    }
}
