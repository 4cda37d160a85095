//! The library's run API at 32 px: sessions own (share) their device, so they can be created,
//! dropped and recreated in one process and moved to another thread; the driver's cancel flag
//! ends a run after the current iteration with its image; driving in pieces gives the same
//! image as whole iterations; bad options are typed errors that name the option's field.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use image::RgbImage;
use neural_style::engine::FeatureNet;
use neural_style::gpu::GpuContext;
use neural_style::model::Network;
use neural_style::stylize::{Control, Driver, Event, Init, OptionError, OptionName, Outcome, StylizeOptions, Stylizer};
use neural_style::{image_io, weights};

fn network() -> Network {
    weights::load(&default_weights()).expect("weights")
}

/// The content photo and the style images.
fn images() -> (RgbImage, Vec<RgbImage>) {
    let load = |name: &str| image_io::load_rgb(&shared().join("images").join(name)).expect("image");
    (load("tubingen.jpg"), vec![load("starry_night.jpg")])
}

/// 32 px from seeded noise, reporting every iteration.
fn small(iterations: usize) -> StylizeOptions {
    StylizeOptions { size: 32, iterations, init: Init::Noise, seed: 7, report_every: 1, ..StylizeOptions::default() }
}

fn stylizer(ctx: &Arc<GpuContext>, net: &Network) -> Stylizer {
    Stylizer::new(ctx.clone(), Arc::new(FeatureNet::new(ctx, net.clone())))
}

fn run_to_end(driver: Driver) -> Outcome {
    driver.run(|_| Ok(Control::Continue)).expect("run")
}

#[test]
fn sessions_are_created_dropped_and_recreated_in_one_process_with_identical_results() {
    let net = network();
    let (content, styles) = images();
    let mut results = Vec::new();
    for _ in 0..3 {
        let Some(ctx) = gpu() else { return };
        let ctx = Arc::new(ctx);
        let stylizer = stylizer(&ctx, &net);
        for _ in 0..2 {
            let outcome = run_to_end(stylizer.drive(&content, &styles, &small(4)).unwrap());
            assert_eq!(outcome.iterations, 4);
            assert_eq!(outcome.non_finite_at, None);
            results.push(outcome.image);
        }
        drop(stylizer);
        assert_eq!(Arc::strong_count(&ctx), 1, "a dropped stylizer and its sessions release the device");
    }
    assert_eq!(results.len(), 6);
    assert!(results.iter().all(|image| image == &results[0]), "every recreated session gives the same image");
    assert_eq!(results[0].dimensions(), image_io::scaled_size(content.width(), content.height(), 32));
}

#[test]
fn a_session_outlives_its_stylizer_and_runs_on_another_thread() {
    fn send_and_static<T: Send + 'static>(_: &T) {}
    let Some(ctx) = gpu() else { return };
    let ctx = Arc::new(ctx);
    let (content, styles) = images();
    let driver = stylizer(&ctx, &network()).drive(&content, &styles, &small(3)).unwrap();
    send_and_static(driver.session());
    send_and_static(&driver);
    let outcome = std::thread::spawn(move || run_to_end(driver)).join().unwrap();
    assert_eq!(outcome.iterations, 3);
    assert_eq!(Arc::strong_count(&ctx), 1);
}

#[test]
fn the_cancel_flag_ends_the_run_after_the_current_iteration_with_its_image() {
    let Some(ctx) = gpu() else { return };
    let ctx = Arc::new(ctx);
    let (content, styles) = images();
    let options = StylizeOptions { snapshot_every: Some(3), ..small(50) };
    // One flag can stop several runs (a Ctrl-C handler installed once).
    let cancel = Arc::new(AtomicBool::new(false));
    let driver =
        stylizer(&ctx, &network()).drive(&content, &styles, &options).unwrap().with_cancel_flag(cancel.clone());
    assert!(Arc::ptr_eq(&driver.cancel_flag(), &cancel));
    let (mut reported, mut snapshot) = (Vec::new(), None);
    let outcome = driver
        .run(|event| {
            match event {
                Event::Progress { iteration, .. } => reported.push(iteration),
                Event::Snapshot { iteration, image } => {
                    assert_eq!(iteration, 3);
                    snapshot = Some(image.clone());
                    // As a Ctrl-C handler or an app's stop button would, from any thread.
                    cancel.store(true, Ordering::Relaxed);
                }
            }
            Ok(Control::Continue)
        })
        .unwrap();
    assert_eq!(reported, [0, 1, 2, 3], "no iteration after the cancel");
    assert_eq!(outcome.iterations, 3);
    assert_eq!(outcome.non_finite_at, None);
    assert_eq!(Some(outcome.image), snapshot, "the result is the image of the last iteration");
}

#[test]
fn driving_in_pieces_gives_the_same_image_as_whole_iterations() {
    let Some(ctx) = gpu() else { return };
    let ctx = Arc::new(ctx);
    let (content, styles) = images();
    let stylizer = stylizer(&ctx, &network());
    let whole = run_to_end(stylizer.drive(&content, &styles, &small(3)).unwrap());
    let mut driver = stylizer.drive(&content, &styles, &small(3)).unwrap();
    let (mut calls, mut iterations, mut reported) = (0, 0, Vec::new());
    let mut on_event = |event: Event| {
        if let Event::Progress { iteration, .. } = event {
            reported.push(iteration);
        }
        Ok(Control::Continue)
    };
    while !driver.is_finished() {
        let advanced = driver.advance(3, &mut on_event).unwrap();
        assert!((1..=3).contains(&advanced.commands));
        calls += 1;
        iterations += usize::from(advanced.completed_iteration);
    }
    assert_eq!(iterations, 4, "3 updates and the final evaluation");
    assert!(calls > 2 * iterations, "each iteration took several calls ({calls} for {iterations})");
    assert_eq!(reported, [0, 1, 2, 3]);
    let pieces = driver.finish().unwrap();
    assert_eq!(pieces.iterations, 3);
    assert_eq!(pieces.image, whole.image);
}

#[test]
fn bad_options_are_typed_errors_that_name_the_field() {
    let net = network();
    let check = |options: StylizeOptions, styles: usize| {
        let e = neural_style::stylize::validate(&net, &options, styles).unwrap_err();
        let typed = e.downcast_ref::<OptionError>().cloned().expect("an OptionError");
        (typed, e.to_string())
    };
    let (e, message) = check(StylizeOptions { iterations: 0, ..StylizeOptions::default() }, 1);
    assert_eq!((e.option(), message.as_str()), (OptionName::Iterations, "iterations must be at least 1"));
    let mut options = StylizeOptions::default();
    options.loss.style_weight = -1.0;
    let (e, message) = check(options, 1);
    assert_eq!(e, OptionError::LossWeight { option: OptionName::StyleWeight, value: -1.0 });
    assert_eq!(message, "loss.style_weight must be a finite number ≥ 0, got -1");
    assert_eq!(e.message("--style-weight"), "--style-weight must be a finite number ≥ 0, got -1");
    let (e, message) = check(StylizeOptions { style_blend_weights: Some(vec![3.0, 7.0]), ..Default::default() }, 1);
    assert_eq!(e.option(), OptionName::StyleBlendWeights);
    assert_eq!(message, "style_blend_weights has 2 values for 1 style images");
    let (_, message) = check(StylizeOptions { lbfgs_history: 0, ..Default::default() }, 1);
    assert!(!message.contains("--"), "{message}");
}
