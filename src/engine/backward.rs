//! The backward pass: gradients with respect to the input image only (weights are frozen),
//! planned from a training [`ForwardPlan`]'s nodes in reverse, as far back as the image.
//! Every kernel adds into its gradient buffer, so the buffers are cleared before each pass and a
//! layer may receive gradient from several places (losses, the next layer, a residual skip).

use anyhow::{Result, bail};

use super::{ForwardPlan, Node, WORKGROUP, flat_dispatch, groups};
use crate::gpu::GpuContext;
use crate::kernels::{BoundOp, Family, Kernels, PointwiseParams, activation_params, pointwise_flags};

impl ForwardPlan {
    /// The backward dispatches: from the layer gradients (filled by the losses) to the image
    /// gradient. Only for plans made with `train`.
    pub fn backward_ops(&self, ctx: &GpuContext, k: &Kernels) -> Result<Vec<BoundOp>> {
        let Some(image_grad) = &self.image_grad else { bail!("the plan was not made for training") };
        let grad = |layer: usize| &self.grads[self.layers[layer].storage];
        let value = |layer: usize| &self.buffers[self.layers[layer].storage];
        let dummy = ctx.zeroed_buffer("dummy", 1);
        let mut ops = Vec::new();
        for node in self.nodes.iter().rev() {
            match node {
                Node::Stem { weights, params, preact, out } => {
                    if let Some(preact) = preact {
                        let n = (params.out_c * params.out_h * params.out_w) as usize;
                        let p = activation_params(n, params.act, params.cap);
                        ops.push(k.activation_backward.bind(ctx, &p, &[preact, grad(*out)], flat_dispatch(n)));
                    }
                    let wg = [groups(self.width * self.height, WORKGROUP), 3, 1];
                    ops.push(k.conv_backward.bind(ctx, params, &[grad(*out), weights, image_grad], wg));
                }
                Node::Pointwise { weights, params, preact, input, out } => {
                    // dX (in_c × pixels) += Wᵀ · (dY ⊙ act'(Z)).
                    let mut flags = pointwise_flags::TRANSPOSE_A | pointwise_flags::ACCUMULATE;
                    if preact.is_some() {
                        flags |= pointwise_flags::GRAD_ACT_B;
                    }
                    let p = PointwiseParams { m: params.k, k: params.m, n: params.n, flags, alpha: 1.0, ..*params };
                    let aux = preact.as_ref().unwrap_or(&dummy);
                    ops.push(k.pointwise.bind(ctx, &p, &[grad(*out), weights, grad(*input), aux]));
                }
                Node::Depthwise { weights, params, preact, input, out } => {
                    if let Some(preact) = preact {
                        let n = (params.channels * params.out_h * params.out_w) as usize;
                        let p = activation_params(n, params.act, params.cap);
                        let op = k.activation_backward.bind(ctx, &p, &[preact, grad(*out)], flat_dispatch(n));
                        ops.push(op.in_family(Family::Depthwise));
                    }
                    let wg = [groups((params.in_h * params.in_w) as usize, WORKGROUP), params.channels, 1];
                    ops.push(k.depthwise_backward.bind(ctx, params, &[grad(*out), weights, grad(*input)], wg));
                }
                Node::SqueezeExcite { weights, params, means, gates, input, out } => {
                    let channels = params.channels as usize;
                    let grad_gates = ctx.zeroed_buffer("se.grad_gates", channels);
                    let grad_means = ctx.zeroed_buffer("se.grad_means", channels);
                    let wg = [groups(params.pixels as usize, WORKGROUP), params.channels, 1];
                    ops.push(k.channel_dot.bind(
                        ctx,
                        params,
                        &[value(*input), &grad_gates, grad(*out)],
                        [params.channels, 1, 1],
                    ));
                    ops.push(k.se_gate_backward.bind(
                        ctx,
                        params,
                        &[means, weights, &grad_means, &grad_gates],
                        [1, 1, 1],
                    ));
                    ops.push(k.se_input_backward.bind(
                        ctx,
                        params,
                        &[&grad_means, gates, grad(*out), grad(*input)],
                        wg,
                    ));
                }
                Node::Residual { project, skip, out } => {
                    let info = &self.layers[*out].info;
                    let n = info.channels * info.height * info.width;
                    let p = PointwiseParams { n: n as u32, ..Default::default() };
                    ops.push(k.residual_backward.bind(ctx, &p, &[grad(*out), grad(*project)], flat_dispatch(n)));
                    ops.push(k.residual_backward.bind(ctx, &p, &[grad(*out), grad(*skip)], flat_dispatch(n)));
                }
            }
        }
        Ok(ops)
    }
}
