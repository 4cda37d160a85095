//! GPU context: picks an adapter, creates a device with the limits the kernels need, and offers
//! the few helpers every kernel wrapper uses (buffer creation, one-submit execution, readback).

use std::sync::{Arc, Mutex};

use crate::kernels::Precision;
use anyhow::{Context, Result, bail};
use wgpu::util::DeviceExt;

/// Which graphics API to run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// Vulkan (Linux, Windows, Android).
    Vulkan,
    /// Metal (macOS, iOS).
    Metal,
    /// Direct3D 12 (Windows).
    Dx12,
    /// OpenGL / OpenGL ES.
    Gl,
}

/// The graphics APIs to try: the chosen one, or every primary one (Vulkan, Metal, DX12).
fn backends(choice: Option<BackendChoice>) -> wgpu::Backends {
    choice.map_or(wgpu::Backends::PRIMARY, BackendChoice::backends)
}

impl BackendChoice {
    fn backends(self) -> wgpu::Backends {
        match self {
            BackendChoice::Vulkan => wgpu::Backends::VULKAN,
            BackendChoice::Metal => wgpu::Backends::METAL,
            BackendChoice::Dx12 => wgpu::Backends::DX12,
            BackendChoice::Gl => wgpu::Backends::GL,
        }
    }
}

impl BackendChoice {
    /// Every choice, in the order `--backend` lists them.
    const ALL: [BackendChoice; 4] =
        [BackendChoice::Vulkan, BackendChoice::Metal, BackendChoice::Dx12, BackendChoice::Gl];

    /// The name `--backend` takes.
    fn name(self) -> &'static str {
        match self {
            BackendChoice::Vulkan => "vulkan",
            BackendChoice::Metal => "metal",
            BackendChoice::Dx12 => "dx12",
            BackendChoice::Gl => "gl",
        }
    }
}

/// Fails, naming the backends this build has, when the chosen one is not compiled in for this
/// platform (Metal off Apple systems, DX12 off Windows).
pub fn check_backend_available(choice: Option<BackendChoice>) -> Result<()> {
    let built = wgpu::Instance::enabled_backend_features();
    match choice {
        Some(c) if !built.contains(c.backends()) => {
            let available: Vec<&str> =
                BackendChoice::ALL.iter().filter(|b| built.contains(b.backends())).map(|b| b.name()).collect();
            bail!(
                "the {} backend is not available on this platform; available here: {}",
                c.name(),
                available.join(", ")
            )
        }
        _ => Ok(()),
    }
}

/// How to choose the device.
#[derive(Clone, Debug, Default)]
pub struct DeviceRequest {
    /// Restrict to one graphics API; `None` tries every API compiled in.
    pub backend: Option<BackendChoice>,
    /// Pick the first adapter whose name contains this (case-insensitive).
    pub adapter: Option<String>,
    /// The limits to open the device with.
    pub limits: LimitsProfile,
    /// When kernel variants are measured (see [`crate::tuning`]).
    pub tune: crate::tuning::Tune,
    /// How activations are stored (see [`crate::kernels::Precision`]).
    pub precision: PrecisionChoice,
}

/// How activations and their gradients are stored on the GPU (`--precision`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrecisionChoice {
    /// 32-bit floats everywhere: the results PyTorch's f32 gives.
    #[default]
    F32,
    /// 16-bit floats for activations, their gradients and the per-layer intermediates (half
    /// their memory); the image, Gram matrices, losses and optimizer state stay f32, and every
    /// kernel computes in f32. Needs an adapter with 16-bit floats in shaders (`SHADER_F16`).
    F16,
    /// f16 where the adapter has `SHADER_F16` and f16 kernels were measured faster on it (the
    /// measurement cached like the kernel variants), else f32.
    Auto,
}

/// The limits a device is opened with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LimitsProfile {
    /// wgpu's downlevel defaults with the buffer sizes the adapter offers, so large images fit.
    #[default]
    Adapter,
    /// A phone's: wgpu's downlevel defaults, a 128 MiB storage binding, a 256 MiB buffer.
    Phone,
}

/// A phone's limits: `wgpu::Limits::downlevel_defaults()` (4 storage buffers per stage, 256
/// invocations per workgroup, 16 KiB workgroup memory) with a 128 MiB storage binding and a
/// 256 MiB buffer, as common Android Vulkan drivers report.
pub const PHONE_LIMITS: wgpu::Limits = wgpu::Limits {
    max_storage_buffer_binding_size: 128 << 20,
    max_buffer_size: 256 << 20,
    ..wgpu::Limits::downlevel_defaults()
};

/// One adapter as listed by `neural-style devices`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterSummary {
    /// Adapter name as reported by the driver.
    pub name: String,
    /// Graphics API.
    pub backend: String,
    /// Discrete, integrated, virtual, CPU or other.
    pub device_type: String,
    /// Driver name and version.
    pub driver: String,
    /// Largest buffer the adapter can create, in bytes.
    pub max_buffer_size: u64,
    /// Largest storage buffer binding, in bytes.
    pub max_storage_buffer_binding_size: u64,
    /// Storage buffers a compute shader may bind.
    pub max_storage_buffers_per_shader_stage: u32,
    /// Invocations per workgroup.
    pub max_compute_invocations_per_workgroup: u32,
    /// Workgroup shared memory, in bytes.
    pub max_compute_workgroup_storage_size: u32,
}

/// An instance for the chosen backends. Windows need their display: OpenGL (EGL) finds no
/// adapter able to present to an X11 or Wayland window without it.
fn instance(
    backend: Option<BackendChoice>,
    display: Option<Box<dyn wgpu::wgt::WgpuHasDisplayHandle>>,
) -> wgpu::Instance {
    let mut desc = match display {
        Some(display) => wgpu::InstanceDescriptor::new_with_display_handle(display),
        None => wgpu::InstanceDescriptor::new_without_display_handle(),
    };
    desc.backends = backends(backend);
    wgpu::Instance::new(desc)
}

fn no_adapter() -> anyhow::Error {
    let message = "no GPU adapter found: install a Vulkan driver (on Debian/Ubuntu without a GPU: \
                   `apt-get install mesa-vulkan-drivers` for the lavapipe software rasterizer)";
    crate::remedy::NeedsRemedy::error(message, crate::remedy::Remedy::OtherBackend)
}

/// Lists every adapter visible for the given backend choice.
pub fn list_adapters(backend: Option<BackendChoice>) -> Vec<AdapterSummary> {
    let instance = instance(backend, None);
    let adapters = pollster::block_on(instance.enumerate_adapters(backends(backend)));
    adapters
        .iter()
        .map(|a| {
            let info = a.get_info();
            let limits = a.limits();
            AdapterSummary {
                name: info.name,
                backend: format!("{:?}", info.backend).to_lowercase(),
                device_type: format!("{:?}", info.device_type),
                driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
                max_buffer_size: limits.max_buffer_size,
                max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
                max_storage_buffers_per_shader_stage: limits.max_storage_buffers_per_shader_stage,
                max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
                max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
            }
        })
        .collect()
}

/// A window's surface with the format and alpha mode chosen for it.
pub struct PresentSurface {
    /// The surface.
    pub surface: wgpu::Surface<'static>,
    /// Texture format to configure it with.
    pub format: wgpu::TextureFormat,
    /// Alpha mode to configure it with.
    pub alpha_mode: wgpu::CompositeAlphaMode,
}

/// The adapter the request names (or the default), able to present to `surface` when given.
fn pick_adapter(
    instance: &wgpu::Instance,
    request: &DeviceRequest,
    surface: Option<&wgpu::Surface>,
) -> Result<wgpu::Adapter> {
    let Some(needle) = &request.adapter else {
        return pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: surface,
            ..Default::default()
        }))
        .map_err(|_| no_adapter());
    };
    let needle_lc = needle.to_lowercase();
    let all = pollster::block_on(instance.enumerate_adapters(backends(request.backend)));
    if all.is_empty() {
        return Err(no_adapter());
    }
    let names: Vec<String> = all.iter().map(|a| a.get_info().name).collect();
    all.into_iter()
        .filter(|a| surface.is_none_or(|s| a.is_surface_supported(s)))
        .find(|a| a.get_info().name.to_lowercase().contains(&needle_lc))
        .with_context(|| format!("no adapter name contains {needle:?}; available: {}", names.join(", ")))
}

/// The device, its queue, and the error state shared with wgpu's callbacks.
pub struct GpuContext {
    /// The logical device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// What the adapter says about itself.
    pub info: wgpu::AdapterInfo,
    /// The limits the device was created with.
    pub limits: wgpu::Limits,
    instance: wgpu::Instance,
    adapter: wgpu::Adapter,
    errors: Arc<Mutex<Vec<String>>>,
    allocated: std::sync::atomic::AtomicU64,
    largest: std::sync::atomic::AtomicU64,
    tuner: crate::tuning::Tuner,
    precision: Precision,
}

impl GpuContext {
    /// Opens a device as requested. Fails with a one-line message when no adapter matches.
    pub fn new(request: &DeviceRequest) -> Result<Self> {
        check_backend_available(request.backend)?;
        let instance = instance(request.backend, None);
        let adapter = pick_adapter(&instance, request, None)?;
        Self::open(instance, adapter, request)
    }

    /// Opens a device that can present to `window` on `display` (the connection to the window
    /// system, not a window: the instance keeps it as long as the device lives), and the window's
    /// surface.
    pub fn with_surface(
        request: &DeviceRequest,
        display: impl wgpu::wgt::WgpuHasDisplayHandle,
        window: impl Into<wgpu::SurfaceTarget<'static>>,
    ) -> Result<(Self, PresentSurface)> {
        check_backend_available(request.backend)?;
        let instance = instance(request.backend, Some(Box::new(display)));
        let surface = instance.create_surface(window).context("cannot create a surface for the window")?;
        let adapter = pick_adapter(&instance, request, Some(&surface))?;
        if !adapter.get_downlevel_capabilities().flags.contains(wgpu::DownlevelFlags::FRAGMENT_STORAGE) {
            bail!(
                "adapter {:?} cannot read storage buffers in fragment shaders, which the viewer needs",
                adapter.get_info().name
            );
        }
        let ctx = Self::open(instance, adapter, request)?;
        let surface = ctx.present_surface(surface)?;
        Ok((ctx, surface))
    }

    /// A surface for a new window on this device (after the previous one was lost, as when an
    /// Android app is sent to the background and comes back).
    pub fn create_surface(&self, window: impl Into<wgpu::SurfaceTarget<'static>>) -> Result<PresentSurface> {
        let surface = self.instance.create_surface(window).context("cannot create a surface for the window")?;
        if !self.adapter.is_surface_supported(&surface) {
            bail!("adapter {:?} cannot present to the new window", self.info.name);
        }
        self.present_surface(surface)
    }

    fn present_surface(&self, surface: wgpu::Surface<'static>) -> Result<PresentSurface> {
        let caps = surface.get_capabilities(&self.adapter);
        // Pixel values are sRGB-encoded already: prefer a surface that takes them as they are.
        let format = caps
            .formats
            .iter()
            .copied()
            .find(|f| !f.is_srgb())
            .or_else(|| caps.formats.first().copied())
            .context("the window surface offers no format")?;
        let alpha_mode = caps.alpha_modes.first().copied().unwrap_or(wgpu::CompositeAlphaMode::Auto);
        Ok(PresentSurface { surface, format, alpha_mode })
    }

    fn open(instance: wgpu::Instance, adapter: wgpu::Adapter, request: &DeviceRequest) -> Result<Self> {
        let info = adapter.get_info();
        let adapter_limits = adapter.limits();
        let limits = match request.limits {
            LimitsProfile::Adapter => wgpu::Limits {
                max_buffer_size: adapter_limits.max_buffer_size,
                max_storage_buffer_binding_size: adapter_limits.max_storage_buffer_binding_size,
                ..wgpu::Limits::downlevel_defaults()
            },
            LimitsProfile::Phone => PHONE_LIMITS,
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("neural-style"),
            // Timestamps only feed `bench`'s per-kernel breakdown and the tuner; 16-bit floats
            // are opened wherever the adapter has them so kernels of either precision compile;
            // subgroup operations so the broadcast kernels can be offered.
            required_features: adapter.features()
                & (wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP),
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .with_context(|| format!("could not open device {:?}", info.name))?;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            sink.lock().unwrap().push(first_line(&e.to_string()));
        }));
        let lost = errors.clone();
        device.set_device_lost_callback(move |reason, msg| {
            if reason != wgpu::DeviceLostReason::Destroyed {
                lost.lock().unwrap().push(format!("GPU device lost: {msg}"));
            }
        });
        let has_f16 = device.features().contains(wgpu::Features::SHADER_F16);
        if request.precision == PrecisionChoice::F16 && !has_f16 {
            bail!(
                "adapter {:?} ({:?}) lacks SHADER_F16 (16-bit floats in shaders), which --precision f16 needs; use --precision f32 or auto",
                info.name,
                info.backend
            );
        }
        let cache = crate::weights::store::cache_dir().ok();
        let tuner = crate::tuning::Tuner::new(request.tune, crate::tuning::adapter_key(&info), cache);
        let mut ctx = Self {
            precision: Precision::F32,
            tuner,
            device,
            queue,
            info,
            limits,
            instance,
            adapter,
            errors,
            allocated: Default::default(),
            largest: Default::default(),
        };
        ctx.precision = match request.precision {
            PrecisionChoice::F32 => Precision::F32,
            PrecisionChoice::F16 => Precision::F16,
            PrecisionChoice::Auto if has_f16 => crate::kernels::faster_precision(&ctx)?,
            PrecisionChoice::Auto => Precision::F32,
        };
        Ok(ctx)
    }

    /// How kernels and plans made on this device store activations by default (the resolved
    /// `--precision`).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Whether the device can compile f16 kernels (`wgpu::Features::SHADER_F16`).
    pub fn has_f16(&self) -> bool {
        self.device.features().contains(wgpu::Features::SHADER_F16)
    }

    /// Whether the device has subgroup operations (`wgpu::Features::SUBGROUP`) in subgroups of
    /// exactly `lanes` invocations, so that a workgroup of `lanes` invocations is one whole
    /// subgroup, its invocations numbered 0 … lanes − 1 (lavapipe on 256-bit vectors: 8).
    pub fn has_subgroups_of(&self, lanes: u32) -> bool {
        self.device.features().contains(wgpu::Features::SUBGROUP)
            && self.info.subgroup_min_size == lanes
            && self.info.subgroup_max_size == lanes
    }

    /// The chooser of kernel variants for this device.
    pub fn tuner(&self) -> &crate::tuning::Tuner {
        &self.tuner
    }

    /// Runs `f` with the errors reported so far set aside, and puts them back after it: the
    /// errors `f` meets are its own (a kernel variant timed while planning fails alone, and an
    /// earlier error still reaches the plan's own check).
    pub fn with_errors_set_aside<T>(&self, f: impl FnOnce() -> T) -> T {
        let earlier = std::mem::take(&mut *self.errors.lock().unwrap());
        let result = f();
        let mut errors = self.errors.lock().unwrap();
        let during = std::mem::replace(&mut *errors, earlier);
        errors.extend(during);
        result
    }

    /// Returns the first GPU error reported since the last check, as an `Err`.
    pub fn check_errors(&self) -> Result<()> {
        let mut errors = self.errors.lock().unwrap();
        if let Some(first) = errors.first() {
            let msg = format!("GPU error: {first}");
            errors.clear();
            bail!(msg);
        }
        Ok(())
    }

    /// Bytes of every buffer created through this context so far (creations are counted, drops
    /// are not: the growth across planning bounds the plan's footprint from above, temporaries
    /// included).
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes the device's memory allocator holds for live resources, once the queue is idle and
    /// dropped resources are freed (Vulkan and DX12 report it; `None` elsewhere): unlike
    /// [`GpuContext::allocated_bytes`], temporaries that are gone do not count.
    pub fn resident_bytes(&self) -> Option<u64> {
        self.device.poll(wgpu::PollType::wait_indefinitely()).ok()?;
        self.device.generate_allocator_report().map(|r| r.total_allocated_bytes)
    }

    /// Bytes of the largest buffer created through this context so far (every buffer is bound
    /// whole, so this is also the largest binding).
    pub fn largest_buffer_bytes(&self) -> u64 {
        self.largest.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count(&self, buffer: wgpu::Buffer) -> wgpu::Buffer {
        self.allocated.fetch_add(buffer.size(), std::sync::atomic::Ordering::Relaxed);
        self.largest.fetch_max(buffer.size(), std::sync::atomic::Ordering::Relaxed);
        buffer
    }

    /// Creates a storage buffer holding `data`.
    pub fn storage_buffer(&self, label: &str, data: &[f32]) -> wgpu::Buffer {
        self.count(self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::cast_slice(data),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        }))
    }

    /// Creates a zero-filled storage buffer of `len` floats (at least one, wgpu rejects empty bindings).
    pub fn zeroed_buffer(&self, label: &str, len: usize) -> wgpu::Buffer {
        self.count(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (len.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// Creates a uniform buffer from a plain-old-data value.
    pub fn uniform_buffer<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        self.count(self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::bytes_of(value),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        }))
    }

    /// Creates a zero-filled storage buffer of `len` values stored in `precision` (its size
    /// rounded up to whole 4-byte words, as wgpu binds and copies them).
    pub fn values_buffer(&self, label: &str, len: usize, precision: Precision) -> wgpu::Buffer {
        self.count(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: values_bytes(len.max(1), precision),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// Creates a storage buffer holding `data` stored in `precision` (rounded to the nearest
    /// f16 for [`Precision::F16`]).
    pub fn values_storage(&self, label: &str, data: &[f32], precision: Precision) -> wgpu::Buffer {
        match precision {
            Precision::F32 => self.storage_buffer(label, data),
            Precision::F16 => {
                let mut halves: Vec<half::f16> = data.iter().map(|&v| half::f16::from_f32(v)).collect();
                halves.resize(values_bytes(data.len().max(1), precision) as usize / 2, half::f16::ZERO);
                self.count(self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: bytemuck::cast_slice(&halves),
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                }))
            }
        }
    }

    /// Copies `len` values stored in `precision` out of a storage buffer, as f32 (blocking; its
    /// own submit).
    pub fn read_values(&self, buffer: &wgpu::Buffer, len: usize, precision: Precision) -> Result<Vec<f32>> {
        match precision {
            Precision::F32 => self.read_buffer(buffer, len),
            Precision::F16 => {
                // Two halves per 4-byte word, read as words.
                let words = self.read_buffer(buffer, len.div_ceil(2))?;
                let halves: &[half::f16] = bytemuck::cast_slice(&words);
                Ok(halves[..len].iter().map(|h| h.to_f32()).collect())
            }
        }
    }

    /// The largest magnitude among the f16 values of `buffers` (infinite if any is infinite or
    /// NaN), read through one staging buffer of at most 4 MiB (blocking; a submit per chunk).
    pub fn max_abs_f16<'a>(&self, buffers: impl IntoIterator<Item = &'a wgpu::Buffer>) -> Result<f32> {
        const CHUNK: u64 = 4 << 20;
        let buffers: Vec<&wgpu::Buffer> = buffers.into_iter().collect();
        let Some(largest_size) = buffers.iter().map(|b| b.size()).max() else { return Ok(0.0) };
        let staging = self.readback_buffer((largest_size.min(CHUNK) / 4) as usize);
        let mut largest = 0f32;
        for buffer in buffers {
            for offset in (0..buffer.size()).step_by(CHUNK as usize) {
                let bytes = (buffer.size() - offset).min(CHUNK);
                let mut encoder = self.device.create_command_encoder(&Default::default());
                encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, bytes);
                self.queue.submit([encoder.finish()]);
                let words: Vec<u32> = self.read_mapped(&staging, (bytes / 4) as usize)?;
                for h in bytemuck::cast_slice::<u32, half::f16>(&words) {
                    let v = h.to_f32().abs();
                    largest = if v.is_nan() { f32::INFINITY } else { largest.max(v) };
                }
            }
        }
        Ok(largest)
    }

    /// A buffer that GPU copies can land in and the CPU can map, for `len` floats.
    pub fn readback_buffer(&self, len: usize) -> wgpu::Buffer {
        self.count(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: (len.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// Waits for the submitted work, then reads `len` values (f32, or u64 timestamps) from a
    /// readback buffer the work copied into.
    pub fn read_mapped<T: bytemuck::Pod>(&self, staging: &wgpu::Buffer, len: usize) -> Result<Vec<T>> {
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| anyhow::anyhow!("GPU wait failed: {e}"))?;
        self.check_errors()?;
        rx.recv().context("GPU readback was dropped")?.map_err(|e| anyhow::anyhow!("GPU readback failed: {e}"))?;
        let out = {
            let view = staging.get_mapped_range(..).map_err(|e| anyhow::anyhow!("{e}"))?;
            bytemuck::cast_slice::<u8, T>(&view)[..len].to_vec()
        };
        staging.unmap();
        Ok(out)
    }

    /// Copies `len` floats out of a storage buffer (blocking; its own submit).
    pub fn read_buffer(&self, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
        let staging = self.readback_buffer(len);
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, (len * 4) as u64);
        self.queue.submit([encoder.finish()]);
        self.read_mapped(&staging, len)
    }

    /// Waits until the queue is idle and reports any GPU error.
    pub fn finish(&self) -> Result<()> {
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| anyhow::anyhow!("GPU wait failed: {e}"))?;
        self.check_errors()
    }
}

/// Bytes of a buffer of `len` values stored in `precision`: whole 4-byte words.
pub fn values_bytes(len: usize, precision: Precision) -> u64 {
    ((len * precision.bytes()).div_ceil(4) * 4) as u64
}

fn first_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}
