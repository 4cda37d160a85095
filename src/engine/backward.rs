//! The backward pass: gradients with respect to the input image only (weights are frozen),
//! planned from a training [`ForwardPlan`]'s nodes in reverse, as far back as the image.
//! A layer may receive gradient from several places (losses, the next layer, a residual skip):
//! the first dispatch that writes a gradient buffer overwrites it where its kernel can, the later
//! ones add into it, and only the buffers whose first writer adds are cleared before each
//! evaluation ([`GradientWrites`]).

use anyhow::{Result, bail};

use super::{ForwardPlan, Node};
use crate::gpu::GpuContext;
use crate::kernels::conv::{ActivationBackward, ConvBackward, ConvParams};
use crate::kernels::depthwise::{DepthwiseBackward, DepthwiseParams};
use crate::kernels::pointwise::{PointwiseParams, ProductBuffers, ResidualBackward, ResidualParams, flags};
use crate::kernels::squeeze_excite::{ChannelDot, SeGateBackward, SeInputBackward};
use crate::kernels::{BoundOp, Family, Kernels};

/// Which gradient buffers the dispatches of one evaluation have written so far, as they are
/// planned in order: a kernel that can overwrite its gradient does so where it is the first to
/// write it, so a buffer needs clearing before each evaluation only when its first access adds
/// into it (or reads it). On lavapipe the clears of every gradient buffer took about 1 ms of a
/// 37 ms iteration at 256 px, and each overwriting kernel also skips a load per value.
#[derive(Default)]
pub struct GradientWrites {
    written: Vec<wgpu::Buffer>,
    cleared: Vec<wgpu::Buffer>,
}

impl GradientWrites {
    /// For a kernel that can overwrite `grad`: whether it must add into it instead (someone wrote
    /// it before). Marks it written.
    pub fn accumulate(&mut self, grad: &wgpu::Buffer) -> bool {
        let before = self.written.contains(grad);
        if !before {
            self.written.push(grad.clone());
        }
        before
    }

    /// For a kernel that always adds into `grad` (or reads it): a first access needs the buffer
    /// cleared before each evaluation. Marks it written.
    pub fn add(&mut self, grad: &wgpu::Buffer) {
        if !self.accumulate(grad) {
            self.cleared.push(grad.clone());
        }
    }

    /// The buffers to clear before each evaluation.
    pub fn cleared(&self) -> &[wgpu::Buffer] {
        &self.cleared
    }
}

/// The stem's parameters for its image gradient when the layer gradients are scaled by
/// `gradient_scale`: the input normalization's scale multiplies the image gradient, and the
/// gradient scale is divided out with it. The image gradient's only writer, it overwrites it.
fn unscaled(params: &ConvParams, gradient_scale: f32) -> ConvParams {
    ConvParams { scale: params.scale.map(|s| s / gradient_scale), accumulate: 0, ..*params }
}

impl ForwardPlan {
    /// The parameters of the last backward dispatch ([`ForwardPlan::backward_ops`]' last, the
    /// stem's image gradient) for layer gradients scaled by `gradient_scale`, to rewrite it with
    /// when the scale changes.
    pub fn image_gradient_params(&self, gradient_scale: f32) -> Option<ConvParams> {
        self.nodes.iter().find_map(|node| match node {
            Node::Stem { params, .. } => Some(unscaled(params, gradient_scale)),
            _ => None,
        })
    }

    /// The gradient buffers of the layers (not the image's), for measuring their range.
    pub fn layer_grad_buffers(&self) -> &[wgpu::Buffer] {
        &self.grads
    }

    /// The backward dispatches: from the layer gradients (filled by the losses) to the image
    /// gradient. Only for plans made with `train`. The layer gradients hold d total / d layer
    /// times `gradient_scale` (a power of two keeping f16 gradients in range, see
    /// `stylize::objective`); the image gradient gets it divided out. `writes` holds what the
    /// losses planned before wrote, and gets what these write.
    pub fn backward_ops(
        &self,
        ctx: &GpuContext,
        k: &Kernels,
        gradient_scale: f32,
        writes: &mut GradientWrites,
    ) -> Result<Vec<BoundOp>> {
        let Some(image_grad) = &self.image_grad else { bail!("the plan was not made for training") };
        let grad = |layer: usize| &self.grads[self.layers[layer].storage];
        let value = |layer: usize| &self.buffers[self.layers[layer].storage];
        let mut ops = Vec::new();
        for node in self.nodes.iter().rev() {
            match node {
                Node::Stem { weights, params, derivative, out } => {
                    writes.add(grad(*out));
                    if let Some(derivative) = derivative {
                        let p = params.activation_backward();
                        let preact_in = derivative.source(value(*out));
                        let buffers = ActivationBackward { preact_in, grad_inout: grad(*out) };
                        ops.push(k.conv.activation_backward(ctx, buffers, &p, Family::Stem));
                    }
                    assert!(!writes.accumulate(image_grad), "the stem is the image gradient's only writer");
                    let buffers = ConvBackward { grad_output: grad(*out), weights, grad_input: image_grad };
                    ops.push(k.conv.backward(ctx, buffers, &unscaled(params, gradient_scale)));
                }
                Node::Pointwise { weights, params, derivative, input, out } => {
                    // dX (in_c × pixels) += Wᵀ · (dY ⊙ act'(Z)), or = where it is dX's first writer.
                    writes.add(grad(*out));
                    let p = params.input_gradient();
                    let p = if writes.accumulate(grad(*input)) {
                        p
                    } else {
                        PointwiseParams { flags: p.flags & !flags::ACCUMULATE, ..p }
                    };
                    let buffers = ProductBuffers {
                        input: grad(*out),
                        weights,
                        output: grad(*input),
                        aux: derivative.as_ref().map_or(k.placeholder(), |d| d.source(value(*out))),
                    };
                    ops.push(k.products.product(ctx, buffers, &p));
                }
                Node::Depthwise { weights, params, derivative, input, out } => {
                    if let Some(derivative) = derivative {
                        let p = params.activation_backward();
                        let preact_in = derivative.source(value(*out));
                        let buffers = ActivationBackward { preact_in, grad_inout: grad(*out) };
                        ops.push(k.conv.activation_backward(ctx, buffers, &p, Family::Depthwise));
                    }
                    writes.add(grad(*out));
                    let accumulate = writes.accumulate(grad(*input)) as u32;
                    let buffers = DepthwiseBackward { grad_output: grad(*out), weights, grad_input: grad(*input) };
                    ops.push(k.depthwise.backward(ctx, buffers, &DepthwiseParams { accumulate, ..*params }));
                }
                Node::SqueezeExcite { weights, params, means, gates, input, out } => {
                    let channels = params.channels as usize;
                    let grad_gates = ctx.zeroed_buffer("se.grad_gates", channels);
                    let grad_means = ctx.zeroed_buffer("se.grad_means", channels);
                    let se = &k.squeeze_excite;
                    writes.add(grad(*out));
                    writes.add(grad(*input));
                    let dot = ChannelDot { input: value(*input), output: &grad_gates, grad: grad(*out) };
                    ops.push(se.channel_dot(ctx, dot, params));
                    let gate = SeGateBackward { input: means, aux: weights, output: &grad_means, grad: &grad_gates };
                    ops.push(se.gate_backward(ctx, gate, params));
                    let input_grad =
                        SeInputBackward { input: &grad_means, aux: gates, grad: grad(*out), grad_input: grad(*input) };
                    ops.push(se.input_backward(ctx, input_grad, params));
                }
                Node::Residual { project, skip, out } => {
                    let info = &self.layers[*out].info;
                    let p = ResidualParams::new(info.channels * info.height * info.width);
                    writes.add(grad(*out));
                    for summand in [project, skip] {
                        let accumulate = writes.accumulate(grad(*summand)) as u32;
                        let buffers = ResidualBackward { addend: grad(*out), sum: grad(*summand) };
                        ops.push(k.products.residual_backward(ctx, buffers, &ResidualParams { accumulate, ..p }));
                    }
                }
            }
        }
        Ok(ops)
    }
}
