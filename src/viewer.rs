//! The live viewer (cargo feature `viewer`): a winit window that shows the image as it converges,
//! presented straight from the optimizer's GPU buffer, while optimization steps are interleaved
//! with frames so the window stays responsive even on a slow device.
//!
//! Keys and touches are in [`crate::controls`] (closing the window stops too; changing the style
//! weight restarts the optimizer from the current image). When the platform takes the window
//! away (an Android app sent to the background) the surface is dropped, a snapshot is reported
//! and the run waits; when the window comes back a new surface is made on the same device and the
//! run goes on with its optimizer state.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use image::RgbImage;
use winit::application::ApplicationHandler;
use winit::dpi::PhysicalSize;
use winit::event::{ElementState, KeyEvent, WindowEvent};
use winit::event_loop::{ActiveEventLoop, EventLoop};
use winit::keyboard::{Key, NamedKey};
use winit::window::{Window, WindowId};

use crate::controls::{self, Action, Gestures, KeyPress};
use crate::engine::FeatureNet;
use crate::gpu::{DeviceRequest, GpuContext, PresentSurface};
use crate::image_io;
use crate::kernels::present::Presenter;
use crate::model::Network;
use crate::stylize::{Control, Driver, Event, Outcome, StylizeOptions, Stylizer};

/// Target frame time: optimization work per frame is adapted to it, so that a slow device still
/// redraws a few times a second.
const FRAME_BUDGET_S: f64 = 0.15;

/// How often an idle window checks the cancel flag (see [`Viewer::with_cancel_flag`]).
pub const CANCEL_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// What the viewer tells its caller.
pub enum ViewerEvent<'a> {
    /// What a headless run reports too, from the same [`Driver`]: losses (every `report_every`
    /// updates and at the end), or an image (every `snapshot_every` updates, and when S is
    /// pressed).
    Step(Event<'a>),
    /// All iterations are done (the window stays open until Esc or close).
    Finished {
        /// The result.
        image: &'a RgbImage,
    },
}

/// A connection to the display, ready to open a window. The window's GPU device, network and
/// session are freed when it closes; the display connection (winit's event loop) can be made
/// only once per process.
pub struct Viewer {
    event_loop: EventLoop<()>,
    cancel: Option<Arc<AtomicBool>>,
}

impl Viewer {
    /// Connects to the display; fails with a one-line error when there is none.
    pub fn new() -> Result<Self> {
        let event_loop = EventLoop::new()
            .map_err(|e| anyhow!("cannot open a window: {} (no display? set DISPLAY)", without_source_location(&e)))?;
        Ok(Self::from_event_loop(event_loop))
    }

    /// Uses an event loop the platform made (on Android, the one built with the app's
    /// `AndroidApp`).
    pub fn from_event_loop(event_loop: EventLoop<()>) -> Self {
        Self { event_loop, cancel: None }
    }

    /// Uses `flag` as the run's cancel flag (see [`Driver::cancel_flag`]): once it is set the
    /// window closes, as with Esc, and [`Viewer::stylize`] returns the current result. It is
    /// checked at least every [`CANCEL_POLL`], even while paused.
    pub fn with_cancel_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancel = Some(flag);
        self
    }

    /// Runs style transfer in a window until Esc or close; returns the current result then. The
    /// run is driven by a [`Driver`] with the options' cadence that also reads every iteration's
    /// loss for the title.
    pub fn stylize(
        self,
        request: &DeviceRequest,
        net: Network,
        content: RgbImage,
        styles: Vec<RgbImage>,
        options: StylizeOptions,
        on_event: impl FnMut(ViewerEvent) -> Result<()>,
    ) -> Result<Outcome> {
        let mut app = ViewerApp::stylize(request, net, content, styles, options, on_event);
        app.cancel = self.cancel.clone();
        self.run(&mut app)?;
        app.into_outcome()
    }

    /// Shows an image until Esc or close.
    pub fn show(self, request: &DeviceRequest, image: RgbImage) -> Result<()> {
        let mut app = ViewerApp::new(request, Job::Show(image), |_: ViewerEvent| Ok(()));
        app.cancel = self.cancel.clone();
        self.run(&mut app)?;
        app.error.map_or(Ok(()), Err)
    }

    /// Runs `app` on this display's event loop until it exits: a [`ViewerApp`], or a handler of
    /// the caller's that forwards winit's events to one.
    pub fn run(self, app: &mut impl ApplicationHandler) -> Result<()> {
        self.event_loop.run_app(app).context("window event loop failed")
    }
}

enum Job {
    Stylize { net: Box<Network>, content: RgbImage, styles: Vec<RgbImage>, options: Box<StylizeOptions> },
    Show(RgbImage),
}

/// The viewer's window handler (winit's [`ApplicationHandler`]): opens the window and the device
/// on the first `resumed`, runs the optimization between frames, drops the window and its
/// surface on `suspended` and makes new ones on the next `resumed`. [`Viewer::stylize`] runs one
/// (with its cancel flag); it is public so that a caller can forward winit's events to it from a
/// handler of its own (the host test that plays Android's lifecycle does). Such a handler must
/// forward `exiting` too: the run's outcome is taken there.
pub struct ViewerApp<F> {
    request: DeviceRequest,
    job: Option<Job>,
    running: Option<Running>,
    error: Option<anyhow::Error>,
    on_event: F,
    outcome: Option<Outcome>,
    cancel: Option<Arc<AtomicBool>>,
    /// The instant touch times count from.
    epoch: Instant,
}

/// The device, the run and what is shown; the display comes and goes with the window.
struct Running {
    ctx: Arc<GpuContext>,
    /// The window, its surface and the present pipeline; none while the platform has taken the
    /// window away.
    display: Option<Display>,
    /// The run (none when only showing an image).
    driver: Option<Driver>,
    /// The image shown when there is no run.
    shown: Option<(wgpu::Buffer, (u32, u32))>,
    paused: bool,
    show_content: bool,
    /// Whether [`ViewerEvent::Finished`] was sent.
    finished: bool,
    /// The scale the presenter's buffers belong to (it is rebuilt at each transition).
    presented_scale: usize,
    /// GPU commands submitted per frame, adapted to the frame time.
    commands_per_frame: usize,
    /// Frames presented in the current second, and the rate over the last full second.
    frames: (usize, Instant, f64),
    /// Iterations completed in the current second, and the rate over the last full second.
    iterations: (usize, Instant, f64),
    gestures: Gestures,
}

/// A window with its surface and the present pipeline for the current scale.
struct Display {
    window: Arc<Window>,
    surface: PresentSurface,
    presenter: Presenter,
}

impl<F: FnMut(ViewerEvent) -> Result<()>> ViewerApp<F> {
    /// A handler that runs style transfer in its window (see [`Viewer::stylize`]); `on_event`
    /// gets the run's reports.
    pub fn stylize(
        request: &DeviceRequest,
        net: Network,
        content: RgbImage,
        styles: Vec<RgbImage>,
        options: StylizeOptions,
        on_event: F,
    ) -> Self {
        let job = Job::Stylize { net: Box::new(net), content, styles, options: Box::new(options) };
        Self::new(request, job, on_event)
    }

    fn new(request: &DeviceRequest, job: Job, on_event: F) -> Self {
        Self {
            request: request.clone(),
            job: Some(job),
            running: None,
            error: None,
            on_event,
            outcome: None,
            cancel: None,
            epoch: Instant::now(),
        }
    }

    /// What the run reached once the event loop has ended, or the error that ended it.
    pub fn into_outcome(self) -> Result<Outcome> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.outcome.context("the window closed before the run started")
    }

    fn start(&mut self, event_loop: &ActiveEventLoop) -> Result<()> {
        let Some(job) = self.job.take() else { return Ok(()) };
        let (w, h) = match &job {
            Job::Stylize { content, options, .. } => {
                image_io::scaled_size(content.width(), content.height(), options.size)
            }
            Job::Show(img) => img.dimensions(),
        };
        let window = Arc::new(
            event_loop
                .create_window(
                    Window::default_attributes()
                        .with_title("neural-style")
                        .with_inner_size(window_size(event_loop, w, h)),
                )
                .context("cannot create a window")?,
        );
        let (ctx, surface) =
            GpuContext::with_surface(&self.request, event_loop.owned_display_handle(), window.clone())?;
        let ctx = Arc::new(ctx);
        let (driver, shown) = match job {
            Job::Stylize { net, content, styles, options } => {
                let fnet = Arc::new(FeatureNet::new(&ctx, *net));
                let mut driver =
                    Stylizer::new(ctx.clone(), fnet).drive(&content, &styles, &options)?.read_every_iteration();
                if let Some(cancel) = &self.cancel {
                    driver = driver.with_cancel_flag(cancel.clone());
                }
                (Some(driver), None)
            }
            Job::Show(img) => {
                let (width, height) = (w as usize, h as usize);
                crate::engine::check_fits(
                    &ctx,
                    "the image",
                    3 * width * height,
                    crate::kernels::Precision::F32,
                    [width, height],
                )?;
                (None, Some((ctx.storage_buffer("image", &image_io::to_chw(&img)), (w, h))))
            }
        };
        let mut running = Running {
            ctx,
            display: None,
            driver,
            shown,
            paused: false,
            show_content: false,
            finished: false,
            presented_scale: 0,
            commands_per_frame: 16,
            frames: (0, Instant::now(), 0.0),
            iterations: (0, Instant::now(), 0.0),
            gestures: Gestures::new(window.scale_factor()),
        };
        running.attach(window, surface);
        self.running = Some(running);
        Ok(())
    }

    /// The window is back (Android: the app returned to the foreground): a new window surface
    /// on the same device, and the run goes on.
    fn reattach(&mut self, event_loop: &ActiveEventLoop) -> Result<()> {
        let Some(r) = &mut self.running else { return Ok(()) };
        if r.display.is_some() {
            return Ok(());
        }
        let window = Arc::new(
            event_loop
                .create_window(Window::default_attributes().with_title("neural-style"))
                .context("cannot create a window")?,
        );
        let surface = r.ctx.create_surface(window.clone())?;
        r.gestures = Gestures::new(window.scale_factor());
        r.attach(window, surface);
        if let Some(driver) = &mut r.driver {
            driver.pause_clock(r.paused);
        }
        Ok(())
    }

    /// The platform took the window away: drop the surface (it must not outlive the window),
    /// keep the device and the run, stop the clock, and report a snapshot (an app in the
    /// background may be killed without notice).
    fn detach(&mut self) -> Result<()> {
        let Some(r) = &mut self.running else { return Ok(()) };
        if r.display.take().is_none() {
            return Ok(());
        }
        if let Some(driver) = &mut r.driver {
            driver.pause_clock(true);
            let image = driver.current_image()?;
            let iteration = driver.session().iteration().saturating_sub(1);
            (self.on_event)(ViewerEvent::Step(Event::Snapshot { iteration, image: &image }))?;
        }
        Ok(())
    }

    /// One frame: submit as much optimization work as fits the frame budget (whole iterations on
    /// a fast device, pieces of one on a slow device), then present.
    fn frame(&mut self) -> Result<()> {
        let Some(r) = &mut self.running else { return Ok(()) };
        if r.display.is_none() {
            return Ok(());
        }
        let frame_start = Instant::now();
        let mut new_scale = false;
        if let Some(driver) = &mut r.driver {
            let on_event = &mut self.on_event;
            let mut on_step = |event: Event| on_event(ViewerEvent::Step(event)).map(|()| Control::Continue);
            let mut budget = r.commands_per_frame;
            while budget > 0 && !r.paused && !driver.is_finished() {
                let advanced = driver.advance(budget, &mut on_step)?;
                budget = budget.saturating_sub(advanced.commands);
                r.iterations.0 += usize::from(advanced.completed_iteration);
            }
            new_scale = driver.scale() != r.presented_scale;
            let last_scale = driver.scale() + 1 == driver.plan().len();
            if last_scale && driver.session().is_done() && driver.non_finite_at().is_none() && !r.finished {
                r.finished = true;
                let image = driver.current_image()?;
                on_event(ViewerEvent::Finished { image: &image })?;
            }
        }
        if new_scale {
            // A new scale: its session's buffers, at its size.
            r.rebuild_presenter();
        }
        r.present()?;
        // Adapt the work per frame so that frames take about the budget.
        let frame_s = frame_start.elapsed().as_secs_f64();
        if frame_s > 1.5 * FRAME_BUDGET_S {
            r.commands_per_frame = (r.commands_per_frame * 2 / 3).max(1);
        } else if frame_s < 0.5 * FRAME_BUDGET_S {
            r.commands_per_frame = r.commands_per_frame * 3 / 2 + 1;
        }
        r.update_title();
        if r.driver.as_ref().is_some_and(|d| !d.is_finished()) && !r.paused {
            r.request_redraw();
        }
        Ok(())
    }

    fn act(&mut self, event_loop: &ActiveEventLoop, action: Action) -> Result<()> {
        let Some(r) = &mut self.running else { return Ok(()) };
        match action {
            Action::Stop => event_loop.exit(),
            Action::TogglePause => {
                r.paused = !r.paused;
                if let Some(driver) = &mut r.driver {
                    driver.pause_clock(r.paused);
                }
            }
            Action::ToggleContent => r.show_content = !r.show_content,
            Action::Snapshot => {
                if let Some(driver) = &mut r.driver {
                    let image = driver.current_image()?;
                    let iteration = driver.session().iteration().saturating_sub(1);
                    (self.on_event)(ViewerEvent::Step(Event::Snapshot { iteration, image: &image }))?;
                }
            }
            Action::DoubleStyle | Action::HalveStyle => {
                if let Some(driver) = &mut r.driver {
                    let mut w = driver.weights();
                    w[1] = if action == Action::HalveStyle { w[1] / 2.0 } else { w[1] * 2.0 };
                    driver.set_weights(w);
                }
            }
        }
        r.update_title();
        r.request_redraw();
        Ok(())
    }

    fn fail(&mut self, event_loop: &ActiveEventLoop, e: anyhow::Error) {
        self.error.get_or_insert(e);
        event_loop.exit();
    }
}

impl<F: FnMut(ViewerEvent) -> Result<()>> ApplicationHandler for ViewerApp<F> {
    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        let result = if self.running.is_none() { self.start(event_loop) } else { self.reattach(event_loop) };
        if let Err(e) = result {
            self.fail(event_loop, e);
        }
    }

    fn suspended(&mut self, event_loop: &ActiveEventLoop) {
        if let Err(e) = self.detach() {
            self.fail(event_loop, e);
        }
    }

    fn window_event(&mut self, event_loop: &ActiveEventLoop, _id: WindowId, event: WindowEvent) {
        let result = match event {
            WindowEvent::CloseRequested => {
                event_loop.exit();
                Ok(())
            }
            WindowEvent::Resized(_) => {
                if let Some(r) = &mut self.running {
                    r.configure();
                    r.request_redraw();
                }
                Ok(())
            }
            WindowEvent::Touch(t) => {
                let phase = match t.phase {
                    winit::event::TouchPhase::Started => controls::TouchPhase::Started,
                    winit::event::TouchPhase::Moved => controls::TouchPhase::Moved,
                    winit::event::TouchPhase::Ended => controls::TouchPhase::Ended,
                    winit::event::TouchPhase::Cancelled => controls::TouchPhase::Cancelled,
                };
                let time = self.epoch.elapsed();
                let touch = controls::Touch { finger: t.id, phase, position: (t.location.x, t.location.y), time };
                match self.running.as_mut().and_then(|r| r.gestures.touch(touch)) {
                    Some(action) => self.act(event_loop, action),
                    None => Ok(()),
                }
            }
            WindowEvent::RedrawRequested => self.frame(),
            // One action per real press: on gaining focus winit synthesizes a press for each key
            // already down, so a key typed just as focus arrives would act twice; held keys repeat.
            WindowEvent::KeyboardInput {
                event: KeyEvent { logical_key, state: ElementState::Pressed, repeat: false, .. },
                is_synthetic: false,
                ..
            } => match key_press(&logical_key).and_then(Action::of_key) {
                Some(action) => self.act(event_loop, action),
                None => Ok(()),
            },
            _ => Ok(()),
        };
        if let Err(e) = result {
            self.fail(event_loop, e);
        }
    }

    fn about_to_wait(&mut self, event_loop: &ActiveEventLoop) {
        let Some(cancel) = &self.cancel else { return };
        if cancel.load(Ordering::Relaxed) {
            event_loop.exit();
        } else {
            event_loop.set_control_flow(winit::event_loop::ControlFlow::WaitUntil(Instant::now() + CANCEL_POLL));
        }
    }

    fn exiting(&mut self, _event_loop: &ActiveEventLoop) {
        let Some(r) = self.running.take() else { return };
        if let Some(driver) = r.driver {
            match driver.finish() {
                Ok(outcome) => self.outcome = Some(outcome),
                Err(e) => {
                    self.error.get_or_insert(e);
                }
            }
        }
    }
}

/// winit's message without the location in winit's source it comes from ("os error at
/// /…/winit-0.30.13/src/platform_impl/linux/mod.rs:765: neither … is set."), a path on the machine
/// that built the tool.
fn without_source_location(error: &impl std::fmt::Display) -> String {
    let text = error.to_string();
    let Some(rest) = text.strip_prefix("os error at ") else { return text };
    // `FILE:LINE: message`: the message starts after the first `:DIGITS: `.
    let mut search = 0;
    while let Some(colon) = rest[search..].find(':').map(|i| search + i) {
        let after = &rest[colon + 1..];
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 && after[digits..].starts_with(": ") {
            return after[digits + 2..].trim_end_matches('.').to_string();
        }
        search = colon + 1;
    }
    text
}

/// The image's size scaled to fit 90% of the screen, and up to at least 256 px for tiny images.
fn window_size(event_loop: &ActiveEventLoop, w: u32, h: u32) -> PhysicalSize<u32> {
    let long = w.max(h).max(1) as f64;
    let mut scale = (256.0 / long).ceil().max(1.0);
    if let Some(m) = event_loop.primary_monitor() {
        let s = m.size();
        scale = scale.min(0.9 * s.width as f64 / w as f64).min(0.9 * s.height as f64 / h as f64);
    }
    PhysicalSize::new(((w as f64 * scale) as u32).max(1), ((h as f64 * scale) as u32).max(1))
}

/// winit's key as the viewer's controls see it.
fn key_press(key: &Key) -> Option<KeyPress<'_>> {
    match key {
        Key::Named(NamedKey::Escape) => Some(KeyPress::Escape),
        Key::Named(NamedKey::GoBack | NamedKey::BrowserBack) => Some(KeyPress::Back),
        Key::Named(NamedKey::Space) => Some(KeyPress::Space),
        Key::Named(NamedKey::Tab) => Some(KeyPress::Tab),
        Key::Character(c) => Some(KeyPress::Character(c.as_str())),
        _ => None,
    }
}

impl Running {
    /// Shows what this runs in `window`, through `surface`.
    fn attach(&mut self, window: Arc<Window>, surface: PresentSurface) {
        let (images, size) = self.presented();
        let presenter = Presenter::new(&self.ctx, &surface, [&images[0], &images[1]], size);
        self.display = Some(Display { window, surface, presenter });
        self.configure();
        self.request_redraw();
    }

    /// The image and content buffers to present, and their size: the current scale's.
    fn presented(&mut self) -> ([wgpu::Buffer; 2], (u32, u32)) {
        if let Some(driver) = &self.driver {
            self.presented_scale = driver.scale();
            let session = driver.session();
            let size = (session.width() as u32, session.height() as u32);
            return ([session.image_buffer().clone(), session.content_buffer().clone()], size);
        }
        let (image, size) = self.shown.clone().expect("a viewer shows a run or an image");
        ([image.clone(), image], size)
    }

    /// A new present pipeline for the current scale's buffers.
    fn rebuild_presenter(&mut self) {
        let (images, size) = self.presented();
        if let Some(d) = &mut self.display {
            d.presenter = Presenter::new(&self.ctx, &d.surface, [&images[0], &images[1]], size);
        }
        self.configure();
    }

    fn request_redraw(&self) {
        if let Some(d) = &self.display {
            d.window.request_redraw();
        }
    }

    fn configure(&mut self) {
        let Some(d) = &mut self.display else { return };
        let size = d.window.inner_size();
        let config = wgpu::SurfaceConfiguration {
            usage: wgpu::TextureUsages::RENDER_ATTACHMENT,
            format: d.surface.format,
            width: size.width.max(1),
            height: size.height.max(1),
            present_mode: wgpu::PresentMode::Fifo,
            desired_maximum_frame_latency: 2,
            alpha_mode: d.surface.alpha_mode,
            view_formats: Vec::new(),
            color_space: wgpu::SurfaceColorSpace::default(),
        };
        d.surface.surface.configure(&self.ctx.device, &config);
        d.presenter.resize(&self.ctx, config.width, config.height);
    }

    fn present(&mut self) -> Result<()> {
        let Some(d) = &mut self.display else { return Ok(()) };
        let frame = match d.surface.surface.get_current_texture() {
            wgpu::CurrentSurfaceTexture::Success(t) | wgpu::CurrentSurfaceTexture::Suboptimal(t) => t,
            wgpu::CurrentSurfaceTexture::Outdated | wgpu::CurrentSurfaceTexture::Lost => {
                self.configure();
                return Ok(());
            }
            _ => return Ok(()),
        };
        let view = frame.texture.create_view(&Default::default());
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        d.presenter.draw(&mut encoder, &view, self.show_content);
        self.ctx.queue.submit([encoder.finish()]);
        d.window.pre_present_notify();
        self.ctx.queue.present(frame);
        self.frames.0 += 1;
        for counter in [&mut self.frames, &mut self.iterations] {
            let window_s = counter.1.elapsed().as_secs_f64();
            if window_s >= 1.0 {
                *counter = (0, Instant::now(), counter.0 as f64 / window_s);
            }
        }
        self.ctx.check_errors()
    }

    fn update_title(&self) {
        let Some(d) = &self.display else { return };
        let Some(driver) = &self.driver else {
            d.window.set_title("neural-style — view (Esc closes)");
            return;
        };
        let (iteration, loss) = driver.latest().map_or((0, f32::NAN), |(i, l)| (i, l.loss));
        let state = if self.paused {
            " · paused"
        } else if let Some(non_finite) = driver.non_finite_at() {
            if non_finite.gradient { " · stopped: gradient not finite" } else { " · stopped: loss not finite" }
        } else if driver.is_finished() {
            " · done (Esc to write and quit)"
        } else {
            ""
        };
        let scale = driver.scale_info();
        let scale = if scale.count > 1 {
            format!("scale {}/{} ({}×{}) · ", scale.index, scale.count, scale.width, scale.height)
        } else {
            String::new()
        };
        d.window.set_title(&format!(
            "neural-style — {scale}iteration {iteration}/{} · loss {loss:.5} · {:.1} it/s · {:.0} fps · style weight {}{}{state}",
            driver.session().total_iterations(),
            self.iterations.2,
            self.frames.2,
            driver.weights()[1],
            if self.show_content { " · content photo" } else { "" },
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::without_source_location;

    #[test]
    fn winit_messages_lose_the_source_location_of_the_build_machine() {
        let os = "os error at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/winit-0.30.13/src/platform_impl/\
                  linux/mod.rs:765: neither WAYLAND_DISPLAY nor WAYLAND_SOCKET nor DISPLAY is set.";
        assert_eq!(without_source_location(&os), "neither WAYLAND_DISPLAY nor WAYLAND_SOCKET nor DISPLAY is set");
        assert_eq!(without_source_location(&"C:\\src\\x.rs:12: no: display"), "C:\\src\\x.rs:12: no: display");
        assert_eq!(without_source_location(&"os error at C:\\x.rs:12: no: display"), "no: display");
        assert_eq!(without_source_location(&"EventLoop can't be recreated"), "EventLoop can't be recreated");
    }
}
