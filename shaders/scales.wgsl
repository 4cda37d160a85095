// Image-sized helpers of the coarse-to-fine schedule, the losses and the output average: the
// bilinear upsampling of one scale's result to the next scale's size, the mirror padding the
// network sees around the image (and its adjoint, which folds the padding's gradient back), the
// logit that starts the bounded L-BFGS parameters from an image, the exponential moving average
// of the iterates, and the kept result (see keep_select). Images are planar RGB (all red, then
// green, then blue).

struct ResizeParams {
    src_w: u32, src_h: u32, dst_w: u32, dst_h: u32,
}

@group(0) @binding(0) var<uniform> rp: ResizeParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// Bilinear with half-pixel centers (PyTorch's align_corners=False), edges clamped.
@compute @workgroup_size(WORKGROUP)
fn resize_bilinear(@builtin(global_invocation_id) gid: vec3<u32>) {
    for (var nth = 0u; nth < FLAT_VALUES; nth++) {
        resize_bilinear_at(flat_index(gid) * FLAT_VALUES + nth);
    }
}

// One value of resize_bilinear.
fn resize_bilinear_at(i: u32) {
    let plane = rp.dst_w * rp.dst_h;
    if i >= 3u * plane {
        return;
    }
    let c = i / plane;
    let p = i % plane;
    let x = p % rp.dst_w;
    let y = p / rp.dst_w;
    let sx = max((f32(x) + 0.5) * f32(rp.src_w) / f32(rp.dst_w) - 0.5, 0.0);
    let sy = max((f32(y) + 0.5) * f32(rp.src_h) / f32(rp.dst_h) - 0.5, 0.0);
    let x0 = min(u32(floor(sx)), rp.src_w - 1u);
    let y0 = min(u32(floor(sy)), rp.src_h - 1u);
    let x1 = min(x0 + 1u, rp.src_w - 1u);
    let y1 = min(y0 + 1u, rp.src_h - 1u);
    let fx = sx - f32(x0);
    let fy = sy - f32(y0);
    let base = c * rp.src_w * rp.src_h;
    let top = mix(src[base + y0 * rp.src_w + x0], src[base + y0 * rp.src_w + x1], fx);
    let bottom = mix(src[base + y1 * rp.src_w + x0], src[base + y1 * rp.src_w + x1], fx);
    dst[i] = mix(top, bottom, fy);
}

// Mirror padding: dst (dst_w × dst_h) is src with (dst_w − src_w) / 2 columns on the left and
// right and (dst_h − src_h) / 2 rows above and below, mirrored about the edge pixels (PyTorch's
// "reflect": padded column X reads source column |X − pad|, or 2(src_w − 1) − (X − pad) past the
// right edge). The pads are at most src − 1, so no pixel is mirrored twice.
fn mirror(padded: u32, pad: u32, size: u32) -> u32 {
    let x = i32(padded) - i32(pad);
    let last = i32(size) - 1;
    return u32(select(select(x, 2 * last - x, x > last), -x, x < 0));
}

@compute @workgroup_size(WORKGROUP)
fn mirror_pad(@builtin(global_invocation_id) gid: vec3<u32>) {
    for (var nth = 0u; nth < FLAT_VALUES; nth++) {
        mirror_pad_at(flat_index(gid) * FLAT_VALUES + nth);
    }
}

// One value of mirror_pad.
fn mirror_pad_at(i: u32) {
    let plane = rp.dst_w * rp.dst_h;
    if i >= 3u * plane {
        return;
    }
    let c = i / plane;
    let x = mirror((i % plane) % rp.dst_w, (rp.dst_w - rp.src_w) / 2u, rp.src_w);
    let y = mirror((i % plane) / rp.dst_w, (rp.dst_h - rp.src_h) / 2u, rp.src_h);
    dst[i] = src[c * rp.src_w * rp.src_h + y * rp.src_w + x];
}

// The padded coordinates that `mirror` maps to source coordinate x (at most 3: x itself, its
// mirror image left of the edge, its mirror image right of it); returns how many.
fn preimages(x: u32, pad: u32, size: u32, out: ptr<function, array<u32, 3>>) -> u32 {
    (*out)[0] = x + pad;
    var n = 1u;
    if x >= 1u && x <= pad {
        (*out)[n] = pad - x;
        n++;
    }
    if x + 2u <= size && x + pad + 1u >= size {
        (*out)[n] = pad + 2u * (size - 1u) - x;
        n++;
    }
    return n;
}

// The adjoint of mirror_pad: src (here the source-sized gradient, dst_w × dst_h) = the sum of the
// padded gradient (src_w × src_h) over every padded pixel that reads it. Roles: rp.src is the
// padded size, rp.dst the image's.
@compute @workgroup_size(WORKGROUP)
fn mirror_pad_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    for (var nth = 0u; nth < FLAT_VALUES; nth++) {
        mirror_pad_backward_at(flat_index(gid) * FLAT_VALUES + nth);
    }
}

// One value of mirror_pad_backward.
fn mirror_pad_backward_at(i: u32) {
    let plane = rp.dst_w * rp.dst_h;
    if i >= 3u * plane {
        return;
    }
    let c = i / plane;
    var xs: array<u32, 3>;
    var ys: array<u32, 3>;
    let nx = preimages((i % plane) % rp.dst_w, (rp.src_w - rp.dst_w) / 2u, rp.dst_w, &xs);
    let ny = preimages((i % plane) / rp.dst_w, (rp.src_h - rp.dst_h) / 2u, rp.dst_h, &ys);
    let base = c * rp.src_w * rp.src_h;
    var sum = 0.0;
    for (var b = 0u; b < ny; b++) {
        for (var a = 0u; a < nx; a++) {
            sum += src[base + ys[b] * rp.src_w + xs[a]];
        }
    }
    dst[i] = sum;
}

struct AverageParams {
    n: u32, _pad0: u32, _pad1: u32, _pad2: u32,
    // The decay, and 1 − decay^t after t averaged iterates.
    decay: f32, bias_correction: f32, _pad3: u32, _pad4: u32,
}

@group(0) @binding(0) var<uniform> ap: AverageParams;
@group(0) @binding(3) var<storage, read> image: array<f32>;
@group(0) @binding(4) var<storage, read_write> biased: array<f32>;
@group(0) @binding(5) var<storage, read_write> averaged: array<f32>;

// u = logit(image), the image clamped to [1e-3, 1 − 1e-3] first (as `optimizer::logit`).
@compute @workgroup_size(WORKGROUP)
fn logit(@builtin(global_invocation_id) gid: vec3<u32>) {
    for (var nth = 0u; nth < FLAT_VALUES; nth++) {
        logit_at(flat_index(gid) * FLAT_VALUES + nth);
    }
}

// One value of logit.
fn logit_at(i: u32) {
    if i < ap.n {
        let v = clamp(image[i], 1e-3, 1.0 - 1e-3);
        averaged[i] = log(v / (1.0 - v));
    }
}

// biased ← decay · biased + (1 − decay) · image; averaged = biased / (1 − decay^t).
@compute @workgroup_size(WORKGROUP)
fn average(@builtin(global_invocation_id) gid: vec3<u32>) {
    for (var nth = 0u; nth < FLAT_VALUES; nth++) {
        average_at(flat_index(gid) * FLAT_VALUES + nth);
    }
}

// One value of average.
fn average_at(i: u32) {
    if i < ap.n {
        let b = ap.decay * biased[i] + (1.0 - ap.decay) * image[i];
        biased[i] = b;
        averaged[i] = b / ap.bias_correction;
    }
}

// The kept result of a run: after each evaluation, `keep_select` decides whether the evaluated
// image replaces the kept one (its loss and gradient finite and, with `lowest`, its loss below the
// kept one's, or nothing kept yet) and `keep_copy` copies it if so. `kept` holds the kept image's
// losses (LOSS_SLOTS), whether one is kept (KEPT_VALID), whether the last evaluation was taken
// (KEPT_TAKEN), then the last evaluation's losses (from KEPT_EVALUATED), so one readback of it
// tells both.

struct KeepParams {
    n: u32, lowest: u32, _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<uniform> kp: KeepParams;
@group(0) @binding(6) var<storage, read> evaluated: array<f32>;
@group(0) @binding(7) var<storage, read_write> kept: array<f32>;
@group(0) @binding(8) var<storage, read> candidate: array<f32>;
@group(0) @binding(9) var<storage, read_write> result: array<f32>;

// The slot of the weighted total in the losses.
const TOTAL_SLOT: u32 = 3u;

// Neither NaN nor infinite (a NaN fails every comparison).
fn is_finite(v: f32) -> bool {
    return abs(v) <= 3.4028235e38;
}

@compute @workgroup_size(WORKGROUP)
fn keep_select(@builtin(global_invocation_id) gid: vec3<u32>) {
    if flat_index(gid) != 0u {
        return;
    }
    let loss = evaluated[TOTAL_SLOT];
    let usable = is_finite(loss) && is_finite(evaluated[GRADIENT_SLOT]);
    let better = kept[KEPT_VALID] == 0.0 || kp.lowest == 0u || loss < kept[TOTAL_SLOT];
    let take = usable && better;
    for (var s = 0u; s < LOSS_SLOTS; s++) {
        kept[KEPT_EVALUATED + s] = evaluated[s];
        if take {
            kept[s] = evaluated[s];
        }
    }
    if take {
        kept[KEPT_VALID] = 1.0;
    }
    kept[KEPT_TAKEN] = select(0.0, 1.0, take);
}

@compute @workgroup_size(WORKGROUP)
fn keep_copy(@builtin(global_invocation_id) gid: vec3<u32>) {
    for (var nth = 0u; nth < FLAT_VALUES; nth++) {
        keep_copy_at(flat_index(gid) * FLAT_VALUES + nth);
    }
}

// One value of keep_copy.
fn keep_copy_at(i: u32) {
    if i < kp.n && kept[KEPT_TAKEN] != 0.0 {
        result[i] = candidate[i];
    }
}
