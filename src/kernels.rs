//! Compute pipelines for every WGSL kernel, their uniform parameter blocks, and [`BoundOp`]: a
//! pipeline with its bind group and dispatch size, made once and recorded every run.

use crate::arch::Activation;
use crate::gpu::GpuContext;

const COMMON: &str = include_str!("../shaders/common.wgsl");
const CONV: &str = include_str!("../shaders/conv.wgsl");
const DEPTHWISE: &str = include_str!("../shaders/depthwise.wgsl");
const POINTWISE: &str = include_str!("../shaders/pointwise.wgsl");
const SQUEEZE_EXCITE: &str = include_str!("../shaders/squeeze_excite.wgsl");

/// Invocations per workgroup along x for the one-invocation-per-value kernels.
pub const WORKGROUP: u32 = 256;
/// Output tile edge of the pointwise product.
pub const POINTWISE_TILE: u32 = 64;

/// Activation code shared with `shaders/common.wgsl`.
pub fn activation_code(a: Activation) -> u32 {
    match a {
        Activation::None => 0,
        Activation::Relu => 1,
        Activation::HardSwish => 2,
    }
}

/// Uniforms of `conv.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ConvParams {
    /// Input channels.
    pub in_c: u32,
    /// Input height.
    pub in_h: u32,
    /// Input width.
    pub in_w: u32,
    /// Output channels.
    pub out_c: u32,
    /// Output height.
    pub out_h: u32,
    /// Output width.
    pub out_w: u32,
    /// Kernel size.
    pub kernel: u32,
    /// Stride.
    pub stride: u32,
    /// Zero rows before the input.
    pub pad_y: u32,
    /// Zero columns before the input.
    pub pad_x: u32,
    /// Activation code ([`activation_code`]).
    pub act: u32,
    /// Upper clamp after the activation.
    pub cap: f32,
    /// Input normalization scale per RGB channel (4th unused).
    pub scale: [f32; 4],
    /// Input normalization shift per RGB channel (4th unused).
    pub shift: [f32; 4],
}

/// Uniforms of `depthwise.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DepthwiseParams {
    /// Channels.
    pub channels: u32,
    /// Input height.
    pub in_h: u32,
    /// Input width.
    pub in_w: u32,
    /// Output height.
    pub out_h: u32,
    /// Output width.
    pub out_w: u32,
    /// Kernel size.
    pub kernel: u32,
    /// Stride.
    pub stride: u32,
    /// Zero rows before the input.
    pub pad_y: u32,
    /// Zero columns before the input.
    pub pad_x: u32,
    /// Activation code ([`activation_code`]).
    pub act: u32,
    /// Upper clamp after the activation.
    pub cap: f32,
    /// Padding to 16 bytes.
    pub _pad: u32,
}

/// Uniforms of `pointwise.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct PointwiseParams {
    /// Input channels.
    pub in_c: u32,
    /// Output channels.
    pub out_c: u32,
    /// Pixels per channel.
    pub pixels: u32,
    /// Activation code ([`activation_code`]).
    pub act: u32,
    /// Upper clamp after the activation.
    pub cap: f32,
    /// Padding to 16 bytes.
    pub _pad: [u32; 3],
}

/// Uniforms of `squeeze_excite.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SeParams {
    /// Channels.
    pub channels: u32,
    /// Pixels per channel.
    pub pixels: u32,
    /// Squeeze (hidden) width.
    pub squeeze: u32,
    /// Activation of the reduce layer.
    pub reduce_act: u32,
    /// Upper clamp of the reduce layer.
    pub reduce_cap: f32,
    /// Added before the gate clamp.
    pub gate_add: f32,
    /// Upper end of the gate clamp.
    pub gate_max: f32,
    /// Gate multiplier after the clamp.
    pub gate_mul: f32,
}

/// How a binding is used (binding 0 is always the uniform block).
#[derive(Clone, Copy)]
enum Access {
    Read,
    ReadWrite,
}

/// One compute pipeline and its explicit bind-group layout.
pub struct Kernel {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    name: &'static str,
}

/// Every pipeline the forward pass uses.
pub struct Kernels {
    /// Full convolution (stem).
    pub conv: Kernel,
    /// Depthwise convolution.
    pub depthwise: Kernel,
    /// 1×1 convolution.
    pub pointwise: Kernel,
    /// 1×1 convolution plus residual.
    pub pointwise_residual: Kernel,
    /// Per-channel mean.
    pub channel_mean: Kernel,
    /// Squeeze-excite gate.
    pub se_gate: Kernel,
    /// Per-channel scale.
    pub channel_scale: Kernel,
}

impl Kernels {
    /// Compiles every kernel.
    pub fn new(ctx: &GpuContext) -> Self {
        use Access::*;
        let module = |label: &str, src: &str| {
            ctx.device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(label),
                    source: wgpu::ShaderSource::Wgsl(format!("{COMMON}\n{src}").into()),
                })
        };
        let conv = module("conv.wgsl", CONV);
        let depthwise = module("depthwise.wgsl", DEPTHWISE);
        let pointwise = module("pointwise.wgsl", POINTWISE);
        let se = module("squeeze_excite.wgsl", SQUEEZE_EXCITE);
        Self {
            conv: Kernel::new(ctx, &conv, "conv_forward", &[Read, Read, ReadWrite]),
            depthwise: Kernel::new(
                ctx,
                &depthwise,
                "depthwise_forward",
                &[Read, Read, ReadWrite],
            ),
            pointwise: Kernel::new(
                ctx,
                &pointwise,
                "pointwise_forward",
                &[Read, Read, ReadWrite],
            ),
            pointwise_residual: Kernel::new(
                ctx,
                &pointwise,
                "pointwise_residual_forward",
                &[Read, Read, ReadWrite, Read],
            ),
            channel_mean: Kernel::new(ctx, &se, "channel_mean", &[Read, Read, ReadWrite]),
            se_gate: Kernel::new(ctx, &se, "se_gate", &[Read, Read, ReadWrite]),
            channel_scale: Kernel::new(ctx, &se, "channel_scale", &[Read, Read, ReadWrite]),
        }
    }
}

impl Kernel {
    fn new(
        ctx: &GpuContext,
        module: &wgpu::ShaderModule,
        entry: &'static str,
        storage: &[Access],
    ) -> Self {
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        }];
        for (i, access) in storage.iter().enumerate() {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: i as u32 + 1,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: matches!(access, Access::Read),
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        let layout = ctx
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(entry),
                entries: &entries,
            });
        let pipeline_layout = ctx
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(entry),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let pipeline = ctx
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&pipeline_layout),
                module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            });
        Self {
            pipeline,
            layout,
            name: entry,
        }
    }

    /// Binds a uniform block and storage buffers (in binding order) for a dispatch of
    /// `workgroups`.
    pub fn bind<T: bytemuck::Pod>(
        &self,
        ctx: &GpuContext,
        params: &T,
        buffers: &[&wgpu::Buffer],
        workgroups: [u32; 3],
    ) -> BoundOp {
        let uniform = ctx.uniform_buffer(self.name, params);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: uniform.as_entire_binding(),
        }];
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: b.as_entire_binding(),
            });
        }
        let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(self.name),
            layout: &self.layout,
            entries: &entries,
        });
        BoundOp {
            pipeline: self.pipeline.clone(),
            bind_group,
            workgroups,
            _uniform: uniform,
        }
    }
}

/// A ready-to-record dispatch.
pub struct BoundOp {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
    _uniform: wgpu::Buffer,
}

impl BoundOp {
    /// Workgroup counts of this dispatch.
    pub fn workgroups(&self) -> [u32; 3] {
        self.workgroups
    }
}

/// Records `ops` in order into one compute pass.
pub fn record(encoder: &mut wgpu::CommandEncoder, ops: &[BoundOp]) {
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some("forward"),
        timestamp_writes: None,
    });
    for op in ops {
        pass.set_pipeline(&op.pipeline);
        pass.set_bind_group(0, &op.bind_group, &[]);
        pass.dispatch_workgroups(op.workgroups[0], op.workgroups[1], op.workgroups[2]);
    }
}

/// Records `ops` in one encoder, submits once, and waits.
pub fn run(ctx: &GpuContext, ops: &[BoundOp]) -> anyhow::Result<()> {
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    record(&mut encoder, ops);
    ctx.queue.submit([encoder.finish()]);
    ctx.finish()
}
