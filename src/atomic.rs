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
        if dir.exists() {
            bail!("cannot write {}: {} is not a directory", path.display(), dir.display());
        }
        bail!("cannot write {}: directory {} does not exist", path.display(), dir.display());
    }
    Ok(dir)
}

/// Checks, before any long work, that [`write`] can create `path`: it names a file (not a
/// directory, no trailing `/`), its directory exists, and a file can be created there (one is
/// created and removed again).
pub fn check_writable(path: &Path) -> Result<()> {
    let ends_in_separator = path.as_os_str().to_string_lossy().chars().last().is_some_and(std::path::is_separator);
    if path.file_name().is_none() || ends_in_separator {
        bail!("cannot write {}: that names a directory, not a file", path.display());
    }
    if path.is_dir() {
        bail!("cannot write {}: it is a directory", path.display());
    }
    let dir = destination_dir(path)?;
    temp_file_in(dir).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// A new temporary file in `dir`, removed when dropped unless persisted.
fn temp_file_in(dir: &Path) -> Result<tempfile::NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".neural-style-").suffix(".tmp");
    // A finished output is an ordinary file (rw-r--r--), not the temp file's private mode.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    builder.tempfile_in(dir).with_context(|| format!("cannot create a file in {}", dir.display()))
}

/// Writes `bytes` to `path` atomically.
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = destination_dir(path)?;
    let mut tmp = temp_file_in(dir)?;
    tmp.write_all(bytes).with_context(|| format!("cannot write {}", path.display()))?;
    tmp.as_file().sync_all().with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path).map_err(|e| anyhow::anyhow!("cannot write {}: {}", path.display(), e.error))?;
    Ok(())
}
