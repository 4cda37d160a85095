//! Ctrl-C (SIGINT), SIGTERM and SIGHUP. While a run that can stop is registered
//! ([`cancel_on_signal`]), the first signal only sets its cancel flag: `stylize` then ends after
//! the current iteration and writes its image. Otherwise, and at a second signal, the process
//! ends at once, but never while an atomic write has a temporary file on disk
//! ([`neural_style::atomic::exit_on_signal`] waits for it).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, OnceLock};

/// The cancel flag of the run in progress.
static CANCEL: OnceLock<Arc<AtomicBool>> = OnceLock::new();
/// The first signal received (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// Installs the handler for SIGINT, SIGTERM and SIGHUP, except where the signal was ignored
/// when the process started (`nohup`, a background job): it stays ignored.
pub fn install() {
    #[cfg(unix)]
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: plain sigaction calls on zero-initialized structs; the handler only touches
        // atomics and async-signal-safe libc calls.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut old) != 0 || old.sa_sigaction == libc::SIG_IGN {
                continue;
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// A cancel flag that the first signal sets from now on, instead of ending the process.
pub fn cancel_on_signal() -> Arc<AtomicBool> {
    CANCEL.get_or_init(|| Arc::new(AtomicBool::new(false))).clone()
}

/// The first signal received, if any.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// The name of a signal this module handles.
pub fn name(signal: i32) -> String {
    #[cfg(unix)]
    match signal {
        libc::SIGINT => return "SIGINT".into(),
        libc::SIGTERM => return "SIGTERM".into(),
        libc::SIGHUP => return "SIGHUP".into(),
        _ => {}
    }
    format!("signal {signal}")
}

#[cfg(unix)]
extern "C" fn on_signal(signal: libc::c_int) {
    let first = RECEIVED.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst).is_ok();
    match CANCEL.get() {
        Some(cancel) if first => cancel.store(true, Ordering::SeqCst),
        _ => neural_style::atomic::exit_on_signal(signal),
    }
}
