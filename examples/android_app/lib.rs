//! The Android app: a NativeActivity (`android_main`) that stylizes on the phone's GPU with the
//! desktop viewer's code: the image converging full screen, taps and swipes as controls
//! ([`neural_style::controls`]), the surface dropped when the app goes to the background and
//! remade when it returns, the run kept.
//!
//! Its files live in the app's external files directory, `/sdcard/Android/data/<package>/files`:
//! `content.jpg` (or `.png`), `style.jpg` (or `.png`) and `weights.tflite` (or
//! `weights.safetensors`), pushed with `adb push` (README: "Android"). It writes `result.png` there
//! when the run ends or Back is pressed, and `snapshot.png` every 50 iterations and whenever the
//! app leaves the screen (Android may kill a background app without notice). Status and errors go
//! to logcat under the tag `neural-style`.
//!
//! On other platforms this example is empty: it is built by `tools/android_apk.sh` (or cargo-ndk).

#![cfg(target_os = "android")]

use std::ffi::CString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use neural_style::gpu::{BackendChoice, DeviceRequest, LimitsProfile, PrecisionChoice};
use neural_style::stylize::{Event, StylizeOptions};
use neural_style::viewer::{Viewer, ViewerEvent};
use neural_style::{atomic, image_io, weights};
use winit::event_loop::EventLoop;
use winit::platform::android::EventLoopBuilderExtAndroid;
use winit::platform::android::activity::AndroidApp;

/// Longest side of the result: phones have less memory and slower GPUs than desktops.
const SIZE: u32 = 512;
/// Iterations between snapshots.
const SNAPSHOT_EVERY: usize = 50;

#[link(name = "log")]
unsafe extern "C" {
    fn __android_log_write(priority: i32, tag: *const std::ffi::c_char, text: *const std::ffi::c_char) -> i32;
}

/// Writes one line to logcat (priority 4 info, 6 error).
fn log(priority: i32, text: &str) {
    let tag = c"neural-style";
    let text = CString::new(text.replace('\0', " ")).unwrap_or_default();
    // SAFETY: both pointers are NUL-terminated strings that outlive the call.
    unsafe {
        __android_log_write(priority, tag.as_ptr(), text.as_ptr());
    }
}

/// The entry point android-activity's NativeActivity glue calls on its own thread.
#[unsafe(no_mangle)]
fn android_main(app: AndroidApp) {
    if let Err(e) = run(app) {
        log(6, &format!("error: {e:#}"));
    }
}

/// The first of `stem` with one of `extensions` in `dir`, or an error naming the file to push.
fn find(dir: &Path, stem: &str, extensions: &[&str]) -> Result<PathBuf> {
    for ext in extensions {
        let path = dir.join(format!("{stem}.{ext}"));
        if path.is_file() {
            return Ok(path);
        }
    }
    let wanted = dir.join(format!("{stem}.{}", extensions[0]));
    bail!("missing {}: push it with `adb push FILE {}`", wanted.display(), wanted.display())
}

fn write_png(image: &image::RgbImage, path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)?;
    atomic::write(path, &bytes)
}

/// Vulkan when the phone has a Vulkan adapter, else GLES; says which.
fn backend() -> Result<BackendChoice> {
    for backend in [BackendChoice::Vulkan, BackendChoice::Gl] {
        if let Some(adapter) = neural_style::gpu::list_adapters(Some(backend)).first() {
            log(4, &format!("GPU: {} ({})", adapter.name, adapter.backend));
            return Ok(backend);
        }
    }
    bail!("no GPU adapter: neither Vulkan nor GLES is available")
}

fn run(app: AndroidApp) -> Result<()> {
    let dir = app.external_data_path().context("the app has no external files directory")?;
    let content = image_io::load_rgb(&find(&dir, "content", &["jpg", "png"])?)?;
    let style = image_io::load_rgb(&find(&dir, "style", &["jpg", "png"])?)?;
    let net = weights::load(&find(&dir, "weights", &["tflite", "safetensors"])?)?;
    // Kernel variants (and whether f16 activations run faster, on phones that have them) are
    // measured at the first start, and every start where the platform gives no cache directory
    // for tuning.json. f16 halves the activations' memory, which phones share with everything.
    let request = DeviceRequest {
        backend: Some(backend()?),
        limits: LimitsProfile::Adapter,
        precision: PrecisionChoice::Auto,
        ..Default::default()
    };
    let options = StylizeOptions { size: SIZE, snapshot_every: Some(SNAPSHOT_EVERY), ..StylizeOptions::default() };
    let event_loop = EventLoop::builder().with_android_app(app).build().context("cannot start the event loop")?;
    let result = dir.join("result.png");
    let snapshot = dir.join("snapshot.png");
    // The iteration and time of the previous report, for the rate.
    let mut last = (0, 0.0);
    let outcome =
        Viewer::from_event_loop(event_loop).stylize(&request, net, content, vec![style], options, |event| {
            match event {
                ViewerEvent::Step(Event::Progress { iteration, losses, elapsed_s, scale }) => {
                    let rate = iteration.saturating_sub(last.0) as f64 / (elapsed_s - last.1).max(1e-9);
                    last = (iteration, elapsed_s);
                    log(
                        4,
                        &format!(
                            "scale {}/{} ({}x{}) iteration {iteration}: loss {:.5}, {rate:.2} it/s",
                            scale.index, scale.count, scale.width, scale.height, losses.loss
                        ),
                    );
                }
                ViewerEvent::Step(Event::Snapshot { iteration, image }) => {
                    write_png(image, &snapshot)?;
                    log(4, &format!("snapshot at iteration {iteration}: {}", snapshot.display()));
                }
                ViewerEvent::Finished { image } => {
                    write_png(image, &result)?;
                    log(4, &format!("done: {}", result.display()));
                }
            }
            Ok(())
        })?;
    // Back (or the system closing the app) stops the run: keep what it reached.
    write_png(&outcome.image, &result)?;
    log(4, &format!("wrote {} after {} iterations", result.display(), outcome.iterations));
    Ok(())
}
