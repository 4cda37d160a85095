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

mod cli;
mod commands;
mod signals;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;

fn main() -> std::process::ExitCode {
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
        if PROGRESS_LOST.load(Ordering::Relaxed) { Ok(()) } else { std::io::stdout().flush().map_err(stdout_error) }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader has gone (`… | head`): nobody is left to tell.
        Err(e) if e.is::<ClosedStdout>() => std::process::ExitCode::SUCCESS,
        Err(e) => match e.downcast::<Interrupted>() {
            Ok(interrupted) => {
                eprintln!("interrupted: {}", interrupted.message);
                std::process::ExitCode::from(u8::try_from(128 + interrupted.signal).unwrap_or(u8::MAX))
            }
            Err(e) => {
                eprintln!("error: {}", commands::error_line(&e));
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
    let mut out = std::io::stdout().lock();
    out.write_fmt(args).and_then(|()| out.write_all(b"\n")).map_err(stdout_error)
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
    let mut out = std::io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush());
    if let Err(e) = written
        && !PROGRESS_LOST.swap(true, Ordering::Relaxed)
    {
        let what = if e.kind() == std::io::ErrorKind::BrokenPipe {
            "standard output was closed".into()
        } else {
            format!("cannot write to standard output: {e}")
        };
        eprintln!("warning: {what}; the run goes on without printing its progress");
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
