// Shared by every kernel family: prepended to each shader file at load time, after the constants
// header that src/kernels/mod.rs generates (ACT_*, WORKGROUP, MAX_ROW_GROUPS, FLAG_*, ...).

// Activation followed by the upper clamp `cap` (a huge value when unused).
fn activate(x: f32, act: u32, cap: f32) -> f32 {
    var y = x;
    if act == ACT_RELU {
        y = max(x, 0.0);
    } else if act == ACT_HARD_SWISH {
        y = x * clamp(x + 3.0, 0.0, 6.0) / 6.0;
    }
    return min(y, cap);
}

// Derivative of activate(z) with respect to the pre-activation z (PyTorch's conventions at the
// kinks: ReLU' (0) = 0, hard-swish' = z/3 + 1/2 on [-3, 3]).
fn activate_grad(z: f32, act: u32, cap: f32) -> f32 {
    if activate(z, act, 3.0e38) > cap {
        return 0.0;
    }
    if act == ACT_RELU {
        return select(0.0, 1.0, z > 0.0);
    }
    if act == ACT_HARD_SWISH {
        if z < -3.0 {
            return 0.0;
        }
        if z > 3.0 {
            return 1.0;
        }
        return z / 3.0 + 0.5;
    }
    return 1.0;
}

// The index of an invocation in a flat dispatch: WORKGROUP-wide workgroups along x, folded into
// rows of MAX_ROW_GROUPS workgroups along y (see `flat_grid` on the Rust side). Invocation i
// handles values i·FLAT_VALUES … i·FLAT_VALUES + FLAT_VALUES − 1, each by a function `NAME_at`
// (on lavapipe an invocation's setup costs as much as a copy of a value).
fn flat_index(gid: vec3<u32>) -> u32 {
    return gid.x + gid.y * MAX_ROW_GROUPS * WORKGROUP;
}

// Workgroup memory is not zero-filled (the pipelines opt out, see `Kernel::with_constants`):
// every kernel writes each workgroup value before any invocation reads it.
var<workgroup> sum_scratch: array<f32, WORKGROUP>;
var<workgroup> sum_parts: array<f32, SUM_PARTS>;

// Invocations that each add up WORKGROUP / SUM_PARTS values in workgroup_sum's first step.
const SUM_PARTS: u32 = 16u;

// The sum of `v` over a WORKGROUP-invocation workgroup, returned to every invocation: SUM_PARTS
// invocations each add up a run of the values, then every invocation adds up their sums, in a
// fixed order (results stay bit-reproducible). Two barriers where a tree reduction takes one
// per halving: on a CPU adapter every barrier switches between the workgroup's invocations.
// Callers that sum twice put a barrier between the two sums.
fn workgroup_sum(lid: u32, v: f32) -> f32 {
    sum_scratch[lid] = v;
    workgroupBarrier();
    if lid < SUM_PARTS {
        let run = WORKGROUP / SUM_PARTS;
        var part = 0.0;
        for (var i = lid * run; i < lid * run + run; i++) {
            part += sum_scratch[i];
        }
        sum_parts[lid] = part;
    }
    workgroupBarrier();
    var total = 0.0;
    for (var i = 0u; i < SUM_PARTS; i++) {
        total += sum_parts[i];
    }
    return total;
}

// The output coordinate whose kernel tap `k` reads input coordinate `i` (out·stride + k − pad = i),
// or −1 when no output does: the index arithmetic of every transposed (backward) convolution.
fn tap_source(i: i32, k: u32, pad: u32, stride: u32, out_len: u32) -> i32 {
    let n = i + i32(pad) - i32(k);
    if n < 0 || n % i32(stride) != 0 || n / i32(stride) >= i32(out_len) {
        return -1;
    }
    return n / i32(stride);
}

// ⌊a / b⌋ for b > 0 (WGSL's integer division truncates toward zero).
fn floor_div(a: i32, b: i32) -> i32 {
    let q = a / b;
    return select(q, q - 1, a % b != 0 && a < 0);
}

// The outputs whose taps reach the ROW_OUTS neighbouring inputs x0 … of a transposed
// convolution (out · s + tap − pad = in; x0 a multiple of s), as (first, count, base): the
// window starts at base = ⌊(x0 + pad − (k − 1)) / s⌋ = x0 / s + first and holds count outputs.
fn tap_window(x0: u32, pad: i32, k: i32, s: i32) -> vec3<i32> {
    let first = floor_div(pad - k + 1, s);
    let count = floor_div(i32(ROW_OUTS) - 1 + pad, s) - first + 1;
    return vec3<i32>(first, count, i32(x0) / s + first);
}
