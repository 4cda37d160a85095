//! The `neural-style` command: parses arguments, runs one command, reports any error once, in one
//! line, with a non-zero exit.

/// Prints one line to standard output like `println!`, but returns an error instead of
/// panicking when stdout is full or broken (see [`stdout_line`]).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::stdout_line(format_args!($($arg)*))
    };
}

/// Prints one line of progress to standard output, best effort (see [`progress_line`]): a long
/// run goes on, and still writes its result, when nobody reads its progress any more.
macro_rules! progressln {
    ($($arg:tt)*) => {
        $crate::progress_line(format_args!($($arg)*))
    };
}

/// Prints one line to standard error like `eprintln!`, best effort: a full or closed stderr
/// (`2>/dev/full`) loses the message instead of panicking, and the command goes on.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod cli;
mod commands;
mod signals;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;

fn main() -> std::process::ExitCode {
    note_closed_stdout();
    let cli = cli::Cli::parse();
    signals::install();
    quiet_headless_vulkan_layers();
    // A run's progress is best effort: for `stylize` a closed stdout stays an error of the write
    // (SIGPIPE ignored, Rust's default), which only silences the progress.
    if !matches!(cli.command, cli::Command::Stylize(_)) {
        exit_quietly_on_closed_pipe();
    }
    let result = commands::run(cli.command).and_then(|()| {
        // Progress that was already lost (and reported) does not fail the run at the end.
        if PROGRESS_LOST.load(Ordering::Relaxed) || STDOUT_CLOSED.load(Ordering::Relaxed) {
            Ok(())
        } else {
            std::io::stdout().flush().map_err(stdout_error)
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader has gone (`… | head`): nobody is left to tell.
        Err(e) if e.is::<ClosedStdout>() => std::process::ExitCode::SUCCESS,
        Err(e) => match e.downcast::<Interrupted>() {
            Ok(interrupted) => {
                errln!("interrupted: {}", interrupted.message);
                std::process::ExitCode::from(u8::try_from(128 + interrupted.signal).unwrap_or(u8::MAX))
            }
            Err(e) => {
                errln!("error: {}", commands::error_line(&e));
                std::process::ExitCode::FAILURE
            }
        },
    }
}

/// A signal stopped the command after it finished what it could (`stylize` wrote its image):
/// `message` is said on stderr and the exit status is 128 + `signal`, as for a process killed by
/// it.
#[derive(Debug)]
pub struct Interrupted {
    /// The signal.
    pub signal: i32,
    /// What was done, one line.
    pub message: String,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Interrupted {}

/// Standard output was closed by its reader.
#[derive(Debug)]
struct ClosedStdout;

impl std::fmt::Display for ClosedStdout {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for ClosedStdout {}

/// Writes `args` and a newline to stdout. A closed pipe becomes [`ClosedStdout`] (the process
/// then ends quietly), any other failure (a full disk, `> /dev/full`) a one-line error.
fn stdout_line(args: std::fmt::Arguments) -> anyhow::Result<()> {
    write_stdout_line(args).map_err(stdout_error)
}

/// Writes `args` and a newline to stdout and flushes; a stdout that was closed when the process
/// started (`>&-`) is an error (Rust's stdout would drop the lines silently).
fn write_stdout_line(args: std::fmt::Arguments) -> std::io::Result<()> {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return Err(std::io::Error::other("it is closed (bad file descriptor)"));
    }
    let mut out = std::io::stdout().lock();
    out.write_fmt(args).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush())
}

/// Set when standard output was closed when the process started.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Remembers whether standard output was closed when the process started (`>&-`). Rust's
/// runtime opens `/dev/null` read-write on a closed standard descriptor before `main` (so that no
/// file opened later takes it), which a shell's `>/dev/null` (write-only) never does.
fn note_closed_stdout() {
    #[cfg(unix)]
    // SAFETY: plain descriptor queries into zeroed local structs.
    unsafe {
        let flags = libc::fcntl(1, libc::F_GETFL);
        let (mut out, mut null): (libc::stat, libc::stat) = (std::mem::zeroed(), std::mem::zeroed());
        // st_mode is u32 but mode_t (S_IFMT, S_IFCHR) u16 on 32-bit Android: compare as u32.
        #[allow(clippy::unnecessary_cast)]
        let closed = flags == -1
            || (flags & libc::O_ACCMODE == libc::O_RDWR
                && libc::fstat(1, &mut out) == 0
                && libc::stat(c"/dev/null".as_ptr(), &mut null) == 0
                && (out.st_mode as u32) & (libc::S_IFMT as u32) == libc::S_IFCHR as u32
                && out.st_rdev == null.st_rdev);
        STDOUT_CLOSED.store(closed, Ordering::Relaxed);
    }
}

fn stdout_error(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        ClosedStdout.into()
    } else {
        anyhow::anyhow!("cannot write to standard output: {e}")
    }
}

/// `neural-style … | head` closes stdout early; like other Unix tools, a listing command then
/// ends quietly (SIGPIPE's default action) instead of panicking in `println!`.
fn exit_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: called at the start of main, before any other thread exists; restores the default
    // disposition of a signal the Rust runtime set to "ignore".
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Set once a line of [`progress_line`] could not be written.
static PROGRESS_LOST: AtomicBool = AtomicBool::new(false);

/// Writes `args` and a newline to stdout, best effort: the first failure (a closed pipe, a full
/// disk) is reported once on stderr and the later lines are dropped.
fn progress_line(args: std::fmt::Arguments) {
    if PROGRESS_LOST.load(Ordering::Relaxed) {
        return;
    }
    if let Err(e) = write_stdout_line(args)
        && !PROGRESS_LOST.swap(true, Ordering::Relaxed)
    {
        let what = if e.kind() == std::io::ErrorKind::BrokenPipe {
            "standard output was closed".into()
        } else {
            format!("cannot write to standard output: {e}")
        };
        errln!("warning: {what}; the run goes on without printing its progress");
    }
}

/// Mesa's device-select Vulkan layer tries to reach a Wayland display and prints errors when there
/// is none (headless machines, CI). It only reorders adapters, which wgpu does itself, so it is
/// turned off when no display session exists.
fn quiet_headless_vulkan_layers() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() && std::env::var_os("NODEVICE_SELECT").is_none() {
        // SAFETY: called at the start of main, before any other thread exists.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
}
