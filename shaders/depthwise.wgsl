// Depthwise convolution (k×k per channel, stride 1 or 2), bias and activation; and its gradient
// with respect to the input.
// Layouts: input [c][in_h][in_w]; weights [c][k][k] followed by c biases; output and
// pre-activation [c][out_h][out_w].

struct DepthwiseParams {
    channels: u32, in_h: u32, in_w: u32, out_h: u32,
    out_w: u32, kernel: u32, stride: u32, pad_y: u32,
    pad_x: u32, act: u32, cap: f32,
    // 1: also store the pre-activation (for the backward pass).
    store_preact: u32,
}

@group(0) @binding(0) var<uniform> p: DepthwiseParams;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;
@group(0) @binding(4) var<storage, read_write> preact: array<f32>;

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
            acc += weights[(c * k + ky) * k + kx] * input[(c * p.in_h + u32(iy)) * p.in_w + u32(ix)];
        }
    }
    output[c * pixels + pix] = activate(acc, p.act, p.cap);
    if p.store_preact == 1u {
        preact[c * pixels + pix] = acc;
    }
}

@group(0) @binding(5) var<storage, read> grad_output: array<f32>;
@group(0) @binding(7) var<storage, read_write> grad_input: array<f32>;

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
            acc += weights[(c * k + ky) * k + kx] * grad_output[c * out_pixels + oy * p.out_w + u32(sx)];
        }
    }
    grad_input[c * in_pixels + pix] += acc;
}
