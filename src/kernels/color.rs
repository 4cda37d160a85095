//! `shaders/color.wgsl`: color transfer applied to the image as it is read back for writing
//! (`original_colors`: the optimized image's luma with the content photo's chroma, YCbCr BT.601
//! full range; [`crate::reference::original_colors`] is its CPU reference).

use super::{BoundOp, Family, Kernel, KernelSpec, Modules, Precision, Shader, UniformParams, WORKGROUP, flat_grid};
use super::{kernel_bindings, uniform_params};
use crate::gpu::GpuContext;

uniform_params! {
    /// Uniforms of `original_colors`.
    pub struct ColorParams {
        /// Pixels of each planar RGB image.
        pub pixels: u32,
        /// Padding to 16 bytes.
        pub _pad0: u32,
        /// Padding.
        pub _pad1: u32,
        /// Padding.
        pub _pad2: u32,
    }
}

impl ColorParams {
    /// Images of `pixels` pixels.
    pub fn new(pixels: usize) -> Self {
        Self { pixels: pixels as u32, _pad0: 0, _pad1: 0, _pad2: 0 }
    }
}

kernel_bindings! {
    /// Buffers of `original_colors` (planar RGB images of the same size).
    pub struct OriginalColors {
        /// The optimized image (clamped to [0, 1] as it is read).
        image: 1 Read,
        /// The content photo: the source of the chroma.
        photo: 2 Read,
        /// The recolored image, in [0, 1].
        output: 3 ReadWrite,
    }
}

/// `original_colors`.
pub const ORIGINAL_COLORS: KernelSpec = KernelSpec {
    entry: "original_colors",
    shader: Shader::Color,
    family: Family::Optimizer,
    params: ColorParams::LAYOUT,
    storage: OriginalColors::BINDINGS,
    workgroup_size: [WORKGROUP, 1, 1],
    overrides: &[],
};

/// Every kernel of the file.
pub const SPECS: &[KernelSpec] = &[ORIGINAL_COLORS];

/// The kernels of `color.wgsl`.
pub struct Color {
    original_colors: Kernel,
}

impl Color {
    /// Compiles the file's kernels.
    pub fn new(ctx: &GpuContext) -> Self {
        let modules = Modules::new(Shader::Color, Precision::F32);
        Self { original_colors: modules.kernel(ctx, ORIGINAL_COLORS) }
    }

    /// The image's luma with the photo's chroma, one invocation per pixel.
    pub fn original_colors(&self, ctx: &GpuContext, buffers: OriginalColors, p: &ColorParams) -> BoundOp {
        self.original_colors.bind(ctx, p, &buffers.buffers(), flat_grid(p.pixels as usize))
    }
}
