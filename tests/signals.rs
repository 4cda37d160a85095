//! Signals (Unix): SIGINT or SIGTERM during `stylize` ends the run after the current iteration,
//! writes the current image and exits 130 or 143; a second signal ends it at once; and no signal
//! leaves an atomic write's temporary file behind.
#![cfg(unix)]

mod common;

use std::io::BufRead;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use common::*;

/// How long a run may take to answer (a busy two-core machine compiling pipelines).
const PATIENCE: Duration = Duration::from_secs(120);

/// A child `neural-style` whose stdout lines arrive on a channel.
struct Run {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Run {
    fn start(args: &[String]) -> Self {
        let mut child = with_default_sigint(&mut Command::new(env!("CARGO_BIN_EXE_neural-style")))
            .args(args)
            .env("NEURAL_STYLE_WEIGHTS", default_weights())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (send, lines) = channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        Self { child, lines, seen: Vec::new() }
    }

    /// Waits for a progress line of iteration `at_least` or later.
    fn wait_for_iteration(&mut self, at_least: usize) -> usize {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let line = self.lines.recv_timeout(deadline - Instant::now()).expect("no progress line in time");
            self.seen.push(line.clone());
            if let Some(it) = iteration_of(&line).filter(|&it| it >= at_least) {
                return it;
            }
        }
    }

    fn signal(&self, signal: i32) {
        // SAFETY: a plain kill(2) of our own child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    /// Waits for the exit; returns the status, every stdout line and stderr.
    fn finish(mut self) -> (ExitStatus, Vec<String>, String) {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "neural-style did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut self.child.stderr.take().unwrap(), &mut stderr).unwrap();
        self.seen.extend(self.lines.iter());
        (status, self.seen, stderr)
    }
}

/// The iteration of a text progress line (`iteration 12: loss …`).
fn iteration_of(line: &str) -> Option<usize> {
    line.strip_prefix("iteration ")?.split(':').next()?.parse().ok()
}

/// `stylize` of the shared pair into `output` for far more iterations than a test waits for.
fn endless(output: &Path, size: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["stylize", "--content", &image("tubingen.jpg"), "--style", &image("starry_night.jpg")]
        .map(String::from)
        .to_vec();
    args.extend(["--output", output.to_str().unwrap(), "--size", size, "--iterations", "100000"].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Temporary files of atomic writes left in `dir`.
fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".neural-style-") && n.ends_with(".tmp"))
        .collect()
}

/// Signals a run once it is iterating; checks that it stopped after the current iteration,
/// wrote the image whose loss it reported last, said so in one line, and exited 128 + signal.
fn stop_with(signal: i32, name: &str, extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.png");
    let mut run = Run::start(&endless(&output, "48", extra));
    let seen = run.wait_for_iteration(3);
    run.signal(signal);
    let (status, lines, stderr) = run.finish();
    assert_eq!(status.code(), Some(128 + signal), "{status}: {stderr}");
    let last = lines.iter().rev().find_map(|l| iteration_of(l)).unwrap();
    assert!(last >= seen, "progress went back: {lines:?}");
    let stderr_lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let said = format!("interrupted: {name} after {last} of 100000 iterations; wrote the current image to ");
    assert_eq!(stderr_lines.len(), 1, "{stderr}");
    assert!(stderr_lines[0].starts_with(&said), "{stderr}");
    let written = image::open(&output).expect("the current image is written").to_rgb8();
    assert_eq!(written.dimensions(), neural_style::image_io::scaled_size(1024, 768, 48));
    assert_eq!(temp_files(dir.path()), Vec::<String>::new());
}

#[test]
fn sigint_ends_stylize_after_the_current_iteration_writes_the_averaged_image_and_exits_130() {
    if gpu().is_none() {
        return;
    }
    // Reports every 5 iterations: the image after the last update is evaluated once more, so
    // what is written is an image whose loss was reported.
    stop_with(libc::SIGINT, "SIGINT", &["--print-every", "5", "--average", "0.9"]);
}

#[test]
fn sigterm_ends_stylize_after_the_current_iteration_writes_its_image_and_exits_143() {
    if gpu().is_none() {
        return;
    }
    stop_with(libc::SIGTERM, "SIGTERM", &["--print-every", "1", "--save-every", "1"]);
}

#[test]
fn a_second_signal_ends_stylize_at_once_without_temp_files() {
    if gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.png");
    let mut run = Run::start(&endless(&output, "384", &["--scales", "1", "--print-every", "1"]));
    run.wait_for_iteration(1);
    // Both signals reach the process in the same instant, whatever the machine's speed: it is
    // stopped while they are sent (two of one kind would merge into one, so SIGINT and SIGTERM),
    // and the first of them to be handled asks for the end of the iteration, the other ends the
    // run at once. (Sent 100 ms apart, the first one's image was sometimes written before the
    // second arrived.)
    run.signal(libc::SIGSTOP);
    run.signal(libc::SIGINT);
    run.signal(libc::SIGTERM);
    let sent = Instant::now();
    run.signal(libc::SIGCONT);
    let (status, _, stderr) = run.finish();
    assert!(sent.elapsed() < Duration::from_secs(10), "took {:?} to exit", sent.elapsed());
    assert!(
        matches!(status.signal(), Some(libc::SIGINT | libc::SIGTERM)),
        "killed by the second signal: {status}, {stderr}"
    );
    assert!(!output.exists(), "the second signal ended the run before its image");
    assert_eq!(temp_files(dir.path()), Vec::<String>::new());
}

#[test]
fn a_signal_during_an_atomic_write_ends_the_process_only_once_its_temp_file_is_gone() {
    if gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f.safetensors");
    // About 70 MB of activations: writing and syncing them takes long enough to be caught.
    let layers = "stem,block0.depthwise,block0.se,block0.project,block0,block1.expand,block2.expand,block2.depthwise";
    let photo = image("tubingen.jpg");
    let args: Vec<String> = ["features", &photo, "--layers", layers, "--size", "1024", "--out", out.to_str().unwrap()]
        .map(String::from)
        .to_vec();
    let run = Run::start(&args);
    let deadline = Instant::now() + PATIENCE;
    // The write's temporary file once it has data: `features` first creates and removes an empty
    // one to check that the destination is writable.
    let writing =
        |dir: &Path| temp_files(dir).iter().any(|name| std::fs::metadata(dir.join(name)).is_ok_and(|m| m.len() > 0));
    while !writing(dir.path()) {
        assert!(run.child.id() > 0 && Instant::now() < deadline, "no temporary file appeared");
        std::thread::sleep(Duration::from_micros(500));
    }
    run.signal(libc::SIGTERM);
    let (status, _, stderr) = run.finish();
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status}: {stderr}");
    assert_eq!(temp_files(dir.path()), Vec::<String>::new(), "the temporary file was left behind");
    // The write that was under way finished first.
    let bytes = std::fs::read(&out).expect("the write in progress completed");
    assert!(safetensors::SafeTensors::deserialize(&bytes).is_ok());
}
