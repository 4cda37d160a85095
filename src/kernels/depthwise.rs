//! `shaders/depthwise.wgsl`: the depthwise convolution (k×k per channel, stride 1 or 2) with
//! bias and activation, and its gradient with respect to the input.

use super::{
    BoundOp, Family, Kernel, KernelSpec, Modules, Precision, Shader, Specialized, UniformParams, WORKGROUP, groups,
};
use super::{kernel_bindings, uniform_params};
use crate::arch::Padding;
use crate::gpu::GpuContext;
use crate::model::Conv;
use crate::tuning::{Variant, scratch_like, time_op};

uniform_params! {
    /// Uniforms of `depthwise_forward` and `depthwise_backward`.
    pub struct DepthwiseParams {
        /// Channels.
        pub channels: u32,
        /// Input height.
        pub in_h: u32,
        /// Input width.
        pub in_w: u32,
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
        /// The input gradient: 1 adds into it, 0 overwrites it (its first writer).
        pub accumulate: u32,
        /// Padding to 16 bytes.
        pub _pad0: u32,
        /// Padding.
        pub _pad1: u32,
        /// Padding.
        pub _pad2: u32,
    }
}

impl DepthwiseParams {
    /// The depthwise convolution `conv` over an input of `in_h`×`in_w` padded by `padding`.
    pub fn new(conv: &Conv, padding: Padding, [in_h, in_w]: [usize; 2], store_preact: bool) -> Self {
        let (out_h, pad_y) = padding.geometry(in_h, conv.kernel, conv.stride);
        let (out_w, pad_x) = padding.geometry(in_w, conv.kernel, conv.stride);
        Self {
            channels: conv.out_channels as u32,
            in_h: in_h as u32,
            in_w: in_w as u32,
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
            ..Self::default()
        }
    }

    /// The backward of this convolution's activation over its whole output.
    pub fn activation_backward(&self) -> super::conv::ActivationParams {
        super::conv::ActivationParams::new((self.channels * self.out_h * self.out_w) as usize, self.act, self.cap)
    }
}

impl Default for DepthwiseParams {
    /// An empty convolution with no activation clamp.
    fn default() -> Self {
        Self { cap: f32::MAX, ..bytemuck::Zeroable::zeroed() }
    }
}

kernel_bindings! {
    /// Buffers of `depthwise_forward`.
    pub struct DepthwiseForward {
        /// Input [c][in_h][in_w].
        input: 1 Read Activations,
        /// Weights [c][k][k] followed by c biases.
        weights: 2 Read,
        /// Output activations [c][out_h][out_w].
        output: 3 ReadWrite Activations,
        /// Pre-activations, stored when `store_preact` is 1 (else the placeholder).
        preact: 4 ReadWrite Activations,
    }
}

kernel_bindings! {
    /// Buffers of `depthwise_backward`.
    pub struct DepthwiseBackward {
        /// dL/d(pre-activation) of the output.
        grad_output: 5 Read Activations,
        /// The forward weights.
        weights: 2 Read,
        /// dL/d input, added into.
        grad_input: 7 ReadWrite Activations,
    }
}

/// `depthwise_forward`.
pub const FORWARD: KernelSpec = KernelSpec {
    entry: "depthwise_forward",
    shader: Shader::Depthwise,
    family: Family::Depthwise,
    params: DepthwiseParams::LAYOUT,
    storage: DepthwiseForward::BINDINGS,
    workgroup_size: [WORKGROUP, 1, 1],
    overrides: &[],
};

/// `depthwise_backward`.
pub const BACKWARD: KernelSpec =
    KernelSpec { entry: "depthwise_backward", storage: DepthwiseBackward::BINDINGS, ..FORWARD };

/// The variants that compute `p`.
fn fitting(p: &DepthwiseParams) -> Vec<DepthwiseVariant> {
    DepthwiseVariant::ALL.into_iter().filter(|v| v.fits(p)).collect()
}

/// The tuning cache's key of a depthwise shape.
fn shape_key(direction: &str, p: &DepthwiseParams, precision: Precision) -> String {
    let DepthwiseParams { channels, in_h, in_w, kernel, stride, pad_y, pad_x, .. } = *p;
    let shape = format!("{direction} c{channels} {in_h}x{in_w} k{kernel} s{stride} pad{pad_y},{pad_x}");
    super::precision_key(shape, precision)
}

/// Invocations of a rows workgroup, along a row (`ROW_LANES` in WGSL).
pub const ROW_LANES: u32 = 16;
/// Values of a row each rows invocation computes (`ROW_OUTS` in WGSL).
pub const ROW_OUTS: u32 = 4;
// Which taps reach which neighbour is known at compile time only when the neighbours of an
// invocation start at a multiple of the stride.
const _: () = assert!(ROW_OUTS.is_multiple_of(2));

/// The most output rows a rows (or channels) forward invocation computes (`ROW_LINES` in WGSL;
/// [`forward_lines`] chooses): the input rows the lines share are loaded once.
pub const ROW_LINES: u32 = 2;

/// Output rows per rows (or channels) forward invocation (`DW_LINES`): [`ROW_LINES`], but one for
/// a 5×5 kernel at stride 2, whose two lines' window and weights outgrow the registers (on
/// lavapipe at 256 px, 96 channels: 0.79 ms with one line, 1.12 ms with two; every other layer
/// 5–20% faster with two).
fn forward_lines(p: &DepthwiseParams) -> u32 {
    if p.kernel >= 5 && p.stride >= 2 { 1 } else { ROW_LINES }
}

/// The longest window of loads a rows invocation keeps (`ROW_WINDOW` in WGSL): the forward's at
/// stride 2 with a 5×5 kernel.
pub const ROW_WINDOW: u32 = (ROW_OUTS - 1) * 2 + 5;

/// `depthwise_rows_forward`: one row of one channel per workgroup (CPU-like adapters).
pub const ROWS_FORWARD: KernelSpec = KernelSpec {
    entry: "depthwise_rows_forward",
    workgroup_size: [ROW_LANES, 1, 1],
    overrides: &["DW_K", "DW_S", "DW_PAD", "DW_LINES"],
    ..FORWARD
};

/// `depthwise_rows_backward`.
pub const ROWS_BACKWARD: KernelSpec =
    KernelSpec { entry: "depthwise_rows_backward", storage: DepthwiseBackward::BINDINGS, ..ROWS_FORWARD };

/// Invocations of a channels workgroup: neighbouring channels at the same outputs
/// (`CHANNEL_LANES` in WGSL).
pub const CHANNEL_LANES: u32 = 8;

/// `depthwise_channels_forward`: the rows kernels' invocation with channels along the lanes.
pub const CHANNELS_FORWARD: KernelSpec =
    KernelSpec { entry: "depthwise_channels_forward", workgroup_size: [CHANNEL_LANES, 1, 1], ..ROWS_FORWARD };

/// `depthwise_channels_backward`.
pub const CHANNELS_BACKWARD: KernelSpec =
    KernelSpec { entry: "depthwise_channels_backward", workgroup_size: [CHANNEL_LANES, 1, 1], ..ROWS_BACKWARD };

/// One way to compute a depthwise convolution or its input gradient; the device's tuner picks
/// per shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DepthwiseVariant {
    /// One invocation per value over a flat pixel index (GPUs).
    Flat,
    /// [`ROW_OUTS`] neighbours of a row per invocation, the row and channel shared by the
    /// workgroup, the kernel size, stride and padding compiled in (CPU-like adapters).
    Rows,
    /// The same invocation with [`CHANNEL_LANES`] neighbouring channels along the lanes: every
    /// load a distinct value per lane, and no lane idle on narrow rows (CPU-like adapters).
    Channels,
}

impl Variant for DepthwiseVariant {
    fn name(self) -> &'static str {
        match self {
            DepthwiseVariant::Flat => "flat",
            DepthwiseVariant::Rows => "rows",
            DepthwiseVariant::Channels => "channels",
        }
    }
}

impl DepthwiseVariant {
    /// Every variant, the default first.
    pub const ALL: [DepthwiseVariant; 3] = [DepthwiseVariant::Flat, DepthwiseVariant::Rows, DepthwiseVariant::Channels];

    /// Whether this variant computes `p`: the rows and channels kernels take kernels of 3 or 5 and strides
    /// of 1 or 2 (their windows are sized for those), padding less than the kernel, and rows
    /// and channels within a dispatch's workgroup limit.
    pub fn fits(self, p: &DepthwiseParams) -> bool {
        // Rows and channels are workgroup ids: within the dispatch limit.
        let grid = p.in_h.max(p.out_h) <= super::MAX_GROUPS && p.channels <= super::MAX_GROUPS;
        self == DepthwiseVariant::Flat
            || (matches!(p.kernel, 3 | 5)
                && matches!(p.stride, 1 | 2)
                && p.pad_x < p.kernel
                && p.pad_y < p.kernel
                && grid)
    }
}

/// Every kernel of the file.
pub const SPECS: &[KernelSpec] = &[FORWARD, BACKWARD, ROWS_FORWARD, ROWS_BACKWARD, CHANNELS_FORWARD, CHANNELS_BACKWARD];

/// The kernels of `depthwise.wgsl`.
pub struct Depthwise {
    modules: Modules,
    forward: Kernel,
    backward: Kernel,
    /// Rows and channels kernels by direction, kernel size, stride and padding.
    rows: Specialized,
}

impl Depthwise {
    /// Compiles the flat kernels for activations stored in `precision`; the rows kernels
    /// compile on first use.
    pub fn new(ctx: &GpuContext, precision: Precision) -> Self {
        let modules = Modules::new(Shader::Depthwise, precision);
        Self {
            forward: modules.kernel(ctx, FORWARD),
            backward: modules.kernel(ctx, BACKWARD),
            rows: Specialized::default(),
            modules,
        }
    }

    /// The depthwise convolution over `p`, in the variant the device's tuner chose.
    pub fn forward(&self, ctx: &GpuContext, buffers: DepthwiseForward, p: &DepthwiseParams) -> BoundOp {
        let variant = ctx.tuner().pick(
            Family::Depthwise,
            &shape_key("forward", p, self.modules.precision()),
            &fitting(p),
            |v, best| {
                // The buffers it writes are stand-ins: the plan's may hold values in use.
                let (output, preact) = (scratch_like(ctx, buffers.output), scratch_like(ctx, buffers.preact));
                time_op(
                    ctx,
                    &self.forward_variant(ctx, v, DepthwiseForward { output: &output, preact: &preact, ..buffers }, p),
                    best,
                )
            },
        );
        self.forward_variant(ctx, variant, buffers, p)
    }

    /// Its input gradient, added into `grad_input`, in the variant the device's tuner chose.
    pub fn backward(&self, ctx: &GpuContext, buffers: DepthwiseBackward, p: &DepthwiseParams) -> BoundOp {
        let variant = ctx.tuner().pick(
            Family::Depthwise,
            &shape_key("backward", p, self.modules.precision()),
            &fitting(p),
            |v, best| {
                let grad_input = scratch_like(ctx, buffers.grad_input);
                time_op(
                    ctx,
                    &self.backward_variant(ctx, v, DepthwiseBackward { grad_input: &grad_input, ..buffers }, p),
                    best,
                )
            },
        );
        self.backward_variant(ctx, variant, buffers, p)
    }

    /// The depthwise convolution in a given variant, which must fit `p`.
    pub fn forward_variant(
        &self,
        ctx: &GpuContext,
        variant: DepthwiseVariant,
        buffers: DepthwiseForward,
        p: &DepthwiseParams,
    ) -> BoundOp {
        assert!(variant.fits(p), "{} cannot compute {p:?}", variant.name());
        match variant {
            DepthwiseVariant::Flat => {
                let grid = [groups((p.out_h * p.out_w) as usize, WORKGROUP), p.channels, 1];
                self.forward.bind(ctx, p, &buffers.buffers(), grid)
            }
            DepthwiseVariant::Rows => {
                let grid = [p.out_w.div_ceil(ROW_LANES * ROW_OUTS), p.out_h.div_ceil(forward_lines(p)), p.channels];
                self.rows_kernel(ctx, ROWS_FORWARD, p).bind(ctx, p, &buffers.buffers(), grid)
            }
            DepthwiseVariant::Channels => {
                let grid = [
                    p.out_w.div_ceil(ROW_OUTS),
                    p.out_h.div_ceil(forward_lines(p)),
                    p.channels.div_ceil(CHANNEL_LANES),
                ];
                self.rows_kernel(ctx, CHANNELS_FORWARD, p).bind(ctx, p, &buffers.buffers(), grid)
            }
        }
    }

    /// The input gradient in a given variant, which must fit `p`.
    pub fn backward_variant(
        &self,
        ctx: &GpuContext,
        variant: DepthwiseVariant,
        buffers: DepthwiseBackward,
        p: &DepthwiseParams,
    ) -> BoundOp {
        assert!(variant.fits(p), "{} cannot compute {p:?}", variant.name());
        match variant {
            DepthwiseVariant::Flat => {
                let grid = [groups((p.in_h * p.in_w) as usize, WORKGROUP), p.channels, 1];
                self.backward.bind(ctx, p, &buffers.buffers(), grid)
            }
            DepthwiseVariant::Rows => {
                let grid = [p.in_w.div_ceil(ROW_LANES * ROW_OUTS), p.in_h, p.channels];
                self.rows_kernel(ctx, ROWS_BACKWARD, p).bind(ctx, p, &buffers.buffers(), grid)
            }
            DepthwiseVariant::Channels => {
                let grid = [p.in_w.div_ceil(ROW_OUTS), p.in_h, p.channels.div_ceil(CHANNEL_LANES)];
                self.rows_kernel(ctx, CHANNELS_BACKWARD, p).bind(ctx, p, &buffers.buffers(), grid)
            }
        }
    }

    /// A rows or channels kernel for `p`'s kernel size, stride and padding (compiled on first
    /// use).
    fn rows_kernel(&self, ctx: &GpuContext, spec: KernelSpec, p: &DepthwiseParams) -> Kernel {
        let constants = [
            ("DW_K", f64::from(p.kernel)),
            ("DW_S", f64::from(p.stride)),
            ("DW_PAD", f64::from(p.pad_x)),
            ("DW_LINES", f64::from(forward_lines(p))),
        ];
        self.rows.get(ctx, &self.modules, spec, &constants)
    }
}
