//! Compute pipelines for every WGSL kernel, their uniform parameter blocks, and [`BoundOp`]: a
//! pipeline with its bind group and dispatch size, made once and recorded every run.

use crate::arch::Activation;
use crate::gpu::GpuContext;

const COMMON: &str = include_str!("../shaders/common.wgsl");
const CONV: &str = include_str!("../shaders/conv.wgsl");
const DEPTHWISE: &str = include_str!("../shaders/depthwise.wgsl");
const POINTWISE: &str = include_str!("../shaders/pointwise.wgsl");
const SQUEEZE_EXCITE: &str = include_str!("../shaders/squeeze_excite.wgsl");
const LOSSES: &str = include_str!("../shaders/losses.wgsl");
const OPTIM: &str = include_str!("../shaders/optim.wgsl");
const LBFGS: &str = include_str!("../shaders/lbfgs.wgsl");

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
    /// 1: also store the pre-activation.
    pub store_preact: u32,
    /// Padding to 16 bytes.
    pub _pad: [u32; 3],
    /// Input normalization scale per RGB channel (4th unused).
    pub scale: [f32; 4],
    /// Input normalization shift per RGB channel (4th unused).
    pub shift: [f32; 4],
}

/// Workgroups of `conv_forward`: 256 output pixels by blocks of 16 output channels.
pub fn conv_grid(p: &ConvParams) -> [u32; 3] {
    [(p.out_h * p.out_w).div_ceil(WORKGROUP), p.out_c.div_ceil(16), 1]
}

/// Parameters of `activation_backward` (in `conv.wgsl`) over `count` values.
pub fn activation_params(count: usize, act: u32, cap: f32) -> ConvParams {
    ConvParams { out_c: 1, out_h: 1, out_w: count as u32, act, cap, ..bytemuck::Zeroable::zeroed() }
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
    /// 1: also store the pre-activation.
    pub store_preact: u32,
}

/// Flags of `pointwise.wgsl` (see the shader for their meaning).
pub mod pointwise_flags {
    /// Add the bias stored after the weights.
    pub const BIAS: u32 = 1;
    /// Store the pre-activation in the aux buffer.
    pub const STORE_PREACT: u32 = 2;
    /// Read A (the weights) transposed.
    pub const TRANSPOSE_A: u32 = 8;
    /// Read B (the input) transposed.
    pub const TRANSPOSE_B: u32 = 16;
    /// Multiply B by the activation derivative of the pre-activation in aux; no activation after.
    pub const GRAD_ACT_B: u32 = 32;
    /// Add to the output instead of overwriting it.
    pub const ACCUMULATE: u32 = 64;
    /// The product is symmetric (A·Aᵀ, m = n): compute the tiles on and above the diagonal only.
    pub const SYMMETRIC: u32 = 128;
}

/// Uniforms of `pointwise.wgsl`: out[m][n] = act(alpha · Σ_k A[m][k] B[k][n] + bias[m]) …
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct PointwiseParams {
    /// Rows of the output (output channels).
    pub m: u32,
    /// Reduction length (input channels).
    pub k: u32,
    /// Columns of the output (pixels).
    pub n: u32,
    /// Activation code (of the epilogue, or of the derivative with `GRAD_ACT_B`).
    pub act: u32,
    /// Upper clamp after the activation.
    pub cap: f32,
    /// [`pointwise_flags`] bits.
    pub flags: u32,
    /// Scale of the product.
    pub alpha: f32,
    /// 0: one product over all of k. Otherwise the reduction is split into chunks of this many
    /// values, each workgroup layer z writing its own partial product at offset z·m·n.
    pub k_chunk: u32,
}

/// Uniforms of `losses.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LossParams {
    /// Values in the content layer.
    pub count: u32,
    /// Image height (TV).
    pub height: u32,
    /// Image width (TV).
    pub width: u32,
    /// Channels of the style layer.
    pub channels: u32,
    /// Gradient coefficient.
    pub coef: f32,
    /// Style layer weight.
    pub layer_weight: f32,
    /// Partial Gram products to sum (style loss).
    pub splits: u32,
    /// Workgroups of this dispatch ([`loss_groups`]).
    pub groups: u32,
    /// Content weight of the total.
    pub content_weight: f32,
    /// Style weight of the total.
    pub style_weight: f32,
    /// TV weight of the total (and of the TV gradient).
    pub tv_weight: f32,
    /// Index in the losses buffer of this dispatch's first per-workgroup partial sum.
    pub partial: u32,
    /// `total_loss`: where the content, style and TV partial sums end (they start at 4 and
    /// follow each other).
    pub ends: [u32; 4],
}

/// Workgroups of a loss kernel over `count` values: one per 2048 values (at least 1, at most 64),
/// each writing its own partial sum so no single workgroup walks a whole layer.
pub fn loss_groups(count: usize) -> u32 {
    count.div_ceil(2048).clamp(1, 64) as u32
}

/// Uniforms of `optim.wgsl` (Adam; the squash kernels use only `n`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct OptimParams {
    /// Values in the image.
    pub n: u32,
    /// 1: clamp to [0, 1] after the step.
    pub clamp_01: u32,
    /// Padding.
    pub _pad0: [u32; 2],
    /// Learning rate.
    pub lr: f32,
    /// β1.
    pub beta1: f32,
    /// β2.
    pub beta2: f32,
    /// ε.
    pub eps: f32,
    /// 1 − β1^t.
    pub bias_correction1: f32,
    /// 1 − β2^t.
    pub bias_correction2: f32,
    /// Padding.
    pub _pad1: [u32; 2],
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

/// What part of the work a dispatch belongs to, for the per-kernel breakdown of `bench`. Each
/// shader file is one family; the Gram products run the pointwise kernel but count as `Gram`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// The full 3×3 stem convolution, forward and backward (with its activation's backward).
    Stem,
    /// Depthwise convolutions, forward and backward.
    Depthwise,
    /// 1×1 convolutions (forward and input-gradient products) and the residual connections.
    Pointwise,
    /// Squeeze-excite: channel means, gates, scaling, and their gradients.
    SqueezeExcite,
    /// Gram matrices of the style layers and the style gradient products R·F.
    Gram,
    /// Content, style, TV and total loss kernels.
    Losses,
    /// The image update: Adam, L-BFGS, the sigmoid squash.
    Optimizer,
}

impl Family {
    /// Every family, in the order reports list them.
    pub const ALL: [Family; 7] = [
        Family::Stem,
        Family::Depthwise,
        Family::Pointwise,
        Family::SqueezeExcite,
        Family::Gram,
        Family::Losses,
        Family::Optimizer,
    ];

    /// The name reports use.
    pub fn name(self) -> &'static str {
        match self {
            Family::Stem => "stem",
            Family::Depthwise => "depthwise",
            Family::Pointwise => "pointwise",
            Family::SqueezeExcite => "squeeze-excite",
            Family::Gram => "gram",
            Family::Losses => "losses",
            Family::Optimizer => "optimizer",
        }
    }
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
    family: Family,
    bindings: Vec<u32>,
}

/// Every compute pipeline: forward, backward, losses and optimizers.
pub struct Kernels {
    /// Full convolution (stem).
    pub conv: Kernel,
    /// Depthwise convolution.
    pub depthwise: Kernel,
    /// 1×1 convolution and every other product (backward, Gram, style gradient).
    pub pointwise: Products,
    /// Per-channel mean.
    pub channel_mean: Kernel,
    /// Squeeze-excite gate.
    pub se_gate: Kernel,
    /// Per-channel scale.
    pub channel_scale: Kernel,
    /// Stem gradient with respect to the image (from dL/d(pre-activation)).
    pub conv_backward: Kernel,
    /// dL/dY → dL/d(pre-activation) in place (before the stem and depthwise input gradients).
    pub activation_backward: Kernel,
    /// Depthwise gradient with respect to its input.
    pub depthwise_backward: Kernel,
    /// Residual connection gradient.
    pub residual_backward: Kernel,
    /// Residual connection: projection plus block input.
    pub residual_forward: Kernel,
    /// Per-channel dot product of gradient and input (gate gradient).
    pub channel_dot: Kernel,
    /// Squeeze-excite gate backward to the channel means.
    pub se_gate_backward: Kernel,
    /// Squeeze-excite backward to its input.
    pub se_input_backward: Kernel,
    /// Content loss and gradient.
    pub content_loss: Kernel,
    /// Style loss of one layer and its R matrix.
    pub style_loss: Kernel,
    /// Total variation loss and gradient.
    pub tv_loss: Kernel,
    /// Weighted total of the losses.
    pub total_loss: Kernel,
    /// Adam update of the image.
    pub adam_step: Kernel,
    /// image = sigmoid(u).
    pub squash: Kernel,
    /// Gradient through the sigmoid.
    pub squash_backward: Kernel,
    /// L-BFGS dot products (partial sums).
    pub lbfgs_dots: Kernel,
    /// L-BFGS two-loop recursion on the dot products.
    pub lbfgs_solve: Kernel,
    /// L-BFGS history, direction and image update.
    pub lbfgs_update: Kernel,
}

/// Uniforms of `lbfgs.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LbfgsParams {
    /// Values in the optimized vector.
    pub n: u32,
    /// History size m.
    pub history: u32,
    /// Workgroups per row of the dot-product pass.
    pub groups: u32,
    /// Padding.
    pub _pad0: u32,
    /// Learning rate (step length).
    pub lr: f32,
    /// Convergence threshold on max |g|.
    pub tolerance_grad: f32,
    /// Threshold on the directional derivative.
    pub tolerance_change: f32,
    /// Padding.
    pub _pad1: u32,
}

impl Kernels {
    /// Compiles every kernel.
    pub fn new(ctx: &GpuContext) -> Self {
        use Access::*;
        let module = |label: &str, src: &str, family: Family| {
            let module = ctx.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(format!("{COMMON}\n{src}").into()),
            });
            (module, family)
        };
        let conv = module("conv.wgsl", CONV, Family::Stem);
        let depthwise = module("depthwise.wgsl", DEPTHWISE, Family::Depthwise);
        let pointwise = module("pointwise.wgsl", POINTWISE, Family::Pointwise);
        let se = module("squeeze_excite.wgsl", SQUEEZE_EXCITE, Family::SqueezeExcite);
        let losses = module("losses.wgsl", LOSSES, Family::Losses);
        let optim = module("optim.wgsl", OPTIM, Family::Optimizer);
        let lbfgs = module("lbfgs.wgsl", LBFGS, Family::Optimizer);
        let forward = [(1, Read), (2, Read), (3, ReadWrite), (4, ReadWrite)];
        let backward = [(5, Read), (2, Read), (7, ReadWrite)];
        Self {
            conv: Kernel::new(ctx, &conv, "conv_forward", &forward),
            depthwise: Kernel::new(ctx, &depthwise, "depthwise_forward", &forward),
            pointwise: Products { module: pointwise.clone(), shapes: Default::default() },
            channel_mean: Kernel::new(ctx, &se, "channel_mean", &[(1, Read), (3, ReadWrite)]),
            se_gate: Kernel::new(ctx, &se, "se_gate", &[(1, Read), (2, Read), (3, ReadWrite)]),
            channel_scale: Kernel::new(ctx, &se, "channel_scale", &[(1, Read), (2, Read), (3, ReadWrite)]),
            conv_backward: Kernel::new(ctx, &conv, "conv_backward", &backward),
            activation_backward: Kernel::new(ctx, &conv, "activation_backward", &[(6, Read), (8, ReadWrite)]),
            depthwise_backward: Kernel::new(ctx, &depthwise, "depthwise_backward", &backward),
            residual_backward: Kernel::new(ctx, &pointwise, "residual_backward", &[(5, Read), (6, ReadWrite)]),
            residual_forward: Kernel::new(ctx, &pointwise, "residual_forward", &[(1, Read), (5, Read), (6, ReadWrite)]),
            channel_dot: Kernel::new(ctx, &se, "channel_dot", &[(1, Read), (3, ReadWrite), (4, Read)]),
            se_gate_backward: Kernel::new(
                ctx,
                &se,
                "se_gate_backward",
                &[(1, Read), (2, Read), (3, ReadWrite), (4, Read)],
            ),
            se_input_backward: Kernel::new(
                ctx,
                &se,
                "se_input_backward",
                &[(1, Read), (2, Read), (4, Read), (5, ReadWrite)],
            ),
            content_loss: Kernel::new(
                ctx,
                &losses,
                "content_loss",
                &[(1, Read), (2, Read), (3, ReadWrite), (4, ReadWrite)],
            ),
            style_loss: Kernel::new(
                ctx,
                &losses,
                "style_loss",
                &[(1, Read), (2, Read), (3, ReadWrite), (4, ReadWrite)],
            ),
            tv_loss: Kernel::new(ctx, &losses, "tv_loss", &[(1, Read), (3, ReadWrite), (4, ReadWrite)]),
            total_loss: Kernel::new(ctx, &losses, "total_loss", &[(4, ReadWrite)]),
            adam_step: Kernel::new(
                ctx,
                &optim,
                "adam_step",
                &[(1, ReadWrite), (2, Read), (3, ReadWrite), (4, ReadWrite)],
            ),
            squash: Kernel::new(ctx, &optim, "squash", &[(5, Read), (6, ReadWrite)]),
            squash_backward: Kernel::new(ctx, &optim, "squash_backward", &[(6, ReadWrite), (2, Read), (7, ReadWrite)]),
            lbfgs_dots: Kernel::new(ctx, &lbfgs, "lbfgs_dots", &[(1, Read), (2, Read), (3, ReadWrite)]),
            lbfgs_solve: Kernel::new(ctx, &lbfgs, "lbfgs_solve", &[(4, ReadWrite)]),
            lbfgs_update: Kernel::new(
                ctx,
                &lbfgs,
                "lbfgs_update",
                &[(1, Read), (5, ReadWrite), (6, Read), (7, ReadWrite)],
            ),
        }
    }
}

/// Bindings of `pointwise_forward`: input, weights, output, aux.
const POINTWISE_BINDINGS: [(u32, Access); 4] =
    [(1, Access::Read), (2, Access::Read), (3, Access::ReadWrite), (4, Access::ReadWrite)];

/// The pointwise product kernel in its nine tile shapes (1, 2 or 4 output rows and columns per
/// invocation), each compiled on first use.
pub struct Products {
    module: (wgpu::ShaderModule, Family),
    shapes: [std::sync::OnceLock<Kernel>; 9],
}

impl Products {
    /// Binds a product with the tile shape that suits its m×n (see [`tile_shape`]), dispatching
    /// enough workgroups to cover it (and one layer per k chunk when `k_chunk` is set).
    pub fn bind(&self, ctx: &GpuContext, params: &PointwiseParams, buffers: &[&wgpu::Buffer]) -> BoundOp {
        let symmetric = params.flags & pointwise_flags::SYMMETRIC != 0;
        let (rows, cols) = tile_shape(params.m, params.n, symmetric);
        let shape = (rows.ilog2() * 3 + cols.ilog2()) as usize;
        let kernel = self.shapes[shape].get_or_init(|| {
            let constants = [("ROWS", f64::from(rows)), ("COLS", f64::from(cols))];
            Kernel::with_constants(ctx, &self.module, "pointwise_forward", &POINTWISE_BINDINGS, &constants)
        });
        let splits = if params.k_chunk == 0 { 1 } else { params.k.div_ceil(params.k_chunk) };
        let grid = product_tiles(params.m, params.n, symmetric);
        kernel.bind(ctx, params, buffers, [grid[0], grid[1], splits])
    }
}

/// Output rows and columns per invocation (1, 2 or 4 each; tiles are 16 invocations across) for
/// an m×n product: the cheapest by a simple cost model, padded tile area × (1 + workgroup-memory
/// reads per multiply-add). Large tiles reuse each loaded value more; small ones pad narrow
/// layers less. Symmetric products use square tiles.
pub fn tile_shape(m: u32, n: u32, symmetric: bool) -> (u32, u32) {
    let padded = |len: u32, per: u32| f64::from(len.div_ceil(16 * per) * 16 * per);
    let cost = |(r, c): (u32, u32)| padded(m, r) * padded(n, c) * (1.0 + f64::from(r + c) / f64::from(r * c));
    let shapes = [1, 2, 4].into_iter().flat_map(|r| [1, 2, 4].map(|c| (r, c)));
    shapes.filter(|(r, c)| !symmetric || r == c).min_by(|a, b| cost(*a).total_cmp(&cost(*b))).expect("a shape")
}

/// Workgroups along x and y that cover an m×n product's tiles (for a symmetric product, all of
/// them along x: only the tiles on and above the diagonal).
pub fn product_tiles(m: u32, n: u32, symmetric: bool) -> [u32; 2] {
    let (rows, cols) = tile_shape(m, n, symmetric);
    let (across, down) = (n.div_ceil(16 * cols), m.div_ceil(16 * rows));
    if symmetric { [down * (down + 1) / 2, 1] } else { [across, down] }
}

impl Kernel {
    /// `storage`: binding number and access of each storage buffer, in the order `bind` takes them.
    fn new(
        ctx: &GpuContext,
        module: &(wgpu::ShaderModule, Family),
        entry: &'static str,
        storage: &[(u32, Access)],
    ) -> Self {
        Self::with_constants(ctx, module, entry, storage, &[])
    }

    /// As `new`, with values for the shader's pipeline-overridable constants.
    fn with_constants(
        ctx: &GpuContext,
        (module, family): &(wgpu::ShaderModule, Family),
        entry: &'static str,
        storage: &[(u32, Access)],
        constants: &[(&str, f64)],
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
        for &(binding, access) in storage {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only: matches!(access, Access::Read) },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        let layout = ctx
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(entry), entries: &entries });
        let pipeline_layout = ctx.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(entry),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = ctx.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: Some(&pipeline_layout),
            module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions { constants, ..Default::default() },
            cache: None,
        });
        Self { pipeline, layout, name: entry, family: *family, bindings: storage.iter().map(|b| b.0).collect() }
    }

    /// Binds a uniform block and storage buffers (in the order given to `new`) for a dispatch of
    /// `workgroups`.
    pub fn bind<T: bytemuck::Pod>(
        &self,
        ctx: &GpuContext,
        params: &T,
        buffers: &[&wgpu::Buffer],
        workgroups: [u32; 3],
    ) -> BoundOp {
        let uniform = ctx.uniform_buffer(self.name, params);
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() }];
        assert_eq!(buffers.len(), self.bindings.len(), "{}: wrong number of buffers", self.name);
        for (&binding, b) in self.bindings.iter().zip(buffers) {
            entries.push(wgpu::BindGroupEntry { binding, resource: b.as_entire_binding() });
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
            uniform,
            family: self.family,
            name: self.name,
        }
    }
}

/// A ready-to-record dispatch.
#[derive(Clone)]
pub struct BoundOp {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
    uniform: wgpu::Buffer,
    family: Family,
    name: &'static str,
}

impl BoundOp {
    /// The family the dispatch is timed under.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The kernel's entry point.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Workgroups of the dispatch.
    pub fn workgroups(&self) -> [u32; 3] {
        self.workgroups
    }

    /// The same dispatch, timed under another family.
    pub fn in_family(self, family: Family) -> Self {
        Self { family, ..self }
    }

    /// Records this dispatch into a compute pass.
    pub fn dispatch(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.workgroups[0], self.workgroups[1], self.workgroups[2]);
    }

    /// Rewrites the uniform parameters (for values that change between iterations).
    pub fn update<T: bytemuck::Pod>(&self, ctx: &GpuContext, params: &T) {
        ctx.queue.write_buffer(&self.uniform, 0, bytemuck::bytes_of(params));
    }
}

/// One GPU command of an iteration, so an iteration can be recorded whole or in pieces.
#[derive(Clone)]
pub enum Command {
    /// Zero a buffer.
    Clear(wgpu::Buffer),
    /// Copy the first `bytes` of one buffer into another.
    Copy(wgpu::Buffer, wgpu::Buffer, u64),
    /// A compute dispatch.
    Dispatch(BoundOp),
}

/// Records commands in order; consecutive dispatches share one compute pass.
pub fn record_commands(encoder: &mut wgpu::CommandEncoder, commands: &[Command]) {
    let mut i = 0;
    while i < commands.len() {
        match &commands[i] {
            Command::Clear(b) => encoder.clear_buffer(b, 0, None),
            Command::Copy(from, to, bytes) => encoder.copy_buffer_to_buffer(from, 0, to, 0, *bytes),
            Command::Dispatch(_) => {
                let end = commands[i..]
                    .iter()
                    .position(|c| !matches!(c, Command::Dispatch(_)))
                    .map_or(commands.len(), |p| i + p);
                let ops: Vec<BoundOp> = commands[i..end]
                    .iter()
                    .filter_map(|c| if let Command::Dispatch(op) = c { Some(op.clone()) } else { None })
                    .collect();
                record(encoder, &ops);
                i = end;
                continue;
            }
        }
        i += 1;
    }
}

/// Records `ops` in order into one compute pass.
pub fn record(encoder: &mut wgpu::CommandEncoder, ops: &[BoundOp]) {
    let mut pass =
        encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("kernels"), timestamp_writes: None });
    for op in ops {
        op.dispatch(&mut pass);
    }
}

/// Records `ops` in one encoder, submits once, and waits.
pub fn run(ctx: &GpuContext, ops: &[BoundOp]) -> anyhow::Result<()> {
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    record(&mut encoder, ops);
    ctx.queue.submit([encoder.finish()]);
    ctx.finish()
}
