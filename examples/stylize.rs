//! Style transfer from Rust through [`neural_style::stylize::Stylizer`]: options in, images in,
//! image out, with a progress callback that stops early once the style loss is low enough, and an
//! optional time limit: another thread sets the run's cancel flag (as a Ctrl-C handler or an app's stop
//! button would), which ends the run after the current iteration with the image so far.
//!
//! ```text
//! cargo run --release --example stylize -- WEIGHTS CONTENT STYLE OUTPUT.png [SECONDS]
//! ```

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use neural_style::engine::FeatureNet;
use neural_style::gpu::{DeviceRequest, GpuContext};
use neural_style::stylize::{Control, Event, StylizeOptions, Stylizer};
use neural_style::{image_io, weights};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (weights_path, content, style, output, seconds) = match &args[..] {
        [w, c, s, o] => (w, c, s, o, None),
        [w, c, s, o, t] => {
            let t = t.parse::<f64>().ok().filter(|t| *t >= 0.0 && t.is_finite());
            (w, c, s, o, Some(t.context("SECONDS must be a number ≥ 0")?))
        }
        _ => anyhow::bail!("usage: stylize WEIGHTS CONTENT STYLE OUTPUT.png [SECONDS]"),
    };
    let ctx = Arc::new(GpuContext::new(&DeviceRequest::default())?);
    let fnet = Arc::new(FeatureNet::new(&ctx, weights::load(weights_path.as_ref())?));
    let options = StylizeOptions { size: 256, iterations: 300, report_every: 25, ..StylizeOptions::default() };
    let content = image_io::load_rgb(content.as_ref())?;
    let style = image_io::load_rgb(style.as_ref())?;
    let mut first_style = None;
    let driver = Stylizer::new(ctx, fnet).drive(&content, &[style], &options)?;
    if let Some(seconds) = seconds {
        let cancel = driver.cancel_flag();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs_f64(seconds));
            cancel.store(true, Ordering::Relaxed);
        });
    }
    let outcome = driver.run(|event| {
        if let Event::Progress { iteration, losses, elapsed_s, .. } = event {
            println!("{iteration:>4}  loss {:.5}  style {:.6}  {elapsed_s:.1}s", losses.loss, losses.style);
            let first = *first_style.get_or_insert(losses.style);
            // Good enough: the style loss fell a hundredfold.
            if losses.style < first / 100.0 {
                return Ok(Control::Stop);
            }
        }
        Ok(Control::Continue)
    })?;
    outcome.image.save(output).context("writing the output")?;
    println!("wrote {output} after {} iterations in {:.1}s", outcome.iterations, outcome.seconds);
    Ok(())
}
