//! `shaders/optim.wgsl` (Adam and the sigmoid parameterization of the bounded image) and
//! `shaders/lbfgs.wgsl` (L-BFGS over a paged history: dot products, the two-loop recursion on
//! them, storing the new pair, the direction, the step).

use super::{BoundOp, Family, Kernel, KernelSpec, Modules, Precision, Shader, UniformParams, WORKGROUP, flat_grid};
use super::{kernel_bindings, uniform_params};
use crate::gpu::GpuContext;

/// Fixed state slots at the start of the L-BFGS scalars (`LBFGS_FIXED_SLOTS` in WGSL).
pub const LBFGS_FIXED_SLOTS: usize = 16;
/// Dot products the L-BFGS dot pass sums per history row (`LBFGS_QUANTITIES` in WGSL).
pub const LBFGS_QUANTITIES: usize = 8;
/// Values each invocation of the L-BFGS dot pass covers at least.
const LBFGS_VALUES_PER_INVOCATION: u32 = 16;

/// Workgroups per row of the L-BFGS dot pass over `n` values (at most 128).
pub fn lbfgs_groups(n: usize) -> u32 {
    (n as u32).div_ceil(LBFGS_VALUES_PER_INVOCATION * WORKGROUP).clamp(1, 128)
}

/// Floats of the L-BFGS scalar state for `history` pairs and `groups` partial sums per
/// quantity: the fixed slots, four per-pair arrays, two m×m matrices, the dot totals and
/// partials.
pub fn lbfgs_scalars_len(history: usize, groups: usize) -> usize {
    LBFGS_FIXED_SLOTS + 4 * history + 2 * history * history + (history + 1) * LBFGS_QUANTITIES * (1 + groups)
}

uniform_params! {
    /// Uniforms of `adam_step`.
    pub struct AdamParams {
        /// Values in the image.
        pub n: u32,
        /// 1: clamp to [0, 1] after the step.
        pub clamp_01: u32,
        /// Padding.
        pub _pad0: u32,
        /// Padding.
        pub _pad1: u32,
        /// Learning rate.
        pub lr: f32,
        /// β1.
        pub beta1: f32,
        /// β2.
        pub beta2: f32,
        /// ε.
        pub eps: f32,
        /// 1 − β1^t.
        pub bias_correction1: f32,
        /// 1 − β2^t.
        pub bias_correction2: f32,
        /// Padding.
        pub _pad2: u32,
        /// Padding.
        pub _pad3: u32,
    }
}

impl AdamParams {
    /// PyTorch's Adam defaults (β1 0.9, β2 0.999, ε 1e-8) over `n` values with learning rate
    /// `lr`, before the first step.
    pub fn new(n: usize, lr: f32, clamp_01: bool) -> Self {
        Self {
            n: n as u32,
            clamp_01: clamp_01 as u32,
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            bias_correction1: 1.0,
            bias_correction2: 1.0,
            ..bytemuck::Zeroable::zeroed()
        }
    }
}

uniform_params! {
    /// Uniforms of `squash` and `squash_backward`.
    pub struct SquashParams {
        /// Values.
        pub n: u32,
        /// Padding to 16 bytes.
        pub _pad0: u32,
        /// Padding.
        pub _pad1: u32,
        /// Padding.
        pub _pad2: u32,
    }
}

impl SquashParams {
    /// The squash over `n` values.
    pub fn new(n: usize) -> Self {
        Self { n: n as u32, _pad0: 0, _pad1: 0, _pad2: 0 }
    }
}

uniform_params! {
    /// Uniforms of the L-BFGS kernels.
    pub struct LbfgsParams {
        /// Values in the optimized vector.
        pub n: u32,
        /// History size m.
        pub history: u32,
        /// Workgroups per row of the dot-product pass ([`lbfgs_groups`]).
        pub groups: u32,
        /// The first ring slot on the dispatch's page of the history.
        pub first_pair: u32,
        /// Learning rate (step length).
        pub lr: f32,
        /// Convergence threshold on max |g|.
        pub tolerance_grad: f32,
        /// Threshold on the directional derivative.
        pub tolerance_change: f32,
        /// Pairs on the dispatch's page.
        pub pairs: u32,
        /// 1: backtrack along d when the loss does not decrease enough (0: PyTorch's semantics).
        pub line_search: u32,
        /// Padding.
        pub _pad0: u32,
        /// Padding.
        pub _pad1: u32,
        /// Padding.
        pub _pad2: u32,
    }
}

impl LbfgsParams {
    /// `torch.optim.LBFGS` defaults (tolerances 1e-7 and 1e-9) for `n` values, `history` pairs
    /// and step length `lr`, backtracking when `line_search`, with the whole history on one page.
    pub fn new(n: usize, history: usize, lr: f32, line_search: bool) -> Self {
        Self {
            n: n as u32,
            history: history as u32,
            groups: lbfgs_groups(n),
            first_pair: 0,
            lr,
            tolerance_grad: 1e-7,
            tolerance_change: 1e-9,
            pairs: history as u32,
            line_search: line_search.into(),
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
        }
    }

    /// The same parameters for the page holding ring slots `first_pair..first_pair + pairs`.
    pub fn page(self, first_pair: usize, pairs: usize) -> Self {
        Self { first_pair: first_pair as u32, pairs: pairs as u32, ..self }
    }
}

kernel_bindings! {
    /// Buffers of `adam_step`.
    pub struct AdamStep {
        /// The image, updated in place.
        x: 1 ReadWrite,
        /// Its gradient.
        g: 2 Read,
        /// First moments.
        m: 3 ReadWrite,
        /// Second moments.
        v: 4 ReadWrite,
    }
}

kernel_bindings! {
    /// Buffers of `squash`.
    pub struct Squash {
        /// The free parameters.
        u: 5 Read,
        /// image = sigmoid(u).
        image: 6 ReadWrite,
    }
}

kernel_bindings! {
    /// Buffers of `squash_backward`.
    pub struct SquashBackward {
        /// image = sigmoid(u).
        image: 6 ReadWrite,
        /// dL/d image.
        g: 2 Read,
        /// dL/du.
        grad_u: 7 ReadWrite,
    }
}

kernel_bindings! {
    /// Buffers of `lbfgs_dots`.
    pub struct LbfgsDots {
        /// The gradient.
        g: 1 Read,
        /// The page of history pairs.
        page_in: 2 Read,
        /// The scalar state (partial sums written).
        scalars_rw: 3 ReadWrite,
        /// g_prev and d.
        recent_in: 8 Read,
    }
}

kernel_bindings! {
    /// Buffers of `lbfgs_solve`.
    pub struct LbfgsSolve {
        /// The scalar state.
        scalars: 4 ReadWrite,
        /// The objective's losses (the total is read by the line search).
        losses: 10 Read,
    }
}

kernel_bindings! {
    /// Buffers of `lbfgs_store_pair`.
    pub struct LbfgsStorePair {
        /// The gradient.
        g: 1 Read,
        /// g_prev and d.
        recent_in: 8 Read,
        /// The page of history pairs, which may receive the new pair.
        page: 5 ReadWrite,
        /// The scalar state.
        scalars_in: 6 Read,
    }
}

kernel_bindings! {
    /// Buffers of `lbfgs_direction`.
    pub struct LbfgsDirection {
        /// The gradient.
        g: 1 Read,
        /// The page of history pairs.
        page_in: 2 Read,
        /// The scalar state.
        scalars_in: 6 Read,
        /// g_prev and d (d accumulated).
        recent: 9 ReadWrite,
    }
}

kernel_bindings! {
    /// Buffers of `lbfgs_step`.
    pub struct LbfgsStep {
        /// The gradient.
        g: 1 Read,
        /// The scalar state.
        scalars_in: 6 Read,
        /// The optimized vector, stepped in place.
        x: 7 ReadWrite,
        /// g_prev (written) and d.
        recent: 9 ReadWrite,
    }
}

/// `adam_step`.
pub const ADAM: KernelSpec = KernelSpec {
    entry: "adam_step",
    shader: Shader::Optim,
    family: Family::Optimizer,
    params: AdamParams::LAYOUT,
    storage: AdamStep::BINDINGS,
    workgroup_size: [WORKGROUP, 1, 1],
    overrides: &[],
};
/// `squash`.
pub const SQUASH: KernelSpec =
    KernelSpec { entry: "squash", params: SquashParams::LAYOUT, storage: Squash::BINDINGS, ..ADAM };
/// `squash_backward`.
pub const SQUASH_BACKWARD: KernelSpec =
    KernelSpec { entry: "squash_backward", storage: SquashBackward::BINDINGS, ..SQUASH };
/// `lbfgs_dots`.
pub const LBFGS_DOTS: KernelSpec = KernelSpec {
    entry: "lbfgs_dots",
    shader: Shader::Lbfgs,
    params: LbfgsParams::LAYOUT,
    storage: LbfgsDots::BINDINGS,
    ..ADAM
};
/// `lbfgs_solve`.
pub const LBFGS_SOLVE: KernelSpec = KernelSpec { entry: "lbfgs_solve", storage: LbfgsSolve::BINDINGS, ..LBFGS_DOTS };
/// `lbfgs_store_pair`.
pub const LBFGS_STORE_PAIR: KernelSpec =
    KernelSpec { entry: "lbfgs_store_pair", storage: LbfgsStorePair::BINDINGS, ..LBFGS_DOTS };
/// `lbfgs_direction`.
pub const LBFGS_DIRECTION: KernelSpec =
    KernelSpec { entry: "lbfgs_direction", storage: LbfgsDirection::BINDINGS, ..LBFGS_DOTS };
/// `lbfgs_step`.
pub const LBFGS_STEP: KernelSpec = KernelSpec { entry: "lbfgs_step", storage: LbfgsStep::BINDINGS, ..LBFGS_DOTS };

/// Every kernel of the two files.
pub const SPECS: &[KernelSpec] =
    &[ADAM, SQUASH, SQUASH_BACKWARD, LBFGS_DOTS, LBFGS_SOLVE, LBFGS_STORE_PAIR, LBFGS_DIRECTION, LBFGS_STEP];

/// The kernels of `optim.wgsl` and `lbfgs.wgsl`.
pub struct Optimizers {
    adam: Kernel,
    squash: Kernel,
    squash_backward: Kernel,
    lbfgs_dots: Kernel,
    lbfgs_solve: Kernel,
    lbfgs_store_pair: Kernel,
    lbfgs_direction: Kernel,
    lbfgs_step: Kernel,
}

impl Optimizers {
    /// Compiles the files' kernels.
    pub fn new(ctx: &GpuContext) -> Self {
        let optim = Modules::new(Shader::Optim, Precision::F32);
        let lbfgs = Modules::new(Shader::Lbfgs, Precision::F32);
        Self {
            adam: optim.kernel(ctx, ADAM),
            squash: optim.kernel(ctx, SQUASH),
            squash_backward: optim.kernel(ctx, SQUASH_BACKWARD),
            lbfgs_dots: lbfgs.kernel(ctx, LBFGS_DOTS),
            lbfgs_solve: lbfgs.kernel(ctx, LBFGS_SOLVE),
            lbfgs_store_pair: lbfgs.kernel(ctx, LBFGS_STORE_PAIR),
            lbfgs_direction: lbfgs.kernel(ctx, LBFGS_DIRECTION),
            lbfgs_step: lbfgs.kernel(ctx, LBFGS_STEP),
        }
    }

    /// One Adam step over `p.n` values.
    pub fn adam(&self, ctx: &GpuContext, buffers: AdamStep, p: &AdamParams) -> BoundOp {
        self.adam.bind(ctx, p, &buffers.buffers(), flat_grid(p.n as usize))
    }

    /// image = sigmoid(u) over `p.n` values.
    pub fn squash(&self, ctx: &GpuContext, buffers: Squash, p: &SquashParams) -> BoundOp {
        self.squash.bind(ctx, p, &buffers.buffers(), flat_grid(p.n as usize))
    }

    /// dL/du from dL/d image over `p.n` values.
    pub fn squash_backward(&self, ctx: &GpuContext, buffers: SquashBackward, p: &SquashParams) -> BoundOp {
        self.squash_backward.bind(ctx, p, &buffers.buffers(), flat_grid(p.n as usize))
    }

    /// The dot products of the page `p` names: `p.groups` workgroups for each of its pairs and,
    /// on the first page, the current vectors.
    pub fn lbfgs_dots(&self, ctx: &GpuContext, buffers: LbfgsDots, p: &LbfgsParams) -> BoundOp {
        let rows = p.pairs + u32::from(p.first_pair == 0);
        self.lbfgs_dots.bind(ctx, p, &buffers.buffers(), [p.groups, rows, 1])
    }

    /// The two-loop recursion on the dot products: one workgroup.
    pub fn lbfgs_solve(&self, ctx: &GpuContext, buffers: LbfgsSolve, p: &LbfgsParams) -> BoundOp {
        self.lbfgs_solve.bind(ctx, p, &buffers.buffers(), [1, 1, 1])
    }

    /// Stores the accepted pair over `p.n` values if its slot is on the page `p` names.
    pub fn lbfgs_store_pair(&self, ctx: &GpuContext, buffers: LbfgsStorePair, p: &LbfgsParams) -> BoundOp {
        self.lbfgs_store_pair.bind(ctx, p, &buffers.buffers(), flat_grid(p.n as usize))
    }

    /// Adds the terms of the page `p` names to the direction over `p.n` values.
    pub fn lbfgs_direction(&self, ctx: &GpuContext, buffers: LbfgsDirection, p: &LbfgsParams) -> BoundOp {
        self.lbfgs_direction.bind(ctx, p, &buffers.buffers(), flat_grid(p.n as usize))
    }

    /// The step along the direction over `p.n` values.
    pub fn lbfgs_step(&self, ctx: &GpuContext, buffers: LbfgsStep, p: &LbfgsParams) -> BoundOp {
        self.lbfgs_step.bind(ctx, p, &buffers.buffers(), flat_grid(p.n as usize))
    }
}
