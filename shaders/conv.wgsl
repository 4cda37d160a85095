// Full convolution (the stem: 3×3, stride 2, 3 → 16 channels), with the weight format's input
// normalization applied to each pixel before zero padding, then bias and activation; and its
// gradient with respect to the (unnormalized) input image.
// Layouts: input [in_c][in_h][in_w]; weights [out_c][in_c][k][k] followed by out_c biases;
// output and pre-activation [out_c][out_h][out_w].
// Bindings typed `NAME_t` hold activations, stored as f32 or f16 (aliases generated per kernel,
// `storage_types` in src/kernels/mod.rs); every access converts, and arithmetic is f32.

struct ConvParams {
    in_c: u32, in_h: u32, in_w: u32, out_c: u32,
    out_h: u32, out_w: u32, kernel: u32, stride: u32,
    pad_y: u32, pad_x: u32, act: u32, cap: f32,
    // 1: also store the pre-activation (for the backward pass).
    store_preact: u32,
    // The image gradient (conv_backward): 1 adds into grad_input, 0 overwrites it.
    accumulate: u32, _pad1: u32, _pad2: u32,
    scale: vec4<f32>,
    shift: vec4<f32>,
}

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<output_t>;
@group(0) @binding(4) var<storage, read_write> preact: array<preact_t>;

// One invocation per output pixel and block of CONV_OUT_BLOCK output channels (each normalized
// input value is loaded once for all of them): x over pixels, y over blocks.
@compute @workgroup_size(WORKGROUP)
fn conv_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let pixels = p.out_h * p.out_w;
    let pix = gid.x;
    let o0 = gid.y * CONV_OUT_BLOCK;
    if pix >= pixels || o0 >= p.out_c {
        return;
    }
    let count = min(CONV_OUT_BLOCK, p.out_c - o0);
    let y = pix / p.out_w;
    let x = pix % p.out_w;
    let k = p.kernel;
    let taps = p.in_c * k * k;
    var acc: array<f32, CONV_OUT_BLOCK>;
    for (var o = 0u; o < count; o++) {
        acc[o] = weights[p.out_c * taps + o0 + o];
    }
    for (var i = 0u; i < p.in_c; i++) {
        for (var ky = 0u; ky < k; ky++) {
            let iy = i32(y * p.stride + ky) - i32(p.pad_y);
            if iy < 0 || iy >= i32(p.in_h) {
                continue;
            }
            for (var kx = 0u; kx < k; kx++) {
                let ix = i32(x * p.stride + kx) - i32(p.pad_x);
                if ix < 0 || ix >= i32(p.in_w) {
                    continue;
                }
                let v = input[(i * p.in_h + u32(iy)) * p.in_w + u32(ix)] * p.scale[i % 3u] + p.shift[i % 3u];
                let tap = (i * k + ky) * k + kx;
                for (var o = 0u; o < count; o++) {
                    acc[o] += weights[(o0 + o) * taps + tap] * v;
                }
            }
        }
    }
    for (var o = 0u; o < count; o++) {
        let idx = (o0 + o) * pixels + pix;
        output[idx] = output_t(activate(acc[o], p.act, p.cap));
        if p.store_preact == 1u {
            preact[idx] = preact_t(acc[o]);
        }
    }
}

struct ActivationParams {
    n: u32, act: u32, cap: f32, _pad0: u32,
}

@group(0) @binding(0) var<uniform> act_p: ActivationParams;
@group(0) @binding(5) var<storage, read> grad_output: array<grad_output_t>;
@group(0) @binding(6) var<storage, read> preact_in: array<preact_in_t>;
@group(0) @binding(7) var<storage, read_write> grad_input: array<f32>;
@group(0) @binding(8) var<storage, read_write> grad_inout: array<grad_inout_t>;

// The activation's backward, in place: dL/dZ = dL/dY ⊙ act'(Z) over act_p.n values.
// It runs once per layer before the stem's (and each depthwise layer's) input gradient, which
// would otherwise recompute it for every tap that reads an output.
// A flat dispatch (see flat_index).
@compute @workgroup_size(WORKGROUP)
fn activation_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    for (var nth = 0u; nth < FLAT_VALUES; nth++) {
        activation_backward_at(flat_index(gid) * FLAT_VALUES + nth);
    }
}

// One value of activation_backward.
fn activation_backward_at(i: u32) {
    if i < act_p.n {
        grad_inout[i] = grad_inout_t(f32(grad_inout[i]) * activate_grad(f32(preact_in[i]), act_p.act, act_p.cap));
    }
}

// Gradient with respect to the input image, added to grad_input: for each input value, the sum
// over the outputs it fed of weight · dL/d(pre-activation) · normalization scale (grad_output
// holds dL/d(pre-activation): see activation_backward).
// One invocation per input value: x over pixels, y over input channels.
@compute @workgroup_size(WORKGROUP)
fn conv_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let in_pixels = p.in_h * p.in_w;
    let pix = gid.x;
    let i = gid.y;
    if pix >= in_pixels || i >= p.in_c {
        return;
    }
    let iy = i32(pix / p.in_w);
    let ix = i32(pix % p.in_w);
    let k = p.kernel;
    let out_pixels = p.out_h * p.out_w;
    var acc = 0.0;
    for (var ky = 0u; ky < k; ky++) {
        let sy = tap_source(iy, ky, p.pad_y, p.stride, p.out_h);
        if sy < 0 {
            continue;
        }
        let oy = u32(sy);
        for (var kx = 0u; kx < k; kx++) {
            let sx = tap_source(ix, kx, p.pad_x, p.stride, p.out_w);
            if sx < 0 {
                continue;
            }
            let opix = oy * p.out_w + u32(sx);
            for (var o = 0u; o < p.out_c; o++) {
                acc += weights[((o * p.in_c + i) * k + ky) * k + kx] * f32(grad_output[o * out_pixels + opix]);
            }
        }
    }
    set_image_gradient(i * in_pixels + pix, acc * p.scale[i % 3u]);
}

// Stores image gradient value `idx`: added into what grad_input holds, or over it.
fn set_image_gradient(idx: u32, v: f32) {
    if p.accumulate == 1u {
        grad_input[idx] += v;
    } else {
        grad_input[idx] = v;
    }
}

// ---- Shaped for CPU-like adapters: rows ----
// As depthwise.wgsl's rows kernels: the output (forward) or input (backward) row and the channel
// block come from the workgroup id, so weight loads and row tests are shared by the lanes; the
// kernel size, stride and (backward) horizontal padding are pipeline constants.
override CONV_K: u32 = 3u;
override CONV_S: u32 = 2u;
override CONV_PAD: u32 = 0u;

// Input channel i at column ix of the row starting at `row`: normalized, then zero-padded.
fn stem_input(i: u32, row: u32, ix: i32) -> f32 {
    let last_x = i32(p.in_w) - 1;
    let raw = input[row + u32(clamp(ix, 0, last_x))] * p.scale[i % 3u] + p.shift[i % 3u];
    return select(0.0, raw, ix >= 0 && ix <= last_x);
}

// Output channel o of output pixel `pixel` (y · out_w + x) from its pre-activation z, which is
// stored too when the backward pass needs it.
fn store_stem_output(o: u32, pixel: u32, z: f32) {
    let idx = o * p.out_h * p.out_w + pixel;
    output[idx] = output_t(activate(z, p.act, p.cap));
    if p.store_preact == 1u {
        preact[idx] = preact_t(z);
    }
}

// The values of dL/d(pre-activation) of the output row starting at `row`, columns base …
// base + count − 1 (zero outside the row): the window a rows backward invocation reads.
fn grad_window(row: u32, base: i32, count: i32) -> array<f32, ROW_WINDOW> {
    let last = i32(p.out_w) - 1;
    var win: array<f32, ROW_WINDOW>;
    for (var j = 0; j < count; j++) {
        let ox = base + j;
        win[j] = select(0.0, f32(grad_output[row + u32(clamp(ox, 0, last))]), ox >= 0 && ox <= last);
    }
    return win;
}

// One output pixel of CONV_OUT_BLOCK channels per invocation.
@compute @workgroup_size(ROW_LANES)
fn conv_rows_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let x = min(gid.x, p.out_w - 1u);
    let y = wid.y;
    let o0 = wid.z * CONV_OUT_BLOCK;
    let taps = p.in_c * CONV_K * CONV_K;
    let last_o = p.out_c - 1u;
    var acc: array<f32, CONV_OUT_BLOCK>;
    for (var o = 0u; o < CONV_OUT_BLOCK; o++) {
        acc[o] = weights[p.out_c * taps + min(o0 + o, last_o)];
    }
    let ix0 = i32(x * CONV_S) - i32(p.pad_x);
    for (var i = 0u; i < p.in_c; i++) {
        for (var ky = 0u; ky < CONV_K; ky++) {
            let iy = i32(y * CONV_S + ky) - i32(p.pad_y);
            if iy < 0 || iy >= i32(p.in_h) {
                continue;
            }
            let row = (i * p.in_h + u32(iy)) * p.in_w;
            for (var kx = 0u; kx < CONV_K; kx++) {
                let v = stem_input(i, row, ix0 + i32(kx));
                let tap = (i * CONV_K + ky) * CONV_K + kx;
                for (var o = 0u; o < CONV_OUT_BLOCK; o++) {
                    acc[o] += weights[min(o0 + o, last_o) * taps + tap] * v;
                }
            }
        }
    }
    if gid.x >= p.out_w {
        return;
    }
    for (var o = 0u; o < CONV_OUT_BLOCK; o++) {
        if o0 + o < p.out_c {
            store_stem_output(o0 + o, y * p.out_w + x, acc[o]);
        }
    }
}

// Adds kernel column kx of input channel i, weight w, to the ROW_OUTS neighbours it reaches
// from the window `win` of dL/d(pre-activation) (whose first value is output `first` relative to
// the neighbours').
fn add_column_taps(acc: ptr<function, array<f32, CONV_ROWS_IN * ROW_OUTS>>, i: u32, kx: i32, w: f32,
                   win: array<f32, ROW_WINDOW>, first: i32) {
    let s = i32(CONV_S);
    for (var t = 0; t < i32(ROW_OUTS); t++) {
        let n = t + i32(CONV_PAD) - kx;
        if n % s == 0 {
            (*acc)[i * ROW_OUTS + u32(t)] += w * win[floor_div(n, s) - first];
        }
    }
}

// Adds the ROW_OUTS neighbours' gradients of every channel (times the input normalization's
// scale) to the image gradient's row iy from column x0.
fn add_image_gradient(iy: u32, x0: u32, acc: array<f32, CONV_ROWS_IN * ROW_OUTS>) {
    let in_pixels = p.in_h * p.in_w;
    for (var i = 0u; i < CONV_ROWS_IN; i++) {
        for (var t = 0u; t < ROW_OUTS; t++) {
            let x = x0 + t;
            if x < p.in_w {
                set_image_gradient(i * in_pixels + iy * p.in_w + x, acc[i * ROW_OUTS + t] * p.scale[i]);
            }
        }
    }
}

// The image gradient for ROW_OUTS neighbouring pixels of one row, all CONV_ROWS_IN channels, per
// invocation: pixel x receives w · g[oy][ox] where ox · CONV_S + kx − CONV_PAD = x, so which
// taps reach which neighbour, and where in the window of g, is known at compile time.
@compute @workgroup_size(ROW_LANES)
fn conv_rows_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let iy = wid.y;
    let x0 = gid.x * ROW_OUTS;
    let s = i32(CONV_S);
    let pad = i32(CONV_PAD);
    let k = i32(CONV_K);
    let window = tap_window(x0, pad, k, s);
    let first = window.x;
    let count = window.y;
    let base = window.z;
    let out_pixels = p.out_h * p.out_w;
    var acc: array<f32, CONV_ROWS_IN * ROW_OUTS>;
    for (var ky = 0u; ky < CONV_K; ky++) {
        let sy = tap_source(i32(iy), ky, p.pad_y, CONV_S, p.out_h);
        if sy < 0 {
            continue;
        }
        for (var o = 0u; o < p.out_c; o++) {
            let win = grad_window(o * out_pixels + u32(sy) * p.out_w, base, count);
            for (var i = 0u; i < CONV_ROWS_IN; i++) {
                for (var kx = 0; kx < k; kx++) {
                    let w = weights[((o * CONV_ROWS_IN + i) * CONV_K + ky) * CONV_K + u32(kx)];
                    add_column_taps(&acc, i, kx, w, win, first);
                }
            }
        }
    }
    add_image_gradient(iy, x0, acc);
}
