//! `shaders/present.wgsl`: the present pipeline of the viewer (and of any front end with a surface),
//! a full-screen triangle whose fragment shader reads a planar RGB buffer (no copy through the CPU).

use std::num::NonZeroU64;

use super::{Access, Binding, ParamsLayout, Shader, UniformParams, uniform_params};
use crate::gpu::{GpuContext, PresentSurface};

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
pub const IMAGE: Binding =
    Binding { name: "image", binding: 1, access: Access::Read, vec4: false, holds: super::Holds::F32 };
/// The uniform block's layout.
pub const VIEW: ParamsLayout = View::LAYOUT;

/// The render pipeline that draws one of two planar RGB image buffers (the optimized image, the
/// content photo) into a surface's texture, scaled to fit with the aspect kept.
pub struct Presenter {
    pipeline: wgpu::RenderPipeline,
    bind_groups: [wgpu::BindGroup; 2],
    view: wgpu::Buffer,
    params: View,
}

impl Presenter {
    /// The pipeline for `surface`, drawing `images` (each `3·w·h` floats) of `w`×`h` pixels.
    pub fn new(ctx: &GpuContext, surface: &PresentSurface, images: [&wgpu::Buffer; 2], (w, h): (u32, u32)) -> Self {
        let module = Shader::Present.module(ctx);
        let entry = |binding, ty, min_binding_size| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::FRAGMENT,
            ty: wgpu::BindingType::Buffer { ty, has_dynamic_offset: false, min_binding_size },
            count: None,
        };
        let layout = ctx.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("present"),
            entries: &[
                entry(0, wgpu::BufferBindingType::Uniform, NonZeroU64::new(VIEW.size as u64)),
                entry(IMAGE.binding, wgpu::BufferBindingType::Storage { read_only: true }, None),
            ],
        });
        let pipeline_layout = ctx.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("present"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = ctx.device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("present"),
            layout: Some(&pipeline_layout),
            vertex: wgpu::VertexState {
                module: &module,
                entry_point: Some(VERTEX_ENTRY),
                compilation_options: Default::default(),
                buffers: &[],
            },
            primitive: wgpu::PrimitiveState::default(),
            depth_stencil: None,
            multisample: wgpu::MultisampleState::default(),
            fragment: Some(wgpu::FragmentState {
                module: &module,
                entry_point: Some(FRAGMENT_ENTRY),
                compilation_options: Default::default(),
                targets: &[Some(surface.format.into())],
            }),
            multiview_mask: None,
            cache: None,
        });
        let params = View {
            image_w: w,
            image_h: h,
            window_w: 1,
            window_h: 1,
            linear_out: surface.format.is_srgb() as u32,
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
        };
        let view = ctx.uniform_buffer("present view", &params);
        let bind_groups = images.map(|img| {
            ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("present"),
                layout: &layout,
                entries: &[
                    wgpu::BindGroupEntry { binding: 0, resource: view.as_entire_binding() },
                    wgpu::BindGroupEntry { binding: IMAGE.binding, resource: img.as_entire_binding() },
                ],
            })
        });
        Self { pipeline, bind_groups, view, params }
    }

    /// Follows a new window size in pixels.
    pub fn resize(&mut self, ctx: &GpuContext, width: u32, height: u32) {
        self.params.window_w = width;
        self.params.window_h = height;
        ctx.queue.write_buffer(&self.view, 0, bytemuck::bytes_of(&self.params));
    }

    /// Records the draw of the image (or, with `show_content`, the content photo) into `target`.
    pub fn draw(&self, encoder: &mut wgpu::CommandEncoder, target: &wgpu::TextureView, show_content: bool) {
        let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
            label: Some("present"),
            color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                view: target,
                depth_slice: None,
                resolve_target: None,
                ops: wgpu::Operations { load: wgpu::LoadOp::Clear(wgpu::Color::BLACK), store: wgpu::StoreOp::Store },
            })],
            ..Default::default()
        });
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_groups[show_content as usize], &[]);
        pass.draw(0..3, 0..1);
    }
}
