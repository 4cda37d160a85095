//! Optimizers that update the image on the GPU from the objective's gradient: Adam, L-BFGS with
//! PyTorch's semantics, and L-BFGS over a sigmoid pixel parameterization that cannot leave [0, 1].

use crate::engine::{Work, flat_dispatch};
use crate::gpu::GpuContext;
use crate::kernels::{BoundOp, Kernels, LbfgsParams, OptimParams};

/// PyTorch's Adam (β1 0.9, β2 0.999, ε 1e-8, bias correction), clamping the image to [0, 1] after
/// each step.
pub struct Adam {
    op: BoundOp,
    params: OptimParams,
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
        let params =
            OptimParams { n: n as u32, clamp_01: 1, lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, ..Default::default() };
        let op = k.adam_step.bind(ctx, &params, &[image, grad, &m, &v], flat_dispatch(n));
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

/// Values the dot-product pass sums per row (see `QUANTITIES` in `shaders/lbfgs.wgsl`).
const QUANTITIES: usize = 8;

/// Floats of the scalar state for `history` pairs and `groups` partial sums per quantity:
/// 16 fixed slots, four per-pair arrays, two m×m matrices, the dot totals and partials.
fn scalars_len(history: usize, groups: usize) -> usize {
    16 + 4 * history + 2 * history * history + (history + 1) * QUANTITIES * (1 + groups)
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
        // Each invocation of the dot-product pass covers at least 16 values.
        let groups = (n as u32).div_ceil(16 * 256).clamp(1, 128);
        let scalars = ctx.zeroed_buffer("lbfgs.scalars", scalars_len(history, groups as usize));
        let params = LbfgsParams {
            n: n as u32,
            history: history as u32,
            groups,
            lr,
            tolerance_grad: 1e-7,
            tolerance_change: 1e-9,
            ..Default::default()
        };
        let ops = vec![
            k.lbfgs_dots.bind(ctx, &params, &[grad, &hist, &scalars], [groups, history as u32 + 1, 1]),
            k.lbfgs_solve.bind(ctx, &params, &[&scalars], [1, 1, 1]),
            k.lbfgs_update.bind(ctx, &params, &[grad, &hist, &scalars, x], flat_dispatch(n)),
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
        let params = OptimParams { n: n as u32, ..Default::default() };
        Self {
            forward: k.squash.bind(ctx, &params, &[u, image], flat_dispatch(n)),
            backward: k.squash_backward.bind(ctx, &params, &[image, image_grad, grad_u], flat_dispatch(n)),
            n,
        }
    }
}

/// The inverse of the sigmoid, for starting u from an image (clamped away from 0 and 1).
pub fn logit(x: f32) -> f32 {
    let x = x.clamp(1e-3, 1.0 - 1e-3);
    (x / (1.0 - x)).ln()
}
