//! Scores stylized images with `neural_style::quality` (what `neural-style quality --json` prints):
//! artifacts, color, style128 and content of each STYLIZED image against its inputs.
//!
//! ```text
//! cargo run --release --example quality -- CONTENT STYLE STYLIZED...
//! ```
//! Weights come from `$NEURAL_STYLE_WEIGHTS`.

use anyhow::{Result, bail};
use neural_style::engine::FeatureNet;
use neural_style::gpu::{DeviceRequest, GpuContext};
use neural_style::quality::Judge;
use neural_style::{image_io, weights};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [content, style, stylized @ ..] = &args[..] else { bail!("usage: quality CONTENT STYLE STYLIZED...") };
    if stylized.is_empty() {
        bail!("usage: quality CONTENT STYLE STYLIZED...");
    }
    let content = image_io::load_rgb(content.as_ref())?;
    let style = image_io::load_rgb(style.as_ref())?;
    let ctx = GpuContext::new(&DeviceRequest::default())?;
    let fnet = FeatureNet::new(&ctx, weights::load(&weights::resolve_path(None)?)?);
    let judge = Judge::new(&ctx, &fnet);
    for path in stylized {
        let scores = judge.score(&image_io::load_rgb(path.as_ref())?, &content, &style)?;
        println!("{}", serde_json::json!({"output": path, "scores": scores}));
    }
    Ok(())
}
