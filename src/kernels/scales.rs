//! `shaders/scales.wgsl`: what the coarse-to-fine schedule, the losses and the output average do
//! to whole images: the bilinear upsampling of one scale's result to the next scale's size, the
//! mirror padding the network sees around the image and its adjoint, the logit that starts the
//! bounded L-BFGS parameters from an image, the exponential moving average of the iterates, and
//! the kept result (the image a run writes: the best evaluated one, checked on the GPU after each
//! evaluation).

use super::{BoundOp, Family, Kernel, KernelSpec, Modules, Precision, Shader, UniformParams, WORKGROUP, flat_grid};
use super::{kernel_bindings, uniform_params};
use crate::gpu::GpuContext;
use crate::kernels::losses::LOSS_SLOTS;

/// Slot of the kept-result state that is 1 when an image is kept (`KEPT_VALID` in WGSL); the
/// kept image's losses come first ([`LOSS_SLOTS`] of them).
pub const KEPT_VALID: usize = LOSS_SLOTS;
/// Slot that is 1 when the last evaluation was taken as the kept image (`KEPT_TAKEN` in WGSL).
pub const KEPT_TAKEN: usize = LOSS_SLOTS + 1;
/// First slot of the last evaluation's losses (`KEPT_EVALUATED` in WGSL).
pub const KEPT_EVALUATED: usize = LOSS_SLOTS + 2;
/// Floats of the kept-result state.
pub const KEPT_SLOTS: usize = KEPT_EVALUATED + LOSS_SLOTS;

uniform_params! {
    /// Uniforms of `resize_bilinear`, `mirror_pad` and `mirror_pad_backward`.
    pub struct ResizeParams {
        /// Source width.
        pub src_w: u32,
        /// Source height.
        pub src_h: u32,
        /// Destination width.
        pub dst_w: u32,
        /// Destination height.
        pub dst_h: u32,
    }
}

uniform_params! {
    /// Uniforms of `logit` and `average`.
    pub struct AverageParams {
        /// Values.
        pub n: u32,
        /// Padding.
        pub _pad0: u32,
        /// Padding.
        pub _pad1: u32,
        /// Padding.
        pub _pad2: u32,
        /// Decay of the average (unused by `logit`).
        pub decay: f32,
        /// 1 − decay^t after t averaged iterates (unused by `logit`).
        pub bias_correction: f32,
        /// Padding.
        pub _pad3: u32,
        /// Padding.
        pub _pad4: u32,
    }
}

impl AverageParams {
    /// The average over `n` values with `decay`, after `t` iterates (t ≥ 1).
    pub fn new(n: usize, decay: f32, t: usize) -> Self {
        let bias_correction = (1.0 - f64::from(decay).powi(t.min(i32::MAX as usize) as i32)) as f32;
        Self { n: n as u32, decay, bias_correction, ..bytemuck::Zeroable::zeroed() }
    }
}

kernel_bindings! {
    /// Buffers of `resize_bilinear`.
    pub struct Resize {
        /// The source image.
        src: 1 Read,
        /// The resized image.
        dst: 2 ReadWrite,
    }
}

kernel_bindings! {
    /// Buffers of `logit`.
    pub struct Logit {
        /// The image.
        image: 3 Read,
        /// logit(image).
        averaged: 5 ReadWrite,
    }
}

kernel_bindings! {
    /// Buffers of `average`.
    pub struct Average {
        /// The current iterate.
        image: 3 Read,
        /// The running (biased) average.
        biased: 4 ReadWrite,
        /// The bias-corrected average.
        averaged: 5 ReadWrite,
    }
}

/// The pad on each side of a `width`×`height` image mirror-padded by up to `pad`: at most the
/// side − 1 (a pixel is mirrored once, about the edge pixel), so 0 for a side of 1.
pub fn mirror_pad_size(pad: u32, width: u32, height: u32) -> u32 {
    pad.min(width.saturating_sub(1)).min(height.saturating_sub(1))
}

uniform_params! {
    /// Uniforms of `keep_select` and `keep_copy`.
    pub struct KeepParams {
        /// Values in the image.
        pub n: u32,
        /// 1: keep the evaluated image only when its loss is below the kept one's; 0: whenever it
        /// is finite.
        pub lowest: u32,
        /// Padding.
        pub _pad0: u32,
        /// Padding.
        pub _pad1: u32,
    }
}

impl KeepParams {
    /// Keeping an image of `n` values: the lowest-loss one when `lowest`, else the latest finite.
    pub fn new(n: usize, lowest: bool) -> Self {
        Self { n: n as u32, lowest: lowest.into(), _pad0: 0, _pad1: 0 }
    }
}

kernel_bindings! {
    /// Buffers of `keep_select`.
    pub struct KeepSelect {
        /// The objective's losses of the evaluated image.
        evaluated: 6 Read,
        /// The kept-result state ([`KEPT_SLOTS`] floats, zeroed: nothing kept).
        kept: 7 ReadWrite,
    }
}

kernel_bindings! {
    /// Buffers of `keep_copy`.
    pub struct KeepCopy {
        /// The kept-result state.
        kept: 7 ReadWrite,
        /// The evaluated image.
        candidate: 8 Read,
        /// The kept image.
        result: 9 ReadWrite,
    }
}

/// `resize_bilinear`.
pub const RESIZE_BILINEAR: KernelSpec = KernelSpec {
    entry: "resize_bilinear",
    shader: Shader::Scales,
    family: Family::Optimizer,
    params: ResizeParams::LAYOUT,
    storage: Resize::BINDINGS,
    workgroup_size: [WORKGROUP, 1, 1],
    overrides: &[],
};
/// `mirror_pad`.
pub const MIRROR_PAD: KernelSpec = KernelSpec { entry: "mirror_pad", ..RESIZE_BILINEAR };
/// `mirror_pad_backward`.
pub const MIRROR_PAD_BACKWARD: KernelSpec = KernelSpec { entry: "mirror_pad_backward", ..RESIZE_BILINEAR };
/// `logit`.
pub const LOGIT: KernelSpec =
    KernelSpec { entry: "logit", params: AverageParams::LAYOUT, storage: Logit::BINDINGS, ..RESIZE_BILINEAR };
/// `average`.
pub const AVERAGE: KernelSpec = KernelSpec { entry: "average", storage: Average::BINDINGS, ..LOGIT };

/// `keep_select`.
pub const KEEP_SELECT: KernelSpec =
    KernelSpec { entry: "keep_select", params: KeepParams::LAYOUT, storage: KeepSelect::BINDINGS, ..RESIZE_BILINEAR };
/// `keep_copy`.
pub const KEEP_COPY: KernelSpec = KernelSpec { entry: "keep_copy", storage: KeepCopy::BINDINGS, ..KEEP_SELECT };

/// Every kernel of the file.
pub const SPECS: &[KernelSpec] =
    &[RESIZE_BILINEAR, MIRROR_PAD, MIRROR_PAD_BACKWARD, LOGIT, AVERAGE, KEEP_SELECT, KEEP_COPY];

/// The kernels of `scales.wgsl`.
pub struct ImageKernels {
    resize_bilinear: Kernel,
    mirror_pad: Kernel,
    mirror_pad_backward: Kernel,
    logit: Kernel,
    average: Kernel,
    keep_select: Kernel,
    keep_copy: Kernel,
}

impl ImageKernels {
    /// Compiles the file's kernels.
    pub fn new(ctx: &GpuContext) -> Self {
        let modules = Modules::new(Shader::Scales, Precision::F32);
        Self {
            resize_bilinear: modules.kernel(ctx, RESIZE_BILINEAR),
            mirror_pad: modules.kernel(ctx, MIRROR_PAD),
            mirror_pad_backward: modules.kernel(ctx, MIRROR_PAD_BACKWARD),
            logit: modules.kernel(ctx, LOGIT),
            average: modules.kernel(ctx, AVERAGE),
            keep_select: modules.kernel(ctx, KEEP_SELECT),
            keep_copy: modules.kernel(ctx, KEEP_COPY),
        }
    }

    /// `dst` (3 × dst_w × dst_h) = `src` (3 × src_w × src_h) resized bilinearly.
    pub fn resize_bilinear(&self, ctx: &GpuContext, buffers: Resize, p: &ResizeParams) -> BoundOp {
        self.resize_bilinear.bind(ctx, p, &buffers.buffers(), flat_grid(3 * (p.dst_w * p.dst_h) as usize))
    }

    /// `dst` (3 × dst_w × dst_h) = `src` (3 × src_w × src_h) mirror-padded by (dst − src) / 2 on
    /// each side (each pad at most the side − 1; see [`mirror_pad_size`]).
    pub fn mirror_pad(&self, ctx: &GpuContext, buffers: Resize, p: &ResizeParams) -> BoundOp {
        self.mirror_pad.bind(ctx, p, &buffers.buffers(), flat_grid(3 * (p.dst_w * p.dst_h) as usize))
    }

    /// The adjoint of [`ImageKernels::mirror_pad`]: `dst` (the image's size, dst_w × dst_h) = the
    /// gradient `src` of the padded image (src_w × src_h) summed over the padded pixels that read
    /// each pixel.
    pub fn mirror_pad_backward(&self, ctx: &GpuContext, buffers: Resize, p: &ResizeParams) -> BoundOp {
        self.mirror_pad_backward.bind(ctx, p, &buffers.buffers(), flat_grid(3 * (p.dst_w * p.dst_h) as usize))
    }

    /// logit over `p.n` values.
    pub fn logit(&self, ctx: &GpuContext, buffers: Logit, p: &AverageParams) -> BoundOp {
        self.logit.bind(ctx, p, &buffers.buffers(), flat_grid(p.n as usize))
    }

    /// One update of the average over `p.n` values (update `p` each iterate with
    /// [`BoundOp::update`]).
    pub fn average(&self, ctx: &GpuContext, buffers: Average, p: &AverageParams) -> BoundOp {
        self.average.bind(ctx, p, &buffers.buffers(), flat_grid(p.n as usize))
    }

    /// Whether the evaluated image replaces the kept one (one invocation).
    pub fn keep_select(&self, ctx: &GpuContext, buffers: KeepSelect, p: &KeepParams) -> BoundOp {
        self.keep_select.bind(ctx, p, &buffers.buffers(), [1, 1, 1])
    }

    /// Copies the evaluated image (`p.n` values) to the kept one if `keep_select` took it.
    pub fn keep_copy(&self, ctx: &GpuContext, buffers: KeepCopy, p: &KeepParams) -> BoundOp {
        self.keep_copy.bind(ctx, p, &buffers.buffers(), flat_grid(p.n as usize))
    }
}
