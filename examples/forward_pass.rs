//! Using the library without the CLI: load weights, plan the forward pass for one image size, run
//! it a few times, and read a layer back.
//!
//! ```text
//! cargo run --release --example forward_pass -- WEIGHTS IMAGE [SIZE]
//! ```

use std::time::Instant;

use anyhow::{Context, Result};
use neural_style::arch::LayerId;
use neural_style::engine::{FeatureNet, ForwardPlan, PlanOptions};
use neural_style::gpu::{DeviceRequest, GpuContext};
use neural_style::{image_io, weights};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let weights_path = args.next().context("usage: forward_pass WEIGHTS IMAGE [SIZE]")?;
    let image_path = args.next().context("usage: forward_pass WEIGHTS IMAGE [SIZE]")?;
    let size: u32 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(224);

    let net = weights::load(weights_path.as_ref())?;
    let ctx = GpuContext::new(&DeviceRequest::default())?;
    println!("device: {} ({:?})", ctx.info.name, ctx.info.backend);
    let fnet = FeatureNet::new(&ctx, net);

    let image = image_io::resize_exact(&image_io::load_rgb(image_path.as_ref())?, size, size);
    let plan = ForwardPlan::new(
        &ctx,
        &fnet,
        size as usize,
        size as usize,
        &PlanOptions { classify: true, ..Default::default() },
    )?;
    let pixels = image_io::to_chw(&image);

    plan.run(&ctx, &pixels)?; // warm-up: pipeline creation and first-use costs
    let runs = 5;
    let start = Instant::now();
    for _ in 0..runs {
        plan.run(&ctx, &pixels)?;
    }
    let ms = start.elapsed().as_secs_f64() * 1000.0 / runs as f64;
    println!("{size}x{size}: {ms:.1} ms per forward pass ({} dispatches, one submit)", plan.dispatch_count());

    let head = plan.read_layer(&ctx, LayerId::Head)?;
    let mean = head.iter().sum::<f32>() / head.len() as f32;
    println!("head: {} values, mean activation {mean:.4}", head.len());
    Ok(())
}
