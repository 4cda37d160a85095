//! The phone profile (`gpu::PHONE_LIMITS`: wgpu's downlevel defaults, a 128 MiB storage binding,
//! a 256 MiB buffer): the whole stylize loop runs under it for every optimizer at 1024 px (the
//! L-BFGS history on two pages), with Adam at 2048 px, and with the default optimizer at
//! 2048×1536 with f16 activations.

mod common;

use std::sync::Arc;

use common::*;
use neural_style::engine::FeatureNet;
use neural_style::gpu::{DeviceRequest, LimitsProfile, PHONE_LIMITS, PrecisionChoice};
use neural_style::stylize::{Control, Init, OptimizerKind, Scales, StylizeOptions, Stylizer};
use neural_style::tuning::Tune;
use neural_style::{image_io, weights};

/// Runs `iterations` at `size` on a device opened with the phone's limits; checks the result's
/// size and that every reported loss is finite; prints the largest buffer and the plan's memory.
fn run_on_a_phone(optimizer: OptimizerKind, size: u32, iterations: usize, precision: PrecisionChoice) {
    // The GPU-shaped kernels, unmeasured: measuring every variant at 2048 px takes lavapipe
    // minutes, and what this test checks (the plan's buffers under the limits) is the same for
    // every variant (their workgroups and bindings are checked by tests/shader_contract.rs).
    let request = DeviceRequest { limits: LimitsProfile::Phone, tune: Tune::Off, ..Default::default() };
    let Some(ctx) = gpu_with(DeviceRequest { precision, ..request }) else { return };
    assert_eq!(ctx.limits.max_storage_buffer_binding_size, 128 << 20);
    assert_eq!(ctx.limits.max_buffer_size, 256 << 20);
    assert_eq!(ctx.limits.max_storage_buffers_per_shader_stage, PHONE_LIMITS.max_storage_buffers_per_shader_stage);
    let ctx = Arc::new(ctx);
    let net = weights::load(&default_weights()).expect("weights");
    let fnet = Arc::new(FeatureNet::new(&ctx, net));
    let before = ctx.allocated_bytes();
    let load = |name: &str| image_io::load_rgb(&shared().join("images").join(name)).expect("image");
    let (content, style) = (load("tubingen.jpg"), load("starry_night.jpg"));
    // The photo as the start: the palette start is CPU work on the image (minutes for a
    // 2048 px photo in a debug build) and allocates nothing on the device.
    let options = StylizeOptions {
        size,
        iterations,
        optimizer,
        scales: Scales::Count(1),
        init: Init::Content,
        ..StylizeOptions::default()
    };
    let mut losses = Vec::new();
    let outcome = Stylizer::new(ctx.clone(), fnet)
        .drive(&content, &[style], &options)
        .expect("the plan fits the phone's limits")
        .run(|event| {
            if let neural_style::stylize::Event::Progress { losses: l, .. } = event {
                losses.push(l.loss);
            }
            Ok(Control::Continue)
        })
        .expect("the run");
    let (w, h) = image_io::scaled_size(content.width(), content.height(), size);
    assert_eq!(outcome.image.dimensions(), (w, h));
    assert_eq!(outcome.iterations, iterations);
    assert!(
        outcome.non_finite_at.is_none() && !losses.is_empty() && losses.iter().all(|l| l.is_finite()),
        "{losses:?}"
    );
    ctx.finish().expect("no GPU error");
    let largest = ctx.largest_buffer_bytes();
    assert!(largest <= 128 << 20);
    eprintln!(
        "{optimizer:?} at {w}x{h} ({:?}): largest buffer {:.1} MiB, plan {:.1} MiB",
        ctx.precision(),
        largest as f64 / (1 << 20) as f64,
        (ctx.allocated_bytes() - before) as f64 / (1 << 20) as f64
    );
}

#[test]
fn every_optimizer_runs_the_whole_loop_at_1024_px_under_phone_limits() {
    for optimizer in [OptimizerKind::LbfgsBounded, OptimizerKind::Lbfgs, OptimizerKind::Adam] {
        run_on_a_phone(optimizer, 1024, 2, PrecisionChoice::F32);
    }
}

#[test]
fn adam_runs_at_2048_px_under_phone_limits() {
    run_on_a_phone(OptimizerKind::Adam, 2048, 1, PrecisionChoice::F32);
}

#[test]
fn the_default_optimizer_runs_at_2048_px_in_f16_under_phone_limits() {
    if !gpu().is_some_and(|ctx| has_f16(&ctx)) {
        return;
    }
    // The photo is 4:3: 2048×1536.
    run_on_a_phone(StylizeOptions::default().optimizer, 2048, 1, PrecisionChoice::F16);
}
