//! Optimizers that update the image on the GPU from the objective's gradient: Adam, L-BFGS with
//! PyTorch's semantics, and L-BFGS over a sigmoid pixel parameterization that cannot leave [0, 1].

use crate::engine::Work;
use crate::gpu::GpuContext;
use crate::kernels::losses::LOSS_SLOTS;
use crate::kernels::optimizers::{
    AdamParams, AdamStep, LbfgsDirection, LbfgsDots, LbfgsParams, LbfgsSolve, LbfgsStep, LbfgsStorePair,
    SquashBackward, SquashParams, lbfgs_scalars_len,
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
/// evaluation, with no readback. The curvature pairs are kept in pages, each as many pairs as one
/// storage binding holds, so the history is bounded by the device's memory rather than by its
/// largest binding; an iteration is 3 dispatches per page and 2 more.
pub struct Lbfgs {
    ops: Vec<BoundOp>,
    params: LbfgsParams,
    pages: usize,
    state: Vec<wgpu::Buffer>,
}

impl Lbfgs {
    /// Plans the update of `x` (n values) from `grad`, keeping `history` curvature pairs on pages
    /// as large as the device binds. With `line_search`, the objective's losses buffer (total
    /// loss in slot 3), an iteration whose loss did not decrease enough backtracks instead;
    /// without, the semantics are PyTorch's.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ctx: &GpuContext,
        k: &Kernels,
        x: &wgpu::Buffer,
        grad: &wgpu::Buffer,
        n: usize,
        history: usize,
        lr: f32,
        line_search: Option<&wgpu::Buffer>,
    ) -> Self {
        let per_page = Self::pairs_per_binding(n, crate::engine::buffer_limit(ctx)).max(1);
        let params = LbfgsParams::new(n, history.max(1), lr, line_search.is_some());
        // Without a line search the kernel reads no loss, but the binding must hold a buffer.
        let unused = line_search.is_none().then(|| ctx.zeroed_buffer("lbfgs.no_losses", LOSS_SLOTS));
        let losses = line_search.or(unused.as_ref()).expect("a losses buffer");
        Self::paged(ctx, k, x, grad, n, params, losses, per_page)
    }

    /// As [`Lbfgs::new`] with `params` (whose `line_search` says whether `losses` is read), with
    /// at most `pairs_per_page` pairs on each page.
    #[allow(clippy::too_many_arguments)]
    pub fn paged(
        ctx: &GpuContext,
        k: &Kernels,
        x: &wgpu::Buffer,
        grad: &wgpu::Buffer,
        n: usize,
        params: LbfgsParams,
        losses: &wgpu::Buffer,
        pairs_per_page: usize,
    ) -> Self {
        let history = params.history as usize;
        let per_page = pairs_per_page.clamp(1, history);
        let recent = ctx.zeroed_buffer("lbfgs.recent", 2 * n);
        let scalars = ctx.zeroed_buffer("lbfgs.scalars", lbfgs_scalars_len(history, params.groups as usize));
        let pages: Vec<(LbfgsParams, wgpu::Buffer)> = (0..history)
            .step_by(per_page)
            .map(|first| {
                let pairs = per_page.min(history - first);
                (params.page(first, pairs), ctx.zeroed_buffer("lbfgs.pairs", 2 * pairs * n))
            })
            .collect();
        let o = &k.optimizers;
        let mut ops = Vec::with_capacity(3 * pages.len() + 2);
        for (p, page) in &pages {
            ops.push(o.lbfgs_dots(
                ctx,
                LbfgsDots { g: grad, page_in: page, scalars_rw: &scalars, recent_in: &recent },
                p,
            ));
        }
        ops.push(o.lbfgs_solve(ctx, LbfgsSolve { scalars: &scalars, losses }, &params));
        for (p, page) in &pages {
            ops.push(o.lbfgs_store_pair(
                ctx,
                LbfgsStorePair { g: grad, recent_in: &recent, page, scalars_in: &scalars },
                p,
            ));
        }
        for (p, page) in &pages {
            ops.push(o.lbfgs_direction(
                ctx,
                LbfgsDirection { g: grad, page_in: page, scalars_in: &scalars, recent: &recent },
                p,
            ));
        }
        ops.push(o.lbfgs_step(ctx, LbfgsStep { g: grad, scalars_in: &scalars, x, recent: &recent }, &params));
        let page_count = pages.len();
        let state = pages.into_iter().map(|(_, b)| b).chain([recent, scalars]).collect();
        Self { ops, params, pages: page_count, state }
    }

    /// How many curvature pairs of n values one binding of `limit` bytes holds (0: not even one).
    pub fn pairs_per_binding(n: usize, limit: u64) -> usize {
        (limit / (8 * n as u64)) as usize
    }

    /// How many pages the history is kept on.
    pub fn page_count(&self) -> usize {
        self.pages
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

    /// The work of one iteration with a full history of m pairs over P pages: the dot pass reads
    /// g, g_prev and d once per page and the 2m history vectors; the pair store reads g, g_prev
    /// and d and writes a pair; the direction reads the 2m vectors again, d on every page but the
    /// first, and writes d on every page; the step reads g, d and x and writes x and g_prev.
    pub fn work(&self) -> Work {
        let (n, m, pages) = (f64::from(self.params.n), f64::from(self.params.history), self.pages as f64);
        let flops = 2.0 * (5.0 * m + 7.0) * n + 2.0 * (2.0 * m + 2.0) * n + 4.0 * n;
        let vectors = (2.0 * m + 3.0 * pages) + 5.0 + (2.0 * m + 2.0 * pages) + 5.0;
        Work::new(flops, vectors * n)
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
