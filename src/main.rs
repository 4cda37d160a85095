//! The `neural-style` command: parses arguments, runs one command, reports any error once, in one
//! line, with a non-zero exit.

/// Prints one line to standard output like `println!`, but returns an error instead of
/// panicking when stdout is full or broken (see [`stdout_line`]).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::stdout_line(format_args!($($arg)*))
    };
}

mod cli;
mod commands;

use std::io::Write;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    quiet_headless_vulkan_layers();
    exit_quietly_on_closed_pipe();
    let result = commands::run(cli.command).and_then(|()| std::io::stdout().flush().map_err(stdout_error));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader has gone (`… | head`): nobody is left to tell.
        Err(e) if e.is::<ClosedStdout>() => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", commands::error_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

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

/// `neural-style … | head` closes stdout early; like other Unix tools, the process then ends
/// quietly (SIGPIPE's default action) instead of panicking in `println!`.
fn exit_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: called at the start of main, before any other thread exists; restores the default
    // disposition of a signal the Rust runtime set to "ignore".
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
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
