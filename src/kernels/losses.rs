//! `shaders/losses.wgsl`: the content, style and total-variation losses with their gradients,
//! each spread over many workgroups that write per-workgroup partial sums, and the weighted total
//! that adds those partials in a fixed order.

use super::{
    BoundOp, FLAT_VALUES, Family, Kernel, KernelSpec, Modules, Precision, Shader, UniformParams, WORKGROUP, flat_grid,
};
use super::{kernel_bindings, uniform_params};
use crate::gpu::GpuContext;

/// Slots at the start of the losses buffer: content, style, tv, total and the image gradient's
/// squared norm ([`GRADIENT_SLOT`]) (`LOSS_SLOTS` in WGSL); the per-workgroup partial sums follow.
pub const LOSS_SLOTS: usize = 5;

/// The slot of ‖d total / d image‖², summed in f32 (`GRADIENT_SLOT` in WGSL): not finite when the
/// gradient is NaN or infinite or too large for the optimizers' f32 arithmetic.
pub const GRADIENT_SLOT: usize = 4;

uniform_params! {
    /// Uniforms of every loss kernel.
    #[derive(Default)]
    pub struct LossParams {
        /// Values in the content layer.
        pub count: u32,
        /// Image height (TV).
        pub height: u32,
        /// Image width (TV).
        pub width: u32,
        /// Channels of the style layer.
        pub channels: u32,
        /// Gradient coefficient.
        pub coef: f32,
        /// Style layer weight.
        pub layer_weight: f32,
        /// Partial Gram products to sum (style loss).
        pub splits: u32,
        /// Workgroups of this dispatch ([`loss_groups`]).
        pub groups: u32,
        /// Content weight of the total.
        pub content_weight: f32,
        /// Style weight of the total.
        pub style_weight: f32,
        /// TV weight of the total (and of the TV gradient).
        pub tv_weight: f32,
        /// Index in the losses buffer of this dispatch's first per-workgroup partial sum.
        pub partial: u32,
        /// `total_loss`: where the content, style, TV and squared-gradient partial sums end
        /// (they start at [`LOSS_SLOTS`] and follow each other; the TV dispatch writes the last
        /// two ranges).
        pub ends: [u32; 4],
    }
}

uniform_params! {
    /// Uniforms of `interior`.
    pub struct InteriorParams {
        /// Channels of the layer.
        pub channels: u32,
        /// Height of the layer.
        pub height: u32,
        /// Width of the layer.
        pub width: u32,
        /// Rows and columns at each edge set to 0.
        pub margin: u32,
    }
}

impl InteriorParams {
    /// Pixels of one channel that the mask keeps.
    pub fn kept_pixels(&self) -> usize {
        let m = 2 * self.margin;
        (self.height.saturating_sub(m) * self.width.saturating_sub(m)) as usize
    }
}

/// Workgroups of a loss kernel over `count` values: one per 2048 values (at least 1, at most 64),
/// each writing its own partial sum so no single workgroup walks a whole layer.
pub fn loss_groups(count: usize) -> u32 {
    count.div_ceil(2048).clamp(1, 64) as u32
}

kernel_bindings! {
    /// Buffers of `content_loss`.
    pub struct ContentLoss {
        /// The layer's activations F.
        value: 1 Read Activations,
        /// The content photo's activations P.
        target_value: 2 Read Activations,
        /// dL/dF, added into.
        grad: 3 ReadWrite Activations,
        /// The losses buffer.
        losses: 4 ReadWrite,
    }
}

kernel_bindings! {
    /// Buffers of `style_loss`.
    pub struct StyleLoss {
        /// The layer's Gram partial products.
        value: 1 Read,
        /// The style Gram matrix A.
        target_value: 2 Read,
        /// The residual R = coef · (G − A), for the gradient product R·F.
        grad: 3 ReadWrite,
        /// The losses buffer.
        losses: 4 ReadWrite,
    }
}

kernel_bindings! {
    /// Buffers of `tv_loss`.
    pub struct TvLoss {
        /// The image (planar RGB).
        value: 1 Read,
        /// dL/d image, added into.
        grad: 3 ReadWrite,
        /// The losses buffer.
        losses: 4 ReadWrite,
    }
}

kernel_bindings! {
    /// Buffers of `gradient_l1`.
    pub struct GradientL1 {
        /// One loss's own gradient g.
        value: 1 Read Activations,
        /// The losses buffer: one partial Σ|g| per workgroup at `partial`.
        losses: 4 ReadWrite,
    }
}

kernel_bindings! {
    /// Buffers of `normalized_add`.
    pub struct NormalizedAdd {
        /// One loss's own gradient g.
        value: 1 Read Activations,
        /// The layer gradient: coef · g / (‖g‖₁ + 1e-8) is added into it.
        grad: 3 ReadWrite Activations,
        /// The losses buffer holding the partial sums of ‖g‖₁ (from `gradient_l1`).
        losses: 4 ReadWrite,
    }
}

kernel_bindings! {
    /// Buffers of `interior`.
    pub struct Interior {
        /// The layer's activations F.
        value: 1 Read Activations,
        /// F with its border rows and columns set to 0.
        interior_value: 5 ReadWrite Activations,
    }
}

kernel_bindings! {
    /// Buffers of `pixel_major`.
    pub struct PixelMajor {
        /// The layer's activations F, [channel][pixel].
        value: 1 Read Activations,
        /// F transposed to [pixel][channel], its border rows and columns set to 0.
        pixel_value: 6 ReadWrite Activations,
    }
}

kernel_bindings! {
    /// Buffers of `total_loss`.
    pub struct TotalLoss {
        /// The losses buffer: partials in, the four slots out.
        losses: 4 ReadWrite,
    }
}

/// `content_loss`.
pub const CONTENT: KernelSpec = KernelSpec {
    entry: "content_loss",
    shader: Shader::Losses,
    family: Family::Losses,
    params: LossParams::LAYOUT,
    storage: ContentLoss::BINDINGS,
    workgroup_size: [WORKGROUP, 1, 1],
    overrides: &[],
};
/// `style_loss`.
pub const STYLE: KernelSpec = KernelSpec { entry: "style_loss", storage: StyleLoss::BINDINGS, ..CONTENT };
/// `tv_loss`.
pub const TV: KernelSpec = KernelSpec { entry: "tv_loss", storage: TvLoss::BINDINGS, ..CONTENT };
/// `total_loss`.
pub const TOTAL: KernelSpec = KernelSpec { entry: "total_loss", storage: TotalLoss::BINDINGS, ..CONTENT };

/// `gradient_l1`.
pub const GRADIENT_L1: KernelSpec = KernelSpec { entry: "gradient_l1", storage: GradientL1::BINDINGS, ..CONTENT };
/// `normalized_add`.
pub const NORMALIZED_ADD: KernelSpec =
    KernelSpec { entry: "normalized_add", storage: NormalizedAdd::BINDINGS, ..CONTENT };

/// `interior`.
pub const INTERIOR: KernelSpec =
    KernelSpec { entry: "interior", params: InteriorParams::LAYOUT, storage: Interior::BINDINGS, ..CONTENT };

/// `pixel_major`.
pub const PIXEL_MAJOR: KernelSpec = KernelSpec { entry: "pixel_major", storage: PixelMajor::BINDINGS, ..INTERIOR };

/// Every kernel of the file.
pub const SPECS: &[KernelSpec] = &[CONTENT, STYLE, TV, TOTAL, GRADIENT_L1, NORMALIZED_ADD, INTERIOR, PIXEL_MAJOR];

/// The kernels of `losses.wgsl`.
pub struct Losses {
    content: Kernel,
    style: Kernel,
    tv: Kernel,
    total: Kernel,
    gradient_l1: Kernel,
    normalized_add: Kernel,
    interior: Kernel,
    pixel_major: Kernel,
}

impl Losses {
    /// Compiles the file's kernels for activations stored in `precision`.
    pub fn new(ctx: &GpuContext, precision: Precision) -> Self {
        let modules = Modules::new(Shader::Losses, precision);
        Self {
            content: modules.kernel(ctx, CONTENT),
            style: modules.kernel(ctx, STYLE),
            tv: modules.kernel(ctx, TV),
            total: modules.kernel(ctx, TOTAL),
            gradient_l1: modules.kernel(ctx, GRADIENT_L1),
            normalized_add: modules.kernel(ctx, NORMALIZED_ADD),
            interior: modules.kernel(ctx, INTERIOR),
            pixel_major: modules.kernel(ctx, PIXEL_MAJOR),
        }
    }

    /// Content loss and gradient of one layer over `p.groups` workgroups.
    pub fn content(&self, ctx: &GpuContext, buffers: ContentLoss, p: &LossParams) -> BoundOp {
        self.content.bind(ctx, p, &buffers.buffers(), [p.groups, 1, 1])
    }

    /// Style loss of one layer and its residual R over `p.groups` workgroups.
    pub fn style(&self, ctx: &GpuContext, buffers: StyleLoss, p: &LossParams) -> BoundOp {
        self.style.bind(ctx, p, &buffers.buffers(), [p.groups, 1, 1])
    }

    /// Total variation loss and gradient over `p.groups` workgroups, run after the backward pass:
    /// `p.groups` partials of E_tv from `p.partial` on, then `p.groups` partials of Σ grad² (the
    /// whole image gradient's, for [`GRADIENT_SLOT`]).
    pub fn tv(&self, ctx: &GpuContext, buffers: TvLoss, p: &LossParams) -> BoundOp {
        self.tv.bind(ctx, p, &buffers.buffers(), [p.groups, 1, 1])
    }

    /// The weighted total: one workgroup.
    pub fn total(&self, ctx: &GpuContext, buffers: TotalLoss, p: &LossParams) -> BoundOp {
        self.total.bind(ctx, p, &buffers.buffers(), [1, 1, 1])
    }

    /// ‖g‖₁ of one loss's own gradient over `p.count` values, as `p.groups` partial sums written
    /// from `p.partial` on.
    pub fn gradient_l1(&self, ctx: &GpuContext, buffers: GradientL1, p: &LossParams) -> BoundOp {
        self.gradient_l1.bind(ctx, p, &buffers.buffers(), [p.groups, 1, 1])
    }

    /// grad += p.coef · g / (‖g‖₁ + 1e-8), the norm summed from the `p.groups` partials at
    /// `p.partial` that [`Losses::gradient_l1`] wrote with the same parameters.
    pub fn normalized_add(&self, ctx: &GpuContext, buffers: NormalizedAdd, p: &LossParams) -> BoundOp {
        self.normalized_add.bind(ctx, p, &buffers.buffers(), [p.groups, 1, 1])
    }

    /// A layer's activations with the `p.margin` outermost rows and columns of every channel set
    /// to 0.
    pub fn interior(&self, ctx: &GpuContext, buffers: Interior, p: &InteriorParams) -> BoundOp {
        let n = (p.channels * p.height * p.width) as usize;
        self.interior.bind(ctx, p, &buffers.buffers(), flat_grid(n))
    }

    /// A layer's activations transposed to [pixel][channel], the border masked as
    /// [`Losses::interior`] masks it: what a Gram product reads with `TRANSPOSE_A` instead of
    /// `TRANSPOSE_B`. Timed under [`Family::Gram`].
    pub fn pixel_major(&self, ctx: &GpuContext, buffers: PixelMajor, p: &InteriorParams) -> BoundOp {
        // FLAT_VALUES channels of one pixel per invocation.
        let blocks = p.channels.div_ceil(FLAT_VALUES) * FLAT_VALUES;
        let n = (blocks * p.height * p.width) as usize;
        self.pixel_major.bind(ctx, p, &buffers.buffers(), flat_grid(n)).in_family(Family::Gram)
    }
}
