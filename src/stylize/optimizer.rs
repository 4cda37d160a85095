//! Optimizers that update the image on the GPU from the objective's gradient: Adam, L-BFGS with
//! PyTorch's semantics, and L-BFGS over a sigmoid pixel parameterization that cannot leave [0, 1].

use crate::engine::Work;
use crate::gpu::GpuContext;
use crate::kernels::optimizers::{
    AdamParams, AdamStep, LbfgsDots, LbfgsParams, LbfgsSolve, LbfgsUpdate, SquashBackward, SquashParams,
    lbfgs_scalars_len,
};
use crate::kernels::{BoundOp, Kernels};

/// PyTorch's Adam (β1 0.9, β2 0.999, ε 1e-8, bias correction), clamping the image to [0, 1] after
/// each step.
pub struct Adam {
    op: BoundOp,
    params: AdamParams,
    step: u32,
    state: [wgpu::Buffer; 2],
}

impl Adam {
    /// The work of one step: read x, g, m, v; write x, m, v.
    pub fn work(&self) -> Work {
        let n = f64::from(self.params.n);
        Work::new(14.0 * n, 7.0 * n)
    }

    /// Plans the update of `image` (n values) from `grad`.
    pub fn new(ctx: &GpuContext, k: &Kernels, image: &wgpu::Buffer, grad: &wgpu::Buffer, n: usize, lr: f32) -> Self {
        let m = ctx.zeroed_buffer("adam.m", n);
        let v = ctx.zeroed_buffer("adam.v", n);
        let params = AdamParams::new(n, lr, true);
        let op = k.optimizers.adam(ctx, AdamStep { x: image, g: grad, m: &m, v: &v }, &params);
        Self { op, params, step: 0, state: [m, v] }
    }

    /// Forgets the moments and the step count (the image stays).
    pub fn reset(&mut self, encoder: &mut wgpu::CommandEncoder) {
        self.step = 0;
        for b in &self.state {
            encoder.clear_buffer(b, 0, None);
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

/// L-BFGS as `torch.optim.LBFGS(lr, history_size, line_search_fn=None)` stepping once per
/// evaluation: three dispatches every iteration (dot products, the two-loop recursion on them,
/// the update), no readback.
pub struct Lbfgs {
    ops: Vec<BoundOp>,
    params: LbfgsParams,
    state: [wgpu::Buffer; 2],
}

impl Lbfgs {
    /// Plans the update of `x` (n values) from `grad`, keeping `history` curvature pairs.
    pub fn new(
        ctx: &GpuContext,
        k: &Kernels,
        x: &wgpu::Buffer,
        grad: &wgpu::Buffer,
        n: usize,
        history: usize,
        lr: f32,
    ) -> Self {
        let history = history.max(1);
        let hist = ctx.zeroed_buffer("lbfgs.history", Self::state_floats(n, history));
        let params = LbfgsParams::new(n, history, lr);
        let scalars = ctx.zeroed_buffer("lbfgs.scalars", lbfgs_scalars_len(history, params.groups as usize));
        let o = &k.optimizers;
        let ops = vec![
            o.lbfgs_dots(ctx, LbfgsDots { g: grad, hist_in: &hist, scalars_rw: &scalars }, &params),
            o.lbfgs_solve(ctx, LbfgsSolve { scalars: &scalars }, &params),
            o.lbfgs_update(ctx, LbfgsUpdate { g: grad, hist: &hist, scalars_in: &scalars, x }, &params),
        ];
        Self { ops, params, state: [hist, scalars] }
    }

    /// Floats of the vector state for n values and m pairs: the pairs, then g_prev and d (one
    /// buffer, which must fit the device's largest storage binding).
    pub fn state_floats(n: usize, history: usize) -> usize {
        (2 * history.max(1) + 2) * n
    }

    /// Forgets the history and the iteration count, as a fresh `torch.optim.LBFGS` (x stays).
    pub fn reset(&self, encoder: &mut wgpu::CommandEncoder) {
        for b in &self.state {
            encoder.clear_buffer(b, 0, None);
        }
    }

    /// The dispatches of one iteration.
    pub fn ops(&self) -> &[BoundOp] {
        &self.ops
    }

    /// The work of one iteration with a full history of m pairs: the dot pass reads g, g_prev, d
    /// and the 2m history vectors; the update reads them again and writes the new pair, d, g_prev
    /// and x.
    pub fn work(&self) -> Work {
        let (n, m) = (f64::from(self.params.n), f64::from(self.params.history));
        let vectors = 2.0 * m + 3.0;
        Work::new(2.0 * (5.0 * m + 7.0) * n + 2.0 * (2.0 * m + 2.0) * n, 2.0 * vectors * n + 6.0 * n)
    }
}

/// The image as sigmoid(u): `squash` makes the image from u before the objective,
/// `backward` turns the image gradient into u's.
pub struct Squash {
    /// image = sigmoid(u).
    pub forward: BoundOp,
    /// grad_u = grad_image · image · (1 − image).
    pub backward: BoundOp,
    n: usize,
}

impl Squash {
    /// The work of both directions (the sigmoid counted as ten operations).
    pub fn work(&self) -> Work {
        let n = self.n as f64;
        Work::new(14.0 * n, 5.0 * n)
    }

    /// Plans both directions for n values.
    pub fn new(
        ctx: &GpuContext,
        k: &Kernels,
        u: &wgpu::Buffer,
        image: &wgpu::Buffer,
        image_grad: &wgpu::Buffer,
        grad_u: &wgpu::Buffer,
        n: usize,
    ) -> Self {
        let params = SquashParams::new(n);
        let o = &k.optimizers;
        Self {
            forward: o.squash(ctx, crate::kernels::optimizers::Squash { u, image }, &params),
            backward: o.squash_backward(ctx, SquashBackward { image, g: image_grad, grad_u }, &params),
            n,
        }
    }
}

/// The inverse of the sigmoid, for starting u from an image (clamped away from 0 and 1).
pub fn logit(x: f32) -> f32 {
    let x = x.clamp(1e-3, 1.0 - 1e-3);
    (x / (1.0 - x)).ln()
}
