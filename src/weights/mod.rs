//! Weight files: finding them, and reading TFLite and torchvision safetensors into a [`Network`].

mod tflite;
#[rustfmt::skip]
pub mod tflite_schema;
mod torchvision;
mod validate;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::input;
use crate::model::Network;

pub use validate::{MAX_MAGNITUDE, check_activations};

/// Largest weights file read, in bytes (1 GiB); larger files are refused before reading.
pub const MAX_WEIGHTS_FILE_BYTES: u64 = 1 << 30;

/// Environment variable naming the default weights file.
pub const WEIGHTS_ENV: &str = "NEURAL_STYLE_WEIGHTS";

/// Resolves the weights path: the explicit `--weights` value, else `$NEURAL_STYLE_WEIGHTS`.
pub fn resolve_path(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    match std::env::var_os(WEIGHTS_ENV) {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => bail!(
            "no weights given: pass --weights FILE (a MobileNetV3 .tflite or torchvision .safetensors) \
             or set {WEIGHTS_ENV}; see weights/README.md for where to get them"
        ),
    }
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

/// Reads a labels file: either `index:label` lines or one label per line.
pub fn read_labels(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read labels {}", path.display()))?;
    let mut labels = Vec::new();
    for line in text.lines() {
        let label = match line.split_once(':') {
            Some((idx, rest)) if idx.trim().parse::<usize>().is_ok() => rest.trim(),
            _ => line.trim(),
        };
        labels.push(label.to_string());
    }
    Ok(labels)
}
