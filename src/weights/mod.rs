//! Weight files: finding them, installing them ([`store`], [`fetch`] with the `fetch` feature), and
//! reading TFLite and torchvision safetensors into a [`Network`].

#[cfg(all(feature = "fetch", not(target_os = "android")))]
pub mod fetch;
pub mod store;
mod tflite;
#[rustfmt::skip]
pub mod tflite_schema;
mod torchvision;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::arch::{Arch, BlockPart, ConvSpec, LayerId, LayerOp, LayerSpec};
use crate::input;
use crate::model::{Block, Conv, Network, SqueezeExcite};

pub use validate::{MAX_MAGNITUDE, check_activations};

/// Largest weights file read, in bytes (1 GiB); larger files are refused before reading.
pub const MAX_WEIGHTS_FILE_BYTES: u64 = 1 << 30;

/// Largest labels file read, in bytes (1 MiB: ImageNet's labels take 30 KiB); larger files are
/// refused before reading.
pub const MAX_LABELS_FILE_BYTES: u64 = 1 << 20;

/// Environment variable naming the default weights file.
pub const WEIGHTS_ENV: &str = "NEURAL_STYLE_WEIGHTS";

/// Resolves the weights path: the explicit `--weights` value, else `$NEURAL_STYLE_WEIGHTS`, else the
/// default installed by `neural-style weights fetch` or `import` (see [`store`]).
pub fn resolve_path(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    match std::env::var_os(WEIGHTS_ENV) {
        Some(p) if !p.is_empty() => return Ok(PathBuf::from(p)),
        _ => {}
    }
    if let Some(installed) = store::installed_default() {
        return Ok(installed);
    }
    let message = format!(
        "no weights: run `neural-style weights fetch` to download and install the default model \
         (offline: `neural-style weights import FILE`), or set {WEIGHTS_ENV}"
    );
    Err(crate::remedy::NeedsRemedy::error(message, crate::remedy::Remedy::WeightsFile))
}

/// Loads a network from a `.tflite` or `.safetensors` file (chosen by content, not extension):
/// a regular file of at most [`MAX_WEIGHTS_FILE_BYTES`].
pub fn load(path: &Path) -> Result<Network> {
    let bytes = input::read_regular_file(path, "weights", MAX_WEIGHTS_FILE_BYTES)?;
    if !looks_like_tflite(&bytes) && !looks_like_safetensors(&bytes) {
        bail!("{} is neither a TFLite model nor a safetensors file", path.display());
    }
    load_bytes(&bytes).with_context(|| format!("weights {}", path.display()))
}

/// Reads a network from the bytes of a `.tflite` or `.safetensors` file, checking that every
/// tensor is finite and plausible.
pub fn load_bytes(bytes: &[u8]) -> Result<Network> {
    let net = if looks_like_tflite(bytes) {
        tflite::load(bytes)?
    } else if looks_like_safetensors(bytes) {
        torchvision::load(bytes)?
    } else {
        bail!("neither a TFLite model nor a safetensors file");
    };
    validate::network(&net)?;
    Ok(net)
}

fn looks_like_tflite(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && &bytes[4..8] == b"TFL3"
}

fn looks_like_safetensors(bytes: &[u8]) -> bool {
    bytes.len() > 9 && bytes[8] == b'{'
}

/// The labels file conventionally stored next to the weights: `imagenet_labels_1001.txt`
/// (`index:label` per line) or `imagenet_labels.txt` (one label per line).
pub fn default_labels_path(weights: &Path) -> Option<PathBuf> {
    let dir = weights.parent()?;
    ["imagenet_labels_1001.txt", "imagenet_labels.txt", "labels.txt"].iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

/// Reads a labels file (a regular text file of at most [`MAX_LABELS_FILE_BYTES`]): either
/// `index:label` lines or one label per line (see [`parse_labels`]).
pub fn read_labels(path: &Path) -> Result<Vec<String>> {
    let bytes = input::read_regular_file(path, "labels", MAX_LABELS_FILE_BYTES)?;
    Ok(parse_labels(labels_text(&bytes).with_context(|| format!("labels {}", path.display()))?))
}

/// The text of a labels file: UTF-8 without NUL bytes.
pub fn labels_text(bytes: &[u8]) -> Result<&str> {
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.contains('\0') => Ok(text),
        _ => bail!("not a text file"),
    }
}

/// Parses the text of a labels file: when every line is `index:label`, each label goes to its
/// index (an index left out is an empty label); otherwise one label per line.
pub fn parse_labels(text: &str) -> Vec<String> {
    let indexed: Option<Vec<(usize, &str)>> = text
        .lines()
        .map(|line| {
            let (index, label) = line.split_once(':')?;
            Some((index.trim().parse().ok()?, label.trim()))
        })
        .collect();
    match indexed {
        Some(pairs) if !pairs.is_empty() => {
            let mut labels = vec![String::new(); pairs.iter().map(|p| p.0 + 1).max().unwrap_or(0)];
            for (index, label) in pairs {
                labels[index] = label.to_string();
            }
            labels
        }
        _ => text.lines().map(|line| line.trim().to_string()).collect(),
    }
}

/// Reads the weights of one layer, called in the order of [`Arch::walk`].
trait LayerReader {
    /// The convolution computing `layer` (the stem, a 1×1 or a depthwise convolution).
    fn read_conv(&mut self, layer: &LayerSpec, conv: &ConvSpec) -> Result<Conv>;
    /// The squeeze-and-excite computing `layer`, with a bottleneck of `squeeze` channels.
    fn read_squeeze_excite(&mut self, layer: &LayerSpec, squeeze: usize) -> Result<SqueezeExcite>;
}

/// The stem, the blocks and the head of `arch`, read layer by layer along its walk.
fn read_layers(arch: Arch, reader: &mut impl LayerReader) -> Result<(Conv, Vec<Block>, Conv)> {
    fn take(convs: &mut BTreeMap<LayerId, Conv>, id: LayerId) -> Result<Conv> {
        convs.remove(&id).with_context(|| format!("no convolution was read for layer {id}"))
    }
    let mut convs = BTreeMap::new();
    let mut squeeze_excite = None;
    let mut blocks = Vec::new();
    for layer in arch.walk() {
        match layer.op {
            LayerOp::Stem(conv) | LayerOp::Pointwise(conv) | LayerOp::Depthwise(conv) => {
                convs.insert(layer.id, reader.read_conv(&layer, &conv)?);
            }
            LayerOp::SqueezeExcite { squeeze } => squeeze_excite = Some(reader.read_squeeze_excite(&layer, squeeze)?),
            LayerOp::Residual | LayerOp::Alias => {
                let LayerId::Block { index, .. } = layer.id else { bail!("layer {} is no block output", layer.id) };
                blocks.push(Block {
                    expand: convs.remove(&LayerId::block(index, BlockPart::Expand)),
                    depthwise: take(&mut convs, LayerId::block(index, BlockPart::Depthwise))?,
                    se: squeeze_excite.take(),
                    project: take(&mut convs, LayerId::block(index, BlockPart::Project))?,
                    residual: layer.op == LayerOp::Residual,
                });
            }
        }
    }
    Ok((take(&mut convs, LayerId::Stem)?, blocks, take(&mut convs, LayerId::Head)?))
}
