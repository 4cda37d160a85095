//! Atomic file output: write to a temporary file in the destination directory, then rename, so a
//! reader never sees a half-written file and a failure leaves nothing behind.
//!
//! A signal must not leave a temporary file behind either: a signal handler that ends the
//! process calls [`exit_on_signal`], which waits for the writes in progress to rename or remove
//! their files (and keeps new ones from starting).

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};

/// How many temporary files of this module exist, plus [`EXITING`] once the process is to end.
static TEMP_FILES: AtomicUsize = AtomicUsize::new(0);
/// The bit of [`TEMP_FILES`] that [`exit_on_signal`] sets.
const EXITING: usize = 1 << (usize::BITS - 1);
/// The signal [`exit_on_signal`] ends the process with.
#[cfg(unix)]
static EXIT_SIGNAL: AtomicI32 = AtomicI32::new(0);

/// Ends the process as the signal `signal` does by default (its parent sees it killed by that
/// signal), as soon as no temporary file of an atomic write exists: at once, or when the last
/// write in progress has renamed or removed its file; writes that have not started by then never
/// start. Only async-signal-safe calls: meant for a signal handler.
#[cfg(unix)]
pub fn exit_on_signal(signal: i32) {
    EXIT_SIGNAL.store(signal, Ordering::SeqCst);
    if TEMP_FILES.fetch_or(EXITING, Ordering::SeqCst) & !EXITING == 0 {
        die(signal);
    }
}

/// Ends the process with `signal`'s default action (and, should that return, exit status
/// 128 + `signal`).
#[cfg(unix)]
fn die(signal: i32) -> ! {
    // SAFETY: async-signal-safe calls on a local signal set; the default action of the signals
    // this is used with ends the process.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        // Inside the handler of `signal` it is blocked: unblock it so that it is delivered now.
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(signal);
        libc::_exit(128 + signal)
    }
}

/// Counts a temporary file in [`TEMP_FILES`] while it exists: made before the file is created and
/// dropped after it was renamed or removed.
struct TempFileGuard;

impl TempFileGuard {
    fn enter() -> Self {
        let mut current = TEMP_FILES.load(Ordering::SeqCst);
        loop {
            if current & EXITING != 0 {
                // The process is ending (see `exit_on_signal`): no new file.
                loop {
                    std::thread::park();
                }
            }
            match TEMP_FILES.compare_exchange_weak(current, current + 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Self,
                Err(now) => current = now,
            }
        }
    }
}

impl Drop for TempFileGuard {
    fn drop(&mut self) {
        let before = TEMP_FILES.fetch_sub(1, Ordering::SeqCst);
        // The last file is gone and a signal asked to end the process.
        #[cfg(unix)]
        if before == EXITING | 1 {
            die(EXIT_SIGNAL.load(Ordering::SeqCst));
        }
        #[cfg(not(unix))]
        let _ = before;
    }
}

/// The directory `path` will be written in, which must exist.
pub fn destination_dir(path: &Path) -> Result<&Path> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        if let Err(e) = std::fs::metadata(dir)
            && e.kind() == std::io::ErrorKind::InvalidFilename
        {
            bail!("cannot write {}: the name is too long", path.display());
        }
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
    check_name(path)?;
    let dir = destination_dir(path)?;
    let _counted = TempFileGuard::enter();
    temp_file_in(dir).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Fails when the file name of `path` is longer than the file system of its directory allows
/// (`NAME_MAX`), which only the final rename would otherwise find.
pub fn check_name(path: &Path) -> Result<()> {
    let Some(name) = path.file_name() else { return Ok(()) };
    let max = name_max(destination_dir(path)?);
    let len = name.as_encoded_bytes().len();
    if len > max {
        bail!(
            "cannot write {}: its file name is {len} bytes, longer than the {max} its file system allows",
            path.display()
        );
    }
    Ok(())
}

/// The longest file name the file system of `dir` allows.
fn name_max(dir: &Path) -> usize {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        if let Ok(dir) = std::ffi::CString::new(dir.as_os_str().as_bytes()) {
            // SAFETY: a valid NUL-terminated path.
            let max = unsafe { libc::pathconf(dir.as_ptr(), libc::_PC_NAME_MAX) };
            if max > 0 {
                return max as usize;
            }
        }
    }
    255
}

/// A new temporary file in `dir`, removed when dropped unless persisted; only while a
/// [`TempFileGuard`] is held.
fn temp_file_in(dir: &Path) -> Result<tempfile::NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".neural-style-").suffix(".tmp");
    // A finished output is an ordinary file (rw-r--r--), not the temp file's private mode.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    builder.tempfile_in(dir).with_context(|| format!("cannot create a file in {}", dir.display()))
}

/// Writes `bytes` to `path` atomically; a file replaced keeps its permissions.
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = destination_dir(path)?;
    // Dropped after `tmp` (renamed or removed by then).
    let _counted = TempFileGuard::enter();
    let mut tmp = temp_file_in(dir)?;
    if let Ok(replaced) = std::fs::metadata(path)
        && replaced.is_file()
    {
        tmp.as_file()
            .set_permissions(replaced.permissions())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    tmp.write_all(bytes).with_context(|| format!("cannot write {}", path.display()))?;
    tmp.as_file().sync_all().with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path).map_err(|e| anyhow::anyhow!("cannot write {}: {}", path.display(), e.error))?;
    Ok(())
}
