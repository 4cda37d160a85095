// Style-transfer losses and their gradients. Each loss kernel runs `groups` workgroups; each
// workgroup adds its share of the weighted gradient into `grad` and writes its (unweighted) share
// of the loss as one partial sum into the `losses` buffer, after the LOSS_SLOTS slots
// [content, style, tv, total, gradient]. `total_loss` then adds the partial sums of each term in a
// fixed order, so results stay bit-reproducible without serializing a whole layer in one workgroup.
// The gradient slot is ‖d total / d image‖² in f32: not finite when the gradient is NaN or
// infinite, or too large for the optimizers' f32 arithmetic (g², Σg², Σ|g|), which would
// otherwise turn their updates into NaN or silently into zero.
//   content: w_l · mean((F − P)²) per layer;  style: w_l · mean((G − A)²) per layer,
//   G = F Fᵀ/(C·H·W) (w_l: the layer's weight, with per-layer normalization divided by its
//   target's mean square);
//   tv: mean of squared vertical + mean of squared horizontal neighbour differences of the image.
// The Gram matrices themselves and the style gradient (R·F) are products run by pointwise.wgsl.
// Bindings typed `NAME_t` hold activations in some entry points (aliases generated per kernel,
// `storage_types` in src/kernels/mod.rs): stored as f32 or f16; every access converts, and
// arithmetic is f32.

struct LossParams {
    count: u32, height: u32, width: u32, channels: u32,
    coef: f32, layer_weight: f32, splits: u32, groups: u32,
    content_weight: f32, style_weight: f32, tv_weight: f32, partial: u32,
    ends: vec4<u32>,
}

@group(0) @binding(0) var<uniform> p: LossParams;
@group(0) @binding(1) var<storage, read> value: array<value_t>;
@group(0) @binding(2) var<storage, read> target_value: array<target_value_t>;
@group(0) @binding(3) var<storage, read_write> grad: array<grad_t>;
@group(0) @binding(4) var<storage, read_write> losses: array<f32>;

// value = F, target = P (count values): grad += coef · (F − P), coef = content_weight · w_l · 2 / count,
// content partial = layer_weight · mean((F − P)²) over this workgroup's values.
@compute @workgroup_size(WORKGROUP)
fn content_loss(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    var sum = 0.0;
    for (var i = wid.x * WORKGROUP + lid.x; i < p.count; i += p.groups * WORKGROUP) {
        let d = f32(value[i]) - f32(target_value[i]);
        sum += d * d;
        grad[i] = grad_t(f32(grad[i]) + p.coef * d);
    }
    let total = workgroup_sum(lid.x, sum);
    if lid.x == 0u {
        losses[p.partial + wid.x] = p.layer_weight * total / f32(p.count);
    }
}

// value = G as `splits` partial products (channels² values each, summed here), target = A:
// grad = coef · (G − A) (the matrix R that the style gradient R·F is made from),
// style partial = layer_weight · mean((G − A)²) over this workgroup's entries.
@compute @workgroup_size(WORKGROUP)
fn style_loss(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let n = p.channels * p.channels;
    var sum = 0.0;
    for (var i = wid.x * WORKGROUP + lid.x; i < n; i += p.groups * WORKGROUP) {
        var gram = 0.0;
        for (var s = 0u; s < p.splits; s++) {
            gram += f32(value[s * n + i]);
        }
        let d = gram - f32(target_value[i]);
        sum += d * d;
        grad[i] = grad_t(p.coef * d);
    }
    let total = workgroup_sum(lid.x, sum);
    if lid.x == 0u {
        losses[p.partial + wid.x] = p.layer_weight * total / f32(n);
    }
}

// Pixels of one image row per tv_loss invocation: each row value is loaded once for its run,
// and the run's place is found with one division instead of three per pixel.
const TV_RUN: u32 = 8u;

// value = the RGB image [3][height][width]: grad += tv_weight · dE_tv/dx, tv partial = this
// workgroup's share of E_tv. It runs after the backward pass, so `grad` is then the whole image
// gradient: each workgroup also writes its share of Σ grad² at partial + groups (the gradient
// slot's partials).
@compute @workgroup_size(WORKGROUP)
fn tv_loss(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let h = p.height;
    let w = p.width;
    let n_v = f32(3u * (h - 1u) * w);
    let n_h = f32(3u * h * (w - 1u));
    let runs = (w + TV_RUN - 1u) / TV_RUN;
    var sum = 0.0;
    var grad_sq = 0.0;
    for (var r = wid.x * WORKGROUP + lid.x; r < 3u * h * runs; r += p.groups * WORKGROUP) {
        let row = r / runs; // channel · h + y
        let x0 = (r - row * runs) * TV_RUN;
        let y = row % h;
        var prev = 0.0;
        if x0 > 0u {
            prev = f32(value[row * w + x0 - 1u]);
        }
        var v = f32(value[row * w + x0]);
        for (var j = 0u; j < TV_RUN; j++) {
            let x = x0 + j;
            if x >= w {
                break;
            }
            let i = row * w + x;
            var next = 0.0;
            if x + 1u < w {
                next = f32(value[i + 1u]);
            }
            var g = 0.0;
            if y + 1u < h {
                let d = f32(value[i + w]) - v;
                sum += d * d / n_v;
                g -= 2.0 * d / n_v;
            }
            if y > 0u {
                g += 2.0 * (v - f32(value[i - w])) / n_v;
            }
            if x + 1u < w {
                let d = next - v;
                sum += d * d / n_h;
                g -= 2.0 * d / n_h;
            }
            if x > 0u {
                g += 2.0 * (v - prev) / n_h;
            }
            let gi = f32(grad[i]) + p.tv_weight * g;
            grad[i] = grad_t(gi);
            grad_sq += gi * gi;
            prev = v;
            v = next;
        }
    }
    let total = workgroup_sum(lid.x, sum);
    if lid.x == 0u {
        losses[p.partial + wid.x] = total;
    }
    workgroupBarrier();
    let grad_total = workgroup_sum(lid.x, grad_sq);
    if lid.x == 0u {
        losses[p.partial + p.groups + wid.x] = grad_total;
    }
}

// One workgroup: each term's slot = the sum of its partials (content from LOSS_SLOTS to ends.x,
// style to ends.y, tv to ends.z, the squared gradient norm to ends.w, into GRADIENT_SLOT), then
// total = content_weight · content + style_weight · style + tv_weight · tv.
@compute @workgroup_size(WORKGROUP)
fn total_loss(@builtin(local_invocation_id) lid: vec3<u32>) {
    var begin = LOSS_SLOTS;
    for (var term = 0u; term < 4u; term++) {
        let end = p.ends[term];
        var v = 0.0;
        for (var i = begin + lid.x; i < end; i += WORKGROUP) {
            v += losses[i];
        }
        let total = workgroup_sum(lid.x, v);
        if lid.x == 0u {
            losses[select(term, GRADIENT_SLOT, term == 3u)] = total;
        }
        begin = end;
        workgroupBarrier();
    }
    if lid.x == 0u {
        losses[3] = p.content_weight * losses[0] + p.style_weight * losses[1] + p.tv_weight * losses[2];
    }
}

// --normalize-gradients (jcjohnson's -normalize_gradients): a loss's own gradient g (the gradient
// of its unweighted layer loss, written into a separate buffer `value`) enters the layer gradient
// as weight · g / (‖g‖₁ + 1e-8). Two passes over the `count` values, `groups` workgroups each:
// `gradient_l1` writes each workgroup's Σ|g| as a partial sum at losses[partial ..], then
// `normalized_add` sums those partials (every invocation in the same order) and adds
// coef · g / (‖g‖₁ + 1e-8) into `grad`, coef = the loss's weight.
const NORMALIZE_EPSILON: f32 = 1e-8;

@compute @workgroup_size(WORKGROUP)
fn gradient_l1(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    var sum = 0.0;
    for (var i = wid.x * WORKGROUP + lid.x; i < p.count; i += p.groups * WORKGROUP) {
        sum += abs(f32(value[i]));
    }
    let total = workgroup_sum(lid.x, sum);
    if lid.x == 0u {
        losses[p.partial + wid.x] = total;
    }
}

@compute @workgroup_size(WORKGROUP)
fn normalized_add(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    var norm = 0.0;
    for (var s = 0u; s < p.groups; s++) {
        norm += losses[p.partial + s];
    }
    let scale = p.coef / (norm + NORMALIZE_EPSILON);
    for (var i = wid.x * WORKGROUP + lid.x; i < p.count; i += p.groups * WORKGROUP) {
        grad[i] = grad_t(f32(grad[i]) + scale * f32(value[i]));
    }
}

// The style features without their border: interior_value = value, but 0 on the `margin`
// outermost rows and columns of each of the `channels` planes. Zero padding makes the
// activations there far larger than inside (at `block1.expand` of a 181 px photo: 225 on the
// edge, at most 55 inside), so they would dominate a Gram matrix, and how much they weigh
// depends on the image's size and aspect. The Gram product and the style gradient R·F read the
// masked copy, so the border gets no style gradient.
struct InteriorParams {
    channels: u32, height: u32, width: u32, margin: u32,
}

@group(0) @binding(0) var<uniform> ip: InteriorParams;
@group(0) @binding(5) var<storage, read_write> interior_value: array<interior_value_t>;

@compute @workgroup_size(WORKGROUP)
fn interior(@builtin(global_invocation_id) gid: vec3<u32>) {
    for (var nth = 0u; nth < FLAT_VALUES; nth++) {
        interior_at(flat_index(gid) * FLAT_VALUES + nth);
    }
}

// One value of interior.
fn interior_at(i: u32) {
    let plane = ip.height * ip.width;
    if i >= ip.channels * plane {
        return;
    }
    interior_value[i] = interior_value_t(select(0.0, f32(value[i]), kept_pixel(i % plane)));
}

// Whether pixel `pix` of a plane lies inside the `margin` outermost rows and columns.
fn kept_pixel(pix: u32) -> bool {
    let y = pix / ip.width;
    let x = pix - y * ip.width;
    let m = ip.margin;
    return y >= m && y + m < ip.height && x >= m && x + m < ip.width;
}

// The style features transposed to pixel-major order, the border masked as `interior` masks it:
// pixel_value[pix · channels + c] = value[c · plane + pix] (0 on the border). A Gram product
// over this copy reads both of its operands along rows of `channels` neighbouring values, where
// over the features themselves every lane reads another channel's plane: on a CPU adapter those
// planes are a multiple of 4 KiB apart for most image sizes, and the loads of one step evict
// each other from the cache. Each invocation copies FLAT_VALUES channels of one pixel.
@group(0) @binding(6) var<storage, read_write> pixel_value: array<pixel_value_t>;

@compute @workgroup_size(WORKGROUP)
fn pixel_major(@builtin(global_invocation_id) gid: vec3<u32>) {
    let plane = ip.height * ip.width;
    let i = flat_index(gid);
    let block = i / plane;
    let pix = i - block * plane;
    if block * FLAT_VALUES >= ip.channels {
        return;
    }
    let kept = kept_pixel(pix);
    for (var nth = 0u; nth < FLAT_VALUES; nth++) {
        let c = block * FLAT_VALUES + nth;
        if c < ip.channels {
            pixel_value[pix * ip.channels + c] = pixel_value_t(select(0.0, f32(value[c * plane + pix]), kept));
        }
    }
}
