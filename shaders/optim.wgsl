// Optimizers that update the image in place on the GPU.

struct AdamParams {
    n: u32, clamp_01: u32, _pad0: u32, _pad1: u32,
    lr: f32, beta1: f32, beta2: f32, eps: f32,
    // 1 − β1^t and 1 − β2^t for the current step t.
    bias_correction1: f32, bias_correction2: f32, _pad2: u32, _pad3: u32,
}

@group(0) @binding(0) var<uniform> adam: AdamParams;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;

// PyTorch's Adam (no weight decay, no amsgrad), then an optional clamp to [0, 1].
// x over 256-wide groups, y over rows of 65535 groups.
@compute @workgroup_size(256)
fn adam_step(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * 65535u * 256u;
    if i >= adam.n {
        return;
    }
    let gi = g[i];
    let mi = adam.beta1 * m[i] + (1.0 - adam.beta1) * gi;
    let vi = adam.beta2 * v[i] + (1.0 - adam.beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    let denom = sqrt(vi) / sqrt(adam.bias_correction2) + adam.eps;
    var xi = x[i] - (adam.lr / adam.bias_correction1) * mi / denom;
    if adam.clamp_01 == 1u {
        xi = clamp(xi, 0.0, 1.0);
    }
    x[i] = xi;
}
