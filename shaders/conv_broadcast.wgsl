
// ---- Shaped for CPU-like adapters with subgroups: broadcast ----
// (Appended to conv.wgsl and broadcast.wgsl when the device has subgroup operations; see
// pointwise_broadcast.wgsl for why.) One subgroup of BCAST_LANES invocations per workgroup along a row. The weights
// every pixel needs are loaded eight to a load (lane l holds output channel o0 + l's, or
// o0 + BCAST_LANES + l's) and handed round with subgroupBroadcast, where the rows kernels load
// each for every lane alike. The kernel size, stride and padding are the rows kernels' pipeline
// constants.

// Output pixels x0 + j · BCAST_LANES, j < BCAST_PIXELS (x0 = wid.x · BCAST_PIXELS · BCAST_LANES
// + lane), of row wid.y, output channels wid.z · 16 … + 15 (conv_rows_forward's, several
// pixels per lane: each broadcast weight feeds them all; at 4 the accumulators outgrow the
// registers).
@compute @workgroup_size(BCAST_LANES)
fn conv_broadcast_forward(@builtin(subgroup_invocation_id) lane: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let x0 = wid.x * BCAST_PIXELS * BCAST_LANES + lane;
    let y = wid.y;
    let o0 = wid.z * 16u;
    let taps = p.in_c * CONV_K * CONV_K;
    // Channels past out_c read the last one's weights, pixels past out_w the last pixel's
    // inputs; they are never stored.
    let o_lo = min(o0 + lane, p.out_c - 1u);
    let o_hi = min(o0 + BCAST_LANES + lane, p.out_c - 1u);
    let bias = broadcast16(weights[p.out_c * taps + o_lo], weights[p.out_c * taps + o_hi]);
    var acc: array<array<f32, 16>, BCAST_PIXELS>;
    var ix0: array<i32, BCAST_PIXELS>;
    for (var px = 0u; px < BCAST_PIXELS; px++) {
        acc[px] = bias;
        ix0[px] = i32(min(x0 + px * BCAST_LANES, p.out_w - 1u) * CONV_S) - i32(p.pad_x);
    }
    for (var i = 0u; i < p.in_c; i++) {
        for (var ky = 0u; ky < CONV_K; ky++) {
            let iy = i32(y * CONV_S + ky) - i32(p.pad_y);
            // A row above or below the image: the same for every lane, so the loop stays uniform.
            if iy < 0 || iy >= i32(p.in_h) {
                continue;
            }
            let row = (i * p.in_h + u32(iy)) * p.in_w;
            for (var kx = 0u; kx < CONV_K; kx++) {
                let tap = (i * CONV_K + ky) * CONV_K + kx;
                let w = broadcast16(weights[o_lo * taps + tap], weights[o_hi * taps + tap]);
                for (var px = 0u; px < BCAST_PIXELS; px++) {
                    let v = stem_input(i, row, ix0[px] + i32(kx));
                    for (var o = 0u; o < 16u; o++) {
                        acc[px][o] += w[o] * v;
                    }
                }
            }
        }
    }
    for (var px = 0u; px < BCAST_PIXELS; px++) {
        let x = x0 + px * BCAST_LANES;
        for (var o = 0u; o < 16u; o++) {
            if x < p.out_w && o0 + o < p.out_c {
                store_stem_output(o0 + o, y * p.out_w + x, acc[px][o]);
            }
        }
    }
}

// The image gradient as conv_rows_backward computes it (ROW_OUTS neighbours of a row, every
// CONV_ROWS_IN channel, per invocation; BCAST_LANES invocations along the row), the weights of
// each kernel row loaded eight output channels to a load and shared by broadcast. Up to 16
// output channels.
@compute @workgroup_size(BCAST_LANES)
fn conv_broadcast_backward(@builtin(subgroup_invocation_id) lane: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let iy = wid.y;
    let x0 = (wid.x * BCAST_LANES + lane) * ROW_OUTS;
    let s = i32(CONV_S);
    let pad = i32(CONV_PAD);
    let k = i32(CONV_K);
    let window = tap_window(x0, pad, k, s);
    let first = window.x;
    let count = window.y;
    let base = window.z;
    let out_pixels = p.out_h * p.out_w;
    let per_channel = CONV_ROWS_IN * CONV_K * CONV_K;
    let o_lo = min(lane, p.out_c - 1u);
    let o_hi = min(BCAST_LANES + lane, p.out_c - 1u);
    var acc: array<f32, CONV_ROWS_IN * ROW_OUTS>;
    for (var ky = 0u; ky < CONV_K; ky++) {
        // The same for every lane: the loop stays uniform.
        let sy = tap_source(i32(iy), ky, p.pad_y, CONV_S, p.out_h);
        if sy < 0 {
            continue;
        }
        // w[i · CONV_K + kx][o]: this kernel row's weights of every output channel (sized for
        // the largest kernel the rows kernels take, 5: a local array's size is no override).
        var w: array<array<f32, 16>, CONV_ROWS_IN * 5u>;
        for (var i = 0u; i < CONV_ROWS_IN; i++) {
            for (var kx = 0u; kx < CONV_K; kx++) {
                let tap = (i * CONV_K + ky) * CONV_K + kx;
                w[i * CONV_K + kx] = broadcast16(weights[o_lo * per_channel + tap], weights[o_hi * per_channel + tap]);
            }
        }
        for (var o = 0u; o < p.out_c; o++) {
            let win = grad_window(o * out_pixels + u32(sy) * p.out_w, base, count);
            for (var i = 0u; i < CONV_ROWS_IN; i++) {
                for (var kx = 0; kx < k; kx++) {
                    add_column_taps(&acc, i, kx, w[i * CONV_K + u32(kx)][o], win, first);
                }
            }
        }
    }
    add_image_gradient(iy, x0, acc);
}
