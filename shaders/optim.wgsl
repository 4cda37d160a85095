// Optimizers that update the image in place on the GPU, and the sigmoid pixel parameterization
// that keeps the bounded L-BFGS image in [0, 1]. (L-BFGS itself is in lbfgs.wgsl.)

struct AdamParams {
    n: u32, clamp_01: u32, _pad0: u32, _pad1: u32,
    lr: f32, beta1: f32, beta2: f32, eps: f32,
    // 1 − β1^t and 1 − β2^t for the current step t.
    bias_correction1: f32, bias_correction2: f32, _pad2: u32, _pad3: u32,
}

@group(0) @binding(0) var<uniform> o: AdamParams;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;

// PyTorch's Adam (no weight decay, no amsgrad), then an optional clamp to [0, 1].
@compute @workgroup_size(WORKGROUP)
fn adam_step(@builtin(global_invocation_id) gid: vec3<u32>) {
    for (var nth = 0u; nth < FLAT_VALUES; nth++) {
        adam_step_at(flat_index(gid) * FLAT_VALUES + nth);
    }
}

// One value of adam_step.
fn adam_step_at(i: u32) {
    if i >= o.n {
        return;
    }
    let gi = g[i];
    let mi = o.beta1 * m[i] + (1.0 - o.beta1) * gi;
    let vi = o.beta2 * v[i] + (1.0 - o.beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    let denom = sqrt(vi) / sqrt(o.bias_correction2) + o.eps;
    var xi = x[i] - (o.lr / o.bias_correction1) * mi / denom;
    if o.clamp_01 == 1u {
        xi = clamp(xi, 0.0, 1.0);
    }
    x[i] = xi;
}

struct SquashParams {
    n: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> sq: SquashParams;
@group(0) @binding(5) var<storage, read> u: array<f32>;
@group(0) @binding(6) var<storage, read_write> image: array<f32>;
@group(0) @binding(7) var<storage, read_write> grad_u: array<f32>;

// image = sigmoid(u): the optimizer moves u freely, the image stays in (0, 1).
@compute @workgroup_size(WORKGROUP)
fn squash(@builtin(global_invocation_id) gid: vec3<u32>) {
    for (var nth = 0u; nth < FLAT_VALUES; nth++) {
        squash_at(flat_index(gid) * FLAT_VALUES + nth);
    }
}

// One value of squash.
fn squash_at(i: u32) {
    if i < sq.n {
        image[i] = 1.0 / (1.0 + exp(-u[i]));
    }
}

// dL/du = dL/dimage · image · (1 − image).
@compute @workgroup_size(WORKGROUP)
fn squash_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    for (var nth = 0u; nth < FLAT_VALUES; nth++) {
        squash_backward_at(flat_index(gid) * FLAT_VALUES + nth);
    }
}

// One value of squash_backward.
fn squash_backward_at(i: u32) {
    if i < sq.n {
        let s = image[i];
        grad_u[i] = g[i] * s * (1.0 - s);
    }
}
