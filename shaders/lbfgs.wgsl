// L-BFGS with PyTorch's torch.optim.LBFGS semantics (lr, no line search, one evaluation per
// iteration, curvature pairs skipped when yᵀs ≤ 1e-10, first step scaled by min(1, 1/‖g‖₁)),
// entirely on the GPU with no readback. The curvature pairs live in pages (buffers of as many
// pairs as one storage binding holds), so a long history or a large image never needs a binding
// larger than the device allows. One iteration is, for P pages:
//   lbfgs_dots        per page: every dot product of the two-loop recursion that involves the
//                     page's pairs (the first page also the current vectors'), as per-workgroup
//                     partial sums;
//   lbfgs_solve       one workgroup: sums the partials, keeps the history's dot-product matrices,
//                     and runs the two-loop recursion on scalars only, which leaves the direction
//                     as d = c_g·g + Σ_i (c_s[i]·s_i + c_y[i]·y_i);
//   lbfgs_store_pair  per page: stores the accepted pair if its slot is on the page;
//   lbfgs_direction   per page: adds the page's terms to d (the first page starts from c_g·g);
//   lbfgs_step        x += t·d, g_prev = g.
// With line_search set, an iteration whose loss does not decrease enough (Armijo's condition on
// the total loss the objective left in `losses`) is a backtrack instead: the history, d and
// g_prev stay, and x moves back along d to a shorter step (the minimizer of the quadratic through
// the two losses and the slope, within [0.1 t, 0.5 t]), evaluated next iteration. So one bad
// curvature estimate cannot throw the image far away; without it, the semantics are PyTorch's.
// The recursion is linear in the vectors, so running it on their dot products gives the same
// direction as PyTorch's vector loop (up to rounding) for a fraction of the memory traffic.
//
// Buffers: g (the gradient); a page = [Y_a … Y_{a+k-1} | S_a … S_{a+k-1}] (2k·n, pairs a..a+k of
// the ring: logical pair i, oldest first, lives in slot (start + i) mod m); recent = [g_prev | d]
// (2n); scalars = the state below, then per-slot arrays, the m×m matrices, the dot totals and the
// partial sums.

struct LbfgsParams {
    n: u32, history: u32, groups: u32, first_pair: u32,
    lr: f32, tolerance_grad: f32, tolerance_change: f32, pairs: u32,
    line_search: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: LbfgsParams;
@group(0) @binding(1) var<storage, read> g: array<f32>;

// State slots (integers stored as exact floats).
const N_ITER: u32 = 0u;
const COUNT: u32 = 1u;
const START: u32 = 2u;
const STEP: u32 = 3u;
const STEP_PREV: u32 = 4u;
const H_DIAG: u32 = 5u;
const IDLE: u32 = 6u;
const SKIP: u32 = 7u;
const ACCEPTED: u32 = 8u;
const ACCEPTED_SLOT: u32 = 9u;
const COEF_G: u32 = 10u;
const LOSS_PREV: u32 = 11u; // the loss at the last accepted point
const GTD_PREV: u32 = 12u; // g · d there
const BACKTRACK: u32 = 13u; // 1: this iteration moves x back along d
const DELTA: u32 = 14u; // the change of the step along d of a backtrack

// Armijo's sufficient-decrease constant, and the slot of the total loss in `losses`.
const ARMIJO_C: f32 = 1e-4;
const TOTAL_LOSS_SLOT: u32 = 3u;

// Per-slot arrays (m entries each) after the state, then the matrices, totals and partials.
fn rho_at(s: u32) -> u32 { return LBFGS_FIXED_SLOTS + s; }
fn coef_s_at(s: u32) -> u32 { return LBFGS_FIXED_SLOTS + p.history + s; }
fn coef_y_at(s: u32) -> u32 { return LBFGS_FIXED_SLOTS + 2u * p.history + s; }
fn alpha_at(s: u32) -> u32 { return LBFGS_FIXED_SLOTS + 3u * p.history + s; }
// S_a · Y_b and Y_a · Y_b by slot.
fn sy_at(a: u32, b: u32) -> u32 { return LBFGS_FIXED_SLOTS + 4u * p.history + a * p.history + b; }
fn yy_at(a: u32, b: u32) -> u32 { return LBFGS_FIXED_SLOTS + (4u + p.history) * p.history + a * p.history + b; }
// Dot totals: row r < m is history slot r, row m the current vectors; LBFGS_QUANTITIES per row.
fn total_at(row: u32, q: u32) -> u32 { return LBFGS_FIXED_SLOTS + (4u + 2u * p.history) * p.history + row * LBFGS_QUANTITIES + q; }
fn partial_at(row: u32, q: u32, group: u32) -> u32 {
    return total_at(p.history + 1u, 0u) + (row * LBFGS_QUANTITIES + q) * p.groups + group;
}

// Quantities of a history row (slot r): dots of the current vectors with Y_r and S_r.
const G_Y: u32 = 0u;
const G_S: u32 = 1u;
const NEW_Y_Y: u32 = 2u; // y_new · Y_r
const NEW_Y_S: u32 = 3u; // y_new · S_r
const NEW_S_Y: u32 = 4u; // s_new · Y_r
// Quantities of the current row (row m).
const G_G: u32 = 0u;
const Y_Y: u32 = 1u;
const Y_S: u32 = 2u;
const G_NEW_Y: u32 = 3u;
const G_NEW_S: u32 = 4u;
const ABS_SUM: u32 = 5u;
const ABS_MAX: u32 = 6u;

// Indices on this dispatch's page of the ring slot `slot` (which must be on it), and in recent.
fn y_at(slot: u32, j: u32) -> u32 { return (slot - p.first_pair) * p.n + j; }
fn s_at(slot: u32, j: u32) -> u32 { return (p.pairs + slot - p.first_pair) * p.n + j; }
fn g_prev_at(j: u32) -> u32 { return j; }
fn d_at(j: u32) -> u32 { return p.n + j; }

fn on_page(slot: u32) -> bool {
    return slot >= p.first_pair && slot < p.first_pair + p.pairs;
}

// Logical index (0 = oldest) of the pair in `slot`.
fn logical(slot: u32, start: u32) -> u32 {
    return (slot + p.history - start) % p.history;
}

// ---- lbfgs_dots: grid [groups, pairs (+ 1 on the first page)]; row y < pairs pairs the current
// vectors with the page's slot first_pair + y, row y = pairs is the current row (row m) ----

@group(0) @binding(2) var<storage, read> page_in: array<f32>;
@group(0) @binding(3) var<storage, read_write> scalars_rw: array<f32>;
@group(0) @binding(8) var<storage, read> recent_in: array<f32>;

// Invocations per quantity in the dot pass's final sums, and the entries each of them adds.
const LANES: u32 = WORKGROUP / LBFGS_QUANTITIES;
const PER_LANE: u32 = WORKGROUP / LANES;

var<workgroup> partials: array<array<f32, LBFGS_QUANTITIES>, WORKGROUP>;
var<workgroup> stage: array<array<f32, LANES>, LBFGS_QUANTITIES>;

@compute @workgroup_size(WORKGROUP)
fn lbfgs_dots(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let current = wid.y == p.pairs;
    let row = select(p.first_pair + wid.y, p.history, current);
    let count = u32(scalars_rw[COUNT]);
    // y and s of the previous step exist from the second iteration on.
    let has_pair = scalars_rw[N_ITER] >= 1.0;
    let t_prev = scalars_rw[STEP];
    var acc: array<f32, LBFGS_QUANTITIES>;
    let row_used = current || logical(row, u32(scalars_rw[START])) < count;
    if row_used {
        for (var j = wid.x * WORKGROUP + lid.x; j < p.n; j += p.groups * WORKGROUP) {
            let gj = g[j];
            var y = 0.0;
            var s = 0.0;
            if has_pair {
                y = gj - recent_in[g_prev_at(j)];
                s = t_prev * recent_in[d_at(j)];
            }
            if current {
                acc[G_G] += gj * gj;
                acc[Y_Y] += y * y;
                acc[Y_S] += y * s;
                acc[G_NEW_Y] += gj * y;
                acc[G_NEW_S] += gj * s;
                acc[ABS_SUM] += abs(gj);
                acc[ABS_MAX] = max(acc[ABS_MAX], abs(gj));
            } else {
                let yr = page_in[y_at(row, j)];
                let sr = page_in[s_at(row, j)];
                acc[G_Y] += gj * yr;
                acc[G_S] += gj * sr;
                acc[NEW_Y_Y] += y * yr;
                acc[NEW_Y_S] += y * sr;
                acc[NEW_S_Y] += s * yr;
            }
        }
    }
    // Workgroup sums in three barriers: LANES invocations per quantity each add PER_LANE entries,
    // then one invocation per quantity adds those LANES.
    partials[lid.x] = acc;
    workgroupBarrier();
    let q = lid.x / LANES;
    let lane = lid.x % LANES;
    let take_max = current && q == ABS_MAX;
    var v = 0.0;
    for (var i = 0u; i < PER_LANE; i++) {
        let e = partials[lane * PER_LANE + i][q];
        v = select(v + e, max(v, e), take_max);
    }
    workgroupBarrier();
    stage[q][lane] = v;
    workgroupBarrier();
    if lid.x < LBFGS_QUANTITIES {
        var total = 0.0;
        for (var i = 0u; i < LANES; i++) {
            let e = stage[lid.x][i];
            total = select(total + e, max(total, e), current && lid.x == ABS_MAX);
        }
        scalars_rw[partial_at(row, lid.x, wid.x)] = total;
    }
}

// ---- lbfgs_solve: one workgroup ----

@group(0) @binding(4) var<storage, read_write> scalars: array<f32>;
@group(0) @binding(10) var<storage, read> losses: array<f32>;

fn sy(a: u32, b: u32) -> f32 { return scalars[sy_at(a, b)]; }
fn yy(a: u32, b: u32) -> f32 { return scalars[yy_at(a, b)]; }
fn total(row: u32, q: u32) -> f32 { return scalars[total_at(row, q)]; }

@compute @workgroup_size(WORKGROUP)
fn lbfgs_solve(@builtin(local_invocation_id) lid: vec3<u32>) {
    let m = p.history;
    // Totals of the partial sums, each in a fixed order.
    for (var i = lid.x; i < (m + 1u) * LBFGS_QUANTITIES; i += WORKGROUP) {
        let row = i / LBFGS_QUANTITIES;
        let q = i % LBFGS_QUANTITIES;
        let take_max = row == m && q == ABS_MAX;
        var acc = 0.0;
        for (var w = 0u; w < p.groups; w++) {
            let v = scalars[partial_at(row, q, w)];
            acc = select(acc + v, max(acc, v), take_max);
        }
        scalars[total_at(row, q)] = acc;
    }
    storageBarrier();
    if lid.x != 0u {
        return;
    }
    // Converged (max |g| ≤ tolerance_grad): this iteration changes nothing.
    let idle = total(m, ABS_MAX) <= p.tolerance_grad;
    scalars[IDLE] = select(0.0, 1.0, idle);
    scalars[ACCEPTED] = 0.0;
    scalars[BACKTRACK] = 0.0;
    if idle {
        return;
    }
    let f = losses[TOTAL_LOSS_SLOT];
    if p.line_search != 0u && scalars[N_ITER] >= 1.0 && scalars[SKIP] == 0.0 {
        let t = scalars[STEP];
        let f0 = scalars[LOSS_PREV];
        let gtd0 = scalars[GTD_PREV];
        if !(f <= f0 + ARMIJO_C * t * gtd0) {
            var t_new = 0.5 * t;
            let curvature = 2.0 * (f - f0 - gtd0 * t);
            if abs(f) <= 3.0e38 && curvature > 0.0 {
                t_new = clamp(-gtd0 * t * t / curvature, 0.1 * t, 0.5 * t);
            }
            scalars[BACKTRACK] = 1.0;
            scalars[DELTA] = t_new - t;
            scalars[STEP] = t_new;
            return;
        }
    }
    scalars[N_ITER] += 1.0;
    scalars[STEP_PREV] = scalars[STEP];
    let first = scalars[N_ITER] == 1.0;
    var count = u32(scalars[COUNT]);
    var start = u32(scalars[START]);
    // g · y_i and g · s_i by slot (the accepted slot's from the current row).
    var accepted_slot = m;
    if first {
        scalars[H_DIAG] = 1.0;
    } else {
        let ys = total(m, Y_S);
        if ys > 1e-10 {
            var s: u32;
            if count < m {
                s = (start + count) % m;
                count += 1u;
            } else {
                // Full: the oldest pair's slot is reused and the ring advances.
                s = start;
                start = (start + 1u) % m;
            }
            accepted_slot = s;
            scalars[rho_at(s)] = 1.0 / ys;
            scalars[H_DIAG] = ys / total(m, Y_Y);
            // The new pair's row and column of S·Y and Y·Y.
            for (var l = 0u; l < count; l++) {
                let b = (start + l) % m;
                if b == s {
                    continue;
                }
                scalars[sy_at(s, b)] = total(b, NEW_S_Y);
                scalars[sy_at(b, s)] = total(b, NEW_Y_S);
                scalars[yy_at(s, b)] = total(b, NEW_Y_Y);
                scalars[yy_at(b, s)] = total(b, NEW_Y_Y);
            }
            scalars[sy_at(s, s)] = ys;
            scalars[yy_at(s, s)] = total(m, Y_Y);
            scalars[COUNT] = f32(count);
            scalars[START] = f32(start);
            scalars[ACCEPTED] = 1.0;
            scalars[ACCEPTED_SLOT] = f32(s);
        }
    }
    // Two-loop recursion on coefficients. Loop 1: q = −g − Σ α_i y_i (newest to oldest),
    // α_i = ρ_i s_i·q. d = H·q. Loop 2 (oldest to newest): β_i = ρ_i y_i·d, d += (α_i − β_i) s_i.
    // c_y[i] holds q's (then d's) y_i coefficient, c_s[i] d's s_i coefficient.
    for (var l = 0u; l < count; l++) {
        let i = (start + l) % m;
        scalars[coef_s_at(i)] = 0.0;
        scalars[coef_y_at(i)] = 0.0;
    }
    for (var l = count; l > 0u; l--) {
        let i = (start + l - 1u) % m;
        var sq = -g_dot_s(i, accepted_slot);
        for (var k = l; k < count; k++) {
            let j = (start + k) % m;
            sq += scalars[coef_y_at(j)] * sy(i, j);
        }
        let alpha = scalars[rho_at(i)] * sq;
        scalars[alpha_at(i)] = alpha;
        scalars[coef_y_at(i)] = -alpha;
    }
    let h = scalars[H_DIAG];
    let c_g = -h;
    for (var l = 0u; l < count; l++) {
        let i = (start + l) % m;
        scalars[coef_y_at(i)] *= h;
    }
    for (var l = 0u; l < count; l++) {
        let i = (start + l) % m;
        var yd = c_g * g_dot_y(i, accepted_slot);
        for (var k = 0u; k < count; k++) {
            let j = (start + k) % m;
            yd += scalars[coef_y_at(j)] * yy(i, j);
            if k < l {
                yd += scalars[coef_s_at(j)] * sy(j, i);
            }
        }
        let beta = scalars[rho_at(i)] * yd;
        scalars[coef_s_at(i)] = scalars[alpha_at(i)] - beta;
    }
    scalars[COEF_G] = c_g;
    var t = p.lr;
    if first {
        t = min(1.0, 1.0 / total(m, ABS_SUM)) * p.lr;
    }
    scalars[STEP] = t;
    // g · d: not a descent direction means PyTorch stops this iteration without moving.
    var gtd = c_g * total(m, G_G);
    for (var l = 0u; l < count; l++) {
        let i = (start + l) % m;
        gtd += scalars[coef_y_at(i)] * g_dot_y(i, accepted_slot) + scalars[coef_s_at(i)] * g_dot_s(i, accepted_slot);
    }
    scalars[SKIP] = select(0.0, 1.0, gtd > -p.tolerance_change);
    scalars[LOSS_PREV] = f;
    scalars[GTD_PREV] = gtd;
}

// g · s_i and g · y_i: the new pair's from the current row, the others' from their own rows.
fn g_dot_s(slot: u32, accepted_slot: u32) -> f32 {
    return select(total(slot, G_S), total(p.history, G_NEW_S), slot == accepted_slot);
}

fn g_dot_y(slot: u32, accepted_slot: u32) -> f32 {
    return select(total(slot, G_Y), total(p.history, G_NEW_Y), slot == accepted_slot);
}

// ---- lbfgs_store_pair, lbfgs_direction, lbfgs_step: flat dispatches (see flat_index) ----

@group(0) @binding(5) var<storage, read_write> page: array<f32>;
@group(0) @binding(6) var<storage, read> scalars_in: array<f32>;
@group(0) @binding(7) var<storage, read_write> x: array<f32>;
@group(0) @binding(9) var<storage, read_write> recent: array<f32>;

// Stores the pair accepted this iteration (y = g − g_prev, s = t_prev·d) when its slot is on the
// page; runs on every page before lbfgs_direction replaces d.
@compute @workgroup_size(WORKGROUP)
fn lbfgs_store_pair(@builtin(global_invocation_id) gid: vec3<u32>) {
    for (var nth = 0u; nth < FLAT_VALUES; nth++) {
        lbfgs_store_pair_at(flat_index(gid) * FLAT_VALUES + nth);
    }
}

// One value of lbfgs_store_pair.
fn lbfgs_store_pair_at(j: u32) {
    let slot = u32(scalars_in[ACCEPTED_SLOT]);
    if j >= p.n || scalars_in[IDLE] != 0.0 || scalars_in[ACCEPTED] != 1.0 || !on_page(slot) {
        return;
    }
    page[y_at(slot, j)] = g[j] - recent_in[g_prev_at(j)];
    page[s_at(slot, j)] = scalars_in[STEP_PREV] * recent_in[d_at(j)];
}

// d = c_g·g (first page) or d so far, plus the page's terms, oldest pair first (a backtrack
// keeps d).
@compute @workgroup_size(WORKGROUP)
fn lbfgs_direction(@builtin(global_invocation_id) gid: vec3<u32>) {
    for (var nth = 0u; nth < FLAT_VALUES; nth++) {
        lbfgs_direction_at(flat_index(gid) * FLAT_VALUES + nth);
    }
}

// One value of lbfgs_direction.
fn lbfgs_direction_at(j: u32) {
    if j >= p.n || scalars_in[IDLE] != 0.0 || scalars_in[BACKTRACK] != 0.0 {
        return;
    }
    var d: f32;
    if p.first_pair == 0u {
        d = scalars_in[COEF_G] * g[j];
    } else {
        d = recent[d_at(j)];
    }
    let count = u32(scalars_in[COUNT]);
    let start = u32(scalars_in[START]);
    for (var l = 0u; l < count; l++) {
        let i = (start + l) % p.history;
        if on_page(i) {
            d += scalars_in[coef_y_at(i)] * page_in[y_at(i, j)] + scalars_in[coef_s_at(i)] * page_in[s_at(i, j)];
        }
    }
    recent[d_at(j)] = d;
}

// x += t·d (unless the direction was rejected), then g_prev = g; a backtrack moves x along d by
// the step's change and keeps g_prev (the gradient at the accepted point).
@compute @workgroup_size(WORKGROUP)
fn lbfgs_step(@builtin(global_invocation_id) gid: vec3<u32>) {
    for (var nth = 0u; nth < FLAT_VALUES; nth++) {
        lbfgs_step_at(flat_index(gid) * FLAT_VALUES + nth);
    }
}

// One value of lbfgs_step.
fn lbfgs_step_at(j: u32) {
    if j >= p.n || scalars_in[IDLE] != 0.0 {
        return;
    }
    if scalars_in[BACKTRACK] != 0.0 {
        x[j] += scalars_in[DELTA] * recent[d_at(j)];
        return;
    }
    if scalars_in[SKIP] == 0.0 {
        x[j] += scalars_in[STEP] * recent[d_at(j)];
    }
    recent[g_prev_at(j)] = g[j];
}
