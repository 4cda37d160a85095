//! Style transfer from Rust through [`neural_style::stylize::Stylizer`]: options in, images in,
//! image out, with a progress callback that stops early once the style loss is low enough.
//!
//! ```text
//! cargo run --release --example stylize -- WEIGHTS CONTENT STYLE OUTPUT.png
//! ```

use anyhow::{Context, Result};
use neural_style::engine::FeatureNet;
use neural_style::gpu::{DeviceRequest, GpuContext};
use neural_style::stylize::{Control, Event, StylizeOptions, Stylizer};
use neural_style::{image_io, weights};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [weights_path, content, style, output] = &args[..] else {
        anyhow::bail!("usage: stylize WEIGHTS CONTENT STYLE OUTPUT.png")
    };
    let ctx = GpuContext::new(&DeviceRequest::default())?;
    let fnet = FeatureNet::new(&ctx, weights::load(weights_path.as_ref())?);
    let options = StylizeOptions { size: 256, iterations: 300, report_every: 25, ..StylizeOptions::default() };
    let content = image_io::load_rgb(content.as_ref())?;
    let style = image_io::load_rgb(style.as_ref())?;
    let mut first_style = None;
    let outcome = Stylizer::new(&ctx, &fnet).run(&content, &[style], &options, |event| {
        if let Event::Progress { iteration, losses, elapsed_s } = event {
            println!("{iteration:>4}  loss {:.5}  style {:.6}  {elapsed_s:.1}s", losses.loss, losses.style);
            let first = *first_style.get_or_insert(losses.style);
            // Good enough: the style loss fell a hundredfold.
            if losses.style < first / 100.0 {
                return Control::Stop;
            }
        }
        Control::Continue
    })?;
    outcome.image.save(output).context("writing the output")?;
    println!("wrote {output} after {} iterations in {:.1}s", outcome.iterations, outcome.seconds);
    Ok(())
}
