//! The live viewer driven from the library: style transfer in a window, printing progress every
//! 50 iterations (the run's `report_every`, paced by the same driver as a headless run) and saving
//! the result when the window closes.
//!
//! ```text
//! cargo run --release --example viewer -- WEIGHTS CONTENT STYLE OUTPUT.png
//! ```

use anyhow::Result;
use neural_style::gpu::DeviceRequest;
use neural_style::stylize::{Event, StylizeOptions};
use neural_style::viewer::{Viewer, ViewerEvent};
use neural_style::{image_io, weights};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [weights_path, content, style, output] = &args[..] else {
        anyhow::bail!("usage: viewer WEIGHTS CONTENT STYLE OUTPUT.png")
    };
    let options = StylizeOptions { size: 256, iterations: 1000, report_every: 50, ..StylizeOptions::default() };
    let net = weights::load(weights_path.as_ref())?;
    let (content, style) = (image_io::load_rgb(content.as_ref())?, image_io::load_rgb(style.as_ref())?);
    let outcome = Viewer::new()?.stylize(&DeviceRequest::default(), net, content, vec![style], options, |event| {
        match event {
            ViewerEvent::Step(Event::Progress { iteration, losses, .. }) => {
                println!("{iteration:>5}  loss {:.5}", losses.loss)
            }
            ViewerEvent::Finished { .. } => println!("done; close the window to save"),
            _ => {}
        }
        Ok(())
    })?;
    outcome.image.save(output)?;
    println!("wrote {output} after {} iterations", outcome.iterations);
    Ok(())
}
