//! Judges a stylized image the way the project's quality bar does: E_style of the written image
//! (default style layers, against the style image resized to the same longest side) relative to
//! the content photo's E_style, and the relative distance of its `block4.expand` features from
//! the photo's.
//!
//! ```text
//! cargo run --release --example quality -- CONTENT STYLE STYLIZED
//! ```
//! Weights come from `$NEURAL_STYLE_WEIGHTS`.

use anyhow::Result;
use neural_style::arch::{BlockPart, LayerId};
use neural_style::engine::{FeatureNet, ForwardPlan, PlanOptions};
use neural_style::gpu::{DeviceRequest, GpuContext};
use neural_style::stylize::{LossSpec, Objective, PlanarImage, Targets};
use neural_style::{image_io, weights};

fn planar(img: &image::RgbImage) -> PlanarImage {
    PlanarImage { width: img.width() as usize, height: img.height() as usize, data: image_io::to_chw(img) }
}

/// E_style of `image` against the style targets.
fn style_energy(
    ctx: &GpuContext,
    fnet: &FeatureNet,
    spec: &LossSpec,
    image: &PlanarImage,
    style: &PlanarImage,
) -> Result<f32> {
    let targets = Targets::compute(ctx, fnet, spec, image, &[(style.clone(), 1.0)])?;
    let x = ctx.storage_buffer("image", &image.data);
    let objective = Objective::new(ctx, fnet, spec, targets, &x, image.width, image.height)?;
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    objective.record(&mut encoder);
    ctx.queue.submit([encoder.finish()]);
    Ok(ctx.read_buffer(objective.losses(), 4)?[1])
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [content, style, stylized] = &args[..] else { anyhow::bail!("usage: quality CONTENT STYLE STYLIZED") };
    let ctx = GpuContext::new(&DeviceRequest::default())?;
    let fnet = FeatureNet::new(&ctx, weights::load(&weights::resolve_path(None)?)?);
    let out = image_io::load_rgb(stylized.as_ref())?;
    let side = out.width().max(out.height());
    let photo = image_io::resize_exact(&image_io::load_rgb(content.as_ref())?, out.width(), out.height());
    let style = planar(&image_io::resize_max_side(&image_io::load_rgb(style.as_ref())?, side));
    let spec = LossSpec {
        content_layers: Vec::new(),
        content_weight: 0.0,
        style_weight: 1.0,
        tv_weight: 0.0,
        ..LossSpec::default()
    };
    let e_out = style_energy(&ctx, &fnet, &spec, &planar(&out), &style)?;
    let e_photo = style_energy(&ctx, &fnet, &spec, &planar(&photo), &style)?;
    let (w, h) = (out.width() as usize, out.height() as usize);
    let content_layer = LayerId::block(4, BlockPart::Expand);
    let plan = ForwardPlan::new(&ctx, &fnet, w, h, &PlanOptions { until: Some(content_layer), ..Default::default() })?;
    plan.run(&ctx, &image_io::to_chw(&photo))?;
    let f_photo = plan.read_layer(&ctx, content_layer)?;
    plan.run(&ctx, &image_io::to_chw(&out))?;
    let f_out = plan.read_layer(&ctx, content_layer)?;
    let num: f64 = f_out.iter().zip(&f_photo).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
    let den: f64 = f_photo.iter().map(|b| (*b as f64).powi(2)).sum();
    let distance = (num / den).sqrt();
    println!(
        "{}",
        serde_json::json!({
            "e_style_output": e_out, "e_style_photo": e_photo, "style_ratio": e_out / e_photo,
            "block4_expand_distance": distance,
            "passes": (e_out / e_photo) <= 0.10 && distance <= 0.75,
        })
    );
    Ok(())
}
