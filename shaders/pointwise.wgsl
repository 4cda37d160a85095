// 1×1 convolution as a tiled matrix product: out[o][n] = act(bias[o] + Σ_i W[o][i] · in[i][n]),
// optionally + residual[o][n]. Each 16×16 workgroup computes a 64×64 output tile, each invocation
// a 4×4 block of it, stepping through the input channels 16 at a time via workgroup memory.
// Layouts: input [in_c][pixels]; weights [out_c][in_c] followed by out_c biases.

struct PointwiseParams {
    in_c: u32, out_c: u32, pixels: u32, act: u32,
    cap: f32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: PointwiseParams;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;
@group(0) @binding(4) var<storage, read> residual: array<f32>;

const TILE: u32 = 64u;
const KSTEP: u32 = 16u;

var<workgroup> w_tile: array<f32, 1024>; // [KSTEP][TILE]: w_tile[k * TILE + m]
var<workgroup> x_tile: array<f32, 1024>; // [KSTEP][TILE]: x_tile[k * TILE + n]

// The 4×4 accumulators of this invocation: rows m0 + ly + 16·i, columns n0 + lx + 16·j.
fn product_tile(lid: vec3<u32>, wid: vec3<u32>) -> array<f32, 16> {
    let m0 = wid.y * TILE;
    let n0 = wid.x * TILE;
    let tid = lid.y * 16u + lid.x;
    var acc: array<f32, 16>;
    for (var k0 = 0u; k0 < p.in_c; k0 += KSTEP) {
        for (var r = 0u; r < 4u; r++) {
            let e = tid + r * 256u;
            let wm = e / KSTEP;
            let wk = e % KSTEP;
            var wv = 0.0;
            if m0 + wm < p.out_c && k0 + wk < p.in_c {
                wv = weights[(m0 + wm) * p.in_c + k0 + wk];
            }
            w_tile[wk * TILE + wm] = wv;
            let xk = e / TILE;
            let xn = e % TILE;
            var xv = 0.0;
            if k0 + xk < p.in_c && n0 + xn < p.pixels {
                xv = input[(k0 + xk) * p.pixels + n0 + xn];
            }
            x_tile[xk * TILE + xn] = xv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < KSTEP; kk++) {
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                a[i] = w_tile[kk * TILE + lid.y + 16u * i];
                b[i] = x_tile[kk * TILE + lid.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] += a[i] * b[j];
                }
            }
        }
        workgroupBarrier();
    }
    return acc;
}

@compute @workgroup_size(16, 16)
fn pointwise_forward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let acc = product_tile(lid, wid);
    for (var i = 0u; i < 4u; i++) {
        let m = wid.y * TILE + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let n = wid.x * TILE + lid.x + 16u * j;
            if m < p.out_c && n < p.pixels {
                let bias = weights[p.out_c * p.in_c + m];
                output[m * p.pixels + n] = activate(acc[i * 4u + j] + bias, p.act, p.cap);
            }
        }
    }
}

// Same product, plus the block input (the bottleneck's residual connection).
@compute @workgroup_size(16, 16)
fn pointwise_residual_forward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let acc = product_tile(lid, wid);
    for (var i = 0u; i < 4u; i++) {
        let m = wid.y * TILE + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let n = wid.x * TILE + lid.x + 16u * j;
            if m < p.out_c && n < p.pixels {
                let bias = weights[p.out_c * p.in_c + m];
                let idx = m * p.pixels + n;
                output[idx] = activate(acc[i * 4u + j] + bias, p.act, p.cap) + residual[idx];
            }
        }
    }
}
