
// ---- The products shaped for CPU-like adapters with subgroups: broadcast ----
// (Appended to pointwise.wgsl and broadcast.wgsl when the device has subgroup operations.)
// On lavapipe a load instruction costs about the same whether its eight lanes read one address
// or eight, so a load every lane shares (as pointwise_lanes reads A) wastes seven eighths of it.
// Here every load fetches eight distinct values: lane l loads A at rows m0 + l and
// m0 + BCAST_LANES + l, and B at columns n0 + BCAST_LANES·j + l, and the lanes hand each other
// A's values with subgroupBroadcast (a register shuffle). A subgroup of BCAST_LANES invocations
// per workgroup; BCAST_ROWS output rows per workgroup and 4 · BCAST_COL_VECS columns per lane
// (fewer for narrow products such as Gram matrices, which wide workgroups would pad). Any shape.
// The layout flags are pipeline constants (BCAST_FLAGS: the branches fold away).
override BCAST_FLAGS: u32 = 0u;
override BCAST_COL_VECS: u32 = 2u;

fn bc_has(flag: u32) -> bool {
    return (BCAST_FLAGS & flag) != 0u;
}

fn bc_a(m: u32, k: u32) -> f32 {
    if bc_has(FLAG_TRANSPOSE_A) {
        return f32(weights[k * p.m + m]);
    }
    return f32(weights[m * p.k + k]);
}

fn bc_b(k: u32, n: u32) -> f32 {
    if bc_has(FLAG_TRANSPOSE_B) {
        return f32(input[n * p.k + k]);
    }
    var v = f32(input[k * p.n + n]);
    if bc_has(FLAG_GRAD_ACT_B) {
        v *= activate_grad(f32(aux[k * p.n + n]), p.act, p.cap);
    }
    return v;
}

@compute @workgroup_size(BCAST_LANES)
fn pointwise_broadcast(@builtin(subgroup_invocation_id) lane: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let per_lane = 4u * BCAST_COL_VECS;
    let width = BCAST_LANES * per_lane;
    let m0 = wid.y * BCAST_ROWS;
    let n0 = wid.x * width;
    // A symmetric product skips the workgroups wholly below the diagonal.
    let symmetric = bc_has(FLAG_SYMMETRIC);
    if symmetric && m0 >= n0 + width {
        return;
    }
    let range = k_range(wid.z);
    // Rows and columns past the product's edge read its last ones; they are never stored.
    let row_lo = min(m0 + lane, p.m - 1u);
    let row_hi = min(m0 + BCAST_LANES + lane, p.m - 1u);
    var cols: array<u32, 8>;
    for (var j = 0u; j < per_lane; j++) {
        cols[j] = min(n0 + BCAST_LANES * j + lane, p.n - 1u);
    }
    // acc_lo[i] holds row m0 + i at the lane's columns 0..3, acc_hi[i] at 4..7.
    var acc_lo: array<vec4<f32>, BCAST_ROWS>;
    var acc_hi: array<vec4<f32>, BCAST_ROWS>;
    for (var k = range.begin; k < range.end; k++) {
        let a_lo = bc_a(row_lo, k);
        let a_hi = bc_a(row_hi, k);
        let b_lo = vec4<f32>(bc_b(k, cols[0]), bc_b(k, cols[1]), bc_b(k, cols[2]), bc_b(k, cols[3]));
        var b_hi = vec4<f32>();
        if BCAST_COL_VECS == 2u {
            b_hi = vec4<f32>(bc_b(k, cols[4]), bc_b(k, cols[5]), bc_b(k, cols[6]), bc_b(k, cols[7]));
        }
        let a = broadcast16(a_lo, a_hi);
        for (var i = 0u; i < BCAST_ROWS; i++) {
            acc_lo[i] += a[i] * b_lo;
            if BCAST_COL_VECS == 2u {
                acc_hi[i] += a[i] * b_hi;
            }
        }
    }
    for (var i = 0u; i < BCAST_ROWS; i++) {
        let m = m0 + i;
        if m >= p.m {
            break;
        }
        for (var j = 0u; j < per_lane; j++) {
            let n = n0 + BCAST_LANES * j + lane;
            if n >= p.n {
                break;
            }
            var z = acc_lo[i][j % 4u];
            if j >= 4u {
                z = acc_hi[i][j % 4u];
            }
            z *= p.alpha;
            if !symmetric {
                store(range.out_base, m, n, z);
            } else if m <= n {
                // Each entry on or above the diagonal, and its mirror image.
                store(range.out_base, m, n, z);
                if m != n {
                    store(range.out_base, n, m, z);
                }
            }
        }
    }
}
