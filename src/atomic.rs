//! Atomic file output: write to a temporary file in the destination directory, then rename, so a
//! reader never sees a half-written file and a failure leaves nothing behind.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// The directory `path` will be written in, which must exist.
pub fn destination_dir(path: &Path) -> Result<&Path> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!("cannot write {}: directory {} does not exist", path.display(), dir.display());
    }
    Ok(dir)
}

/// Writes `bytes` to `path` atomically.
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = destination_dir(path)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".neural-style-").suffix(".tmp");
    // A finished output is an ordinary file (rw-r--r--), not the temp file's private mode.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let mut tmp = builder.tempfile_in(dir).with_context(|| format!("cannot create a file in {}", dir.display()))?;
    tmp.write_all(bytes).with_context(|| format!("cannot write {}", path.display()))?;
    tmp.as_file().sync_all().with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path).map_err(|e| anyhow::anyhow!("cannot write {}: {}", path.display(), e.error))?;
    Ok(())
}
