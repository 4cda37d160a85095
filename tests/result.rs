//! What a run writes at ≤ 64 px: never a step the L-BFGS line search rejected nor an unevaluated
//! one, but the best evaluated image of each scale (with averaging, the evaluated average), and
//! the last progress reported is that image's losses, for every optimizer, averaging, snapshots,
//! a cancel and the CLI.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use image::RgbImage;
use neural_style::stylize::{
    Control, Event, Init, LineSearch, LossValues, OptimizerKind, Scales, StylizeOptions, Stylizer,
};

/// The losses of `image` evaluated by a fresh one-iteration run at its size.
fn evaluate(stylizer: &Stylizer, options: &StylizeOptions, image: &RgbImage) -> LossValues {
    let (content, styles) = tubingen_and_starry_night();
    let side = image.width().max(image.height());
    let fresh = StylizeOptions {
        size: side,
        iterations: 1,
        scales: Scales::Count(1),
        init: Init::Image(image.clone()),
        average: 0.0,
        ..options.clone()
    };
    stylizer.start(&content, &styles, &fresh).unwrap().step(true, false).unwrap().losses.unwrap()
}

/// Every progress event of a run (scale, iteration, losses) and its outcome.
fn run(
    stylizer: &Stylizer,
    options: &StylizeOptions,
) -> (Vec<(usize, usize, LossValues)>, Vec<RgbImage>, neural_style::stylize::Outcome) {
    let (content, styles) = tubingen_and_starry_night();
    let (mut progress, mut snapshots) = (Vec::new(), Vec::new());
    let outcome = stylizer
        .drive(&content, &styles, options)
        .unwrap()
        .run(|event| {
            match event {
                Event::Progress { iteration, losses, scale, .. } => progress.push((scale.index, iteration, losses)),
                Event::Snapshot { image, .. } => snapshots.push(image.clone()),
            }
            Ok(Control::Continue)
        })
        .unwrap();
    (progress, snapshots, outcome)
}

/// The issue's runs: one scale of two iterations (the second step is rejected by the line
/// search), two scales of two (the second scale's last step too).
fn issue_runs() -> [StylizeOptions; 2] {
    let one =
        StylizeOptions { size: 64, iterations: 2, scales: Scales::Count(1), report_every: 1, ..Default::default() };
    let two = StylizeOptions { iterations: 4, scales: Scales::Count(2), min_size: 32, ..one.clone() };
    [one, two]
}

#[test]
fn no_scale_ends_above_its_start_and_the_written_image_has_the_last_reported_losses() {
    let Some(stylizer) = stylizer() else { return };
    for options in issue_runs() {
        let (progress, _, outcome) = run(&stylizer, &options);
        for scale in 1..=options.iterations / 2 {
            let losses: Vec<f32> = progress.iter().filter(|p| p.0 == scale).map(|p| p.2.loss).collect();
            let (first, last) = (losses[0], *losses.last().unwrap());
            let lowest = losses.iter().copied().fold(f32::INFINITY, f32::min);
            assert!(last <= first, "scale {scale} ends at {last}, above its start {first}: {losses:?}");
            assert_eq!(last, lowest, "scale {scale}'s result is its best evaluated image: {losses:?}");
        }
        let last = progress.last().unwrap().2;
        let written = evaluate(&stylizer, &options, &outcome.image);
        let rel = ((written.loss - last.loss) / last.loss).abs();
        // The written image is the 8-bit copy of the one evaluated.
        assert!(rel < 2e-2, "written image's loss {} vs last reported {} (rel {rel})", written.loss, last.loss);
    }
}

#[test]
fn every_optimizer_and_averaging_write_the_image_whose_losses_were_reported_last() {
    let Some(stylizer) = stylizer() else { return };
    let base =
        StylizeOptions { size: 48, iterations: 6, scales: Scales::Count(1), report_every: 1, ..Default::default() };
    let runs = [
        StylizeOptions { optimizer: OptimizerKind::LbfgsBounded, ..base.clone() },
        StylizeOptions { optimizer: OptimizerKind::Lbfgs, lbfgs_line_search: LineSearch::None, ..base.clone() },
        StylizeOptions { optimizer: OptimizerKind::Adam, learning_rate: 0.05, ..base.clone() },
        StylizeOptions { average: 0.8, ..base.clone() },
        StylizeOptions { average: 0.8, optimizer: OptimizerKind::Adam, learning_rate: 0.05, ..base.clone() },
    ];
    for options in runs {
        let what = format!("{:?} average {}", options.optimizer, options.average);
        let (progress, _, outcome) = run(&stylizer, &options);
        let last = progress.last().unwrap().2;
        assert_eq!(outcome.losses, Some(last), "{what}: the outcome's losses are the last reported");
        if options.average == 0.0 {
            let lowest = progress.iter().map(|p| p.2.loss).fold(f32::INFINITY, f32::min);
            assert_eq!(last.loss, lowest, "{what}: the result is the best evaluated image");
        }
        if options.optimizer == OptimizerKind::Lbfgs {
            continue; // unbounded pixels: the written (clamped) image is not the evaluated one
        }
        let written = evaluate(&stylizer, &options, &outcome.image);
        let rel = ((written.loss - last.loss) / last.loss).abs();
        assert!(rel < 2e-2, "{what}: written image's loss {} vs last reported {} (rel {rel})", written.loss, last.loss);
    }
}

#[test]
fn snapshots_show_the_result_so_far_and_the_last_one_is_the_written_image() {
    let Some(stylizer) = stylizer() else { return };
    let [one, _] = issue_runs();
    let options = StylizeOptions { snapshot_every: Some(1), ..one };
    let (progress, snapshots, outcome) = run(&stylizer, &options);
    assert_eq!(snapshots.len(), 2);
    assert!(snapshots[1] == outcome.image);
    let (start, last) = (progress[0].2.loss, progress.last().unwrap().2.loss);
    assert!(last <= start, "the last snapshot's loss {last} is above the start's {start}");
    for (snapshot, reported) in snapshots.iter().zip(&progress[1..]) {
        let got = evaluate(&stylizer, &options, snapshot).loss;
        let rel = ((got - reported.2.loss) / reported.2.loss).abs();
        assert!(rel < 2e-2, "snapshot's loss {got} vs reported {} (rel {rel})", reported.2.loss);
    }
}

#[test]
fn a_cancelled_run_writes_its_best_image_and_reports_its_losses_last() {
    let Some(stylizer) = stylizer() else { return };
    let (content, styles) = tubingen_and_starry_night();
    for report_every in [1, 5] {
        let options = StylizeOptions { report_every, ..issue_runs()[0].clone() };
        let options = StylizeOptions { iterations: 50, ..options };
        let cancel = Arc::new(AtomicBool::new(false));
        let driver = stylizer.drive(&content, &styles, &options).unwrap().with_cancel_flag(cancel.clone());
        let mut progress = Vec::new();
        let outcome = driver
            .run(|event| {
                if let Event::Progress { iteration, losses, .. } = event {
                    progress.push(losses);
                    // After the rejected second step (and, reporting every 5, mid-way).
                    if iteration >= 2 {
                        cancel.store(true, Ordering::Relaxed);
                    }
                }
                Ok(Control::Continue)
            })
            .unwrap();
        let last = *progress.last().unwrap();
        assert_eq!(outcome.losses, Some(last), "every {report_every}");
        assert!(last.loss <= progress[0].loss, "every {report_every}: {progress:?}");
        let written = evaluate(&stylizer, &options, &outcome.image);
        let rel = ((written.loss - last.loss) / last.loss).abs();
        assert!(rel < 2e-2, "every {report_every}: written {} vs reported {} (rel {rel})", written.loss, last.loss);
    }
}

#[test]
fn the_cli_reports_the_written_images_losses_last() {
    if gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.png");
    let args = ["--size", "64", "--iterations", "2", "--scales", "1", "--print-every", "1"];
    let text = stylize(&out, &args);
    assert!(text.status.success(), "{}", String::from_utf8_lossy(&text.stderr));
    let stdout = String::from_utf8_lossy(&text.stdout);
    let loss = |line: &str| -> f32 {
        let at = line.find("loss ").expect("a loss") + 5;
        line[at..].split([' ', ')', ',']).next().unwrap().parse().unwrap()
    };
    let lines: Vec<&str> = stdout.lines().filter(|l| l.contains("loss ")).collect();
    let (first, last, wrote) = (loss(lines[0]), loss(lines[lines.len() - 2]), lines[lines.len() - 1]);
    assert!(wrote.starts_with("wrote "), "{stdout}");
    assert!(last <= first, "{stdout}");
    assert_eq!(loss(wrote), last, "{stdout}");
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let json = stylize(&out, &json_args);
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&json.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let done = lines.last().unwrap();
    assert_eq!(done["done"], true);
    assert_eq!(done["loss"], lines[lines.len() - 2]["loss"]);
}
