//! Reading input files (images, weights) whole, refusing what cannot be one: devices, pipes,
//! directories, and files above a size cap, all checked before a byte is read.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Checks, without reading it, that `path` (a `what`, e.g. "image") is a regular file of at
/// most `cap` bytes.
pub fn check_regular_file(path: &Path, what: &str, cap: u64) -> Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot open {what} {}", path.display()))?;
    check(path, what, &meta, cap)
}

/// Reads `path` (a `what`, e.g. "image") whole when it is a regular file of at most `cap` bytes.
pub fn read_regular_file(path: &Path, what: &str, cap: u64) -> Result<Vec<u8>> {
    // The path's metadata first: opening a FIFO would block until a writer appears.
    let meta = std::fs::metadata(path).with_context(|| format!("cannot open {what} {}", path.display()))?;
    check(path, what, &meta, cap)?;
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {what} {}", path.display()))?;
    // The open file again, in case the path was replaced in between.
    check(path, what, &file.metadata().with_context(|| format!("cannot read {what} {}", path.display()))?, cap)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(cap + 1).read_to_end(&mut bytes).with_context(|| format!("cannot read {what} {}", path.display()))?;
    if bytes.len() as u64 > cap {
        bail!("{what} {} grew above the {} MiB limit while being read", path.display(), cap >> 20);
    }
    Ok(bytes)
}

fn check(path: &Path, what: &str, meta: &std::fs::Metadata, cap: u64) -> Result<()> {
    if !meta.is_file() {
        let kind = if meta.is_dir() { "a directory" } else { "a device, pipe or socket" };
        bail!("cannot read {what} {}: it is {kind}, not a regular file", path.display());
    }
    if meta.len() > cap {
        bail!(
            "cannot read {what} {}: it has {} bytes, above the {} MiB limit for {what} files",
            path.display(),
            meta.len(),
            cap >> 20
        );
    }
    Ok(())
}
