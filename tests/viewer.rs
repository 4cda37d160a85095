//! The live viewer under Xvfb: the window shows the image being optimized (compared with the
//! written output, on Vulkan and on OpenGL), keys drive it (Space, S, Tab, +, Esc), Android's
//! lifecycle (suspend: surface and window dropped, snapshot, run stopped; resume: a new window
//! and surface, the same run going on) played on the viewer's own handler, and without a display
//! `--viewer` is a one-line error while `--viewer=auto` runs headless. Linux only (X11 through
//! Xvfb).
#![cfg(all(feature = "viewer", target_os = "linux"))]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Viewer tests run one at a time: each starts its own X server on a free display number, and two
/// starting at once could pick the same one.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// How long any one expected change of the window may take. Generous: a cold CI machine starts
/// Xvfb (compiling its keymap) and the viewer (compiling its pipelines) on two busy cores.
const PATIENCE: Duration = Duration::from_secs(120);

/// A private X server for one test, stopped on drop.
struct Xvfb {
    child: Child,
    display: String,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl Xvfb {
    /// Starts Xvfb and waits until it answers, or returns `None` (skip) when the tools are
    /// missing, unless GPU tests are required, in which case missing tools fail the test.
    fn start() -> Option<Self> {
        let have = |tool: &str| {
            Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success())
        };
        if !(have("Xvfb") && have("xdotool") && have("import")) {
            assert!(!gpu_required(), "viewer tests need Xvfb, xdotool and ImageMagick's import");
            eprintln!("skipping viewer test: Xvfb, xdotool or import missing");
            return None;
        }
        gpu()?;
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        // A display number no other server holds; if our server exits while the probe waits (a
        // server on that number that was just going away answered instead), take the next one.
        let probe = |display: &str| {
            Command::new("xdotool").args(["getdisplaygeometry"]).env("DISPLAY", display).output().expect("xdotool")
        };
        let mut numbers = 100..400;
        loop {
            let n = numbers.find(|n| {
                !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() && !Path::new(&format!("/tmp/.X{n}-lock")).exists()
            })?;
            let display = format!(":{n}");
            let mut child = Command::new("Xvfb")
                .args([&display, "-screen", "0", "800x600x24", "-nolisten", "tcp"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut exited = false;
            while !exited && !probe(&display).status.success() {
                assert!(Instant::now() < deadline, "Xvfb {display} did not start");
                std::thread::sleep(Duration::from_millis(50));
                exited = child.try_wait().unwrap().is_some();
            }
            // It answered: make sure it was ours.
            std::thread::sleep(Duration::from_millis(100));
            if !exited && child.try_wait().unwrap().is_none() {
                return Some(Self { child, display, _turn: turn });
            }
        }
    }

    fn xdotool(&self, args: &[&str]) -> Output {
        Command::new("xdotool").args(args).env("DISPLAY", &self.display).output().expect("xdotool")
    }

    /// Waits for the neural-style window whose title satisfies `ready`; returns its id and title.
    /// Fails at once, with the viewer's stderr, if the viewer exits first.
    fn window(&self, viewer: &mut Viewer, ready: impl Fn(&str) -> bool) -> (String, String) {
        let deadline = Instant::now() + PATIENCE;
        let mut last = String::from("(no window)");
        loop {
            let found = self.xdotool(&["search", "--name", "neural-style"]);
            for id in String::from_utf8_lossy(&found.stdout).lines() {
                let title = self.title(id);
                if ready(&title) {
                    return (id.to_string(), title);
                }
                last = title;
            }
            viewer.assert_running();
            assert!(Instant::now() < deadline, "no ready neural-style window; last title: {last}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn title(&self, id: &str) -> String {
        String::from_utf8_lossy(&self.xdotool(&["getwindowname", id]).stdout).trim().to_string()
    }

    /// Focuses the window and types a key (XTEST, as a user would). The caller waits for its
    /// effect: the viewer handles the key between frames.
    fn key(&self, id: &str, key: &str) {
        assert!(self.xdotool(&["windowfocus", "--sync", id]).status.success(), "cannot focus window {id}");
        assert!(self.xdotool(&["key", key]).status.success(), "xdotool key {key}");
    }

    fn screenshot(&self, id: &str, path: &Path) -> image::RgbImage {
        let out = Command::new("import")
            .args(["-window", id, path.to_str().unwrap()])
            .env("DISPLAY", &self.display)
            .output()
            .unwrap();
        assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));
        image::open(path).unwrap().to_rgb8()
    }
}

impl Drop for Xvfb {
    /// SIGTERM lets Xvfb remove its socket and lock file; SIGKILL only if it does not exit.
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `neural-style stylize --viewer` process; its stderr goes to a file (a pipe nobody reads
/// could fill and block it). Killed on drop if still running.
struct Viewer {
    child: Child,
    stderr: PathBuf,
}

impl Viewer {
    fn start(x: &Xvfb, dir: &Path, output: &Path, extra: &[&str]) -> Self {
        let img = |n: &str| shared().join("images").join(n).to_str().unwrap().to_string();
        let stderr = dir.join("viewer-stderr.txt");
        let child = with_default_sigint(&mut Command::new(env!("CARGO_BIN_EXE_neural-style")))
            .args([
                "stylize",
                "--content",
                &img("tubingen.jpg"),
                "--style",
                &img("starry_night.jpg"),
                "--output",
                output.to_str().unwrap(),
                "--viewer",
            ])
            .args(extra)
            .env("DISPLAY", &x.display)
            .env_remove("WAYLAND_DISPLAY")
            .env("NEURAL_STYLE_WEIGHTS", default_weights())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Self { child, stderr }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Fails the test if the viewer has exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("neural-style exited early ({status}): {}", self.stderr());
        }
    }

    /// Waits for the viewer to exit; returns whether it succeeded, and its stderr.
    fn wait_exit(self) -> (bool, String) {
        let (status, stderr) = self.wait_status();
        (status.success(), stderr)
    }

    /// Waits for the viewer to exit; returns its exit status and stderr.
    fn wait_status(mut self) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, self.stderr());
            }
            assert!(Instant::now() < deadline, "neural-style did not exit: {}", self.stderr());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A run that does not end by itself (32 px, Adam, 100000 iterations), once its window shows
/// iteration 2; returns the viewer and the window id.
fn endless_run(x: &Xvfb, dir: &Path, output: &Path) -> (Viewer, String) {
    let mut viewer = Viewer::start(x, dir, output, &["--size", "32", "--iterations", "100000", "--optimizer", "adam"]);
    let (id, _) = x.window(&mut viewer, |t| t.contains("iteration") && iteration_in(t) >= 2);
    (viewer, id)
}

/// Waits until `check` holds (a file appears), failing after [`PATIENCE`].
fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// "… iteration 12/500 …" → 12.
fn iteration_in(title: &str) -> usize {
    let rest = title.split("iteration ").nth(1).expect("iteration in title");
    rest.split('/').next().unwrap().parse().unwrap()
}

#[test]
fn window_shows_the_image_being_optimized_and_esc_writes_the_output() {
    let Some(x) = Xvfb::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.png");
    let mut viewer =
        Viewer::start(&x, dir.path(), &output, &["--size", "64", "--iterations", "12", "--save-every", "5"]);
    let (id, title) = x.window(&mut viewer, |t| t.contains("done"));
    assert!(
        title.contains("iteration 12/12")
            && title.contains("it/s")
            && title.contains(&format!("style weight {}", neural_style::stylize::DEFAULT_STYLE_WEIGHT)),
        "{title}"
    );
    // The output is written when the run completes; the window keeps showing that image.
    let written = image::open(&output).expect("output written at completion").to_rgb8();
    assert!(
        dir.path().join("out_5.png").is_file() && dir.path().join("out_10.png").is_file(),
        "--save-every snapshots"
    );
    let shot = x.screenshot(&id, &dir.path().join("shot.png"));
    let (w, h) = written.dimensions();
    let scale = (shot.width() as f64 / w as f64).min(shot.height() as f64 / h as f64);
    let (ox, oy) = ((shot.width() as f64 - scale * w as f64) / 2.0, (shot.height() as f64 - scale * h as f64) / 2.0);
    let (mut diff, mut sum, mut sum2) = (0.0, 0.0, 0.0);
    for y in 0..h {
        for xx in 0..w {
            let sx = (ox + (xx as f64 + 0.5) * scale) as u32;
            let sy = (oy + (y as f64 + 0.5) * scale) as u32;
            let (a, b) = (shot.get_pixel(sx, sy), written.get_pixel(xx, y));
            for c in 0..3 {
                diff += (a[c] as f64 - b[c] as f64).abs();
                sum += a[c] as f64;
                sum2 += (a[c] as f64).powi(2);
            }
        }
    }
    let count = (w * h * 3) as f64;
    let std = (sum2 / count - (sum / count).powi(2)).sqrt();
    assert!(std > 20.0, "the window is (nearly) uniform: std {std}");
    assert!(diff / count < 2.0, "the window differs from the written image: mean abs diff {}", diff / count);
    std::fs::remove_file(&output).unwrap();
    x.key(&id, "Tab");
    x.window(&mut viewer, |t| t.contains("content photo"));
    x.key(&id, "Escape");
    let (ok, stderr) = viewer.wait_exit();
    assert!(ok, "{stderr}");
    assert!(image::open(&output).is_ok(), "Esc writes the current result");
}

#[test]
fn space_pauses_s_saves_and_plus_doubles_the_style_weight() {
    let Some(x) = Xvfb::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.png");
    let (mut viewer, id) = endless_run(&x, dir.path(), &output);
    x.key(&id, "space");
    let paused = x.window(&mut viewer, |t| t.contains("paused")).1;
    std::thread::sleep(Duration::from_millis(800));
    let still = x.title(&id);
    assert!(still.contains("paused"), "{still}");
    assert_eq!(iteration_in(&paused), iteration_in(&still), "no progress while paused");
    x.key(&id, "s");
    let snapshot_written = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().into_string().unwrap())
            .any(|n| n.starts_with("out_") && n.ends_with(".png"))
    };
    eventually("S writes a snapshot", snapshot_written);
    x.key(&id, "plus");
    let doubled = format!("style weight {}", 2.0 * neural_style::stylize::DEFAULT_STYLE_WEIGHT);
    x.window(&mut viewer, |t| t.contains(&doubled));
    x.key(&id, "space");
    x.window(&mut viewer, |t| !t.contains("paused") && iteration_in(t) > iteration_in(&still));
    x.key(&id, "Escape");
    let (ok, stderr) = viewer.wait_exit();
    assert!(ok, "{stderr}");
    assert!(image::open(&output).is_ok());
}

#[test]
fn the_key_press_that_arrives_with_the_focus_acts_once() {
    let Some(x) = Xvfb::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.png");
    let (mut viewer, id) = endless_run(&x, dir.path(), &output);
    // The window gains focus and Space goes down before the viewer reads either event, as when
    // a key is typed right after focusing: winit then reports a synthetic press on focus and the
    // real press. Pausing the process makes that order certain.
    let pid = viewer.child.id().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    assert!(x.xdotool(&["windowfocus", "--sync", &id]).status.success());
    assert!(x.xdotool(&["keydown", "space"]).status.success());
    assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    std::thread::sleep(Duration::from_millis(200));
    assert!(x.xdotool(&["keyup", "space"]).status.success());
    // Events are handled in order: once Tab's effect shows, Space has been handled.
    x.key(&id, "Tab");
    let title = x.window(&mut viewer, |t| t.contains("content photo")).1;
    assert!(title.contains("paused"), "one press of Space pauses: {title}");
    x.key(&id, "Escape");
    let (ok, stderr) = viewer.wait_exit();
    assert!(ok, "{stderr}");
}

#[cfg(unix)]
#[test]
fn ctrl_c_closes_the_window_even_when_paused_writes_the_current_image_and_exits_130() {
    let Some(x) = Xvfb::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.png");
    let (mut viewer, id) = endless_run(&x, dir.path(), &output);
    // Paused, the window draws no frames; the signal is still seen.
    x.key(&id, "space");
    x.window(&mut viewer, |t| t.contains("paused"));
    // SAFETY: a plain kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(viewer.child.id() as i32, libc::SIGINT) }, 0);
    let (status, stderr) = viewer.wait_status();
    assert_eq!(status.code(), Some(130), "{status}: {stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("interrupted: SIGINT after ")), "{stderr}");
    assert!(image::open(&output).is_ok(), "the current image is written");
}

#[test]
fn viewer_without_a_display_is_a_clear_error_or_falls_back_when_auto() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.png");
    let img = |n: &str| shared().join("images").join(n).to_str().unwrap().to_string();
    let run = |mode: &str| {
        Command::new(env!("CARGO_BIN_EXE_neural-style"))
            .args(["stylize", "--content", &img("tubingen.jpg"), "--style", &img("starry_night.jpg")])
            .args(["--output", output.to_str().unwrap(), "--size", "32", "--iterations", "3", mode])
            .env("NEURAL_STYLE_WEIGHTS", default_weights())
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .output()
            .unwrap()
    };
    let out = run("--viewer");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && !stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("error: cannot open a window"), "{stderr}");
    assert!(!output.exists());
    if gpu().is_none() {
        return;
    }
    let out = run("--viewer=auto");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning: cannot open a window"));
    assert!(image::open(&output).is_ok());
}

/// Mean absolute difference between the window's picture and `written`, scaled to fit it.
fn window_difference(x: &Xvfb, id: &str, dir: &Path, written: &image::RgbImage) -> f64 {
    let shot = x.screenshot(id, &dir.join("shot.png"));
    let (w, h) = written.dimensions();
    let scale = (shot.width() as f64 / w as f64).min(shot.height() as f64 / h as f64);
    let (ox, oy) = ((shot.width() as f64 - scale * w as f64) / 2.0, (shot.height() as f64 - scale * h as f64) / 2.0);
    let mut diff = 0.0;
    for y in 0..h {
        for xx in 0..w {
            let sx = (ox + (xx as f64 + 0.5) * scale) as u32;
            let sy = (oy + (y as f64 + 0.5) * scale) as u32;
            let (a, b) = (shot.get_pixel(sx, sy), written.get_pixel(xx, y));
            diff += (0..3).map(|c| (a[c] as f64 - b[c] as f64).abs()).sum::<f64>();
        }
    }
    diff / (w * h * 3) as f64
}

#[test]
fn across_scales_the_title_shows_the_scale_and_the_window_follows_its_size() {
    let Some(x) = Xvfb::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.png");
    let args = ["--size", "64", "--scales", "auto", "--min-size", "32", "--iterations", "12", "--save-every", "4"];
    let mut viewer = Viewer::start(&x, dir.path(), &output, &args);
    let (id, title) = x.window(&mut viewer, |t| t.contains("done"));
    assert!(title.contains("scale 3/3 (64×") && title.contains("iteration 4/4"), "{title}");
    let written = image::open(&output).expect("output written at completion").to_rgb8();
    assert_eq!(written.width().max(written.height()), 64);
    for scale in 1..=3 {
        assert!(dir.path().join(format!("out_s{scale}_4.png")).is_file(), "snapshot of scale {scale}");
    }
    let diff = window_difference(&x, &id, dir.path(), &written);
    assert!(diff < 2.0, "the window differs from the written image: mean abs diff {diff}");
    x.key(&id, "Escape");
    let (ok, stderr) = viewer.wait_exit();
    assert!(ok, "{stderr}");
}

#[test]
fn on_opengl_the_window_shows_the_image_being_optimized() {
    // OpenGL presents through EGL on the window's X11 display (Mesa's llvmpipe here): the
    // instance must be given that display, or no GL adapter can present to the window.
    if gpu_on(neural_style::gpu::BackendChoice::Gl).is_none() {
        return;
    }
    let Some(x) = Xvfb::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.png");
    let args = ["--backend", "gl", "--size", "64", "--iterations", "12"];
    let mut viewer = Viewer::start(&x, dir.path(), &output, &args);
    let (id, title) = x.window(&mut viewer, |t| t.contains("done"));
    assert!(title.contains("iteration 12/12"), "{title}");
    let written = image::open(&output).expect("output written at completion").to_rgb8();
    let diff = window_difference(&x, &id, dir.path(), &written);
    assert!(diff < 2.0, "the window differs from the written image: mean abs diff {diff}");
    x.key(&id, "Escape");
    let (ok, stderr) = viewer.wait_exit();
    assert!(ok, "{stderr}");
}

/// Set in the child process of the lifecycle test (see below).
const LIFECYCLE_CHILD: &str = "NEURAL_STYLE_LIFECYCLE_CHILD";

#[test]
fn suspend_drops_the_window_and_resume_goes_on_with_the_same_run() {
    // winit's event loop lives once per process and reads DISPLAY: the test runs its second
    // half in a child process on its own X server.
    let Some(x) = Xvfb::start() else { return };
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "lifecycle_in_this_process", "--ignored", "--nocapture", "--test-threads=1"])
        .env("DISPLAY", &x.display)
        .env_remove("WAYLAND_DISPLAY")
        .env(LIFECYCLE_CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("1 passed"), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
}

/// What the lifecycle test saw, in order.
#[derive(Debug, PartialEq)]
enum Seen {
    Progress {
        iteration: usize,
        loss: f32,
        elapsed_s: f64,
    },
    Snapshot(usize),
    Finished,
    Suspended,
    Resumed,
    /// A frame drawn in this window.
    Redraw(winit::window::WindowId),
    /// The neural-style windows on the screen when the run finished.
    WindowsAtEnd(usize),
}

/// Plays Android's lifecycle on the viewer's own handler: forwards winit's events to it and,
/// once the run has made a few iterations, sends `suspended`, waits, then `resumed`.
struct Lifecycle<A> {
    app: A,
    seen: std::rc::Rc<std::cell::RefCell<Vec<Seen>>>,
    suspended_until: Option<Instant>,
    resumed: bool,
}

/// Iterations before the app is sent to the background, and how long it stays there.
const SUSPEND_AFTER: usize = 5;
const SUSPENDED_FOR: Duration = Duration::from_millis(700);

impl<A: winit::application::ApplicationHandler> winit::application::ApplicationHandler for Lifecycle<A> {
    fn resumed(&mut self, event_loop: &winit::event_loop::ActiveEventLoop) {
        self.app.resumed(event_loop);
    }

    fn suspended(&mut self, event_loop: &winit::event_loop::ActiveEventLoop) {
        self.app.suspended(event_loop);
    }

    fn window_event(
        &mut self,
        event_loop: &winit::event_loop::ActiveEventLoop,
        id: winit::window::WindowId,
        event: winit::event::WindowEvent,
    ) {
        if event == winit::event::WindowEvent::RedrawRequested {
            self.seen.borrow_mut().push(Seen::Redraw(id));
        }
        self.app.window_event(event_loop, id, event);
    }

    fn about_to_wait(&mut self, event_loop: &winit::event_loop::ActiveEventLoop) {
        use winit::event_loop::ControlFlow;
        let progressed = self
            .seen
            .borrow()
            .iter()
            .any(|s| matches!(s, Seen::Progress { iteration, .. } if *iteration >= SUSPEND_AFTER));
        match self.suspended_until {
            None if progressed && !self.resumed => {
                self.seen.borrow_mut().push(Seen::Suspended);
                self.app.suspended(event_loop);
                self.suspended_until = Some(Instant::now() + SUSPENDED_FOR);
            }
            Some(until) if Instant::now() >= until => {
                self.suspended_until = None;
                self.resumed = true;
                self.seen.borrow_mut().push(Seen::Resumed);
                self.app.resumed(event_loop);
            }
            _ => {}
        }
        if self.seen.borrow().contains(&Seen::Finished) && !event_loop.exiting() {
            let found = Command::new("xdotool").args(["search", "--onlyvisible", "--name", "neural-style"]).output();
            let count = String::from_utf8_lossy(&found.expect("xdotool").stdout).lines().count();
            self.seen.borrow_mut().push(Seen::WindowsAtEnd(count));
            event_loop.exit();
        }
        self.app.about_to_wait(event_loop);
        if let Some(until) = self.suspended_until {
            event_loop.set_control_flow(ControlFlow::WaitUntil(until));
        }
    }

    fn exiting(&mut self, event_loop: &winit::event_loop::ActiveEventLoop) {
        self.app.exiting(event_loop);
    }
}

#[test]
#[ignore = "the child half of suspend_drops_the_window_and_resume_goes_on_with_the_same_run"]
fn lifecycle_in_this_process() {
    use neural_style::stylize::{Event, Scales, StylizeOptions};
    use neural_style::viewer::{Viewer, ViewerApp, ViewerEvent};
    use winit::platform::x11::EventLoopBuilderExtX11;
    if std::env::var_os(LIFECYCLE_CHILD).is_none() {
        eprintln!("run by suspend_drops_the_window_and_resume_goes_on_with_the_same_run, on its own X server");
        return;
    }
    let img = |n: &str| neural_style::image_io::load_rgb(&shared().join("images").join(n)).unwrap();
    let net = neural_style::weights::load(&default_weights()).unwrap();
    let iterations = 20;
    let options = StylizeOptions {
        size: 48,
        iterations,
        report_every: 1,
        scales: Scales::Sizes(vec![48]),
        ..StylizeOptions::default()
    };
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let log = seen.clone();
    let app = ViewerApp::stylize(
        &neural_style::gpu::DeviceRequest::default(),
        net,
        img("tubingen.jpg"),
        vec![img("starry_night.jpg")],
        options,
        move |event: ViewerEvent| {
            log.borrow_mut().push(match event {
                ViewerEvent::Step(Event::Progress { iteration, losses, elapsed_s, .. }) => {
                    Seen::Progress { iteration, loss: losses.loss, elapsed_s }
                }
                ViewerEvent::Step(Event::Snapshot { iteration, .. }) => Seen::Snapshot(iteration),
                ViewerEvent::Finished { .. } => Seen::Finished,
            });
            Ok(())
        },
    );
    let event_loop = winit::event_loop::EventLoop::builder().with_any_thread(true).build().unwrap();
    let mut lifecycle = Lifecycle { app, seen: seen.clone(), suspended_until: None, resumed: false };
    Viewer::from_event_loop(event_loop).run(&mut lifecycle).unwrap();
    let outcome = lifecycle.app.into_outcome().unwrap();
    assert_eq!(outcome.iterations, iterations);
    assert_eq!(outcome.image.width(), 48);

    let seen = seen.borrow();
    let at = |wanted: &Seen| seen.iter().position(|s| s == wanted).unwrap_or_else(|| panic!("no {wanted:?}"));
    let (suspended, resumed) = (at(&Seen::Suspended), at(&Seen::Resumed));
    let progress = |range: std::ops::Range<usize>| -> Vec<(usize, f32, f64)> {
        seen[range]
            .iter()
            .filter_map(|s| match s {
                Seen::Progress { iteration, loss, elapsed_s } => Some((*iteration, *loss, *elapsed_s)),
                _ => None,
            })
            .collect()
    };
    let windows = |range: std::ops::Range<usize>| -> std::collections::BTreeSet<_> {
        seen[range].iter().filter_map(|s| if let Seen::Redraw(id) = s { Some(*id) } else { None }).collect()
    };
    let (before, during, after) = (progress(0..suspended), progress(suspended..resumed), progress(resumed..seen.len()));
    // Suspending reports the image (Android may kill a background app) and stops the run.
    let last_before = before.last().unwrap().0;
    assert!(last_before >= SUSPEND_AFTER);
    assert_eq!(seen.get(suspended + 1), Some(&Seen::Snapshot(last_before)), "{seen:?}");
    assert!(during.is_empty(), "no iterations while suspended: {during:?}");
    // Resuming goes on from the same iteration with the same optimizer state, to the end.
    let iterations_seen: Vec<usize> = before.iter().chain(&after).map(|p| p.0).collect();
    assert_eq!(iterations_seen, (0..=iterations).collect::<Vec<_>>(), "one run, not restarted");
    let (first_after, initial) = (after[0], before[0]);
    assert!(first_after.1 < 0.5 * initial.1, "the loss went on from where it was: {first_after:?}, start {initial:?}");
    // The clock stops while the app is away.
    let gap = first_after.2 - before.last().unwrap().2;
    assert!(gap < SUSPENDED_FOR.as_secs_f64(), "{gap} s between the iterations around the pause");
    // Frames in one window before suspending, and in a new window (a new surface) after
    // resuming; the old window is gone.
    let (old, new) = (windows(0..suspended), windows(resumed..seen.len()));
    assert_eq!(old.len(), 1, "frames in one window before suspending: {old:?}");
    assert_eq!(new.len(), 1, "frames in one window after resuming: {new:?}");
    assert!(old.is_disjoint(&new), "the window after resuming is a new one");
    assert!(seen.contains(&Seen::WindowsAtEnd(1)), "one window on the screen at the end: {seen:?}");
}

#[test]
fn view_of_an_image_too_large_for_the_device_is_the_tools_one_line_error() {
    let Some(ctx) = gpu() else { return };
    let Some(x) = Xvfb::start() else { return };
    // The smallest square whose planar float copy exceeds the device's largest buffer.
    let limit = ctx.limits.max_storage_buffer_binding_size.min(ctx.limits.max_buffer_size);
    let side = ((limit / 12) as f64).sqrt().ceil() as u32 + 1;
    if u64::from(side) * u64::from(side) * 3 > 512 << 20 {
        return; // the decoder's limit comes first on this device
    }
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.png");
    image::RgbImage::new(side, side).save(&big).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_neural-style"))
        .args(["view", big.to_str().unwrap()])
        .env("DISPLAY", &x.display)
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    assert_one_line_error(&out, "too large for this device");
}
