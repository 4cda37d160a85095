// Presents a planar RGB image buffer (the optimizer's own buffer: no copy through the CPU) in a
// window: a full-screen triangle whose fragment shader samples the buffer, scaled to fit with the
// aspect kept and the rest of the window dark gray.

struct View {
    image_w: u32, image_h: u32, window_w: u32, window_h: u32,
    // 1: the surface encodes to sRGB itself, so pixel values are decoded to linear first.
    linear_out: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> v: View;
@group(0) @binding(1) var<storage, read> image: array<f32>;

@vertex
fn present_vertex(@builtin(vertex_index) i: u32) -> @builtin(position) vec4<f32> {
    let x = f32(i32(i & 1u) * 4 - 1);
    let y = f32(i32(i >> 1u) * 4 - 1);
    return vec4<f32>(x, y, 0.0, 1.0);
}

fn srgb_to_linear(c: vec3<f32>) -> vec3<f32> {
    return select(pow((c + 0.055) / 1.055, vec3<f32>(2.4)), c / 12.92, c <= vec3<f32>(0.04045));
}

@fragment
fn present_fragment(@builtin(position) pos: vec4<f32>) -> @location(0) vec4<f32> {
    let iw = f32(v.image_w);
    let ih = f32(v.image_h);
    let scale = min(f32(v.window_w) / iw, f32(v.window_h) / ih);
    let ox = (f32(v.window_w) - scale * iw) * 0.5;
    let oy = (f32(v.window_h) - scale * ih) * 0.5;
    let px = (pos.x - ox) / scale;
    let py = (pos.y - oy) / scale;
    if px < 0.0 || py < 0.0 || px >= iw || py >= ih {
        return vec4<f32>(0.08, 0.08, 0.08, 1.0);
    }
    let n = v.image_w * v.image_h;
    let idx = u32(py) * v.image_w + u32(px);
    var rgb = clamp(vec3<f32>(image[idx], image[n + idx], image[2u * n + idx]), vec3<f32>(0.0), vec3<f32>(1.0));
    if v.linear_out == 1u {
        rgb = srgb_to_linear(rgb);
    }
    return vec4<f32>(rgb, 1.0);
}
