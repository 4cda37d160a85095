// Color transfer at write time. `original_colors` (jcjohnson's -original_colors 1): the optimized
// image's luma with the content photo's chroma, in YCbCr (BT.601, full range):
//   Y = 0.299 R + 0.587 G + 0.114 B,  Cb = 0.5 + (B − Y) / 1.772,  Cr = 0.5 + (R − Y) / 1.402,
// the image clamped to [0, 1] first (as it is written) and the result clamped to [0, 1].

struct ColorParams {
    pixels: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: ColorParams;
@group(0) @binding(1) var<storage, read> image: array<f32>;
@group(0) @binding(2) var<storage, read> photo: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;

const KR: f32 = 0.299;
const KB: f32 = 0.114;
const KG: f32 = 1.0 - KR - KB;

fn luma(rgb: vec3<f32>) -> f32 {
    return KR * rgb.x + KG * rgb.y + KB * rgb.z;
}

// One invocation per pixel of the planar RGB images ([3][pixels]).
@compute @workgroup_size(WORKGROUP)
fn original_colors(@builtin(global_invocation_id) gid: vec3<u32>) {
    for (var nth = 0u; nth < FLAT_VALUES; nth++) {
        original_colors_at(flat_index(gid) * FLAT_VALUES + nth);
    }
}

// One value of original_colors.
fn original_colors_at(i: u32) {
    let n = p.pixels;
    if i >= n {
        return;
    }
    let result = clamp(vec3<f32>(image[i], image[n + i], image[2u * n + i]), vec3<f32>(0.0), vec3<f32>(1.0));
    let source = vec3<f32>(photo[i], photo[n + i], photo[2u * n + i]);
    let y = luma(result);
    let y_photo = luma(source);
    let cb = 0.5 + (source.z - y_photo) / (2.0 * (1.0 - KB));
    let cr = 0.5 + (source.x - y_photo) / (2.0 * (1.0 - KR));
    let r = y + 2.0 * (1.0 - KR) * (cr - 0.5);
    let b = y + 2.0 * (1.0 - KB) * (cb - 0.5);
    let g = (y - KR * r - KB * b) / KG;
    let rgb = clamp(vec3<f32>(r, g, b), vec3<f32>(0.0), vec3<f32>(1.0));
    output[i] = rgb.x;
    output[n + i] = rgb.y;
    output[2u * n + i] = rgb.z;
}
