//! `shaders/conv.wgsl`: the full convolution of the stem (input normalization fused), its
//! gradient with respect to the image, and the in-place activation backward that runs before the
//! stem's and each depthwise layer's input gradient.

use super::{BoundOp, Family, Kernel, KernelSpec, Shader, UniformParams, WORKGROUP, flat_grid, groups};
use super::{kernel_bindings, uniform_params};
use crate::arch::Padding;
use crate::gpu::GpuContext;
use crate::model::Conv as ConvLayer;

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
        /// Padding to 16 bytes.
        pub _pad0: u32,
        /// Padding.
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
            _pad0: 0,
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
        output: 3 ReadWrite,
        /// Pre-activations, stored when `store_preact` is 1 (else the placeholder).
        preact: 4 ReadWrite,
    }
}

kernel_bindings! {
    /// Buffers of `conv_backward`.
    pub struct ConvBackward {
        /// dL/d(pre-activation) of the output.
        grad_output: 5 Read,
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
        preact_in: 6 Read,
        /// dL/dY in, dL/dZ out.
        grad_inout: 8 ReadWrite,
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

/// Every kernel of the file.
pub const SPECS: &[KernelSpec] = &[FORWARD, BACKWARD, ACTIVATION_BACKWARD];

/// The kernels of `conv.wgsl`.
pub struct Conv {
    forward: Kernel,
    backward: Kernel,
    activation_backward: Kernel,
}

impl Conv {
    /// Compiles the file's kernels.
    pub fn new(ctx: &GpuContext) -> Self {
        let module = Shader::Conv.module(ctx);
        Self {
            forward: Kernel::new(ctx, &module, FORWARD),
            backward: Kernel::new(ctx, &module, BACKWARD),
            activation_backward: Kernel::new(ctx, &module, ACTIVATION_BACKWARD),
        }
    }

    /// The convolution: one invocation per output pixel and block of [`OUT_BLOCK`] channels.
    pub fn forward(&self, ctx: &GpuContext, buffers: ConvForward, p: &ConvParams) -> BoundOp {
        let grid = [groups((p.out_h * p.out_w) as usize, WORKGROUP), p.out_c.div_ceil(OUT_BLOCK), 1];
        self.forward.bind(ctx, p, &buffers.buffers(), grid)
    }

    /// dL/d image += the transposed convolution of dL/d(pre-activation): one invocation per
    /// input value.
    pub fn backward(&self, ctx: &GpuContext, buffers: ConvBackward, p: &ConvParams) -> BoundOp {
        let grid = [groups((p.in_h * p.in_w) as usize, WORKGROUP), p.in_c, 1];
        self.backward.bind(ctx, p, &buffers.buffers(), grid)
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
