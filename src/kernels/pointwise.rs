//! `shaders/pointwise.wgsl`: the tiled matrix product behind every 1×1 convolution, its input
//! gradient, the Gram matrices and the style gradient, plus the residual connection.

use super::{
    Access, Binding, BoundOp, Family, Holds, Kernel, KernelSpec, Modules, Precision, Shader, Specialized,
    UniformParams, WORKGROUP, flat_grid,
};
use super::{kernel_bindings, uniform_params};
use crate::gpu::GpuContext;
use crate::model::Conv;
use crate::tuning::{Variant, scratch_like, time_op};

/// Invocations along each side of a product workgroup (`TILE_SIDE` in WGSL).
pub const TILE_SIDE: u32 = 16;
/// Largest output tile edge of a product (`TILE` in WGSL): [`TILE_SIDE`] invocations × 4.
pub const TILE: u32 = 64;
/// Reduction values loaded into workgroup memory per step (`KSTEP` in WGSL).
pub const KSTEP: u32 = 16;
/// Invocations of a `pointwise_lanes` workgroup, one output column each (`PRODUCT_LANES` in WGSL).
pub const LANES: u32 = 16;
/// Invocations of a `gram_lanes` workgroup (`GRAM_LANES` in WGSL).
pub const GRAM_LANES: u32 = 16;
/// Most output rows one lanes invocation keeps in registers (`MAX_LANE_ROWS` in WGSL).
pub const MAX_LANE_ROWS: u32 = 8;
/// Invocations of a `pointwise_broadcast` workgroup: one subgroup, whose lanes share loads
/// (`BCAST_LANES` in WGSL). The variants need subgroups exactly this wide.
pub const BCAST_LANES: u32 = 8;
/// Output rows of a `pointwise_broadcast` workgroup (`BCAST_ROWS` in WGSL): two loads of A per lane.
pub const BCAST_ROWS: u32 = 2 * BCAST_LANES;
// broadcast.wgsl's `broadcast16` hands round two loads of lanes 0 … 7.
const _: () = assert!(BCAST_LANES == 8 && BCAST_ROWS == 16);
/// The flags `pointwise_broadcast` takes as a pipeline constant (`BCAST_FLAGS`): those that
/// decide where its operands are read.
const BCAST_LAYOUT_FLAGS: u32 = flags::TRANSPOSE_A | flags::TRANSPOSE_B | flags::GRAD_ACT_B | flags::SYMMETRIC;

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
    /// activation derivative applied when the layer has an activation (aux then holds Z, or the
    /// output where that determines the derivative: `Conv::derivative_from_output`).
    pub fn input_gradient(&self) -> Self {
        let has_activation = self.act != super::activation_code(crate::arch::Activation::None);
        let grad_act = if has_activation { flags::GRAD_ACT_B } else { 0 };
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
        /// Backward: 1 adds the block output's gradient into the summand's, 0 copies it there
        /// (its first writer).
        pub accumulate: u32,
        /// Padding to 16 bytes.
        pub _pad1: u32,
        /// Padding.
        pub _pad2: u32,
    }
}

impl ResidualParams {
    /// A residual connection over `n` values (its backward adding into the summands' gradients).
    pub fn new(n: usize) -> Self {
        Self { n: n as u32, accumulate: 1, _pad1: 0, _pad2: 0 }
    }
}

kernel_bindings! {
    /// Buffers of `pointwise_forward`, as a product of [`Operands::Features`] binds them (see
    /// [`Operands`] for the others).
    pub struct ProductBuffers {
        /// B: the input [k][n] (or transposed, see the flags).
        input: 1 Read Activations,
        /// A: the weights [m][k] followed by m biases (or transposed, see the flags).
        weights: 2 Read,
        /// The output [m][n] (and its partial products with `k_chunk`).
        output: 3 ReadWrite Activations,
        /// Pre-activation to store (`STORE_PREACT`) or whose activation derivative multiplies B
        /// (`GRAD_ACT_B`); the placeholder otherwise.
        aux: 4 ReadWrite Activations,
    }
}

/// What a product multiplies, which decides what its buffers hold (f32, or activations in the
/// kernels' precision).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operands {
    /// f32 weights (or the style residual R) times features B into features: 1×1 convolutions,
    /// their input gradients, the style gradient R·F.
    Features,
    /// Features times features into f32 (partial) Gram matrices: features [channel][pixel] with
    /// B read transposed (`TRANSPOSE_B`, only these), or features [pixel][channel] with A read
    /// transposed (`TRANSPOSE_A`; `losses::pixel_major` writes them).
    Gram,
    /// Every operand f32 (the sum of a Gram matrix's partial products).
    Floats,
}

impl Operands {
    /// The pipeline's spec for `variant`: the tiled kernel, the broadcast kernel, or the lanes
    /// kernel of the operands' layout (`gram_lanes` reads B transposed, the others
    /// `pointwise_lanes`), each binding what the operands hold.
    fn spec(self, variant: ProductVariant) -> KernelSpec {
        let tiled = variant.is_tiled();
        let broadcast = variant.broadcast_columns().is_some();
        match (self, variant) {
            (Operands::Features, _) if broadcast => BROADCAST_SPEC,
            (Operands::Gram, _) if broadcast => GRAM_BROADCAST_SPEC,
            (Operands::Floats, _) if broadcast => FLOAT_BROADCAST_SPEC,
            (Operands::Features, _) if tiled => PRODUCT,
            (Operands::Gram, _) if tiled => GRAM_PRODUCT,
            (Operands::Floats, _) if tiled => FLOAT_PRODUCT,
            (Operands::Features, _) => PRODUCT_LANES_SPEC,
            (Operands::Gram, _) => GRAM_LANES_SPEC,
            (Operands::Floats, _) => FLOAT_LANES_SPEC,
        }
    }

    /// Bytes of one stored value of A (`weights`) and of B (`input`).
    fn operand_bytes(self, precision: Precision) -> (u64, u64) {
        let act = precision.bytes() as u64;
        match self {
            Operands::Features => (4, act),
            Operands::Gram => (act, act),
            Operands::Floats => (4, 4),
        }
    }
}

/// [`ProductBuffers`]' bindings for a Gram product: A and B the features, the output the f32
/// partial products.
pub const GRAM_BINDINGS: &[Binding] = &[
    Binding { name: "input", binding: 1, access: Access::Read, vec4: false, holds: Holds::Activations },
    Binding { name: "weights", binding: 2, access: Access::Read, vec4: false, holds: Holds::Activations },
    Binding { name: "output", binding: 3, access: Access::ReadWrite, vec4: false, holds: Holds::F32 },
    Binding { name: "aux", binding: 4, access: Access::ReadWrite, vec4: false, holds: Holds::Activations },
];

kernel_bindings! {
    /// Buffers of `residual_forward`: sum = input + addend.
    pub struct ResidualForward {
        /// The projection.
        input: 1 Read Activations,
        /// The block input.
        addend: 5 Read Activations,
        /// The block output.
        sum: 6 ReadWrite Activations,
    }
}

kernel_bindings! {
    /// Buffers of `residual_backward`: sum += addend.
    pub struct ResidualBackward {
        /// dL/d block output.
        addend: 5 Read Activations,
        /// A summand's gradient, added into.
        sum: 6 ReadWrite Activations,
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

/// [`ProductBuffers`]' bindings for a product of f32 operands.
pub const FLOAT_BINDINGS: &[Binding] = &[
    Binding { name: "input", binding: 1, access: Access::Read, vec4: false, holds: Holds::F32 },
    Binding { name: "weights", binding: 2, access: Access::Read, vec4: false, holds: Holds::F32 },
    Binding { name: "output", binding: 3, access: Access::ReadWrite, vec4: false, holds: Holds::F32 },
    Binding { name: "aux", binding: 4, access: Access::ReadWrite, vec4: false, holds: Holds::F32 },
];

/// `pointwise_forward` computing a Gram matrix.
pub const GRAM_PRODUCT: KernelSpec = KernelSpec { storage: GRAM_BINDINGS, ..PRODUCT };

/// `pointwise_forward` on f32 operands.
pub const FLOAT_PRODUCT: KernelSpec = KernelSpec { storage: FLOAT_BINDINGS, ..PRODUCT };

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

/// The bindings of the lanes products: [`ProductBuffers`]'s buffers in its order, the input, the
/// weights and the aux buffer read as vec4s.
pub const LANES_BINDINGS: &[Binding] = &[
    Binding { name: "input4", binding: 1, access: Access::Read, vec4: true, holds: Holds::Activations },
    Binding { name: "weights4", binding: 2, access: Access::Read, vec4: true, holds: Holds::F32 },
    Binding { name: "output", binding: 3, access: Access::ReadWrite, vec4: false, holds: Holds::Activations },
    Binding { name: "aux4", binding: 4, access: Access::ReadWrite, vec4: true, holds: Holds::Activations },
];

/// [`LANES_BINDINGS`] for a Gram product (see [`GRAM_BINDINGS`]).
pub const GRAM_LANES_BINDINGS: &[Binding] = &[
    Binding { name: "input4", binding: 1, access: Access::Read, vec4: true, holds: Holds::Activations },
    Binding { name: "weights4", binding: 2, access: Access::Read, vec4: true, holds: Holds::Activations },
    Binding { name: "output", binding: 3, access: Access::ReadWrite, vec4: false, holds: Holds::F32 },
    Binding { name: "aux4", binding: 4, access: Access::ReadWrite, vec4: true, holds: Holds::Activations },
];

/// [`LANES_BINDINGS`] for a product of f32 operands.
pub const FLOAT_LANES_BINDINGS: &[Binding] = &[
    Binding { name: "input4", binding: 1, access: Access::Read, vec4: true, holds: Holds::F32 },
    Binding { name: "weights4", binding: 2, access: Access::Read, vec4: true, holds: Holds::F32 },
    Binding { name: "output", binding: 3, access: Access::ReadWrite, vec4: false, holds: Holds::F32 },
    Binding { name: "aux4", binding: 4, access: Access::ReadWrite, vec4: true, holds: Holds::F32 },
];

/// `pointwise_lanes`: the product shaped for CPU-like adapters (B stored [k][n]).
pub const PRODUCT_LANES_SPEC: KernelSpec = KernelSpec {
    entry: "pointwise_lanes",
    storage: LANES_BINDINGS,
    workgroup_size: [LANES, 1, 1],
    overrides: &["LANE_ROWS"],
    ..PRODUCT
};

/// `gram_lanes`: the product shaped for CPU-like adapters with B read transposed.
pub const GRAM_LANES_SPEC: KernelSpec = KernelSpec {
    entry: "gram_lanes",
    workgroup_size: [GRAM_LANES, 1, 1],
    storage: GRAM_LANES_BINDINGS,
    ..PRODUCT_LANES_SPEC
};

/// `pointwise_lanes` on f32 operands.
pub const FLOAT_LANES_SPEC: KernelSpec = KernelSpec { storage: FLOAT_LANES_BINDINGS, ..PRODUCT_LANES_SPEC };

/// `pointwise_broadcast`: the product whose lanes share loads through subgroup broadcasts
/// (CPU-like adapters with subgroups; `shaders/pointwise_broadcast.wgsl`).
pub const BROADCAST_SPEC: KernelSpec = KernelSpec {
    entry: "pointwise_broadcast",
    shader: Shader::PointwiseBroadcast,
    workgroup_size: [BCAST_LANES, 1, 1],
    overrides: &["BCAST_FLAGS", "BCAST_COL_VECS"],
    ..PRODUCT
};

/// `pointwise_broadcast` computing a Gram matrix.
pub const GRAM_BROADCAST_SPEC: KernelSpec = KernelSpec { storage: GRAM_BINDINGS, ..BROADCAST_SPEC };

/// `pointwise_broadcast` on f32 operands.
pub const FLOAT_BROADCAST_SPEC: KernelSpec = KernelSpec { storage: FLOAT_BINDINGS, ..BROADCAST_SPEC };

/// Every kernel of the file (and of `pointwise_broadcast.wgsl`).
pub const SPECS: &[KernelSpec] = &[
    PRODUCT,
    GRAM_PRODUCT,
    FLOAT_PRODUCT,
    PRODUCT_LANES_SPEC,
    GRAM_LANES_SPEC,
    FLOAT_LANES_SPEC,
    BROADCAST_SPEC,
    GRAM_BROADCAST_SPEC,
    FLOAT_BROADCAST_SPEC,
    RESIDUAL_FORWARD,
    RESIDUAL_BACKWARD,
];

/// One way to compute a product. The plan asks [`Products::product`] for a product and gets
/// the variant the device's [`crate::tuning::Tuner`] chose for its shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProductVariant {
    /// `pointwise_forward`: workgroup tiles staged in workgroup memory (GPUs), shaped by
    /// [`tile_shape`].
    Tiled,
    /// `pointwise_forward` with one output per invocation (16×16 outputs per workgroup): the
    /// most workgroups, for the products whose outputs are few and whose reductions are long
    /// (a wide layer's input gradient, the style gradient R·F), which [`tile_shape`]'s large
    /// tiles leave to a handful of workgroups on a GPU of a hundred cores.
    TiledSmall,
    /// `pointwise_lanes` (or `gram_lanes` for B read transposed) with 4 output rows per
    /// workgroup: no workgroup memory, vec4 loads, A's loads shared by every lane (CPU-like
    /// adapters, where a barrier is a context switch and a lane's load a gather).
    Lanes4,
    /// The same with 8 rows ([`MAX_LANE_ROWS`]): each B load feeds twice the multiply-adds, in
    /// twice the registers.
    Lanes8,
    /// `pointwise_broadcast`: every load fetches a distinct value per lane and the lanes share
    /// A's through subgroup broadcasts ([`BCAST_ROWS`] rows and 8 columns per lane, in a
    /// workgroup of one subgroup). On lavapipe a load costs the same whether its lanes read one
    /// address or eight, so this does a fraction of the lanes variants' loads. Needs subgroups
    /// of exactly [`BCAST_LANES`] ([`ProductVariant::offered`]).
    Broadcast8,
    /// The same with 4 columns per lane: half as wide, for narrow products (Gram matrices)
    /// that 8 would pad.
    Broadcast4,
}

impl Variant for ProductVariant {
    fn name(self) -> &'static str {
        match self {
            ProductVariant::Tiled => "tiled",
            ProductVariant::TiledSmall => "tiled1",
            ProductVariant::Lanes4 => "lanes4",
            ProductVariant::Lanes8 => "lanes8",
            ProductVariant::Broadcast8 => "broadcast8",
            ProductVariant::Broadcast4 => "broadcast4",
        }
    }
}

impl ProductVariant {
    /// Every variant, the default first.
    pub const ALL: [ProductVariant; 6] = [
        ProductVariant::Tiled,
        ProductVariant::TiledSmall,
        ProductVariant::Lanes4,
        ProductVariant::Lanes8,
        ProductVariant::Broadcast8,
        ProductVariant::Broadcast4,
    ];

    /// The variants this device can compile: all but the broadcast ones without subgroups of
    /// exactly [`BCAST_LANES`].
    pub fn offered(ctx: &GpuContext) -> Vec<ProductVariant> {
        let subgroups = ctx.has_subgroups_of(BCAST_LANES);
        Self::ALL.into_iter().filter(|v| v.broadcast_columns().is_none() || subgroups).collect()
    }

    /// Output columns per lane of a broadcast variant (`4 · BCAST_COL_VECS` in WGSL); none for
    /// the others.
    fn broadcast_columns(self) -> Option<u32> {
        match self {
            ProductVariant::Broadcast8 => Some(8),
            ProductVariant::Broadcast4 => Some(4),
            _ => None,
        }
    }

    /// Whether this is a `pointwise_forward` variant (workgroup tiles).
    fn is_tiled(self) -> bool {
        matches!(self, ProductVariant::Tiled | ProductVariant::TiledSmall)
    }

    /// Output rows and columns per invocation of a tiled variant for an m×n product (see
    /// [`tile_shape`]); none for the lanes ones.
    fn tile(self, m: u32, n: u32, symmetric: bool) -> Option<(u32, u32)> {
        match self {
            ProductVariant::Tiled => Some(tile_shape(m, n, symmetric)),
            ProductVariant::TiledSmall => Some((1, 1)),
            _ => None,
        }
    }

    /// Output rows per workgroup of a lanes variant (`LANE_ROWS` in WGSL; none for the tiled).
    fn lane_rows(self) -> Option<u32> {
        match self {
            ProductVariant::Lanes4 => Some(4),
            ProductVariant::Lanes8 => Some(MAX_LANE_ROWS),
            _ => None,
        }
    }

    /// Whether this variant can compute `p` with these buffers (the tiled and broadcast ones any
    /// product; see [`ProductVariant::offered`] for the device): the lanes kernels read every
    /// operand as vec4, so the dimensions they step through four at a time must be multiples of
    /// 4, and every buffer they read whole vec4s of (the bias after the weights included).
    pub fn fits(self, p: &PointwiseParams, operands: Operands, buffers: &ProductBuffers, precision: Precision) -> bool {
        if self.is_tiled() || self.broadcast_columns().is_some() {
            return true;
        }
        let has = |f| p.flags & f != 0;
        let (a_bytes, b_bytes) = operands.operand_bytes(precision);
        let aux_bytes = if operands == Operands::Floats { 4 } else { precision.bytes() as u64 };
        let vec4_sized = buffers.input.size().is_multiple_of(4 * b_bytes)
            && buffers.weights.size().is_multiple_of(4 * a_bytes)
            && buffers.aux.size().is_multiple_of(4 * aux_bytes);
        let shape = if has(flags::TRANSPOSE_B) {
            // gram_lanes: A and B both [row][k], four k at a time.
            !has(flags::TRANSPOSE_A) && !has(flags::GRAD_ACT_B) && p.k.is_multiple_of(4) && p.k_chunk.is_multiple_of(4)
        } else if operands == Operands::Gram {
            // A Gram product over pixel-major features: no lanes kernel reads that layout.
            false
        } else {
            // pointwise_lanes: four columns per invocation, four k per step, A's vec4s along k
            // (or along m when transposed); no split of the reduction.
            p.n.is_multiple_of(4)
                && p.k.is_multiple_of(4)
                && p.k_chunk == 0
                && (!has(flags::TRANSPOSE_A) || p.m.is_multiple_of(4))
        };
        vec4_sized && shape && p.m > 0 && p.n > 0 && (!has(flags::BIAS) || (p.m * p.k + p.m).is_multiple_of(4))
    }
}

/// The product kernel in its variants (the tiled one in nine tile shapes, the lanes ones in
/// their row counts; each compiled on first use) and the residual connection.
pub struct Products {
    modules: Modules,
    /// `pointwise_broadcast.wgsl`'s modules (compiled only if a broadcast product is asked for).
    broadcast_modules: Modules,
    /// The product kernels by operands, variant and tile shape (compiled on first use).
    kernels: Specialized,
    residual_forward: Kernel,
    residual_backward: Kernel,
}

impl Products {
    /// Compiles the residual kernels for activations stored in `precision`; the product
    /// variants compile on first use.
    pub fn new(ctx: &GpuContext, precision: Precision) -> Self {
        let modules = Modules::new(Shader::Pointwise, precision);
        Self {
            residual_forward: modules.kernel(ctx, RESIDUAL_FORWARD),
            residual_backward: modules.kernel(ctx, RESIDUAL_BACKWARD),
            kernels: Specialized::default(),
            broadcast_modules: Modules::new(Shader::PointwiseBroadcast, precision),
            modules,
        }
    }

    /// How the products store activations.
    pub fn precision(&self) -> Precision {
        self.modules.precision()
    }

    /// A product of [`Operands::Features`] (a 1×1 convolution or its input gradient), in the
    /// variant the device's tuner chose for its shape among those that fit (see
    /// [`ProductVariant::fits`]), dispatching enough workgroups to cover it (and one layer per k
    /// chunk when `k_chunk` is set).
    pub fn product(&self, ctx: &GpuContext, buffers: ProductBuffers, p: &PointwiseParams) -> BoundOp {
        self.tuned(ctx, Operands::Features, buffers, p, Family::Pointwise)
    }

    /// A Gram matrix ([`Operands::Gram`], B read transposed), tuned and timed under
    /// [`Family::Gram`].
    pub fn gram(&self, ctx: &GpuContext, buffers: ProductBuffers, p: &PointwiseParams) -> BoundOp {
        self.tuned(ctx, Operands::Gram, buffers, p, Family::Gram).in_family(Family::Gram)
    }

    /// The style gradient R·F ([`Operands::Features`]), tuned and timed under [`Family::Gram`].
    pub fn style_gradient(&self, ctx: &GpuContext, buffers: ProductBuffers, p: &PointwiseParams) -> BoundOp {
        self.tuned(ctx, Operands::Features, buffers, p, Family::Gram).in_family(Family::Gram)
    }

    /// A product of f32 operands ([`Operands::Floats`]), tuned and timed under [`Family::Gram`].
    pub fn float_product(&self, ctx: &GpuContext, buffers: ProductBuffers, p: &PointwiseParams) -> BoundOp {
        self.tuned(ctx, Operands::Floats, buffers, p, Family::Gram).in_family(Family::Gram)
    }

    fn tuned(
        &self,
        ctx: &GpuContext,
        operands: Operands,
        buffers: ProductBuffers,
        p: &PointwiseParams,
        family: Family,
    ) -> BoundOp {
        let precision = self.precision();
        let fitting: Vec<ProductVariant> =
            ProductVariant::offered(ctx).into_iter().filter(|v| v.fits(p, operands, &buffers, precision)).collect();
        // A layer's forward is tuned once, whether or not it stores its pre-activation: the
        // content targets and the loss pass then sum its features in the same order (variants
        // differ in order), so a content image's content loss at the start is exactly 0.
        let layout = p.flags & !flags::STORE_PREACT;
        let shape = format!("m{} k{} n{} flags{layout} chunk{}", p.m, p.k, p.n, p.k_chunk);
        let shape = if operands == Operands::Floats { shape } else { super::precision_key(shape, precision) };
        let variant = ctx.tuner().pick(family, &shape, &fitting, |variant, best| {
            // The buffers it writes are stand-ins: the plan's may hold values in use.
            let (output, aux) = (scratch_like(ctx, buffers.output), scratch_like(ctx, buffers.aux));
            let scratch = ProductBuffers { output: &output, aux: &aux, ..buffers };
            time_op(ctx, &self.variant(ctx, variant, operands, scratch, p), best)
        });
        self.variant(ctx, variant, operands, buffers, p)
    }

    /// The product in a given variant, which must fit it (the kernel tests run every variant).
    pub fn variant(
        &self,
        ctx: &GpuContext,
        variant: ProductVariant,
        operands: Operands,
        buffers: ProductBuffers,
        p: &PointwiseParams,
    ) -> BoundOp {
        assert!(variant.fits(p, operands, &buffers, self.precision()), "{} cannot compute {p:?}", variant.name());
        let symmetric = p.flags & flags::SYMMETRIC != 0;
        let transpose_b = p.flags & flags::TRANSPOSE_B != 0;
        let transpose_a = p.flags & flags::TRANSPOSE_A != 0;
        // A Gram product reads features [channel][pixel] as B transposed, or features
        // [pixel][channel] as A transposed; only a Gram product reads B transposed.
        let gram_layout = transpose_a != transpose_b;
        assert!(
            if operands == Operands::Gram { gram_layout } else { !transpose_b },
            "{operands:?} cannot compute {p:?}"
        );
        let spec = operands.spec(variant);
        // A symmetric product is A·Aᵀ: scaling B by an activation derivative would break it.
        assert!(!symmetric || p.flags & flags::GRAD_ACT_B == 0, "a symmetric product cannot take GRAD_ACT_B");
        let splits = if p.k_chunk == 0 { 1 } else { p.k.div_ceil(p.k_chunk) };
        match variant {
            ProductVariant::Tiled | ProductVariant::TiledSmall => {
                let tile = variant.tile(p.m, p.n, symmetric).expect("a tiled variant");
                let constants = [("ROWS", f64::from(tile.0)), ("COLS", f64::from(tile.1))];
                let kernel = self.kernels.get(ctx, &self.modules, spec, &constants);
                let grid = product_tiles(p.m, p.n, tile, symmetric);
                kernel.bind(ctx, p, &buffers.buffers(), [grid[0], grid[1], splits])
            }
            ProductVariant::Lanes4 | ProductVariant::Lanes8 => {
                let rows = variant.lane_rows().expect("a lanes variant");
                let across = if transpose_b { p.n.div_ceil(GRAM_LANES) } else { (p.n / 4).div_ceil(LANES) };
                let kernel = self.kernels.get(ctx, &self.modules, spec, &[("LANE_ROWS", f64::from(rows))]);
                kernel.bind(ctx, p, &buffers.buffers(), [across, p.m.div_ceil(rows), splits])
            }
            ProductVariant::Broadcast8 | ProductVariant::Broadcast4 => {
                let columns = variant.broadcast_columns().expect("a broadcast variant");
                let constants = [
                    ("BCAST_FLAGS", f64::from(p.flags & BCAST_LAYOUT_FLAGS)),
                    ("BCAST_COL_VECS", f64::from(columns / 4)),
                ];
                let kernel = self.kernels.get(ctx, &self.broadcast_modules, spec, &constants);
                let grid = [p.n.div_ceil(BCAST_LANES * columns), p.m.div_ceil(BCAST_ROWS), splits];
                kernel.bind(ctx, p, &buffers.buffers(), grid)
            }
        }
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

/// Workgroups along x and y that cover an m×n product's tiles of `(rows, cols)` outputs per
/// invocation (for a symmetric product, all of them along x: only the tiles on and above the
/// diagonal).
pub fn product_tiles(m: u32, n: u32, (rows, cols): (u32, u32), symmetric: bool) -> [u32; 2] {
    let (across, down) = (n.div_ceil(TILE_SIDE * cols), m.div_ceil(TILE_SIDE * rows));
    if symmetric { [down * (down + 1) / 2, 1] } else { [across, down] }
}
