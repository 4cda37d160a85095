//! Optimizers that update the image on the GPU from the objective's gradient: Adam, L-BFGS with
//! PyTorch's semantics, and L-BFGS over a sigmoid pixel parameterization that cannot leave [0, 1].

use crate::engine::flat_dispatch;
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

// Modes and vector kinds of lbfgs.wgsl.
const OP_DOT: u32 = 0;
const OP_ABS_SUM: u32 = 1;
const OP_ABS_MAX: u32 = 2;
const S_BEGIN: u32 = 0;
const S_PUSH: u32 = 1;
const S_ALPHA: u32 = 2;
const S_BETA: u32 = 3;
const S_STEP: u32 = 4;
const E_PREPARE: u32 = 0;
const E_COMMIT: u32 = 1;
const E_NEG_G: u32 = 2;
const E_LOOP1: u32 = 3;
const E_SCALE: u32 = 4;
const E_LOOP2: u32 = 5;
const V_G: u32 = 0;
const V_D: u32 = 2;
const V_Y: u32 = 3;
const V_S: u32 = 4;
const V_HIST_Y: u32 = 5;
const V_HIST_S: u32 = 6;

/// State floats before the partial sums: 16 fixed slots and three per history pair.
fn state_len(history: usize) -> usize {
    16 + 3 * history
}

/// L-BFGS as `torch.optim.LBFGS(lr, history_size, line_search_fn=None)` stepping once per
/// evaluation: the same dispatches every iteration, no readback.
pub struct Lbfgs {
    ops: Vec<BoundOp>,
    state: [wgpu::Buffer; 3],
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
        let work = ctx.zeroed_buffer("lbfgs.work", 4 * n);
        let hist = ctx.zeroed_buffer("lbfgs.history", 2 * history.max(1) * n);
        let scalars = ctx.zeroed_buffer("lbfgs.scalars", state_len(history) + 2 * 256);
        let groups = (n as u32).div_ceil(256).clamp(1, 256);
        let base = LbfgsParams {
            n: n as u32,
            history: history as u32,
            groups,
            lr,
            tolerance_grad: 1e-7,
            tolerance_change: 1e-9,
            ..Default::default()
        };
        let vectors = [grad, &work, &hist, &scalars];
        let reduce = |mode, a_kind, b_kind, index, region| {
            let p = LbfgsParams { mode, a_kind, b_kind, index, region, ..base };
            k.lbfgs_reduce.bind(ctx, &p, &vectors, [groups, 1, 1])
        };
        let scalar =
            |mode, index| k.lbfgs_scalar.bind(ctx, &LbfgsParams { mode, index, ..base }, &[&scalars], [1, 1, 1]);
        let vector =
            |mode, index| k.lbfgs_vector.bind(ctx, &LbfgsParams { mode, index, ..base }, &vectors, flat_dispatch(n));
        let mut ops = vec![reduce(OP_ABS_MAX, V_G, V_G, 0, 0), scalar(S_BEGIN, 0), vector(E_PREPARE, 0)];
        ops.extend([
            reduce(OP_DOT, V_Y, V_S, 0, 0),
            reduce(OP_DOT, V_Y, V_Y, 0, 1),
            scalar(S_PUSH, 0),
            vector(E_COMMIT, 0),
        ]);
        // Two-loop recursion: q = −g; newest to oldest α_i = ρ_i s_iᵀq, q −= α_i y_i; d = H·q;
        // oldest to newest β_i = ρ_i y_iᵀd, d += (α_i − β_i) s_i.
        ops.push(vector(E_NEG_G, 0));
        for i in (0..history as u32).rev() {
            ops.extend([reduce(OP_DOT, V_HIST_S, V_D, i, 0), scalar(S_ALPHA, i), vector(E_LOOP1, i)]);
        }
        ops.push(vector(E_SCALE, 0));
        for i in 0..history as u32 {
            ops.extend([reduce(OP_DOT, V_HIST_Y, V_D, i, 0), scalar(S_BETA, i), vector(E_LOOP2, i)]);
        }
        ops.extend([reduce(OP_DOT, V_G, V_D, 0, 0), reduce(OP_ABS_SUM, V_G, V_G, 0, 1), scalar(S_STEP, 0)]);
        ops.push(k.lbfgs_update.bind(ctx, &base, &[grad, &work, &scalars, x], flat_dispatch(n)));
        Self { ops, state: [work, hist, scalars] }
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
}

/// The image as sigmoid(u): `squash` makes the image from u before the objective,
/// `backward` turns the image gradient into u's.
pub struct Squash {
    /// image = sigmoid(u).
    pub forward: BoundOp,
    /// grad_u = grad_image · image · (1 − image).
    pub backward: BoundOp,
}

impl Squash {
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
        }
    }
}

/// The inverse of the sigmoid, for starting u from an image (clamped away from 0 and 1).
pub fn logit(x: f32) -> f32 {
    let x = x.clamp(1e-3, 1.0 - 1e-3);
    (x / (1.0 - x)).ln()
}
