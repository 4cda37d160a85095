//! `shaders/squeeze_excite.wgsl`: squeeze-and-excite (per-channel mean, the gate's two small
//! fully connected layers, the channel scale) and its gradients. The mean also serves the
//! classifier's global pooling.

use super::depthwise::CHANNEL_LANES;
use super::{
    BoundOp, FLAT_VALUES, Family, Kernel, KernelSpec, Modules, Precision, Shader, UniformParams, WORKGROUP, groups,
};
use super::{kernel_bindings, uniform_params};
use crate::gpu::GpuContext;
use crate::model::SqueezeExcite as SeLayer;
use crate::tuning::{Variant, scratch_like, time_op};

/// Largest squeeze (hidden) width the gate kernels hold in workgroup memory (`MAX_SQUEEZE`).
pub const MAX_SQUEEZE: u32 = 256;
/// Largest channel count `se_gate_backward` holds in workgroup memory (`MAX_SE_CHANNELS`).
pub const MAX_SE_CHANNELS: u32 = 1024;

uniform_params! {
    /// Uniforms of every squeeze-excite kernel.
    pub struct SeParams {
        /// Channels.
        pub channels: u32,
        /// Pixels per channel.
        pub pixels: u32,
        /// Squeeze (hidden) width.
        pub squeeze: u32,
        /// Activation of the reduce layer.
        pub reduce_act: u32,
        /// Upper clamp of the reduce layer.
        pub reduce_cap: f32,
        /// Added before the gate clamp.
        pub gate_add: f32,
        /// Upper end of the gate clamp.
        pub gate_max: f32,
        /// Gate multiplier after the clamp.
        pub gate_mul: f32,
    }
}

impl SeParams {
    /// Squeeze-excite `se` over `channels` × `pixels`.
    pub fn new(se: &SeLayer, channels: usize, pixels: usize) -> Self {
        Self {
            channels: channels as u32,
            pixels: pixels as u32,
            squeeze: se.reduce.out_channels as u32,
            reduce_act: super::activation_code(se.reduce.activation),
            reduce_cap: se.reduce.cap,
            gate_add: se.gate_add,
            gate_max: se.gate_max,
            gate_mul: se.gate_mul,
        }
    }

    /// Parameters for the per-channel mean alone (global pooling) of `channels` × `pixels`.
    pub fn pool(channels: usize, pixels: usize) -> Self {
        Self { channels: channels as u32, pixels: pixels as u32, ..Self::default() }
    }
}

impl Default for SeParams {
    /// No channels; a reduce layer without clamp and an unclamped, unscaled gate.
    fn default() -> Self {
        Self {
            channels: 0,
            pixels: 0,
            squeeze: 0,
            reduce_act: 0,
            reduce_cap: f32::MAX,
            gate_add: 0.0,
            gate_max: f32::MAX,
            gate_mul: 1.0,
        }
    }
}

kernel_bindings! {
    /// Buffers of `channel_mean`.
    pub struct ChannelMean {
        /// The tensor [c][pixels].
        input: 1 Read Activations,
        /// Its c channel means.
        output: 3 ReadWrite,
    }
}

kernel_bindings! {
    /// Buffers of `se_gate`.
    pub struct SeGate {
        /// The channel means.
        input: 1 Read,
        /// [squeeze][channels] reduce weights, squeeze biases, [channels][squeeze] expand
        /// weights, channels biases.
        aux: 2 Read,
        /// The c gates.
        output: 3 ReadWrite,
    }
}

kernel_bindings! {
    /// Buffers of `channel_scale`.
    pub struct ChannelScale {
        /// The tensor [c][pixels].
        input: 1 Read Activations,
        /// The c gates.
        aux: 2 Read,
        /// The scaled tensor.
        output: 3 ReadWrite Activations,
    }
}

kernel_bindings! {
    /// Buffers of `channel_dot`.
    pub struct ChannelDot {
        /// The block's input [c][pixels].
        input: 1 Read Activations,
        /// Per channel Σ grad · input: dL/d gate.
        output: 3 ReadWrite,
        /// dL/d output [c][pixels].
        grad: 4 Read Activations,
    }
}

kernel_bindings! {
    /// Buffers of `se_gate_backward`.
    pub struct SeGateBackward {
        /// The channel means.
        input: 1 Read,
        /// The gate weights (as in [`SeGate`]).
        aux: 2 Read,
        /// dL/d mean.
        output: 3 ReadWrite,
        /// dL/d gate.
        grad: 4 Read,
    }
}

kernel_bindings! {
    /// Buffers of `se_input_backward`.
    pub struct SeInputBackward {
        /// dL/d mean.
        input: 1 Read,
        /// The gates.
        aux: 2 Read,
        /// dL/d output [c][pixels].
        grad: 4 Read Activations,
        /// dL/d input, added into.
        grad_input: 5 ReadWrite Activations,
    }
}

/// `channel_mean`.
pub const CHANNEL_MEAN: KernelSpec = KernelSpec {
    entry: "channel_mean",
    shader: Shader::SqueezeExcite,
    family: Family::SqueezeExcite,
    params: SeParams::LAYOUT,
    storage: ChannelMean::BINDINGS,
    workgroup_size: [WORKGROUP, 1, 1],
    overrides: &[],
};
/// `se_gate`.
pub const GATE: KernelSpec = KernelSpec { entry: "se_gate", storage: SeGate::BINDINGS, ..CHANNEL_MEAN };
/// `channel_scale`.
pub const CHANNEL_SCALE: KernelSpec =
    KernelSpec { entry: "channel_scale", storage: ChannelScale::BINDINGS, ..CHANNEL_MEAN };
/// `channel_dot`.
pub const CHANNEL_DOT: KernelSpec = KernelSpec { entry: "channel_dot", storage: ChannelDot::BINDINGS, ..CHANNEL_MEAN };
/// `se_gate_backward`.
pub const GATE_BACKWARD: KernelSpec =
    KernelSpec { entry: "se_gate_backward", storage: SeGateBackward::BINDINGS, ..CHANNEL_MEAN };
/// `se_input_backward`.
pub const INPUT_BACKWARD: KernelSpec =
    KernelSpec { entry: "se_input_backward", storage: SeInputBackward::BINDINGS, ..CHANNEL_MEAN };

/// `channel_mean_lanes`: one channel per invocation (CPU-like adapters).
pub const CHANNEL_MEAN_LANES: KernelSpec =
    KernelSpec { entry: "channel_mean_lanes", workgroup_size: [CHANNEL_LANES, 1, 1], ..CHANNEL_MEAN };
/// `channel_dot_lanes`: one channel per invocation (CPU-like adapters).
pub const CHANNEL_DOT_LANES: KernelSpec =
    KernelSpec { entry: "channel_dot_lanes", workgroup_size: [CHANNEL_LANES, 1, 1], ..CHANNEL_DOT };

/// Every kernel of the file.
pub const SPECS: &[KernelSpec] = &[
    CHANNEL_MEAN,
    GATE,
    CHANNEL_SCALE,
    CHANNEL_DOT,
    GATE_BACKWARD,
    INPUT_BACKWARD,
    CHANNEL_MEAN_LANES,
    CHANNEL_DOT_LANES,
];

/// One way to compute the per-channel sums (`channel_mean`, `channel_dot`); the device's tuner
/// picks per shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReductionVariant {
    /// One workgroup per channel, halving its sum in workgroup memory between barriers (GPUs).
    Workgroup,
    /// One channel per invocation, [`CHANNEL_LANES`] channels per workgroup, each summed in
    /// turn: no barrier, every load distinct per lane (CPU-like adapters).
    Lanes,
}

impl Variant for ReductionVariant {
    fn name(self) -> &'static str {
        match self {
            ReductionVariant::Workgroup => "workgroup",
            ReductionVariant::Lanes => "lanes",
        }
    }
}

impl ReductionVariant {
    /// Every variant, the default first.
    pub const ALL: [ReductionVariant; 2] = [ReductionVariant::Workgroup, ReductionVariant::Lanes];
}

/// The tuning cache's key of a reduction's shape.
fn shape_key(reduction: &str, p: &SeParams, precision: Precision) -> String {
    super::precision_key(format!("{reduction} c{} px{}", p.channels, p.pixels), precision)
}

/// The kernels of `squeeze_excite.wgsl`.
pub struct SqueezeExcite {
    precision: Precision,
    channel_mean: Kernel,
    channel_mean_lanes: Kernel,
    channel_dot_lanes: Kernel,
    gate: Kernel,
    channel_scale: Kernel,
    channel_dot: Kernel,
    gate_backward: Kernel,
    input_backward: Kernel,
}

impl SqueezeExcite {
    /// Compiles the file's kernels for activations stored in `precision`.
    pub fn new(ctx: &GpuContext, precision: Precision) -> Self {
        let modules = Modules::new(Shader::SqueezeExcite, precision);
        let kernel = |spec| modules.kernel(ctx, spec);
        Self {
            precision,
            channel_mean: kernel(CHANNEL_MEAN),
            channel_mean_lanes: kernel(CHANNEL_MEAN_LANES),
            channel_dot_lanes: kernel(CHANNEL_DOT_LANES),
            gate: kernel(GATE),
            channel_scale: kernel(CHANNEL_SCALE),
            channel_dot: kernel(CHANNEL_DOT),
            gate_backward: kernel(GATE_BACKWARD),
            input_backward: kernel(INPUT_BACKWARD),
        }
    }

    /// Per-channel means, in the variant the device's tuner chose.
    pub fn channel_mean(&self, ctx: &GpuContext, buffers: ChannelMean, p: &SeParams) -> BoundOp {
        let key = shape_key("mean", p, self.precision);
        let variant = ctx.tuner().pick(Family::SqueezeExcite, &key, &ReductionVariant::ALL, |v, best| {
            // The buffer it writes is a stand-in: the plan's may hold values in use.
            let output = scratch_like(ctx, buffers.output);
            time_op(ctx, &self.channel_mean_variant(ctx, v, ChannelMean { output: &output, ..buffers }, p), best)
        });
        self.channel_mean_variant(ctx, variant, buffers, p)
    }

    /// Per-channel means in a given variant.
    pub fn channel_mean_variant(
        &self,
        ctx: &GpuContext,
        variant: ReductionVariant,
        buffers: ChannelMean,
        p: &SeParams,
    ) -> BoundOp {
        match variant {
            ReductionVariant::Workgroup => self.channel_mean.bind(ctx, p, &buffers.buffers(), [p.channels, 1, 1]),
            ReductionVariant::Lanes => self.channel_mean_lanes.bind(ctx, p, &buffers.buffers(), lanes_grid(p)),
        }
    }

    /// The gates from the means: one workgroup.
    pub fn gate(&self, ctx: &GpuContext, buffers: SeGate, p: &SeParams) -> BoundOp {
        self.gate.bind(ctx, p, &buffers.buffers(), [1, 1, 1])
    }

    /// The tensor scaled by its gates: x over pixels, y over channels.
    pub fn channel_scale(&self, ctx: &GpuContext, buffers: ChannelScale, p: &SeParams) -> BoundOp {
        self.channel_scale.bind(ctx, p, &buffers.buffers(), pixel_grid(p))
    }

    /// dL/d gate, in the variant the device's tuner chose.
    pub fn channel_dot(&self, ctx: &GpuContext, buffers: ChannelDot, p: &SeParams) -> BoundOp {
        let key = shape_key("dot", p, self.precision);
        let variant = ctx.tuner().pick(Family::SqueezeExcite, &key, &ReductionVariant::ALL, |v, best| {
            let output = scratch_like(ctx, buffers.output);
            time_op(ctx, &self.channel_dot_variant(ctx, v, ChannelDot { output: &output, ..buffers }, p), best)
        });
        self.channel_dot_variant(ctx, variant, buffers, p)
    }

    /// dL/d gate in a given variant.
    pub fn channel_dot_variant(
        &self,
        ctx: &GpuContext,
        variant: ReductionVariant,
        buffers: ChannelDot,
        p: &SeParams,
    ) -> BoundOp {
        match variant {
            ReductionVariant::Workgroup => self.channel_dot.bind(ctx, p, &buffers.buffers(), [p.channels, 1, 1]),
            ReductionVariant::Lanes => self.channel_dot_lanes.bind(ctx, p, &buffers.buffers(), lanes_grid(p)),
        }
    }

    /// dL/d mean from dL/d gate: one workgroup.
    pub fn gate_backward(&self, ctx: &GpuContext, buffers: SeGateBackward, p: &SeParams) -> BoundOp {
        self.gate_backward.bind(ctx, p, &buffers.buffers(), [1, 1, 1])
    }

    /// dL/d input: x over pixels, y over channels.
    pub fn input_backward(&self, ctx: &GpuContext, buffers: SeInputBackward, p: &SeParams) -> BoundOp {
        self.input_backward.bind(ctx, p, &buffers.buffers(), pixel_grid(p))
    }
}

/// One invocation per channel, [`CHANNEL_LANES`] per workgroup.
fn lanes_grid(p: &SeParams) -> [u32; 3] {
    [p.channels.div_ceil(CHANNEL_LANES), 1, 1]
}

/// [`FLAT_VALUES`] consecutive pixels of one channel per invocation: x over pixels, y over
/// channels.
fn pixel_grid(p: &SeParams) -> [u32; 3] {
    [groups((p.pixels as usize).div_ceil(FLAT_VALUES as usize), WORKGROUP), p.channels, 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;

    #[test]
    fn workgroup_memory_of_the_gate_kernels_holds_every_architecture_block() {
        for arch in [Arch::Small, Arch::Large] {
            for block in arch.blocks().iter().filter(|b| b.se) {
                assert!(block.se_channels() as u32 <= MAX_SQUEEZE, "{arch:?}: squeeze {}", block.se_channels());
                assert!(block.expanded as u32 <= MAX_SE_CHANNELS, "{arch:?}: channels {}", block.expanded);
            }
        }
    }
}
