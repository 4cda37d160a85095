//! `shaders/conv.wgsl`: the full convolution of the stem (input normalization fused), its
//! gradient with respect to the image, and the in-place activation backward that runs before the
//! stem's and each depthwise layer's input gradient.

use super::pointwise::BCAST_LANES;
use super::{
    BoundOp, Family, Kernel, KernelSpec, Modules, Precision, Shader, Specialized, UniformParams, WORKGROUP, flat_grid,
    groups,
};
use super::{kernel_bindings, uniform_params};
use crate::arch::Padding;
use crate::gpu::GpuContext;
use crate::model::Conv as ConvLayer;
use crate::tuning::{Variant, scratch_like, time_op};

/// Output channels each `conv_forward` invocation computes from one load of its inputs
/// (`CONV_OUT_BLOCK` in WGSL).
pub const OUT_BLOCK: u32 = 16;

uniform_params! {
    /// Uniforms of `conv_forward` and `conv_backward`.
    pub struct ConvParams {
        /// Input channels.
        pub in_c: u32,
        /// Input height.
        pub in_h: u32,
        /// Input width.
        pub in_w: u32,
        /// Output channels.
        pub out_c: u32,
        /// Output height.
        pub out_h: u32,
        /// Output width.
        pub out_w: u32,
        /// Kernel size.
        pub kernel: u32,
        /// Stride.
        pub stride: u32,
        /// Zero rows before the input.
        pub pad_y: u32,
        /// Zero columns before the input.
        pub pad_x: u32,
        /// Activation code ([`super::activation_code`]).
        pub act: u32,
        /// Upper clamp after the activation.
        pub cap: f32,
        /// 1: also store the pre-activation.
        pub store_preact: u32,
        /// The image gradient: 1 adds into it, 0 overwrites it (its first writer).
        pub accumulate: u32,
        /// Padding to 16 bytes.
        pub _pad1: u32,
        /// Padding.
        pub _pad2: u32,
        /// Input normalization scale per RGB channel (4th unused).
        pub scale: [f32; 4],
        /// Input normalization shift per RGB channel (4th unused).
        pub shift: [f32; 4],
    }
}

impl ConvParams {
    /// The full convolution `conv` over an input of `in_c`×`in_h`×`in_w` padded by `padding`,
    /// normalizing each input channel i as `x · scale[i % 3] + shift[i % 3]` first.
    pub fn new(
        conv: &ConvLayer,
        padding: Padding,
        [in_c, in_h, in_w]: [usize; 3],
        scale: [f32; 3],
        shift: [f32; 3],
        store_preact: bool,
    ) -> Self {
        let (out_h, pad_y) = padding.geometry(in_h, conv.kernel, conv.stride);
        let (out_w, pad_x) = padding.geometry(in_w, conv.kernel, conv.stride);
        Self {
            in_c: in_c as u32,
            in_h: in_h as u32,
            in_w: in_w as u32,
            out_c: conv.out_channels as u32,
            out_h: out_h as u32,
            out_w: out_w as u32,
            kernel: conv.kernel as u32,
            stride: conv.stride as u32,
            pad_y: pad_y as u32,
            pad_x: pad_x as u32,
            act: super::activation_code(conv.activation),
            cap: conv.cap,
            store_preact: store_preact as u32,
            accumulate: 1,
            _pad1: 0,
            _pad2: 0,
            scale: [scale[0], scale[1], scale[2], 0.0],
            shift: [shift[0], shift[1], shift[2], 0.0],
        }
    }

    /// The backward of this convolution's activation over its whole output.
    pub fn activation_backward(&self) -> ActivationParams {
        ActivationParams::new((self.out_c * self.out_h * self.out_w) as usize, self.act, self.cap)
    }
}

impl Default for ConvParams {
    /// An empty convolution with no activation clamp.
    fn default() -> Self {
        Self { cap: f32::MAX, ..bytemuck::Zeroable::zeroed() }
    }
}

uniform_params! {
    /// Uniforms of `activation_backward`: dL/dZ = dL/dY ⊙ act'(Z) over `n` values.
    pub struct ActivationParams {
        /// Values.
        pub n: u32,
        /// Activation code ([`super::activation_code`]).
        pub act: u32,
        /// Upper clamp after the activation.
        pub cap: f32,
        /// Padding to 16 bytes.
        pub _pad0: u32,
    }
}

impl ActivationParams {
    /// The backward of activation `act` with clamp `cap` over `n` values.
    pub fn new(n: usize, act: u32, cap: f32) -> Self {
        Self { n: n as u32, act, cap, _pad0: 0 }
    }
}

kernel_bindings! {
    /// Buffers of `conv_forward`.
    pub struct ConvForward {
        /// The image (planar RGB, in [0, 1]).
        input: 1 Read,
        /// Weights [out_c][in_c][k][k] followed by out_c biases.
        weights: 2 Read,
        /// Output activations.
        output: 3 ReadWrite Activations,
        /// Pre-activations, stored when `store_preact` is 1 (else the placeholder).
        preact: 4 ReadWrite Activations,
    }
}

kernel_bindings! {
    /// Buffers of `conv_backward`.
    pub struct ConvBackward {
        /// dL/d(pre-activation) of the output.
        grad_output: 5 Read Activations,
        /// The forward weights.
        weights: 2 Read,
        /// dL/d image, added into.
        grad_input: 7 ReadWrite,
    }
}

kernel_bindings! {
    /// Buffers of `activation_backward`.
    pub struct ActivationBackward {
        /// The pre-activations.
        preact_in: 6 Read Activations,
        /// dL/dY in, dL/dZ out.
        grad_inout: 8 ReadWrite Activations,
    }
}

/// `conv_forward`.
pub const FORWARD: KernelSpec = KernelSpec {
    entry: "conv_forward",
    shader: Shader::Conv,
    family: Family::Stem,
    params: ConvParams::LAYOUT,
    storage: ConvForward::BINDINGS,
    workgroup_size: [WORKGROUP, 1, 1],
    overrides: &[],
};

/// `conv_backward`.
pub const BACKWARD: KernelSpec = KernelSpec { entry: "conv_backward", storage: ConvBackward::BINDINGS, ..FORWARD };

/// `activation_backward`.
pub const ACTIVATION_BACKWARD: KernelSpec = KernelSpec {
    entry: "activation_backward",
    params: ActivationParams::LAYOUT,
    storage: ActivationBackward::BINDINGS,
    ..FORWARD
};

/// The tuning cache's key of a stem shape.
fn shape_key(direction: &str, p: &ConvParams, precision: Precision) -> String {
    let ConvParams { in_c, in_h, in_w, out_c, kernel, stride, pad_y, pad_x, .. } = *p;
    let shape = format!("{direction} {in_c}->{out_c} {in_h}x{in_w} k{kernel} s{stride} pad{pad_y},{pad_x}");
    super::precision_key(shape, precision)
}

/// Input channels of `conv_rows_backward` (`CONV_ROWS_IN` in WGSL): the image's.
pub const ROWS_IN_CHANNELS: u32 = 3;

/// `conv_rows_forward`: one output row per workgroup (CPU-like adapters).
pub const ROWS_FORWARD: KernelSpec = KernelSpec {
    entry: "conv_rows_forward",
    workgroup_size: [super::depthwise::ROW_LANES, 1, 1],
    overrides: &["CONV_K", "CONV_S", "CONV_PAD"],
    ..FORWARD
};

/// `conv_rows_backward`: one image row per workgroup, every channel per invocation.
pub const ROWS_BACKWARD: KernelSpec =
    KernelSpec { entry: "conv_rows_backward", storage: ConvBackward::BINDINGS, ..ROWS_FORWARD };

/// Output pixels per lane of `conv_broadcast_forward` (`BCAST_PIXELS` in WGSL), [`BCAST_LANES`]
/// apart: each weight it loads and broadcasts feeds them all.
pub const BCAST_PIXELS: u32 = 2;

/// `conv_broadcast_forward`: one row segment of [`BCAST_PIXELS`] · [`BCAST_LANES`] pixels per
/// workgroup, the weights shared through subgroup broadcasts (`shaders/conv_broadcast.wgsl`).
pub const BROADCAST_FORWARD: KernelSpec = KernelSpec {
    entry: "conv_broadcast_forward",
    shader: Shader::ConvBroadcast,
    workgroup_size: [BCAST_LANES, 1, 1],
    ..ROWS_FORWARD
};

/// `conv_broadcast_backward`: the rows backward's invocation, the weights shared by broadcast.
pub const BROADCAST_BACKWARD: KernelSpec =
    KernelSpec { entry: "conv_broadcast_backward", storage: ConvBackward::BINDINGS, ..BROADCAST_FORWARD };

// A broadcast invocation holds OUT_BLOCK output channels, two loads of BCAST_LANES weights.
const _: () = assert!(OUT_BLOCK == 2 * BCAST_LANES);

/// Every kernel of the file (and of `conv_broadcast.wgsl`).
pub const SPECS: &[KernelSpec] =
    &[FORWARD, BACKWARD, ACTIVATION_BACKWARD, ROWS_FORWARD, ROWS_BACKWARD, BROADCAST_FORWARD, BROADCAST_BACKWARD];

/// One way to compute the stem or its image gradient; the device's tuner picks per shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvVariant {
    /// One invocation per output pixel (forward) or input value (backward) over a flat index
    /// (GPUs).
    Flat,
    /// One row per workgroup, the kernel size, stride and padding compiled in (CPU-like
    /// adapters); the backward computes [`super::depthwise::ROW_OUTS`] neighbours of every
    /// channel per invocation.
    Rows,
    /// The rows kernels' shapes (the forward with one pixel per lane) with the weights loaded
    /// eight output channels to a load and shared through subgroup broadcasts (CPU-like
    /// adapters with subgroups, where a load costs the same whether its lanes read one address
    /// or eight). Needs subgroups of exactly
    /// [`BCAST_LANES`] ([`ConvVariant::offered`]).
    Broadcast,
}

impl Variant for ConvVariant {
    fn name(self) -> &'static str {
        match self {
            ConvVariant::Flat => "flat",
            ConvVariant::Rows => "rows",
            ConvVariant::Broadcast => "broadcast",
        }
    }
}

impl ConvVariant {
    /// Every variant, the default first.
    pub const ALL: [ConvVariant; 3] = [ConvVariant::Flat, ConvVariant::Rows, ConvVariant::Broadcast];

    /// The variants this device can compile: all but [`ConvVariant::Broadcast`] without
    /// subgroups of exactly [`BCAST_LANES`].
    pub fn offered(ctx: &GpuContext) -> Vec<ConvVariant> {
        let subgroups = ctx.has_subgroups_of(BCAST_LANES);
        Self::ALL.into_iter().filter(|v| *v != ConvVariant::Broadcast || subgroups).collect()
    }

    /// Whether this variant computes `p` (its input gradient when `backward`): the rows kernels
    /// take kernels of 3 or 5, strides of 1 or 2 and padding less than the kernel (their windows
    /// are sized for those), the backward exactly [`ROWS_IN_CHANNELS`] input channels; the
    /// broadcast backward at most [`OUT_BLOCK`] output channels.
    pub fn fits(self, p: &ConvParams, backward: bool) -> bool {
        self == ConvVariant::Flat
            || (matches!(p.kernel, 3 | 5)
                && (self == ConvVariant::Rows || !backward || p.out_c <= OUT_BLOCK)
                && matches!(p.stride, 1 | 2)
                && p.pad_x < p.kernel
                && p.pad_y < p.kernel
                // Rows are workgroup ids: within the dispatch limit.
                && p.in_h.max(p.out_h) <= super::MAX_GROUPS
                && (!backward || p.in_c == ROWS_IN_CHANNELS))
    }
}

/// The kernels of `conv.wgsl`.
pub struct StemConv {
    modules: Modules,
    /// `conv_broadcast.wgsl`'s modules (compiled only if a broadcast kernel is asked for).
    broadcast_modules: Modules,
    forward: Kernel,
    backward: Kernel,
    activation_backward: Kernel,
    /// Rows kernels by direction, kernel size, stride and padding.
    rows: Specialized,
}

impl StemConv {
    /// Compiles the flat kernels for activations stored in `precision`; the rows kernels
    /// compile on first use.
    pub fn new(ctx: &GpuContext, precision: Precision) -> Self {
        let modules = Modules::new(Shader::Conv, precision);
        Self {
            forward: modules.kernel(ctx, FORWARD),
            backward: modules.kernel(ctx, BACKWARD),
            activation_backward: modules.kernel(ctx, ACTIVATION_BACKWARD),
            rows: Specialized::default(),
            broadcast_modules: Modules::new(Shader::ConvBroadcast, precision),
            modules,
        }
    }

    /// The convolution, in the variant the device's tuner chose.
    pub fn forward(&self, ctx: &GpuContext, buffers: ConvForward, p: &ConvParams) -> BoundOp {
        let fitting: Vec<_> = ConvVariant::offered(ctx).into_iter().filter(|v| v.fits(p, false)).collect();
        let variant =
            ctx.tuner().pick(Family::Stem, &shape_key("forward", p, self.modules.precision()), &fitting, |v, best| {
                // The buffers it writes are stand-ins: the plan's may hold values in use.
                let (output, preact) = (scratch_like(ctx, buffers.output), scratch_like(ctx, buffers.preact));
                time_op(
                    ctx,
                    &self.forward_variant(ctx, v, ConvForward { output: &output, preact: &preact, ..buffers }, p),
                    best,
                )
            });
        self.forward_variant(ctx, variant, buffers, p)
    }

    /// dL/d image += the transposed convolution of dL/d(pre-activation), in the variant the
    /// device's tuner chose.
    pub fn backward(&self, ctx: &GpuContext, buffers: ConvBackward, p: &ConvParams) -> BoundOp {
        let fitting: Vec<_> = ConvVariant::offered(ctx).into_iter().filter(|v| v.fits(p, true)).collect();
        let variant =
            ctx.tuner().pick(Family::Stem, &shape_key("backward", p, self.modules.precision()), &fitting, |v, best| {
                let grad_input = scratch_like(ctx, buffers.grad_input);
                time_op(
                    ctx,
                    &self.backward_variant(ctx, v, ConvBackward { grad_input: &grad_input, ..buffers }, p),
                    best,
                )
            });
        self.backward_variant(ctx, variant, buffers, p)
    }

    /// The convolution in a given variant, which must fit `p`: flat, one invocation per output
    /// pixel and block of [`OUT_BLOCK`] channels; rows, the same with one output row per
    /// workgroup.
    pub fn forward_variant(
        &self,
        ctx: &GpuContext,
        variant: ConvVariant,
        buffers: ConvForward,
        p: &ConvParams,
    ) -> BoundOp {
        assert!(variant.fits(p, false), "{} cannot compute {p:?}", variant.name());
        match variant {
            ConvVariant::Flat => {
                let grid = [groups((p.out_h * p.out_w) as usize, WORKGROUP), p.out_c.div_ceil(OUT_BLOCK), 1];
                self.forward.bind(ctx, p, &buffers.buffers(), grid)
            }
            ConvVariant::Rows => {
                let grid = [p.out_w.div_ceil(super::depthwise::ROW_LANES), p.out_h, p.out_c.div_ceil(OUT_BLOCK)];
                self.rows_kernel(ctx, ROWS_FORWARD, p).bind(ctx, p, &buffers.buffers(), grid)
            }
            ConvVariant::Broadcast => {
                let grid = [p.out_w.div_ceil(BCAST_LANES * BCAST_PIXELS), p.out_h, p.out_c.div_ceil(OUT_BLOCK)];
                self.rows_kernel(ctx, BROADCAST_FORWARD, p).bind(ctx, p, &buffers.buffers(), grid)
            }
        }
    }

    /// The image gradient in a given variant, which must fit `p`: flat, one invocation per
    /// input value; rows, one image row per workgroup.
    pub fn backward_variant(
        &self,
        ctx: &GpuContext,
        variant: ConvVariant,
        buffers: ConvBackward,
        p: &ConvParams,
    ) -> BoundOp {
        assert!(variant.fits(p, true), "{} cannot compute {p:?}", variant.name());
        match variant {
            ConvVariant::Flat => {
                let grid = [groups((p.in_h * p.in_w) as usize, WORKGROUP), p.in_c, 1];
                self.backward.bind(ctx, p, &buffers.buffers(), grid)
            }
            ConvVariant::Rows => {
                use super::depthwise::{ROW_LANES, ROW_OUTS};
                let grid = [p.in_w.div_ceil(ROW_LANES * ROW_OUTS), p.in_h, 1];
                self.rows_kernel(ctx, ROWS_BACKWARD, p).bind(ctx, p, &buffers.buffers(), grid)
            }
            ConvVariant::Broadcast => {
                let grid = [p.in_w.div_ceil(BCAST_LANES * super::depthwise::ROW_OUTS), p.in_h, 1];
                self.rows_kernel(ctx, BROADCAST_BACKWARD, p).bind(ctx, p, &buffers.buffers(), grid)
            }
        }
    }

    /// A rows or broadcast kernel for `p`'s kernel size, stride and padding (compiled on first
    /// use).
    fn rows_kernel(&self, ctx: &GpuContext, spec: KernelSpec, p: &ConvParams) -> Kernel {
        let constants =
            [("CONV_K", f64::from(p.kernel)), ("CONV_S", f64::from(p.stride)), ("CONV_PAD", f64::from(p.pad_x))];
        let modules = if spec.shader == Shader::ConvBroadcast { &self.broadcast_modules } else { &self.modules };
        self.rows.get(ctx, modules, spec, &constants)
    }

    /// dL/dY → dL/dZ in place, timed under `family` (the layer it belongs to).
    pub fn activation_backward(
        &self,
        ctx: &GpuContext,
        buffers: ActivationBackward,
        p: &ActivationParams,
        family: Family,
    ) -> BoundOp {
        self.activation_backward.bind(ctx, p, &buffers.buffers(), flat_grid(p.n as usize)).in_family(family)
    }
}
