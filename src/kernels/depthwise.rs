//! `shaders/depthwise.wgsl`: the depthwise convolution (k×k per channel, stride 1 or 2) with
//! bias and activation, and its gradient with respect to the input.

use super::{BoundOp, Family, Kernel, KernelSpec, Shader, UniformParams, WORKGROUP, groups};
use super::{kernel_bindings, uniform_params};
use crate::arch::Padding;
use crate::gpu::GpuContext;
use crate::model::Conv;

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
        input: 1 Read,
        /// Weights [c][k][k] followed by c biases.
        weights: 2 Read,
        /// Output activations [c][out_h][out_w].
        output: 3 ReadWrite,
        /// Pre-activations, stored when `store_preact` is 1 (else the placeholder).
        preact: 4 ReadWrite,
    }
}

kernel_bindings! {
    /// Buffers of `depthwise_backward`.
    pub struct DepthwiseBackward {
        /// dL/d(pre-activation) of the output.
        grad_output: 5 Read,
        /// The forward weights.
        weights: 2 Read,
        /// dL/d input, added into.
        grad_input: 7 ReadWrite,
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

/// Every kernel of the file.
pub const SPECS: &[KernelSpec] = &[FORWARD, BACKWARD];

/// The kernels of `depthwise.wgsl`.
pub struct Depthwise {
    forward: Kernel,
    backward: Kernel,
}

impl Depthwise {
    /// Compiles the file's kernels.
    pub fn new(ctx: &GpuContext) -> Self {
        let module = Shader::Depthwise.module(ctx);
        Self { forward: Kernel::new(ctx, &module, FORWARD), backward: Kernel::new(ctx, &module, BACKWARD) }
    }

    /// The convolution: one invocation per output value (x over pixels, y over channels).
    pub fn forward(&self, ctx: &GpuContext, buffers: DepthwiseForward, p: &DepthwiseParams) -> BoundOp {
        let grid = [groups((p.out_h * p.out_w) as usize, WORKGROUP), p.channels, 1];
        self.forward.bind(ctx, p, &buffers.buffers(), grid)
    }

    /// dL/d input += the transposed depthwise convolution of dL/d(pre-activation): one
    /// invocation per input value (x over pixels, y over channels).
    pub fn backward(&self, ctx: &GpuContext, buffers: DepthwiseBackward, p: &DepthwiseParams) -> BoundOp {
        let grid = [groups((p.in_h * p.in_w) as usize, WORKGROUP), p.channels, 1];
        self.backward.bind(ctx, p, &buffers.buffers(), grid)
    }
}
