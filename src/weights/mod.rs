//! Weight files: finding them, installing them ([`store`], [`fetch`] with the `fetch` feature), and
//! reading TFLite and torchvision safetensors into a [`Network`].

#[cfg(feature = "fetch")]
pub mod fetch;
pub mod store;
mod tflite;
#[rustfmt::skip]
pub mod tflite_schema;
mod torchvision;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::model::Network;

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
    bail!(
        "no weights: run `neural-style weights fetch` to download and install the default model \
         (offline: `neural-style weights import FILE`), or pass --weights FILE or set {WEIGHTS_ENV}"
    )
}

/// Loads a network from a `.tflite` or `.safetensors` file (chosen by content, not extension).
pub fn load(path: &Path) -> Result<Network> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read weights {}", path.display()))?;
    load_bytes(&bytes).with_context(|| format!("weights {}", path.display()))
}

/// Loads a network from the bytes of a `.tflite` or `.safetensors` file.
pub fn load_bytes(bytes: &[u8]) -> Result<Network> {
    if bytes.len() >= 8 && &bytes[4..8] == b"TFL3" {
        tflite::load(bytes)
    } else if looks_like_safetensors(bytes) {
        torchvision::load(bytes)
    } else {
        bail!("neither a TFLite model nor a safetensors file");
    }
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
    Ok(parse_labels(&text))
}

/// Parses the text of a labels file: either `index:label` lines or one label per line.
pub fn parse_labels(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| match line.split_once(':') {
            Some((idx, rest)) if idx.trim().parse::<usize>().is_ok() => rest.trim().to_string(),
            _ => line.trim().to_string(),
        })
        .collect()
}
