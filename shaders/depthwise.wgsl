// Depthwise convolution (k×k per channel, stride 1 or 2), bias and activation.
// Layouts: input [c][in_h][in_w]; weights [c][k][k] followed by c biases; output [c][out_h][out_w].

struct DepthwiseParams {
    channels: u32, in_h: u32, in_w: u32, out_h: u32,
    out_w: u32, kernel: u32, stride: u32, pad_y: u32,
    pad_x: u32, act: u32, cap: f32, _pad: u32,
}

@group(0) @binding(0) var<uniform> p: DepthwiseParams;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;

// One invocation per output value: x over pixels, y over channels.
@compute @workgroup_size(256)
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
}
