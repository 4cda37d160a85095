// Squeeze-and-excite: per-channel mean, the gate (two small fully connected layers), and the
// channel scale. The mean kernel also serves the classifier's global pooling.
// Bindings typed `NAME_t` hold activations in some entry points (aliases generated per kernel,
// `storage_types` in src/kernels/mod.rs): stored as f32 or f16; every access converts, and
// arithmetic is f32.

struct SeParams {
    channels: u32, pixels: u32, squeeze: u32, reduce_act: u32,
    reduce_cap: f32, gate_add: f32, gate_max: f32, gate_mul: f32,
}

@group(0) @binding(0) var<uniform> p: SeParams;
@group(0) @binding(1) var<storage, read> input: array<input_t>;
// channel_mean: unused. se_gate: [squeeze][channels] reduce weights, squeeze biases,
// [channels][squeeze] expand weights, channels biases. channel_scale: the gates.
@group(0) @binding(2) var<storage, read> aux: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<output_t>;

// The gate's hidden layer.
var<workgroup> hidden: array<f32, MAX_SQUEEZE>;

// One workgroup per channel: output[c] = mean of input[c][..].
@compute @workgroup_size(WORKGROUP)
fn channel_mean(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let c = wid.x;
    var sum = 0.0;
    for (var i = lid.x; i < p.pixels; i += WORKGROUP) {
        sum += f32(input[c * p.pixels + i]);
    }
    let total = workgroup_sum(lid.x, sum);
    if lid.x == 0u {
        output[c] = output_t(total / f32(p.pixels));
    }
}

// The reduce layer's pre-activation for squeeze channel `s`, from the channel means in `input`.
fn reduce_pre_activation(s: u32) -> f32 {
    var acc = aux[p.squeeze * p.channels + s];
    for (var c = 0u; c < p.channels; c++) {
        acc += aux[s * p.channels + c] * f32(input[c]);
    }
    return acc;
}

// A single workgroup: input = channel means, output = gates.
@compute @workgroup_size(WORKGROUP)
fn se_gate(@builtin(local_invocation_id) lid: vec3<u32>) {
    let c_n = p.channels;
    let s_n = p.squeeze;
    let reduce_bias = s_n * c_n;
    let expand_w = reduce_bias + s_n;
    let expand_bias = expand_w + c_n * s_n;
    for (var s = lid.x; s < s_n; s += WORKGROUP) {
        hidden[s] = activate(reduce_pre_activation(s), p.reduce_act, p.reduce_cap);
    }
    workgroupBarrier();
    for (var c = lid.x; c < c_n; c += WORKGROUP) {
        var acc = aux[expand_bias + c];
        for (var s = 0u; s < s_n; s++) {
            acc += aux[expand_w + c * s_n + s] * hidden[s];
        }
        output[c] = output_t(clamp(acc + p.gate_add, 0.0, p.gate_max) * p.gate_mul);
    }
}

// output[c][n] = input[c][n] · gate[c]; x over pixels (FLAT_VALUES per invocation), y over
// channels.
@compute @workgroup_size(WORKGROUP)
fn channel_scale(@builtin(global_invocation_id) gid: vec3<u32>) {
    for (var nth = 0u; nth < FLAT_VALUES; nth++) {
        let n = gid.x * FLAT_VALUES + nth;
        if n < p.pixels && gid.y < p.channels {
            let idx = gid.y * p.pixels + n;
            output[idx] = output_t(f32(input[idx]) * aux[gid.y]);
        }
    }
}

// ---- Backward ----
// channel_dot:       input = SE input x, grad = dL/dy          → output = dL/dgate per channel
// se_gate_backward:  input = channel means, aux = weights, grad = dL/dgate → output = dL/dmean
// se_input_backward: input = dL/dmean, aux = gates, grad = dL/dy → grad_input += dL/dx

@group(0) @binding(4) var<storage, read> grad: array<grad_t>;
@group(0) @binding(5) var<storage, read_write> grad_input: array<grad_input_t>;

// One workgroup per channel: output[c] = Σ_n grad[c][n] · input[c][n].
@compute @workgroup_size(WORKGROUP)
fn channel_dot(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let c = wid.x;
    var sum = 0.0;
    for (var i = lid.x; i < p.pixels; i += WORKGROUP) {
        sum += f32(grad[c * p.pixels + i]) * f32(input[c * p.pixels + i]);
    }
    let total = workgroup_sum(lid.x, sum);
    if lid.x == 0u {
        output[c] = output_t(total);
    }
}

// ---- Shaped for CPU-like adapters: channels along the lanes ----
// channel_mean and channel_dot with one channel per invocation, CHANNEL_LANES neighbouring
// channels per workgroup, each summing its channel's pixels in turn: no workgroup memory and no
// barrier (on lavapipe a barrier is a coroutine switch, and the workgroup kernels take one per
// halving of the sum), and every load a distinct value per lane. Four running sums each.

// Σ over the pixels of channel c of input.
fn channel_total(c: u32) -> f32 {
    let base = c * p.pixels;
    var sums = vec4<f32>();
    var i = 0u;
    for (; i + 4u <= p.pixels; i += 4u) {
        sums += vec4<f32>(f32(input[base + i]), f32(input[base + i + 1u]), f32(input[base + i + 2u]),
                          f32(input[base + i + 3u]));
    }
    for (; i < p.pixels; i++) {
        sums.x += f32(input[base + i]);
    }
    return (sums.x + sums.y) + (sums.z + sums.w);
}

// Σ over the pixels of channel c of grad · input.
fn channel_dot_total(c: u32) -> f32 {
    let base = c * p.pixels;
    var sums = vec4<f32>();
    var i = 0u;
    for (; i + 4u <= p.pixels; i += 4u) {
        let x = vec4<f32>(f32(input[base + i]), f32(input[base + i + 1u]), f32(input[base + i + 2u]),
                          f32(input[base + i + 3u]));
        let g = vec4<f32>(f32(grad[base + i]), f32(grad[base + i + 1u]), f32(grad[base + i + 2u]),
                          f32(grad[base + i + 3u]));
        sums += x * g;
    }
    for (; i < p.pixels; i++) {
        sums.x += f32(input[base + i]) * f32(grad[base + i]);
    }
    return (sums.x + sums.y) + (sums.z + sums.w);
}

// output[c] = mean of input[c][..], one channel per invocation.
@compute @workgroup_size(CHANNEL_LANES)
fn channel_mean_lanes(@builtin(global_invocation_id) gid: vec3<u32>) {
    // Lanes past the last channel sum it again and store nothing.
    let total = channel_total(min(gid.x, p.channels - 1u));
    if gid.x < p.channels {
        output[gid.x] = output_t(total / f32(p.pixels));
    }
}

// output[c] = Σ_n grad[c][n] · input[c][n], one channel per invocation.
@compute @workgroup_size(CHANNEL_LANES)
fn channel_dot_lanes(@builtin(global_invocation_id) gid: vec3<u32>) {
    let total = channel_dot_total(min(gid.x, p.channels - 1u));
    if gid.x < p.channels {
        output[gid.x] = output_t(total);
    }
}

var<workgroup> hidden_pre: array<f32, MAX_SQUEEZE>;
var<workgroup> grad_hidden: array<f32, MAX_SQUEEZE>;
var<workgroup> grad_gate_pre: array<f32, MAX_SE_CHANNELS>;

// A single workgroup: back through the gate clamp, the expand layer, the reduce ReLU and the
// reduce layer, to the channel means.
@compute @workgroup_size(WORKGROUP)
fn se_gate_backward(@builtin(local_invocation_id) lid: vec3<u32>) {
    let c_n = p.channels;
    let s_n = p.squeeze;
    let reduce_bias = s_n * c_n;
    let expand_w = reduce_bias + s_n;
    let expand_bias = expand_w + c_n * s_n;
    for (var s = lid.x; s < s_n; s += WORKGROUP) {
        hidden_pre[s] = reduce_pre_activation(s);
    }
    workgroupBarrier();
    for (var c = lid.x; c < c_n; c += WORKGROUP) {
        var a = aux[expand_bias + c] + p.gate_add;
        for (var s = 0u; s < s_n; s++) {
            a += aux[expand_w + c * s_n + s] * activate(hidden_pre[s], p.reduce_act, p.reduce_cap);
        }
        grad_gate_pre[c] = select(0.0, f32(grad[c]) * p.gate_mul, a > 0.0 && a < p.gate_max);
    }
    workgroupBarrier();
    for (var s = lid.x; s < s_n; s += WORKGROUP) {
        var acc = 0.0;
        for (var c = 0u; c < c_n; c++) {
            acc += aux[expand_w + c * s_n + s] * grad_gate_pre[c];
        }
        grad_hidden[s] = acc * activate_grad(hidden_pre[s], p.reduce_act, p.reduce_cap);
    }
    workgroupBarrier();
    for (var c = lid.x; c < c_n; c += WORKGROUP) {
        var acc = 0.0;
        for (var s = 0u; s < s_n; s++) {
            acc += aux[s * c_n + c] * grad_hidden[s];
        }
        output[c] = output_t(acc);
    }
}

// grad_input[c][n] += grad[c][n] · gate[c] + dL/dmean[c] / pixels; x over pixels (FLAT_VALUES
// per invocation), y over channels.
@compute @workgroup_size(WORKGROUP)
fn se_input_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    for (var nth = 0u; nth < FLAT_VALUES; nth++) {
        let n = gid.x * FLAT_VALUES + nth;
        if n < p.pixels && gid.y < p.channels {
            let idx = gid.y * p.pixels + n;
            let g = f32(grad_input[idx]) + f32(grad[idx]) * aux[gid.y] + f32(input[gid.y]) / f32(p.pixels);
            grad_input[idx] = grad_input_t(g);
        }
    }
}
