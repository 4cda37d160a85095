// Full convolution (the stem: 3×3, stride 2, 3 → 16 channels), with the weight format's input
// normalization applied to each pixel before zero padding, then bias and activation.
// Layouts: input [in_c][in_h][in_w]; weights [out_c][in_c][k][k] followed by out_c biases;
// output [out_c][out_h][out_w].

struct ConvParams {
    in_c: u32, in_h: u32, in_w: u32, out_c: u32,
    out_h: u32, out_w: u32, kernel: u32, stride: u32,
    pad_y: u32, pad_x: u32, act: u32, cap: f32,
    scale: vec4<f32>,
    shift: vec4<f32>,
}

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;

// One invocation per output value: x over pixels, y over output channels.
@compute @workgroup_size(256)
fn conv_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let pixels = p.out_h * p.out_w;
    let pix = gid.x;
    let o = gid.y;
    if pix >= pixels || o >= p.out_c {
        return;
    }
    let y = pix / p.out_w;
    let x = pix % p.out_w;
    let k = p.kernel;
    var acc = weights[p.out_c * p.in_c * k * k + o];
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
                acc += weights[((o * p.in_c + i) * k + ky) * k + kx] * v;
            }
        }
    }
    output[o * pixels + pix] = activate(acc, p.act, p.cap);
}
