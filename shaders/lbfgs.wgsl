// L-BFGS with PyTorch's torch.optim.LBFGS semantics (lr, no line search, one evaluation per
// iteration, curvature pairs skipped when yᵀs ≤ 1e-10, first step scaled by min(1, 1/‖g‖₁)),
// entirely on the GPU: the CPU records the same dispatches every iteration and reads nothing.
//
// Buffers: g (the gradient), work = [g_prev | d | y | s] (4·n), hist = [Y_0 … Y_{m-1} | S_0 … S_{m-1}]
// (2·m·n, a ring: logical pair i lives in slot (start + i) mod m), scalars = the state below
// followed by two 256-entry regions of per-workgroup partial sums.

struct LbfgsParams {
    n: u32, history: u32, mode: u32, index: u32,
    a_kind: u32, b_kind: u32, groups: u32, region: u32,
    lr: f32, tolerance_grad: f32, tolerance_change: f32, _pad: u32,
}

@group(0) @binding(0) var<uniform> p: LbfgsParams;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> work: array<f32>;
@group(0) @binding(3) var<storage, read_write> hist: array<f32>;
@group(0) @binding(4) var<storage, read_write> scalars: array<f32>;

// State slots (integers stored as exact floats).
const N_ITER: u32 = 0u;
const COUNT: u32 = 1u;
const START: u32 = 2u;
const STEP: u32 = 3u;
const H_DIAG: u32 = 4u;
const IDLE: u32 = 5u;
const SKIP: u32 = 6u;
const ACCEPTED: u32 = 7u;
const ACCEPTED_SLOT: u32 = 8u;
const RO: u32 = 16u; // ro[slot], then al[i], then coef[i] (i logical), m entries each

fn al_at(i: u32) -> u32 { return RO + p.history + i; }
fn coef_at(i: u32) -> u32 { return RO + 2u * p.history + i; }
fn partials_at() -> u32 { return RO + 3u * p.history; }

// Vector kinds.
const V_G: u32 = 0u;
const V_G_PREV: u32 = 1u;
const V_D: u32 = 2u;
const V_Y: u32 = 3u;
const V_S: u32 = 4u;
const V_HIST_Y: u32 = 5u; // logical pair p.index
const V_HIST_S: u32 = 6u;

fn slot(i: u32) -> u32 {
    return (u32(scalars[START]) + i) % p.history;
}

fn read_vec(kind: u32, j: u32) -> f32 {
    switch kind {
        case 0u: { return g[j]; }
        case 1u, 2u, 3u, 4u: { return work[(kind - 1u) * p.n + j]; }
        case 5u: { return hist[slot(p.index) * p.n + j]; }
        default: { return hist[(p.history + slot(p.index)) * p.n + j]; }
    }
}

fn is_active() -> bool {
    return scalars[IDLE] == 0.0;
}

// Whether logical pair p.index exists (for the per-pair dispatches).
fn pair_exists() -> bool {
    return p.index < u32(scalars[COUNT]);
}

// ---- Reductions: per-workgroup partial sums of a·b (mode 0), |a| (mode 1) or max |a| (mode 2) ----

const OP_DOT: u32 = 0u;
const OP_ABS_SUM: u32 = 1u;
const OP_ABS_MAX: u32 = 2u;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn lbfgs_reduce(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let per_pair = p.a_kind >= V_HIST_Y || p.b_kind >= V_HIST_Y;
    // The convergence test (max |g|) runs every iteration; everything else only when active.
    let skip = (p.mode != OP_ABS_MAX && !is_active()) || (per_pair && !pair_exists());
    var acc = 0.0;
    if !skip {
        for (var j = wid.x * 256u + lid.x; j < p.n; j += p.groups * 256u) {
            let a = read_vec(p.a_kind, j);
            if p.mode == OP_DOT {
                acc += a * read_vec(p.b_kind, j);
            } else if p.mode == OP_ABS_SUM {
                acc += abs(a);
            } else {
                acc = max(acc, abs(a));
            }
        }
    }
    partial[lid.x] = acc;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if lid.x < stride {
            if p.mode == OP_ABS_MAX {
                partial[lid.x] = max(partial[lid.x], partial[lid.x + stride]);
            } else {
                partial[lid.x] += partial[lid.x + stride];
            }
        }
        workgroupBarrier();
    }
    if lid.x == 0u {
        scalars[partials_at() + p.region * 256u + wid.x] = partial[0];
    }
}

fn region_total(region: u32, take_max: bool) -> f32 {
    var acc = 0.0;
    for (var i = 0u; i < p.groups; i++) {
        let v = scalars[partials_at() + region * 256u + i];
        acc = select(acc + v, max(acc, v), take_max);
    }
    return acc;
}

// ---- Scalar steps (one invocation) ----

const S_BEGIN: u32 = 0u;
const S_PUSH: u32 = 1u;
const S_ALPHA: u32 = 2u;
const S_BETA: u32 = 3u;
const S_STEP: u32 = 4u;

@compute @workgroup_size(1)
fn lbfgs_scalar() {
    let m = p.history;
    switch p.mode {
        case 0u: {
            // Converged (max |g| ≤ tolerance_grad): this iteration changes nothing.
            let idle = region_total(0u, true) <= p.tolerance_grad;
            scalars[IDLE] = select(0.0, 1.0, idle);
            if !idle {
                scalars[N_ITER] += 1.0;
            }
            if scalars[N_ITER] == 1.0 && !idle {
                scalars[H_DIAG] = 1.0;
            }
        }
        case 1u: {
            scalars[ACCEPTED] = 0.0;
            if !is_active() || scalars[N_ITER] <= 1.0 {
                return;
            }
            let ys = region_total(0u, false);
            let yy = region_total(1u, false);
            if ys > 1e-10 {
                let count = u32(scalars[COUNT]);
                var s: u32;
                if count < m {
                    s = (u32(scalars[START]) + count) % m;
                    scalars[COUNT] = f32(count + 1u);
                } else {
                    // Full: the oldest pair's slot is reused and the ring advances.
                    s = u32(scalars[START]);
                    scalars[START] = f32((s + 1u) % m);
                }
                scalars[RO + s] = 1.0 / ys;
                scalars[H_DIAG] = ys / yy;
                scalars[ACCEPTED] = 1.0;
                scalars[ACCEPTED_SLOT] = f32(s);
            }
        }
        case 2u: {
            if is_active() && pair_exists() {
                scalars[al_at(p.index)] = region_total(0u, false) * scalars[RO + slot(p.index)];
            }
        }
        case 3u: {
            if is_active() && pair_exists() {
                let be = region_total(0u, false) * scalars[RO + slot(p.index)];
                scalars[coef_at(p.index)] = scalars[al_at(p.index)] - be;
            }
        }
        default: {
            if !is_active() {
                return;
            }
            var t = p.lr;
            if scalars[N_ITER] == 1.0 {
                t = min(1.0, 1.0 / region_total(1u, false)) * p.lr;
            }
            scalars[STEP] = t;
            let gtd = region_total(0u, false);
            // Not a descent direction: PyTorch stops this iteration without moving.
            scalars[SKIP] = select(0.0, 1.0, gtd > -p.tolerance_change);
        }
    }
}

// ---- Elementwise steps over n values (x over 256-wide groups, y over rows of 65535) ----

const E_PREPARE: u32 = 0u;
const E_COMMIT: u32 = 1u;
const E_NEG_G: u32 = 2u;
const E_LOOP1: u32 = 3u;
const E_SCALE: u32 = 4u;
const E_LOOP2: u32 = 5u;

@compute @workgroup_size(256)
fn lbfgs_vector(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = flat_index(gid);
    if j >= p.n || !is_active() {
        return;
    }
    let n = p.n;
    let m = p.history;
    switch p.mode {
        case 0u: {
            // y = g − g_prev, s = d · t (the previous step), from the second iteration on.
            if scalars[N_ITER] > 1.0 {
                work[2u * n + j] = g[j] - work[j];
                work[3u * n + j] = work[n + j] * scalars[STEP];
            }
        }
        case 1u: {
            if scalars[ACCEPTED] == 1.0 {
                let s = u32(scalars[ACCEPTED_SLOT]);
                hist[s * n + j] = work[2u * n + j];
                hist[(m + s) * n + j] = work[3u * n + j];
            }
        }
        case 2u: {
            work[n + j] = -g[j];
        }
        case 3u: {
            if pair_exists() {
                work[n + j] -= scalars[al_at(p.index)] * hist[slot(p.index) * n + j];
            }
        }
        case 4u: {
            work[n + j] *= scalars[H_DIAG];
        }
        default: {
            if pair_exists() {
                work[n + j] += scalars[coef_at(p.index)] * hist[(m + slot(p.index)) * n + j];
            }
        }
    }
}

@group(0) @binding(5) var<storage, read_write> x: array<f32>;

// x += t · d (unless the direction was rejected), then g_prev = g.
@compute @workgroup_size(256)
fn lbfgs_update(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = flat_index(gid);
    if j >= p.n || !is_active() {
        return;
    }
    if scalars[SKIP] == 0.0 {
        x[j] += scalars[STEP] * work[p.n + j];
    }
    work[j] = g[j];
}
