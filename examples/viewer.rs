//! The live viewer driven from the library: style transfer in a window, printing progress and
//! saving the result when the window closes.
//!
//! ```text
//! cargo run --release --example viewer -- WEIGHTS CONTENT STYLE OUTPUT.png
//! ```

use anyhow::Result;
use neural_style::gpu::DeviceRequest;
use neural_style::stylize::{
    DEFAULT_CONTENT_LAYERS, DEFAULT_CONTENT_WEIGHT, DEFAULT_STYLE_LAYERS, DEFAULT_STYLE_WEIGHT, DEFAULT_TV_WEIGHT,
    Init, LossSpec, OptimizerKind, StylizeOptions,
};
use neural_style::viewer::{Viewer, ViewerEvent};
use neural_style::{image_io, weights};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [weights_path, content, style, output] = &args[..] else {
        anyhow::bail!("usage: viewer WEIGHTS CONTENT STYLE OUTPUT.png")
    };
    let options = StylizeOptions {
        size: 256,
        style_scale: 1.0,
        iterations: 1000,
        optimizer: OptimizerKind::LbfgsBounded,
        learning_rate: 0.02,
        lbfgs_history: 10,
        loss: LossSpec {
            content_layers: DEFAULT_CONTENT_LAYERS.split(',').map(String::from).collect(),
            style_layers: DEFAULT_STYLE_LAYERS.split(',').map(|l| (l.to_string(), 1.0)).collect(),
            content_weight: DEFAULT_CONTENT_WEIGHT,
            style_weight: DEFAULT_STYLE_WEIGHT,
            tv_weight: DEFAULT_TV_WEIGHT,
        },
        style_blend_weights: None,
        init: Init::Content,
        seed: 0,
        report_every: 1,
        snapshot_every: None,
    };
    let net = weights::load(weights_path.as_ref())?;
    let (content, style) = (image_io::load_rgb(content.as_ref())?, image_io::load_rgb(style.as_ref())?);
    let outcome = Viewer::new()?.stylize(&DeviceRequest::default(), net, content, vec![style], options, |event| {
        match event {
            ViewerEvent::Progress { iteration, losses, .. } if iteration % 50 == 0 => {
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
