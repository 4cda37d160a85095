//! Helpers shared by the integration tests: the GPU (or a skip), shared data paths, fixtures.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use clap::ValueEnum;
use neural_style::arch::Activation;
use neural_style::gpu::{BackendChoice, DeviceRequest, GpuContext};
use neural_style::kernels::Precision;
use neural_style::model::Conv;
use neural_style::reference::{self, Tensor};

/// Whether GPU tests must fail instead of skipping when no adapter exists
/// (`NEURAL_STYLE_REQUIRE_GPU=1`).
pub fn gpu_required() -> bool {
    std::env::var("NEURAL_STYLE_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// Opens the device `request` asks for, on the graphics API `NEURAL_STYLE_TEST_BACKEND` names
/// (`vulkan`, `gl`, ...) when the request names none: CI runs the library-level tests a second
/// time on OpenGL. Tests that run the CLI choose with `--backend` and ignore it. Without an
/// adapter the test is skipped (returns `None`), unless `NEURAL_STYLE_REQUIRE_GPU=1`, in which
/// case it fails.
pub fn gpu_with(request: DeviceRequest) -> Option<GpuContext> {
    let request = DeviceRequest { backend: request.backend.or_else(test_backend), ..request };
    match GpuContext::new(&request) {
        Ok(ctx) => Some(ctx),
        Err(e) if !gpu_required() => {
            eprintln!("skipping GPU test: {e}");
            None
        }
        Err(e) => panic!("NEURAL_STYLE_REQUIRE_GPU=1 but no GPU: {e:#}"),
    }
}

/// The default device (see [`gpu_with`]).
pub fn gpu() -> Option<GpuContext> {
    gpu_with(DeviceRequest::default())
}

/// A device on `backend` (see [`gpu_with`]), for tests that compare or need one graphics API.
pub fn gpu_on(backend: BackendChoice) -> Option<GpuContext> {
    gpu_with(DeviceRequest { backend: Some(backend), ..DeviceRequest::default() })
}

/// The graphics API `NEURAL_STYLE_TEST_BACKEND` names, if set.
fn test_backend() -> Option<BackendChoice> {
    let name = std::env::var("NEURAL_STYLE_TEST_BACKEND").ok()?;
    let choice =
        BackendChoice::from_str(&name, true).unwrap_or_else(|e| panic!("NEURAL_STYLE_TEST_BACKEND={name:?}: {e}"));
    Some(choice)
}

/// `../shared` next to the repository.
pub fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

/// The default model: `$NEURAL_STYLE_WEIGHTS` or the shared int8 file.
pub fn default_weights() -> PathBuf {
    std::env::var_os("NEURAL_STYLE_WEIGHTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| shared().join("weights/mobilenet_v3_small_100_224_int8.tflite"))
}

/// The shared uint8 release.
pub fn uint8_weights() -> PathBuf {
    shared().join("weights/v3-small_224_1.0_uint8.tflite")
}

/// A file under `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A fixture's tensors: name → (shape, values).
pub fn read_fixture(name: &str) -> std::collections::HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, t)| {
            let v = bytemuck::pod_collect_to_vec(t.data());
            (n, (t.shape().to_vec(), v))
        })
        .collect()
}

/// Relative L2 error of f32 data against f64 or f32 truth.
pub fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    let a: Vec<f64> = got.iter().map(|&v| v as f64).collect();
    let b: Vec<f64> = want.iter().map(|&v| v as f64).collect();
    neural_style::reference::relative_l2(&a, &b)
}

/// Deterministic pseudo-random numbers in [-1, 1) (xorshift), for kernel inputs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

/// Activations (with an upper clamp in the last case) every kernel test covers.
pub const ACTIVATIONS: [(Activation, f32); 4] = [
    (Activation::None, f32::INFINITY),
    (Activation::Relu, f32::INFINITY),
    (Activation::HardSwish, f32::INFINITY),
    (Activation::Relu, 0.4),
];

/// A random convolution (weights scaled by `gain / sqrt(fan-in)`).
pub fn random_conv(rng: &mut Rng, shape: [usize; 4], depthwise: bool, act: (Activation, f32), gain: f32) -> Conv {
    let [out, cin, kernel, stride] = shape;
    let per_out = if depthwise { kernel * kernel } else { cin * kernel * kernel };
    Conv {
        out_channels: out,
        in_channels: cin,
        kernel,
        stride,
        weight: rng.vec(out * per_out, gain / (per_out as f32).sqrt()),
        bias: rng.vec(out, 0.5),
        activation: act.0,
        cap: act.1,
    }
}

/// Weights followed by biases, as the kernels read them.
pub fn conv_buffer(ctx: &GpuContext, conv: &Conv) -> wgpu::Buffer {
    let mut data = conv.weight.clone();
    data.extend_from_slice(&conv.bias);
    ctx.storage_buffer("weights", &data)
}

/// Asserts GPU output matches the reference within relative L2 1e-4.
pub fn check(name: &str, got: &[f32], want: &Tensor) {
    check_within(name, got, want, 1e-4);
}

/// Asserts GPU output matches the reference within relative L2 `tolerance`.
pub fn check_within(name: &str, got: &[f32], want: &Tensor, tolerance: f64) {
    let err = reference::relative_l2(&got.iter().map(|&v| v as f64).collect::<Vec<_>>(), &want.data);
    assert!(err <= tolerance, "{name}: relative L2 error {err:e} > {tolerance:e}");
}

/// Whether `ctx` has 16-bit floats in shaders. Vulkan on lavapipe has them, so a Vulkan adapter
/// without them fails under `NEURAL_STYLE_REQUIRE_GPU=1` rather than skip the f16 checks; wgpu's
/// GL backend never offers them (f16 is refused there, see `tests/precision.rs`).
pub fn has_f16(ctx: &GpuContext) -> bool {
    if ctx.info.backend == wgpu::Backend::Vulkan && gpu_required() {
        assert!(ctx.has_f16(), "{}: Vulkan adapter without SHADER_F16", ctx.info.name);
    }
    ctx.has_f16()
}

/// Runs `check` on the default device at every precision it has: f32, and f16 where
/// [`has_f16`] (the kernel suites).
pub fn each_precision(check: fn(&GpuContext, Precision)) {
    let Some(ctx) = gpu() else { return };
    for precision in std::iter::once(Precision::F32).chain(has_f16(&ctx).then_some(Precision::F16)) {
        check(&ctx, precision);
    }
}

/// A kernel family's tolerance: relative L2 1e-4 in f32; in f16 the family's own bound (inputs
/// and outputs rounded to 11 significant bits, ~5e-4 each, compounded by the kernel's sums).
pub fn tolerance(precision: Precision, f16: f64) -> f64 {
    assert!(f16 <= 1e-2, "the f16 tolerances stay within 1e-2");
    match precision {
        Precision::F32 => 1e-4,
        Precision::F16 => f16,
    }
}

/// `values` as `precision` stores them (rounded to the nearest f16): test inputs that a kernel
/// reads exactly, so its comparison with the reference measures the kernel, not the rounding of
/// its inputs (the stylize comparison covers that).
pub fn stored(values: Vec<f32>, precision: Precision) -> Vec<f32> {
    match precision {
        Precision::F32 => values,
        Precision::F16 => values.into_iter().map(|v| half::f16::from_f32(v).to_f32()).collect(),
    }
}

/// A buffer of `len` NaNs stored in `precision`: a value a kernel fails to write fails the
/// comparison.
pub fn nan_values(ctx: &GpuContext, len: usize, precision: Precision) -> wgpu::Buffer {
    ctx.values_storage("NaN-filled output", &vec![f32::NAN; len], precision)
}

/// Runs the built tool with the default weights (`$NEURAL_STYLE_WEIGHTS` or the shared file).
pub fn neural_style(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_neural-style"))
        .args(args)
        .env("NEURAL_STYLE_WEIGHTS", default_weights())
        .output()
        .expect("run neural-style")
}

/// The tool failed with exactly one line on stderr, starting with "error:", containing `needle`.
pub fn assert_one_line_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, got success; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panicked: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "not an error line: {stderr}");
    assert!(lines[0].contains(needle), "error {:?} does not mention {needle:?}", lines[0]);
}

/// A PNG whose header claims `width`×`height` (8-bit RGB) with an empty image-data chunk.
pub fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &byte in bytes {
            crc ^= byte as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(13u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc32(&ihdr).to_be_bytes());
    png.extend(0u32.to_be_bytes());
    png.extend(b"IDAT");
    png.extend(crc32(b"IDAT").to_be_bytes());
    png
}

/// A shared test image's path.
pub fn image(name: &str) -> String {
    shared().join("images").join(name).to_str().unwrap().to_string()
}

/// `stylize` of the tubingen + starry_night pair into `output` (at 48 px unless `extra` gives
/// `--size`).
pub fn stylize(output: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<String> = vec![
        "stylize".into(),
        "--content".into(),
        image("tubingen.jpg"),
        "--style".into(),
        image("starry_night.jpg"),
        "--output".into(),
        output.to_str().unwrap().into(),
    ];
    if !extra.contains(&"--size") {
        args.extend(["--size".into(), "48".into()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    Command::new(env!("CARGO_BIN_EXE_neural-style"))
        .args(&args)
        .env("NEURAL_STYLE_WEIGHTS", default_weights())
        .output()
        .expect("run neural-style")
}

/// A `w`×`h` planar RGB image of uniform random values in [0, 1].
pub fn random_image(rng: &mut Rng, w: usize, h: usize) -> neural_style::stylize::PlanarImage {
    let data = rng.vec(3 * w * h, 0.5).iter().map(|v| v + 0.5).collect();
    neural_style::stylize::PlanarImage { width: w, height: h, data }
}

/// The layer called `name`.
pub fn layer(name: &str) -> neural_style::arch::LayerId {
    name.parse().unwrap()
}

/// `v` in f64.
pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Lets `command`'s process receive SIGINT even where this test process ignores it: a shell
/// starts background jobs (`cargo test &`) with SIGINT ignored, children inherit that, and
/// `neural-style` keeps an ignored signal ignored, so a test's Ctrl-C would never arrive.
#[cfg(unix)]
pub fn with_default_sigint(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: signal(2) is async-signal-safe, as code between fork and exec must be.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        })
    }
}

/// The shared tubingen photo and the starry_night painting (as the only style).
pub fn tubingen_and_starry_night() -> (image::RgbImage, Vec<image::RgbImage>) {
    let load = |name: &str| neural_style::image_io::load_rgb(&shared().join("images").join(name)).expect("image");
    (load("tubingen.jpg"), vec![load("starry_night.jpg")])
}

/// A stylizer on the test GPU with the default weights (`None`: no adapter, the test skips).
pub fn stylizer() -> Option<neural_style::stylize::Stylizer> {
    use std::sync::Arc;
    let ctx = Arc::new(gpu()?);
    let net = neural_style::weights::load(&default_weights()).expect("weights");
    Some(neural_style::stylize::Stylizer::new(ctx.clone(), Arc::new(neural_style::engine::FeatureNet::new(&ctx, net))))
}
