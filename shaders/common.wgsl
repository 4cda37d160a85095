// Shared by every kernel family: prepended to each shader file at load time.

const ACT_NONE: u32 = 0u;
const ACT_RELU: u32 = 1u;
const ACT_HARD_SWISH: u32 = 2u;

// Activation followed by the upper clamp `cap` (infinity-like when unused).
fn activate(x: f32, act: u32, cap: f32) -> f32 {
    var y = x;
    if act == ACT_RELU {
        y = max(x, 0.0);
    } else if act == ACT_HARD_SWISH {
        y = x * clamp(x + 3.0, 0.0, 6.0) / 6.0;
    }
    return min(y, cap);
}
