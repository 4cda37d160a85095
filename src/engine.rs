//! The forward pass on the GPU: weights uploaded once ([`FeatureNet`]), then a [`ForwardPlan`] per
//! input size with every buffer and bind group made up front, recorded into one command encoder
//! and submitted once per run.

use anyhow::{Result, bail};

use crate::arch::{self, LayerInfo};
use crate::gpu::GpuContext;
use crate::kernels::{
    self, BoundOp, ConvParams, DepthwiseParams, Kernels, POINTWISE_TILE, PointwiseParams, SeParams,
    WORKGROUP, activation_code,
};
use crate::model::{Conv, Network, SqueezeExcite};

/// The network's weights resident on the GPU, with the compiled kernels.
pub struct FeatureNet {
    /// The CPU-side network (shapes, constants).
    pub net: Network,
    kernels: Kernels,
    stem: wgpu::Buffer,
    blocks: Vec<BlockWeights>,
    head: wgpu::Buffer,
    classifier: Option<(wgpu::Buffer, wgpu::Buffer)>,
}

struct BlockWeights {
    expand: Option<wgpu::Buffer>,
    depthwise: wgpu::Buffer,
    se: Option<wgpu::Buffer>,
    project: wgpu::Buffer,
}

/// Weights followed by biases, the layout every kernel reads.
fn conv_buffer(ctx: &GpuContext, label: &str, conv: &Conv) -> wgpu::Buffer {
    let mut data = conv.weight.clone();
    data.extend_from_slice(&conv.bias);
    ctx.storage_buffer(label, &data)
}

/// Reduce weights, reduce biases, expand weights, expand biases.
fn se_buffer(ctx: &GpuContext, label: &str, se: &SqueezeExcite) -> wgpu::Buffer {
    let mut data = se.reduce.weight.clone();
    data.extend_from_slice(&se.reduce.bias);
    data.extend_from_slice(&se.expand.weight);
    data.extend_from_slice(&se.expand.bias);
    ctx.storage_buffer(label, &data)
}

impl FeatureNet {
    /// Uploads the weights and compiles the kernels.
    pub fn new(ctx: &GpuContext, net: Network) -> Self {
        let blocks = net
            .blocks
            .iter()
            .enumerate()
            .map(|(i, b)| BlockWeights {
                expand: b
                    .expand
                    .as_ref()
                    .map(|c| conv_buffer(ctx, &format!("block{i}.expand"), c)),
                depthwise: conv_buffer(ctx, &format!("block{i}.depthwise"), &b.depthwise),
                se: b
                    .se
                    .as_ref()
                    .map(|s| se_buffer(ctx, &format!("block{i}.se"), s)),
                project: conv_buffer(ctx, &format!("block{i}.project"), &b.project),
            })
            .collect();
        Self {
            kernels: Kernels::new(ctx),
            stem: conv_buffer(ctx, "stem", &net.stem),
            head: conv_buffer(ctx, "head", &net.head),
            classifier: net.classifier.as_ref().map(|c| {
                (
                    conv_buffer(ctx, "classifier.hidden", &c.hidden),
                    conv_buffer(ctx, "classifier.logits", &c.logits),
                )
            }),
            blocks,
            net,
        }
    }

    /// Every named layer for an input of `width`×`height`.
    pub fn layers(&self, width: usize, height: usize) -> Vec<LayerInfo> {
        arch::layers(self.net.arch, self.net.padding, width, height)
    }
}

/// A feature map on the GPU.
struct Activation {
    info: LayerInfo,
    buffer: wgpu::Buffer,
}

/// The forward pass for one input size: buffers, bind groups and dispatches, made once.
pub struct ForwardPlan {
    width: usize,
    height: usize,
    input: wgpu::Buffer,
    layers: Vec<Activation>,
    logits: Option<(wgpu::Buffer, usize)>,
    ops: Vec<BoundOp>,
}

/// Checks a buffer of `floats` values fits the device, naming the layer when it does not.
fn check_fits(
    ctx: &GpuContext,
    what: &str,
    floats: usize,
    width: usize,
    height: usize,
) -> Result<()> {
    let bytes = floats as u64 * 4;
    let limit = ctx
        .limits
        .max_storage_buffer_binding_size
        .min(ctx.limits.max_buffer_size);
    if bytes > limit {
        bail!(
            "image {width}x{height} is too large for this device: {what} needs a {} MiB buffer, the limit is {} MiB \
             (use --size to scale the image down)",
            bytes.div_ceil(1 << 20),
            limit >> 20
        );
    }
    Ok(())
}

fn groups(n: usize, per: u32) -> u32 {
    (n as u32).div_ceil(per)
}

impl ForwardPlan {
    /// Plans the forward pass for a `width`×`height` image; `classify` adds the classifier.
    pub fn new(
        ctx: &GpuContext,
        fnet: &FeatureNet,
        width: usize,
        height: usize,
        classify: bool,
    ) -> Result<Self> {
        if width == 0 || height == 0 {
            bail!("image has no pixels");
        }
        let net = &fnet.net;
        let k = &fnet.kernels;
        check_fits(ctx, "the input image", 3 * width * height, width, height)?;
        let infos = fnet.layers(width, height);
        let max_groups = ctx.limits.max_compute_workgroups_per_dimension;
        for info in &infos {
            check_fits(
                ctx,
                &format!("layer {}", info.name),
                info.channels * info.height * info.width,
                width,
                height,
            )?;
            let pixel_groups = groups(info.height * info.width, WORKGROUP);
            if pixel_groups > max_groups {
                bail!(
                    "image {width}x{height} is too large for this device: layer {} needs {} workgroups, the limit is {} \
                     (use --size to scale the image down)",
                    info.name,
                    pixel_groups,
                    max_groups
                );
            }
        }
        let input = ctx.zeroed_buffer("input", 3 * width * height);
        let mut layers: Vec<Activation> = Vec::with_capacity(infos.len());
        for info in infos {
            // Without a residual, `blockN` is `blockN.project`: they share one buffer.
            let alias = net
                .blocks
                .iter()
                .enumerate()
                .find(|(i, b)| !b.residual && info.name == format!("block{i}"));
            let buffer = match alias {
                Some((i, _)) => {
                    let project = format!("block{i}.project");
                    layers
                        .iter()
                        .find(|l| l.info.name == project)
                        .expect("project precedes block")
                        .buffer
                        .clone()
                }
                None => ctx.zeroed_buffer(&info.name, info.channels * info.height * info.width),
            };
            layers.push(Activation { info, buffer });
        }
        let buf = |name: &str| -> &wgpu::Buffer {
            &layers
                .iter()
                .find(|l| l.info.name == name)
                .expect("planned layer")
                .buffer
        };
        let info = |name: &str| -> &LayerInfo {
            &layers
                .iter()
                .find(|l| l.info.name == name)
                .expect("planned layer")
                .info
        };

        let mut ops = Vec::new();
        // Stem.
        let stem = info("stem");
        let (_, pad_y) = net.padding.geometry(height, 3, 2);
        let (_, pad_x) = net.padding.geometry(width, 3, 2);
        let s = &net.stem;
        let params = ConvParams {
            in_c: 3,
            in_h: height as u32,
            in_w: width as u32,
            out_c: s.out_channels as u32,
            out_h: stem.height as u32,
            out_w: stem.width as u32,
            kernel: s.kernel as u32,
            stride: s.stride as u32,
            pad_y: pad_y as u32,
            pad_x: pad_x as u32,
            act: activation_code(s.activation),
            cap: s.cap,
            scale: [
                net.input_scale[0],
                net.input_scale[1],
                net.input_scale[2],
                0.0,
            ],
            shift: [
                net.input_shift[0],
                net.input_shift[1],
                net.input_shift[2],
                0.0,
            ],
        };
        ops.push(k.conv.bind(
            ctx,
            &params,
            &[&input, &fnet.stem, buf("stem")],
            [
                groups(stem.height * stem.width, WORKGROUP),
                s.out_channels as u32,
                1,
            ],
        ));

        let mut current = "stem".to_string();
        for (i, (block, weights)) in net.blocks.iter().zip(&fnet.blocks).enumerate() {
            let block_input = current.clone();
            if let (Some(conv), Some(w)) = (&block.expand, &weights.expand) {
                let name = format!("block{i}.expand");
                ops.push(pointwise_op(
                    ctx,
                    k,
                    conv,
                    w,
                    buf(&current),
                    buf(&name),
                    None,
                    info(&name),
                ));
                current = name;
            }
            let name = format!("block{i}.depthwise");
            ops.push(depthwise_op(
                ctx,
                k,
                net,
                &block.depthwise,
                &weights.depthwise,
                info(&current),
                buf(&current),
                info(&name),
                buf(&name),
            ));
            current = name;
            if let (Some(se), Some(w)) = (&block.se, &weights.se) {
                let name = format!("block{i}.se");
                ops.extend(se_ops(
                    ctx,
                    k,
                    se,
                    w,
                    info(&current),
                    buf(&current),
                    buf(&name),
                ));
                current = name;
            }
            let project = format!("block{i}.project");
            ops.push(pointwise_op(
                ctx,
                k,
                &block.project,
                &weights.project,
                buf(&current),
                buf(&project),
                None,
                info(&project),
            ));
            let out = format!("block{i}");
            if block.residual {
                // The residual add is fused into a second product that writes `blockN`; the plain
                // projection above keeps `blockN.project` available as a feature.
                let residual = Some(buf(&block_input));
                ops.push(pointwise_op(
                    ctx,
                    k,
                    &block.project,
                    &weights.project,
                    buf(&current),
                    buf(&out),
                    residual,
                    info(&out),
                ));
            }
            current = out;
        }
        ops.push(pointwise_op(
            ctx,
            k,
            &net.head,
            &fnet.head,
            buf(&current),
            buf("head"),
            None,
            info("head"),
        ));

        let logits = match (&net.classifier, &fnet.classifier, classify) {
            (Some(cls), Some((hidden_w, logits_w)), true) => {
                let head = info("head");
                let pooled = ctx.zeroed_buffer("pooled", head.channels);
                let hidden = ctx.zeroed_buffer("hidden", cls.hidden.out_channels);
                let logits = ctx.zeroed_buffer("logits", cls.logits.out_channels);
                let params = SeParams {
                    channels: head.channels as u32,
                    pixels: (head.height * head.width) as u32,
                    ..Default::default()
                };
                ops.push(k.channel_mean.bind(
                    ctx,
                    &params,
                    &[buf("head"), buf("head"), &pooled],
                    [head.channels as u32, 1, 1],
                ));
                let unit = |c: usize| LayerInfo {
                    name: String::new(),
                    channels: c,
                    height: 1,
                    width: 1,
                };
                ops.push(pointwise_op(
                    ctx,
                    k,
                    &cls.hidden,
                    hidden_w,
                    &pooled,
                    &hidden,
                    None,
                    &unit(cls.hidden.out_channels),
                ));
                ops.push(pointwise_op(
                    ctx,
                    k,
                    &cls.logits,
                    logits_w,
                    &hidden,
                    &logits,
                    None,
                    &unit(cls.logits.out_channels),
                ));
                Some((logits, cls.logits.out_channels))
            }
            (_, _, true) => bail!("these weights have no classifier"),
            _ => None,
        };
        Ok(Self {
            width,
            height,
            input,
            layers,
            logits,
            ops,
        })
    }

    /// Uploads an RGB image (CHW, values in [0, 1]) and runs the whole pass: one submit.
    pub fn run(&self, ctx: &GpuContext, image_chw: &[f32]) -> Result<()> {
        if image_chw.len() != 3 * self.width * self.height {
            bail!(
                "image has {} values, the plan expects {}",
                image_chw.len(),
                3 * self.width * self.height
            );
        }
        ctx.queue
            .write_buffer(&self.input, 0, bytemuck::cast_slice(image_chw));
        kernels::run(ctx, &self.ops)
    }

    /// The planned layers in execution order.
    pub fn layers(&self) -> impl Iterator<Item = &LayerInfo> {
        self.layers.iter().map(|l| &l.info)
    }

    /// Reads a layer's activations back (CHW).
    pub fn read_layer(&self, ctx: &GpuContext, name: &str) -> Result<Vec<f32>> {
        let layer = self.layers.iter().find(|l| l.info.name == name);
        let Some(layer) = layer else {
            bail!("unknown layer {name:?}")
        };
        ctx.read_buffer(
            &layer.buffer,
            layer.info.channels * layer.info.height * layer.info.width,
        )
    }

    /// Reads the classifier's logits back.
    pub fn read_logits(&self, ctx: &GpuContext) -> Result<Vec<f32>> {
        let Some((buffer, n)) = &self.logits else {
            bail!("the plan has no classifier")
        };
        ctx.read_buffer(buffer, *n)
    }

    /// Number of dispatches per run.
    pub fn dispatch_count(&self) -> usize {
        self.ops.len()
    }
}

/// A 1×1 convolution over `out.height·out.width` pixels.
#[allow(clippy::too_many_arguments)]
fn pointwise_op(
    ctx: &GpuContext,
    k: &Kernels,
    conv: &Conv,
    weights: &wgpu::Buffer,
    input: &wgpu::Buffer,
    output: &wgpu::Buffer,
    residual: Option<&wgpu::Buffer>,
    out: &LayerInfo,
) -> BoundOp {
    let pixels = out.height * out.width;
    let params = PointwiseParams {
        in_c: conv.in_channels as u32,
        out_c: conv.out_channels as u32,
        pixels: pixels as u32,
        act: activation_code(conv.activation),
        cap: conv.cap,
        _pad: [0; 3],
    };
    let wg = [
        groups(pixels, POINTWISE_TILE),
        groups(conv.out_channels, POINTWISE_TILE),
        1,
    ];
    match residual {
        Some(r) => k
            .pointwise_residual
            .bind(ctx, &params, &[input, weights, output, r], wg),
        None => k
            .pointwise
            .bind(ctx, &params, &[input, weights, output], wg),
    }
}

#[allow(clippy::too_many_arguments)]
fn depthwise_op(
    ctx: &GpuContext,
    k: &Kernels,
    net: &Network,
    conv: &Conv,
    weights: &wgpu::Buffer,
    inp: &LayerInfo,
    input: &wgpu::Buffer,
    out: &LayerInfo,
    output: &wgpu::Buffer,
) -> BoundOp {
    let (_, pad_y) = net.padding.geometry(inp.height, conv.kernel, conv.stride);
    let (_, pad_x) = net.padding.geometry(inp.width, conv.kernel, conv.stride);
    let params = DepthwiseParams {
        channels: conv.out_channels as u32,
        in_h: inp.height as u32,
        in_w: inp.width as u32,
        out_h: out.height as u32,
        out_w: out.width as u32,
        kernel: conv.kernel as u32,
        stride: conv.stride as u32,
        pad_y: pad_y as u32,
        pad_x: pad_x as u32,
        act: activation_code(conv.activation),
        cap: conv.cap,
        _pad: 0,
    };
    k.depthwise.bind(
        ctx,
        &params,
        &[input, weights, output],
        [
            groups(out.height * out.width, WORKGROUP),
            out.channels as u32,
            1,
        ],
    )
}

/// Squeeze-excite: mean, gate, scale.
fn se_ops(
    ctx: &GpuContext,
    k: &Kernels,
    se: &SqueezeExcite,
    weights: &wgpu::Buffer,
    inp: &LayerInfo,
    input: &wgpu::Buffer,
    output: &wgpu::Buffer,
) -> Vec<BoundOp> {
    let channels = inp.channels;
    let pixels = inp.height * inp.width;
    let means = ctx.zeroed_buffer("se.means", channels);
    let gates = ctx.zeroed_buffer("se.gates", channels);
    let params = SeParams {
        channels: channels as u32,
        pixels: pixels as u32,
        squeeze: se.reduce.out_channels as u32,
        reduce_act: activation_code(se.reduce.activation),
        reduce_cap: se.reduce.cap,
        gate_add: se.gate_add,
        gate_max: se.gate_max,
        gate_mul: se.gate_mul,
    };
    vec![
        k.channel_mean.bind(
            ctx,
            &params,
            &[input, input, &means],
            [channels as u32, 1, 1],
        ),
        k.se_gate
            .bind(ctx, &params, &[&means, weights, &gates], [1, 1, 1]),
        k.channel_scale.bind(
            ctx,
            &params,
            &[input, &gates, output],
            [groups(pixels, WORKGROUP), channels as u32, 1],
        ),
    ]
}
