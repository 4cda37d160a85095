//! `shaders/pointwise.wgsl`: the tiled matrix product behind every 1×1 convolution, its input
//! gradient, the Gram matrices and the style gradient, plus the residual connection.

use std::sync::OnceLock;

use super::{BoundOp, Family, Kernel, KernelSpec, Shader, UniformParams, WORKGROUP, flat_grid};
use super::{kernel_bindings, uniform_params};
use crate::gpu::GpuContext;
use crate::model::Conv;

/// Invocations along each side of a product workgroup (`TILE_SIDE` in WGSL).
pub const TILE_SIDE: u32 = 16;
/// Largest output tile edge of a product (`TILE` in WGSL): [`TILE_SIDE`] invocations × 4.
pub const TILE: u32 = 64;
/// Reduction values loaded into workgroup memory per step (`KSTEP` in WGSL).
pub const KSTEP: u32 = 16;

/// Flag bits of [`PointwiseParams::flags`] (`FLAG_*` in WGSL).
pub mod flags {
    /// Add the bias stored after the weights.
    pub const BIAS: u32 = 1;
    /// Store the pre-activation in the aux buffer.
    pub const STORE_PREACT: u32 = 2;
    /// Read A (the weights) transposed.
    pub const TRANSPOSE_A: u32 = 8;
    /// Read B (the input) transposed.
    pub const TRANSPOSE_B: u32 = 16;
    /// Multiply B by the activation derivative of the pre-activation in aux; no activation after.
    pub const GRAD_ACT_B: u32 = 32;
    /// Add to the output instead of overwriting it.
    pub const ACCUMULATE: u32 = 64;
    /// The product is symmetric (A·Aᵀ, m = n): compute the tiles on and above the diagonal only.
    pub const SYMMETRIC: u32 = 128;
    /// Every flag with its name.
    pub const ALL: &[(&str, u32)] = &[
        ("BIAS", BIAS),
        ("STORE_PREACT", STORE_PREACT),
        ("TRANSPOSE_A", TRANSPOSE_A),
        ("TRANSPOSE_B", TRANSPOSE_B),
        ("GRAD_ACT_B", GRAD_ACT_B),
        ("ACCUMULATE", ACCUMULATE),
        ("SYMMETRIC", SYMMETRIC),
    ];
}

uniform_params! {
    /// Uniforms of `pointwise_forward`: out[m][n] = act(alpha · Σ_k A[m][k] B[k][n] + bias[m]) …
    pub struct PointwiseParams {
        /// Rows of the output (output channels).
        pub m: u32,
        /// Reduction length (input channels).
        pub k: u32,
        /// Columns of the output (pixels).
        pub n: u32,
        /// Activation code (of the epilogue, or of the derivative with `GRAD_ACT_B`).
        pub act: u32,
        /// Upper clamp after the activation.
        pub cap: f32,
        /// [`flags`] bits.
        pub flags: u32,
        /// Scale of the product.
        pub alpha: f32,
        /// 0: one product over all of k. Otherwise the reduction is split into chunks of this
        /// many values, each workgroup layer z writing its own partial product at offset z·m·n.
        pub k_chunk: u32,
    }
}

impl PointwiseParams {
    /// The 1×1 convolution `conv` over `pixels` pixels, with its bias and activation (and the
    /// pre-activation stored with `store_preact`).
    pub fn conv(conv: &Conv, pixels: usize, store_preact: bool) -> Self {
        let store = if store_preact { flags::STORE_PREACT } else { 0 };
        Self {
            m: conv.out_channels as u32,
            k: conv.in_channels as u32,
            n: pixels as u32,
            act: super::activation_code(conv.activation),
            cap: conv.cap,
            flags: flags::BIAS | store,
            ..Self::default()
        }
    }

    /// The input gradient of this 1×1 convolution, added into: dX += Wᵀ · (dY ⊙ act'(Z)), the
    /// activation derivative applied when the forward stored its pre-activation.
    pub fn input_gradient(&self) -> Self {
        let grad_act = if self.flags & flags::STORE_PREACT != 0 { flags::GRAD_ACT_B } else { 0 };
        Self {
            m: self.k,
            k: self.m,
            flags: flags::TRANSPOSE_A | flags::ACCUMULATE | grad_act,
            alpha: 1.0,
            k_chunk: 0,
            ..*self
        }
    }
}

impl Default for PointwiseParams {
    /// An empty plain product: alpha 1, no activation clamp, no flags.
    fn default() -> Self {
        Self { m: 0, k: 0, n: 0, act: 0, cap: f32::MAX, flags: 0, alpha: 1.0, k_chunk: 0 }
    }
}

uniform_params! {
    /// Uniforms of `residual_forward` and `residual_backward`.
    pub struct ResidualParams {
        /// Values.
        pub n: u32,
        /// Padding to 16 bytes.
        pub _pad0: u32,
        /// Padding.
        pub _pad1: u32,
        /// Padding.
        pub _pad2: u32,
    }
}

impl ResidualParams {
    /// A residual connection over `n` values.
    pub fn new(n: usize) -> Self {
        Self { n: n as u32, _pad0: 0, _pad1: 0, _pad2: 0 }
    }
}

kernel_bindings! {
    /// Buffers of `pointwise_forward`.
    pub struct ProductBuffers {
        /// B: the input [k][n] (or transposed, see the flags).
        input: 1 Read,
        /// A: the weights [m][k] followed by m biases (or transposed, see the flags).
        weights: 2 Read,
        /// The output [m][n] (and its partial products with `k_chunk`).
        output: 3 ReadWrite,
        /// Pre-activation to store (`STORE_PREACT`) or whose activation derivative multiplies B
        /// (`GRAD_ACT_B`); the placeholder otherwise.
        aux: 4 ReadWrite,
    }
}

kernel_bindings! {
    /// Buffers of `residual_forward`: sum = input + addend.
    pub struct ResidualForward {
        /// The projection.
        input: 1 Read,
        /// The block input.
        addend: 5 Read,
        /// The block output.
        sum: 6 ReadWrite,
    }
}

kernel_bindings! {
    /// Buffers of `residual_backward`: sum += addend.
    pub struct ResidualBackward {
        /// dL/d block output.
        addend: 5 Read,
        /// A summand's gradient, added into.
        sum: 6 ReadWrite,
    }
}

/// `pointwise_forward` (compiled once per tile shape).
pub const PRODUCT: KernelSpec = KernelSpec {
    entry: "pointwise_forward",
    shader: Shader::Pointwise,
    family: Family::Pointwise,
    params: PointwiseParams::LAYOUT,
    storage: ProductBuffers::BINDINGS,
    workgroup_size: [TILE_SIDE, TILE_SIDE, 1],
    overrides: &["ROWS", "COLS"],
};

/// `residual_forward`.
pub const RESIDUAL_FORWARD: KernelSpec = KernelSpec {
    entry: "residual_forward",
    params: ResidualParams::LAYOUT,
    storage: ResidualForward::BINDINGS,
    workgroup_size: [WORKGROUP, 1, 1],
    overrides: &[],
    ..PRODUCT
};

/// `residual_backward`.
pub const RESIDUAL_BACKWARD: KernelSpec =
    KernelSpec { entry: "residual_backward", storage: ResidualBackward::BINDINGS, ..RESIDUAL_FORWARD };

/// Every kernel of the file.
pub const SPECS: &[KernelSpec] = &[PRODUCT, RESIDUAL_FORWARD, RESIDUAL_BACKWARD];

/// The product kernel in its nine tile shapes (1, 2 or 4 output rows and columns per
/// invocation, each compiled on first use) and the residual connection.
pub struct Products {
    module: wgpu::ShaderModule,
    shapes: [OnceLock<Kernel>; 9],
    residual_forward: Kernel,
    residual_backward: Kernel,
}

impl Products {
    /// Compiles the residual kernels; the product shapes compile on first use.
    pub fn new(ctx: &GpuContext) -> Self {
        let module = Shader::Pointwise.module(ctx);
        Self {
            residual_forward: Kernel::new(ctx, &module, RESIDUAL_FORWARD),
            residual_backward: Kernel::new(ctx, &module, RESIDUAL_BACKWARD),
            shapes: Default::default(),
            module,
        }
    }

    /// A product with the tile shape that suits its m×n (see [`tile_shape`]), dispatching enough
    /// workgroups to cover it (and one layer per k chunk when `k_chunk` is set).
    pub fn product(&self, ctx: &GpuContext, buffers: ProductBuffers, p: &PointwiseParams) -> BoundOp {
        let symmetric = p.flags & flags::SYMMETRIC != 0;
        // A symmetric product is A·Aᵀ: scaling B by an activation derivative would break it.
        assert!(!symmetric || p.flags & flags::GRAD_ACT_B == 0, "a symmetric product cannot take GRAD_ACT_B");
        let (rows, cols) = tile_shape(p.m, p.n, symmetric);
        let shape = (rows.ilog2() * 3 + cols.ilog2()) as usize;
        let kernel = self.shapes[shape].get_or_init(|| {
            let constants = [("ROWS", f64::from(rows)), ("COLS", f64::from(cols))];
            Kernel::with_constants(ctx, &self.module, PRODUCT, &constants)
        });
        let splits = if p.k_chunk == 0 { 1 } else { p.k.div_ceil(p.k_chunk) };
        let grid = product_tiles(p.m, p.n, symmetric);
        kernel.bind(ctx, p, &buffers.buffers(), [grid[0], grid[1], splits])
    }

    /// A Gram-family product (timed under [`Family::Gram`]).
    pub fn gram(&self, ctx: &GpuContext, buffers: ProductBuffers, p: &PointwiseParams) -> BoundOp {
        self.product(ctx, buffers, p).in_family(Family::Gram)
    }

    /// The residual connection's forward over `p.n` values.
    pub fn residual_forward(&self, ctx: &GpuContext, buffers: ResidualForward, p: &ResidualParams) -> BoundOp {
        self.residual_forward.bind(ctx, p, &buffers.buffers(), flat_grid(p.n as usize))
    }

    /// One summand's share of the residual connection's backward over `p.n` values.
    pub fn residual_backward(&self, ctx: &GpuContext, buffers: ResidualBackward, p: &ResidualParams) -> BoundOp {
        self.residual_backward.bind(ctx, p, &buffers.buffers(), flat_grid(p.n as usize))
    }
}

/// Output rows and columns per invocation (1, 2 or 4 each; tiles are [`TILE_SIDE`] invocations
/// across) for an m×n product: the cheapest by a simple cost model, padded tile area × (1 +
/// workgroup-memory reads per multiply-add). Large tiles reuse each loaded value more; small
/// ones pad narrow layers less. Symmetric products use square tiles.
pub fn tile_shape(m: u32, n: u32, symmetric: bool) -> (u32, u32) {
    let padded = |len: u32, per: u32| f64::from(len.div_ceil(TILE_SIDE * per) * TILE_SIDE * per);
    let cost = |(r, c): (u32, u32)| padded(m, r) * padded(n, c) * (1.0 + f64::from(r + c) / f64::from(r * c));
    let shapes = [1, 2, 4].into_iter().flat_map(|r| [1, 2, 4].map(|c| (r, c)));
    shapes.filter(|(r, c)| !symmetric || r == c).min_by(|a, b| cost(*a).total_cmp(&cost(*b))).expect("a shape")
}

/// Workgroups along x and y that cover an m×n product's tiles (for a symmetric product, all of
/// them along x: only the tiles on and above the diagonal).
pub fn product_tiles(m: u32, n: u32, symmetric: bool) -> [u32; 2] {
    let (rows, cols) = tile_shape(m, n, symmetric);
    let (across, down) = (n.div_ceil(TILE_SIDE * cols), m.div_ceil(TILE_SIDE * rows));
    if symmetric { [down * (down + 1) / 2, 1] } else { [across, down] }
}
