// 1×1 convolution as a tiled matrix product, and everything else shaped like one:
//   out[m][n] = act(alpha · Σ_k A[m][k] · B[k][n] + bias[m]) (+ out[m][n])
// A is the weights ([m][k], or read transposed), B the input ([k][n], or read transposed, or
// multiplied by the activation derivative of a pre-activation for the backward pass).
// Forward: A = weights [out_c][in_c] followed by out_c biases, B = input [in_c][pixels].
// Backward (input gradient): A = weights transposed, B = dL/dY ⊙ act'(Z), accumulated.
// Gram matrices: A = F [c][pixels], B = Fᵀ (F read transposed), alpha = 1/(c·pixels), with the
// reduction split over workgroups along z (k_chunk values each) into separate partial products.
// A symmetric product (FLAG_SYMMETRIC) computes only the tiles on and above the diagonal, one
// workgroup each along x, and writes each off-diagonal tile to both places.
// Each TILE_SIDE×TILE_SIDE workgroup computes a (TILE_SIDE·ROWS)×(TILE_SIDE·COLS) output tile,
// each invocation a ROWS×COLS block of it, stepping through k KSTEP at a time via workgroup memory. ROWS and COLS (1, 2 or 4)
// are chosen per product so that narrow layers don't pad their tiles with unused rows.
// Bindings typed `NAME_t` hold activations, stored as f32 or f16 (aliases generated per kernel,
// `storage_types` in src/kernels/mod.rs; a Gram product's A is features, its output f32); every
// access converts, and arithmetic is f32.

override ROWS: u32 = 4u;
override COLS: u32 = 4u;

struct PointwiseParams {
    m: u32, k: u32, n: u32, act: u32,
    cap: f32, flags: u32, alpha: f32, k_chunk: u32,
}

@group(0) @binding(0) var<uniform> p: PointwiseParams;
@group(0) @binding(1) var<storage, read> input: array<input_t>;
@group(0) @binding(2) var<storage, read> weights: array<weights_t>;
@group(0) @binding(3) var<storage, read_write> output: array<output_t>;
// Pre-activation to store (STORE_PREACT), or pre-activation whose activation derivative
// multiplies B (GRAD_ACT_B). A 1-element dummy otherwise.
@group(0) @binding(4) var<storage, read_write> aux: array<aux_t>;

var<workgroup> a_tile: array<f32, KSTEP * TILE>; // [KSTEP][TILE]: a_tile[k * TILE + m]
var<workgroup> b_tile: array<f32, KSTEP * TILE>; // [KSTEP][TILE]: b_tile[k * TILE + n]

// Writes entry (row, col) of the product from z = alpha · Σ (before the bias), honouring every
// flag: bias, activation (none with GRAD_ACT_B), pre-activation store, accumulation.
fn store(out_base: u32, row: u32, col: u32, z_in: f32) {
    let idx = row * p.n + col;
    var z = z_in;
    if has(FLAG_BIAS) {
        z += f32(weights[p.m * p.k + row]);
    }
    var v = z;
    if !has(FLAG_GRAD_ACT_B) {
        v = activate(z, p.act, p.cap);
    }
    if has(FLAG_STORE_PREACT) {
        aux[idx] = aux_t(z);
    }
    if has(FLAG_ACCUMULATE) {
        v += f32(output[out_base + idx]);
    }
    output[out_base + idx] = output_t(v);
}

// The reduction range of workgroup layer z and where its result goes: all of k into the
// output, or (k_chunk ≠ 0) chunk z into partial product z at offset z·m·n.
struct KRange {
    begin: u32,
    end: u32,
    out_base: u32,
}

fn k_range(z: u32) -> KRange {
    if p.k_chunk == 0u {
        return KRange(0u, p.k, 0u);
    }
    let begin = z * p.k_chunk;
    return KRange(begin, min(p.k, begin + p.k_chunk), z * p.m * p.n);
}

fn has(flag: u32) -> bool {
    return (p.flags & flag) != 0u;
}

fn load_a(m: u32, k: u32, k_end: u32) -> f32 {
    if m >= p.m || k >= k_end {
        return 0.0;
    }
    if has(FLAG_TRANSPOSE_A) {
        return f32(weights[k * p.m + m]);
    }
    return f32(weights[m * p.k + k]);
}

fn load_b(k: u32, n: u32, k_end: u32) -> f32 {
    if k >= k_end || n >= p.n {
        return 0.0;
    }
    var v: f32;
    if has(FLAG_TRANSPOSE_B) {
        v = f32(input[n * p.k + k]);
    } else {
        v = f32(input[k * p.n + n]);
    }
    if has(FLAG_GRAD_ACT_B) {
        v *= activate_grad(f32(aux[k * p.n + n]), p.act, p.cap);
    }
    return v;
}

@compute @workgroup_size(TILE_SIDE, TILE_SIDE)
fn pointwise_forward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let tile_m = TILE_SIDE * ROWS;
    let tile_n = TILE_SIDE * COLS;
    var tile_row = wid.y;
    var tile_col = wid.x;
    if has(FLAG_SYMMETRIC) {
        // Workgroup x counts the tiles (row ≤ column) row by row.
        let tiles = (p.m + tile_m - 1u) / tile_m;
        tile_row = 0u;
        tile_col = wid.x;
        while tile_col >= tiles - tile_row {
            tile_col -= tiles - tile_row;
            tile_row++;
        }
        tile_col += tile_row;
    }
    let m0 = tile_row * tile_m;
    let n0 = tile_col * tile_n;
    let range = k_range(wid.z);
    let k_begin = range.begin;
    let k_end = range.end;
    let out_base = range.out_base;
    let tid = lid.y * TILE_SIDE + lid.x;
    // acc[i][j]: row i, column j of this invocation's block (columns as vector lanes).
    var acc: array<vec4<f32>, 4>;
    for (var k0 = k_begin; k0 < k_end; k0 += KSTEP) {
        // Consecutive invocations read consecutive addresses of whichever layout is stored.
        for (var r = 0u; r < ROWS; r++) {
            let e = tid + r * TILE_SIDE * TILE_SIDE;
            if has(FLAG_TRANSPOSE_A) {
                a_tile[(e / tile_m) * TILE + e % tile_m] = load_a(m0 + e % tile_m, k0 + e / tile_m, k_end);
            } else {
                a_tile[(e % KSTEP) * TILE + e / KSTEP] = load_a(m0 + e / KSTEP, k0 + e % KSTEP, k_end);
            }
        }
        for (var r = 0u; r < COLS; r++) {
            let e = tid + r * TILE_SIDE * TILE_SIDE;
            if has(FLAG_TRANSPOSE_B) {
                b_tile[(e % KSTEP) * TILE + e / KSTEP] = load_b(k0 + e % KSTEP, n0 + e / KSTEP, k_end);
            } else {
                b_tile[(e / tile_n) * TILE + e % tile_n] = load_b(k0 + e / tile_n, n0 + e % tile_n, k_end);
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < KSTEP; kk++) {
            let row = kk * TILE;
            var b = vec4<f32>(0.0);
            for (var j = 0u; j < COLS; j++) {
                b[j] = b_tile[row + lid.x + TILE_SIDE * j];
            }
            for (var i = 0u; i < ROWS; i++) {
                acc[i] += a_tile[row + lid.y + TILE_SIDE * i] * b;
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < ROWS; i++) {
        let m = m0 + lid.y + TILE_SIDE * i;
        for (var j = 0u; j < COLS; j++) {
            let n = n0 + lid.x + TILE_SIDE * j;
            if m >= p.m || n >= p.n {
                continue;
            }
            let z = p.alpha * acc[i][j];
            store(out_base, m, n, z);
            // The mirror tile of a symmetric product gets the same treatment.
            if has(FLAG_SYMMETRIC) && tile_row != tile_col {
                store(out_base, n, m, z);
            }
        }
    }
}

// ---- The residual connection: blockN = blockN.project + block input ----

struct ResidualParams {
    // Values; backward: 1 adds the addend into sum, 0 copies it there.
    n: u32, accumulate: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> rp: ResidualParams;
@group(0) @binding(5) var<storage, read> addend: array<addend_t>;
@group(0) @binding(6) var<storage, read_write> sum: array<sum_t>;

// Forward: sum = input + addend (the projection plus the block input), rp.n values in a flat
// dispatch (see flat_index).
@compute @workgroup_size(WORKGROUP)
fn residual_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    for (var nth = 0u; nth < FLAT_VALUES; nth++) {
        residual_forward_at(flat_index(gid) * FLAT_VALUES + nth);
    }
}

// One value of residual_forward.
fn residual_forward_at(i: u32) {
    if i < rp.n {
        sum[i] = sum_t(f32(input[i]) + f32(addend[i]));
    }
}

// Backward: each summand's gradient gains the sum's (sum += addend, addend = dL/d blockN).
@compute @workgroup_size(WORKGROUP)
fn residual_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    for (var nth = 0u; nth < FLAT_VALUES; nth++) {
        residual_backward_at(flat_index(gid) * FLAT_VALUES + nth);
    }
}

// One value of residual_backward.
fn residual_backward_at(i: u32) {
    if i < rp.n {
        if rp.accumulate == 1u {
            sum[i] = sum_t(f32(sum[i]) + f32(addend[i]));
        } else {
            sum[i] = sum_t(f32(addend[i]));
        }
    }
}

// ---- The products shaped for CPU-like adapters ----
// No workgroup memory and no barrier (on lavapipe a barrier is a coroutine switch), and few
// loads per multiply-add: every value is read as part of a vec4. A's values depend only on the
// workgroup and the step, so every lane reads the same address; B's are one vec4 per lane.
// LANE_ROWS output rows per workgroup, kept in registers. Requires k % 4 = 0, and n % 4 = 0
// (pointwise_lanes) or m % 4 = 0 with TRANSPOSE_A; the Rust side checks.
override LANE_ROWS: u32 = 8u;

@group(0) @binding(1) var<storage, read> input4: array<vec4<input_t>>;
@group(0) @binding(2) var<storage, read> weights4: array<vec4<weights_t>>;
@group(0) @binding(4) var<storage, read_write> aux4: array<vec4<aux_t>>;

// Rows m0 + 4j .. m0 + 4j + 3 of A at reduction index k (A transposed: W[k][m] is stored).
fn a_column4(m0: u32, j: u32, k: u32) -> vec4<f32> {
    // Rows past m (in the last workgroup) read the last four instead; they are never stored.
    return vec4<f32>(weights4[(k * p.m + min(m0 + 4u * j, p.m - 4u)) / 4u]);
}

// Entry (row, col) of the product as `store` does it, the bias and the pre-activation through
// the vec4 views this entry point binds.
fn store_lanes(out_base: u32, row: u32, col: u32, z_in: f32) {
    let idx = row * p.n + col;
    var z = z_in;
    if has(FLAG_BIAS) {
        let b = p.m * p.k + row;
        z += f32(weights4[b / 4u][b % 4u]);
    }
    var v = z;
    if !has(FLAG_GRAD_ACT_B) {
        v = activate(z, p.act, p.cap);
    }
    if has(FLAG_STORE_PREACT) {
        aux4[idx / 4u][idx % 4u] = aux_t(z);
    }
    if has(FLAG_ACCUMULATE) {
        v += f32(output[out_base + idx]);
    }
    output[out_base + idx] = output_t(v);
}

// B stored [k][n]: each invocation computes columns 4x .. 4x + 3 of LANE_ROWS rows.
@compute @workgroup_size(PRODUCT_LANES)
fn pointwise_lanes(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let n4 = min(gid.x, p.n / 4u - 1u);
    let m0 = wid.y * LANE_ROWS;
    let row4 = p.n / 4u;
    let transpose_a = has(FLAG_TRANSPOSE_A);
    let grad_act = has(FLAG_GRAD_ACT_B);
    var acc: array<vec4<f32>, MAX_LANE_ROWS>;
    for (var k = 0u; k < p.k; k += 4u) {
        var b: array<vec4<f32>, 4>;
        for (var t = 0u; t < 4u; t++) {
            b[t] = vec4<f32>(input4[(k + t) * row4 + n4]);
            if grad_act {
                let z = vec4<f32>(aux4[(k + t) * row4 + n4]);
                b[t] *= vec4<f32>(activate_grad(z.x, p.act, p.cap), activate_grad(z.y, p.act, p.cap),
                                  activate_grad(z.z, p.act, p.cap), activate_grad(z.w, p.act, p.cap));
            }
        }
        if transpose_a {
            for (var t = 0u; t < 4u; t++) {
                for (var j = 0u; j < LANE_ROWS / 4u; j++) {
                    let a = a_column4(m0, j, k + t);
                    acc[4u * j] += a.x * b[t];
                    acc[4u * j + 1u] += a.y * b[t];
                    acc[4u * j + 2u] += a.z * b[t];
                    acc[4u * j + 3u] += a.w * b[t];
                }
            }
        } else {
            for (var i = 0u; i < LANE_ROWS; i++) {
                let a = vec4<f32>(weights4[(min(m0 + i, p.m - 1u) * p.k + k) / 4u]);
                acc[i] += a.x * b[0] + a.y * b[1] + a.z * b[2] + a.w * b[3];
            }
        }
    }
    if gid.x >= p.n / 4u {
        return;
    }
    for (var i = 0u; i < LANE_ROWS; i++) {
        let m = m0 + i;
        if m < p.m {
            for (var c = 0u; c < 4u; c++) {
                store_lanes(0u, m, 4u * n4 + c, p.alpha * acc[i][c]);
            }
        }
    }
}

// B read transposed (B[k][n] = input[n][k], the Gram matrices): each invocation computes column
// x of LANE_ROWS rows over its k chunk, four k at a time; a symmetric product only the entries
// on and above the diagonal, each written to both places.
@compute @workgroup_size(GRAM_LANES)
fn gram_lanes(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let n = min(gid.x, p.n - 1u);
    let m0 = wid.y * LANE_ROWS;
    // A symmetric product skips the workgroups wholly below the diagonal (their values are the
    // mirror images of ones computed above it).
    let symmetric = has(FLAG_SYMMETRIC);
    if symmetric && m0 >= (wid.x + 1u) * GRAM_LANES {
        return;
    }
    let range = k_range(wid.z);
    let k_begin = range.begin;
    let k_end = range.end;
    let out_base = range.out_base;
    let k4 = p.k / 4u;
    var acc: array<f32, MAX_LANE_ROWS>;
    for (var k = k_begin / 4u; k < k_end / 4u; k++) {
        let b = vec4<f32>(input4[n * k4 + k]);
        for (var i = 0u; i < LANE_ROWS; i++) {
            acc[i] += dot(vec4<f32>(weights4[min(m0 + i, p.m - 1u) * k4 + k]), b);
        }
    }
    if gid.x >= p.n {
        return;
    }
    for (var i = 0u; i < LANE_ROWS; i++) {
        let m = m0 + i;
        if m >= p.m {
            continue;
        }
        if !symmetric {
            store_lanes(out_base, m, gid.x, p.alpha * acc[i]);
        } else if m <= gid.x {
            // Each entry on or above the diagonal, and its mirror image.
            store_lanes(out_base, m, gid.x, p.alpha * acc[i]);
            if m != gid.x {
                store_lanes(out_base, gid.x, m, p.alpha * acc[i]);
            }
        }
    }
}
