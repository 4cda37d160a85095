// Style-transfer losses and their gradients. Each loss kernel is a single workgroup that adds its
// (unweighted) value into a slot of the `losses` buffer — [content, style, tv, total] — and its
// weighted gradient into `grad`; the single-workgroup sums keep results bit-reproducible.
//   content: mean((F − P)²) per layer;  style: w_l · mean((G − A)²) per layer, G = F Fᵀ/(C·H·W);
//   tv: mean of squared vertical + mean of squared horizontal neighbour differences of the image.
// The Gram matrices themselves and the style gradient (R·F) are products run by pointwise.wgsl.

struct LossParams {
    count: u32, height: u32, width: u32, channels: u32,
    coef: f32, layer_weight: f32, splits: u32, _pad1: u32,
    content_weight: f32, style_weight: f32, tv_weight: f32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: LossParams;
@group(0) @binding(1) var<storage, read> value: array<f32>;
@group(0) @binding(2) var<storage, read> target_value: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> losses: array<f32>;

// value = F, target = P (count values): grad += coef · (F − P), coef = content_weight · 2 / count.
@compute @workgroup_size(256)
fn content_loss(@builtin(local_invocation_id) lid: vec3<u32>) {
    var sum = 0.0;
    for (var i = lid.x; i < p.count; i += 256u) {
        let d = value[i] - target_value[i];
        sum += d * d;
        grad[i] += p.coef * d;
    }
    let total = workgroup_sum(lid.x, sum);
    if lid.x == 0u {
        losses[0] += total / f32(p.count);
    }
}

// value = G as `splits` partial products (channels² values each, summed here), target = A:
// grad = coef · (G − A) (the matrix R that the style gradient R·F is made from),
// style slot += layer_weight · mean((G − A)²).
@compute @workgroup_size(256)
fn style_loss(@builtin(local_invocation_id) lid: vec3<u32>) {
    let n = p.channels * p.channels;
    var sum = 0.0;
    for (var i = lid.x; i < n; i += 256u) {
        var gram = 0.0;
        for (var s = 0u; s < p.splits; s++) {
            gram += value[s * n + i];
        }
        let d = gram - target_value[i];
        sum += d * d;
        grad[i] = p.coef * d;
    }
    let total = workgroup_sum(lid.x, sum);
    if lid.x == 0u {
        losses[1] += p.layer_weight * total / f32(n);
    }
}

// value = the RGB image [3][height][width]: grad += tv_weight · dE_tv/dx, tv slot += E_tv.
@compute @workgroup_size(256)
fn tv_loss(@builtin(local_invocation_id) lid: vec3<u32>) {
    let h = p.height;
    let w = p.width;
    let n_v = f32(3u * (h - 1u) * w);
    let n_h = f32(3u * h * (w - 1u));
    var sum = 0.0;
    for (var i = lid.x; i < 3u * h * w; i += 256u) {
        let y = (i / w) % h;
        let x = i % w;
        let v = value[i];
        var g = 0.0;
        if y + 1u < h {
            let d = value[i + w] - v;
            sum += d * d / n_v;
            g -= 2.0 * d / n_v;
        }
        if y > 0u {
            g += 2.0 * (v - value[i - w]) / n_v;
        }
        if x + 1u < w {
            let d = value[i + 1u] - v;
            sum += d * d / n_h;
            g -= 2.0 * d / n_h;
        }
        if x > 0u {
            g += 2.0 * (v - value[i - 1u]) / n_h;
        }
        grad[i] += p.tv_weight * g;
    }
    let total = workgroup_sum(lid.x, sum);
    if lid.x == 0u {
        losses[2] += total;
    }
}

// total slot = content_weight · content + style_weight · style + tv_weight · tv.
@compute @workgroup_size(1)
fn total_loss() {
    losses[3] = p.content_weight * losses[0] + p.style_weight * losses[1] + p.tv_weight * losses[2];
}
