// Depthwise convolution (k×k per channel, stride 1 or 2), bias and activation; and its gradient
// with respect to the input.
// Layouts: input [c][in_h][in_w]; weights [c][k][k] followed by c biases; output and
// pre-activation [c][out_h][out_w].
// Bindings typed `NAME_t` hold activations, stored as f32 or f16 (aliases generated per kernel,
// `storage_types` in src/kernels/mod.rs); every access converts, and arithmetic is f32.

struct DepthwiseParams {
    channels: u32, in_h: u32, in_w: u32, out_h: u32,
    out_w: u32, kernel: u32, stride: u32, pad_y: u32,
    pad_x: u32, act: u32, cap: f32,
    // 1: also store the pre-activation (for the backward pass).
    store_preact: u32,
    // The input gradient: 1 adds into grad_input, 0 overwrites it.
    accumulate: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: DepthwiseParams;
@group(0) @binding(1) var<storage, read> input: array<input_t>;
@group(0) @binding(2) var<storage, read> weights: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<output_t>;
@group(0) @binding(4) var<storage, read_write> preact: array<preact_t>;

// One invocation per output value: x over pixels, y over channels.
@compute @workgroup_size(WORKGROUP)
fn depthwise_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let pixels = p.out_h * p.out_w;
    let pix = gid.x;
    let c = gid.y;
    if pix >= pixels || c >= p.channels {
        return;
    }
    let y = pix / p.out_w;
    let x = pix % p.out_w;
    let k = p.kernel;
    var acc = weights[p.channels * k * k + c];
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
            acc += weights[(c * k + ky) * k + kx] * f32(input[(c * p.in_h + u32(iy)) * p.in_w + u32(ix)]);
        }
    }
    output[c * pixels + pix] = output_t(activate(acc, p.act, p.cap));
    if p.store_preact == 1u {
        preact[c * pixels + pix] = preact_t(acc);
    }
}

@group(0) @binding(5) var<storage, read> grad_output: array<grad_output_t>;
@group(0) @binding(7) var<storage, read_write> grad_input: array<grad_input_t>;

// Gradient with respect to the input, added to grad_input (the transposed depthwise convolution
// of dL/d(pre-activation), which grad_output holds: see activation_backward in conv.wgsl). One invocation per input value: x over pixels, y over channels.
@compute @workgroup_size(WORKGROUP)
fn depthwise_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let in_pixels = p.in_h * p.in_w;
    let pix = gid.x;
    let c = gid.y;
    if pix >= in_pixels || c >= p.channels {
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
            acc += weights[(c * k + ky) * k + kx] * f32(grad_output[c * out_pixels + oy * p.out_w + u32(sx)]);
        }
    }
    set_grad_input(c * in_pixels + pix, acc);
}

// Stores input gradient value `idx`: added into what grad_input holds, or over it.
fn set_grad_input(idx: u32, v: f32) {
    if p.accumulate == 1u {
        grad_input[idx] = grad_input_t(f32(grad_input[idx]) + v);
    } else {
        grad_input[idx] = grad_input_t(v);
    }
}

// ---- Shaped for CPU-like adapters: rows ----
// A workgroup covers ROW_OUTS · ROW_LANES consecutive values of one row of one channel (the row
// and the channel come from the workgroup id, so every weight load and row test is shared by the
// lanes); each invocation computes ROW_OUTS neighbours from one window of at most ROW_WINDOW loads. The kernel size,
// the stride and (backward) the horizontal padding are pipeline constants, so every tap's
// window index is known when the shader is compiled.
override DW_K: u32 = 3u;
override DW_S: u32 = 1u;
override DW_PAD: u32 = 1u;
// Output rows per forward invocation, 1 … ROW_LINES.
override DW_LINES: u32 = 2u;

@compute @workgroup_size(ROW_LANES)
fn depthwise_rows_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    row_outputs(wid.z, wid.y * DW_LINES, gid.x * ROW_OUTS);
}

// ---- Shaped for CPU-like adapters, channels along the lanes ----
// The rows kernels' invocation, but the lanes of a workgroup take CHANNEL_LANES neighbouring
// channels at the same ROW_OUTS outputs: every load is a distinct value per lane (a weight is
// one gather for the eight channels, where the rows kernels load it once per channel for all
// lanes), and a narrow row (16 or 32 pixels, the late layers) leaves no lane idle, where the
// rows kernels' 64-value workgroups would.
@compute @workgroup_size(CHANNEL_LANES)
fn depthwise_channels_forward(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    row_outputs(wid.z * CHANNEL_LANES + lane, wid.y * DW_LINES, wid.x * ROW_OUTS);
}

// Outputs x0 … x0 + ROW_OUTS − 1 of rows y0 … y0 + DW_LINES − 1 of channel c (none past the
// last channel or row). Each input row is loaded once for every output row it reaches (stride
// 1: DW_LINES + DW_K − 1 rows where DW_LINES separate rows would load DW_LINES · DW_K), and
// each weight once.
fn row_outputs(c_in: u32, y0: u32, x0: u32) {
    // Lanes past the last channel compute its values and store nothing.
    let c = min(c_in, p.channels - 1u);
    let bias = weights[p.channels * DW_K * DW_K + c];
    // Sized for the largest kernel, 5×5 (a local array's size is no override).
    var w: array<f32, 25>;
    for (var t = 0u; t < DW_K * DW_K; t++) {
        w[t] = weights[c * DW_K * DW_K + t];
    }
    // acc[line · ROW_OUTS + o]: output row y0 + line, column x0 + o.
    var acc: array<f32, ROW_LINES * ROW_OUTS>;
    for (var o = 0u; o < ROW_LINES * ROW_OUTS; o++) {
        acc[o] = bias;
    }
    let base = i32(x0 * DW_S) - i32(p.pad_x);
    let last = i32(p.in_w) - 1;
    for (var r = 0u; r < (DW_LINES - 1u) * DW_S + DW_K; r++) {
        let iy = i32(y0 * DW_S + r) - i32(p.pad_y);
        if iy < 0 || iy >= i32(p.in_h) {
            continue;
        }
        let row = (c * p.in_h + u32(iy)) * p.in_w;
        var win: array<f32, ROW_WINDOW>;
        for (var j = 0u; j < (ROW_OUTS - 1u) * DW_S + DW_K; j++) {
            let ix = base + i32(j);
            win[j] = select(0.0, f32(input[row + u32(clamp(ix, 0, last))]), ix >= 0 && ix <= last);
        }
        for (var line = 0u; line < DW_LINES; line++) {
            // This input row is kernel row ky of output row y0 + line.
            let ky = i32(r) - i32(line * DW_S);
            if ky < 0 || ky >= i32(DW_K) {
                continue;
            }
            for (var kx = 0u; kx < DW_K; kx++) {
                let wt = w[u32(ky) * DW_K + kx];
                for (var o = 0u; o < ROW_OUTS; o++) {
                    acc[line * ROW_OUTS + o] += wt * win[o * DW_S + kx];
                }
            }
        }
    }
    for (var line = 0u; line < DW_LINES; line++) {
        let y = y0 + line;
        for (var o = 0u; o < ROW_OUTS; o++) {
            let x = x0 + o;
            if x < p.out_w && y < p.out_h && c_in < p.channels {
                let idx = (c * p.out_h + y) * p.out_w + x;
                let z = acc[line * ROW_OUTS + o];
                output[idx] = output_t(activate(z, p.act, p.cap));
                if p.store_preact == 1u {
                    preact[idx] = preact_t(z);
                }
            }
        }
    }
}

// The input gradient, ROW_OUTS neighbouring input values per invocation: input x receives
// w[ky][kx] · g[oy][ox] where ox · DW_S + kx − DW_PAD = x. ROW_OUTS is a multiple of DW_S, so
// which taps reach which of the neighbours, and where in the window, is known at compile time.
@compute @workgroup_size(ROW_LANES)
fn depthwise_rows_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    row_input_gradient(wid.z, wid.y, gid.x * ROW_OUTS);
}

// The input gradient with channels along the lanes (see depthwise_channels_forward).
@compute @workgroup_size(CHANNEL_LANES)
fn depthwise_channels_backward(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    row_input_gradient(wid.z * CHANNEL_LANES + lane, wid.y, wid.x * ROW_OUTS);
}

// Input values x0 … x0 + ROW_OUTS − 1 of row iy of channel c (none past the last channel).
fn row_input_gradient(c_in: u32, iy: u32, x0: u32) {
    let c = min(c_in, p.channels - 1u);
    let s = i32(DW_S);
    let pad = i32(DW_PAD);
    let k = i32(DW_K);
    let window = tap_window(x0, pad, k, s);
    let first = window.x;
    let count = window.y;
    let base = window.z;
    let last = i32(p.out_w) - 1;
    var acc: array<f32, ROW_OUTS>;
    for (var ky = 0u; ky < DW_K; ky++) {
        let sy = tap_source(i32(iy), ky, p.pad_y, DW_S, p.out_h);
        if sy < 0 {
            continue;
        }
        let row = (c * p.out_h + u32(sy)) * p.out_w;
        var win: array<f32, ROW_WINDOW>;
        for (var j = 0; j < count; j++) {
            let ox = base + j;
            win[j] = select(0.0, f32(grad_output[row + u32(clamp(ox, 0, last))]), ox >= 0 && ox <= last);
        }
        for (var kx = 0; kx < k; kx++) {
            let w = weights[(c * DW_K + ky) * DW_K + u32(kx)];
            for (var o = 0; o < i32(ROW_OUTS); o++) {
                let n = o + pad - kx;
                if n % s == 0 {
                    acc[o] += w * win[floor_div(n, s) - first];
                }
            }
        }
    }
    for (var o = 0u; o < ROW_OUTS; o++) {
        let x = x0 + o;
        if x < p.in_w && c_in < p.channels {
            let idx = (c * p.in_h + iy) * p.in_w + x;
            set_grad_input(idx, acc[o]);
        }
    }
}
