//! `shaders/present.wgsl`: the viewer's render pipeline, a full-screen triangle whose fragment
//! shader reads the optimizer's planar RGB buffer (no copy through the CPU).

use super::{Access, Binding, ParamsLayout, UniformParams, uniform_params};

uniform_params! {
    /// Uniforms of the present pipeline (binding 0, fragment stage).
    pub struct View {
        /// Image width.
        pub image_w: u32,
        /// Image height.
        pub image_h: u32,
        /// Window width.
        pub window_w: u32,
        /// Window height.
        pub window_h: u32,
        /// 1: the surface encodes to sRGB itself, so pixel values are decoded to linear first.
        pub linear_out: u32,
        /// Padding.
        pub _pad0: u32,
        /// Padding.
        pub _pad1: u32,
        /// Padding.
        pub _pad2: u32,
    }
}

/// Vertex entry point.
pub const VERTEX_ENTRY: &str = "present_vertex";
/// Fragment entry point.
pub const FRAGMENT_ENTRY: &str = "present_fragment";
/// The fragment stage's storage binding: the planar RGB image.
pub const IMAGE: Binding = Binding { name: "image", binding: 1, access: Access::Read };
/// The uniform block's layout.
pub const VIEW: ParamsLayout = View::LAYOUT;
