//! The `neural-style` command: parses arguments, runs one command, reports any error once, in one
//! line, with a non-zero exit.

mod cli;
mod commands;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    quiet_headless_vulkan_layers();
    exit_quietly_on_closed_pipe();
    match commands::run(cli.command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            std::process::ExitCode::FAILURE
        }
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
