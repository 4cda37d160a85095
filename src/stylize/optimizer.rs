//! Optimizers that update the image buffer on the GPU from the objective's gradient.

use crate::engine::flat_dispatch;
use crate::gpu::GpuContext;
use crate::kernels::{AdamParams, BoundOp, Kernels};

/// PyTorch's Adam (β1 0.9, β2 0.999, ε 1e-8, bias correction), clamping the image to [0, 1] after
/// each step.
pub struct Adam {
    op: BoundOp,
    params: AdamParams,
    step: u32,
    _state: [wgpu::Buffer; 2],
}

impl Adam {
    /// Plans the update of `image` (n values) from `grad`.
    pub fn new(
        ctx: &GpuContext,
        k: &Kernels,
        image: &wgpu::Buffer,
        grad: &wgpu::Buffer,
        n: usize,
        lr: f32,
    ) -> Self {
        let m = ctx.zeroed_buffer("adam.m", n);
        let v = ctx.zeroed_buffer("adam.v", n);
        let params = AdamParams {
            n: n as u32,
            clamp_01: 1,
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            ..Default::default()
        };
        let op = k
            .adam_step
            .bind(ctx, &params, &[image, grad, &m, &v], flat_dispatch(n));
        Self {
            op,
            params,
            step: 0,
            _state: [m, v],
        }
    }

    /// Prepares the next step's parameters and returns its dispatch.
    pub fn next_step(&mut self, ctx: &GpuContext) -> &BoundOp {
        self.step += 1;
        let t = self.step as i32;
        self.params.bias_correction1 = 1.0 - self.params.beta1.powi(t);
        self.params.bias_correction2 = 1.0 - self.params.beta2.powi(t);
        self.op.update(ctx, &self.params);
        &self.op
    }
}
