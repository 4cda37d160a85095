//! The network on the GPU: weights uploaded once ([`FeatureNet`]), then a [`ForwardPlan`] per
//! input size with every buffer and bind group made up front, recorded into one command encoder
//! and submitted once per run. In training mode the plan also keeps what the backward pass needs
//! (pre-activations, squeeze-excite intermediates) and owns a gradient buffer per layer; its
//! backward dispatches are planned by [`backward`].

mod backward;

pub use backward::GradientWrites;

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail};

use crate::arch::{self, BlockPart, LayerId, LayerInfo, LayerOp};
use crate::gpu::GpuContext;
use crate::kernels::conv::{ConvForward, ConvParams};
use crate::kernels::depthwise::{DepthwiseForward, DepthwiseParams};
use crate::kernels::pointwise::{self, PointwiseParams, ProductBuffers, ResidualForward, ResidualParams};
use crate::kernels::squeeze_excite::{ChannelMean, ChannelScale, SeGate, SeParams};
use crate::kernels::{self, BoundOp, Kernels, Precision, WORKGROUP, groups};
use crate::model::{Conv, Network, SqueezeExcite};
use crate::remedy::{NeedsRemedy, Remedy};

/// The network's weights resident on the GPU, with the compiled kernels.
pub struct FeatureNet {
    /// The CPU-side network (shapes, constants).
    pub net: Network,
    /// Compiled kernels, shared by every plan.
    pub kernels: Kernels,
    /// Each layer's weights (convolutions and squeeze-excite), uploaded once.
    weights: BTreeMap<LayerId, wgpu::Buffer>,
    classifier: Option<(wgpu::Buffer, wgpu::Buffer)>,
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
    /// Uploads the weights and compiles the kernels for the device's precision.
    pub fn new(ctx: &GpuContext, net: Network) -> Self {
        Self::with_precision(ctx, net, ctx.precision())
    }

    /// Uploads the weights and compiles the kernels, storing activations in `precision`.
    pub fn with_precision(ctx: &GpuContext, net: Network, precision: crate::kernels::Precision) -> Self {
        let weights = net
            .arch
            .walk()
            .into_iter()
            .filter_map(|layer| {
                let label = layer.id.to_string();
                let buffer = match (net.conv(layer.id), net.squeeze_excite(layer.id)) {
                    (Some(conv), _) => conv_buffer(ctx, &label, conv),
                    (None, Some(se)) => se_buffer(ctx, &label, se),
                    (None, None) => return None,
                };
                Some((layer.id, buffer))
            })
            .collect();
        Self {
            kernels: Kernels::with_precision(ctx, precision),
            classifier: net.classifier.as_ref().map(|c| {
                (conv_buffer(ctx, "classifier.hidden", &c.hidden), conv_buffer(ctx, "classifier.logits", &c.logits))
            }),
            weights,
            net,
        }
    }

    /// Every named layer for an input of `width`×`height`.
    pub fn layers(&self, width: usize, height: usize) -> Vec<LayerInfo> {
        arch::layers(self.net.arch, self.net.padding, width, height)
    }

    /// The convolution computing layer `id` with its uploaded weights.
    fn conv(&self, id: LayerId) -> Option<(&Conv, &wgpu::Buffer)> {
        self.net.conv(id).zip(self.weights.get(&id))
    }

    /// The squeeze-and-excite computing layer `id` with its uploaded weights.
    fn squeeze_excite(&self, id: LayerId) -> Option<(&SqueezeExcite, &wgpu::Buffer)> {
        self.net.squeeze_excite(id).zip(self.weights.get(&id))
    }
}

/// What a plan computes.
#[derive(Clone, Debug, Default)]
pub struct PlanOptions {
    /// Add the classifier (global pool, hidden layer, logits).
    pub classify: bool,
    /// Keep what the backward pass needs and allocate gradient buffers.
    pub train: bool,
    /// Stop after this layer (the deepest one any loss uses); `None` runs up to `head`.
    pub until: Option<LayerId>,
}

/// What the backward pass reads for the derivative of a layer's activation.
enum Derivative {
    /// The pre-activation, stored by the forward pass.
    Preact(wgpu::Buffer),
    /// The layer's own output (see [`Conv::derivative_from_output`]).
    Output,
}

impl Derivative {
    /// The buffer holding the activation's argument: the pre-activation, or `output`.
    fn source<'a>(&'a self, output: &'a wgpu::Buffer) -> &'a wgpu::Buffer {
        match self {
            Derivative::Preact(preact) => preact,
            Derivative::Output => output,
        }
    }
}

/// Whether the forward pass stores a pre-activation for `derivative`.
fn stores_preact(derivative: &Option<Derivative>) -> bool {
    matches!(derivative, Some(Derivative::Preact(_)))
}

/// One forward operation, as the backward pass needs to know it.
enum Node {
    Stem {
        weights: wgpu::Buffer,
        params: ConvParams,
        derivative: Option<Derivative>,
        out: usize,
    },
    Pointwise {
        weights: wgpu::Buffer,
        params: PointwiseParams,
        derivative: Option<Derivative>,
        input: usize,
        out: usize,
    },
    Depthwise {
        weights: wgpu::Buffer,
        params: DepthwiseParams,
        derivative: Option<Derivative>,
        input: usize,
        out: usize,
    },
    SqueezeExcite {
        weights: wgpu::Buffer,
        params: SeParams,
        means: wgpu::Buffer,
        gates: wgpu::Buffer,
        input: usize,
        out: usize,
    },
    /// `out` = `project` + `skip`.
    Residual {
        project: usize,
        skip: usize,
        out: usize,
    },
}

/// A named feature map on the GPU; `storage` indexes the plan's buffers (a block without residual
/// shares its projection's buffer).
struct Layer {
    info: LayerInfo,
    storage: usize,
}

/// The forward pass for one input size: buffers, bind groups and dispatches, made once.
pub struct ForwardPlan {
    width: usize,
    height: usize,
    precision: Precision,
    input: wgpu::Buffer,
    layers: Vec<Layer>,
    buffers: Vec<wgpu::Buffer>,
    grads: Vec<wgpu::Buffer>,
    image_grad: Option<wgpu::Buffer>,
    nodes: Vec<Node>,
    logits: Option<(wgpu::Buffer, usize)>,
    ops: Vec<BoundOp>,
}

/// Arithmetic and memory traffic of a set of dispatches, counted from their shapes: floating-
/// point operations (a multiply-add is two) and the bytes each kernel must at least read and write
/// (its inputs, outputs and weights once). `bench` sets them against a device's peak to show the
/// floor an iteration cannot beat.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Work {
    /// Floating-point operations.
    pub flops: f64,
    /// Bytes read and written.
    pub bytes: f64,
}

impl Work {
    /// `flops` operations touching `floats` f32 values.
    pub fn new(flops: f64, floats: f64) -> Self {
        Self { flops, bytes: 4.0 * floats }
    }
}

impl std::ops::Add for Work {
    type Output = Work;
    fn add(self, o: Work) -> Work {
        Work { flops: self.flops + o.flops, bytes: self.bytes + o.bytes }
    }
}

impl std::iter::Sum for Work {
    fn sum<I: Iterator<Item = Work>>(iter: I) -> Work {
        iter.fold(Work::default(), |a, b| a + b)
    }
}

/// The largest storage buffer the device binds, in bytes.
pub(crate) fn buffer_limit(ctx: &GpuContext) -> u64 {
    ctx.limits.max_storage_buffer_binding_size.min(ctx.limits.max_buffer_size)
}

/// Checks a buffer of `values` values stored in `precision` fits the device, naming the layer
/// when it does not.
pub(crate) fn check_fits(
    ctx: &GpuContext,
    what: &str,
    values: usize,
    precision: Precision,
    [width, height]: [usize; 2],
) -> Result<()> {
    let bytes = crate::gpu::values_bytes(values, precision);
    let limit = buffer_limit(ctx);
    if bytes > limit {
        let message = format!(
            "image {width}x{height} is too large for this device: {what} needs a {} MiB buffer, the limit is {} MiB",
            bytes.div_ceil(1 << 20),
            limit >> 20
        );
        return Err(NeedsRemedy::error(message, Remedy::SmallerImage));
    }
    Ok(())
}

/// Checks that a `width`×`height` image fits the device before anything is allocated: every
/// buffer under the binding limits, every dispatch (one invocation per input pixel for the stem's
/// backward, 64-pixel tiles for products over a layer) under the workgroup-count limit.
pub fn check_size(ctx: &GpuContext, fnet: &FeatureNet, width: usize, height: usize) -> Result<()> {
    if width == 0 || height == 0 {
        bail!("image has no pixels");
    }
    check_fits(ctx, "the input image", 3 * width * height, Precision::F32, [width, height])?;
    let max_groups = ctx.limits.max_compute_workgroups_per_dimension;
    let check_groups = |what: &str, count: u32| {
        if count > max_groups {
            let message = format!(
                "image {width}x{height} is too large for this device: {what} needs {count} workgroups, the limit is \
                 {max_groups}"
            );
            return Err(NeedsRemedy::error(message, Remedy::SmallerImage));
        }
        Ok(())
    };
    check_groups("the input image", groups(width * height, WORKGROUP))?;
    for info in fnet.layers(width, height) {
        let what = format!("layer {}", info.id);
        check_fits(ctx, &what, info.channels * info.height * info.width, fnet.kernels.precision(), [width, height])?;
        check_groups(&what, groups(info.height * info.width, pointwise::TILE))?;
    }
    Ok(())
}

impl ForwardPlan {
    /// The work of one forward and one backward pass of a training plan (empty otherwise), the
    /// bytes at the plan's precision (the weights and the image counted as activations: a
    /// small part).
    pub fn work(&self) -> Work {
        let work = self.work_f32();
        Work { bytes: work.bytes * self.precision.bytes() as f64 / 4.0, ..work }
    }

    /// [`ForwardPlan::work`] with every value counted as an f32.
    fn work_f32(&self) -> Work {
        let size = |layer: usize| {
            let info = &self.layers[layer].info;
            (info.channels * info.height * info.width) as f64
        };
        self.nodes
            .iter()
            .map(|node| match node {
                Node::Stem { params: p, derivative, .. } => {
                    let out = f64::from(p.out_c * p.out_h * p.out_w);
                    let flops = 2.0 * out * f64::from(p.in_c * p.kernel * p.kernel);
                    let weights = f64::from(p.out_c * p.in_c * p.kernel * p.kernel);
                    let input = f64::from(p.in_c * p.in_h * p.in_w);
                    let pre = if stores_preact(derivative) { 2.0 * out } else { 0.0 };
                    // Forward writes the output (and pre-activation); backward reads the output
                    // gradient (and pre-activation) and writes the image gradient.
                    Work::new(2.0 * flops, 2.0 * (input + weights + out) + 2.0 * pre)
                }
                Node::Pointwise { params: p, derivative, .. } => {
                    let (m, k, n) = (f64::from(p.m), f64::from(p.k), f64::from(p.n));
                    let pre = if stores_preact(derivative) { 2.0 * m * n } else { 0.0 };
                    // Backward accumulates into the input gradient: read and write.
                    Work::new(4.0 * m * k * n, (k * n + m * k + m * n) + (m * n + m * k + 2.0 * k * n) + pre)
                }
                Node::Depthwise { params: p, derivative, .. } => {
                    let out = f64::from(p.channels * p.out_h * p.out_w);
                    let input = f64::from(p.channels * p.in_h * p.in_w);
                    let pre = if stores_preact(derivative) { 2.0 * out } else { 0.0 };
                    let flops = 2.0 * out * f64::from(p.kernel * p.kernel);
                    Work::new(2.0 * flops, (input + out) + (out + 2.0 * input) + pre)
                }
                Node::SqueezeExcite { params: p, .. } => {
                    // Mean, scale; gate gradient, input gradient: each a pass over the tensor.
                    let n = f64::from(p.channels * p.pixels);
                    Work::new(6.0 * n, n + 2.0 * n + 2.0 * n + 3.0 * n)
                }
                Node::Residual { out, .. } => {
                    let n = size(*out);
                    Work::new(3.0 * n, 3.0 * n + 4.0 * n)
                }
            })
            .sum()
    }
}

impl ForwardPlan {
    /// Plans the forward pass for a `width`×`height` image.
    pub fn new(
        ctx: &GpuContext,
        fnet: &FeatureNet,
        width: usize,
        height: usize,
        options: &PlanOptions,
    ) -> Result<Self> {
        Self::with_input(ctx, fnet, width, height, options, None)
    }

    /// Plans the forward pass reading the image from `input` (planar RGB, `3·width·height`
    /// floats) instead of a buffer of its own; the optimizer's image, for instance.
    pub fn with_input(
        ctx: &GpuContext,
        fnet: &FeatureNet,
        width: usize,
        height: usize,
        options: &PlanOptions,
        input: Option<wgpu::Buffer>,
    ) -> Result<Self> {
        check_size(ctx, fnet, width, height)?;
        let precision = fnet.kernels.precision();
        if options.classify && precision != Precision::F32 {
            bail!("the classifier runs in f32 only (use --precision f32)");
        }
        let arch = fnet.net.arch;
        if let Some(until) = options.until {
            arch.layer(until)?;
        }
        let mut b = Builder {
            ctx,
            k: &fnet.kernels,
            precision,
            train: options.train,
            layers: Vec::new(),
            buffers: Vec::new(),
            nodes: Vec::new(),
            ops: Vec::new(),
            input: input.unwrap_or_else(|| ctx.zeroed_buffer("input", 3 * width * height)),
            until: options.until,
            done: false,
        };
        // Layer by layer as the architecture walks them; each may be the last one needed (`until`):
        // nothing after it is planned but the block output sharing its projection's buffer.
        let (mut current, mut block_input) = (0, 0);
        for info in fnet.layers(width, height) {
            if b.done && info.op != LayerOp::Alias {
                break;
            }
            let id = info.id;
            let mismatch = || anyhow!("the network does not match {}: it has no weights for layer {id}", arch.name());
            current = match info.op {
                LayerOp::Stem(_) => {
                    let (_, weights) = fnet.conv(id).ok_or_else(mismatch)?;
                    b.stem(&fnet.net, weights, width, height, info)
                }
                LayerOp::Pointwise(_) => {
                    let (conv, weights) = fnet.conv(id).ok_or_else(mismatch)?;
                    b.pointwise(conv, weights, current, info)
                }
                LayerOp::Depthwise(_) => {
                    let (conv, weights) = fnet.conv(id).ok_or_else(mismatch)?;
                    b.depthwise(&fnet.net, conv, weights, current, info)
                }
                LayerOp::SqueezeExcite { .. } => {
                    let (se, weights) = fnet.squeeze_excite(id).ok_or_else(mismatch)?;
                    b.squeeze_excite(se, weights, current, info)
                }
                LayerOp::Residual => b.residual(current, block_input, info),
                LayerOp::Alias => b.alias(info, current),
            };
            if matches!(id, LayerId::Stem | LayerId::Block { part: BlockPart::Output, .. }) {
                block_input = current;
            }
        }
        let logits = match (&fnet.net.classifier, &fnet.classifier, options.classify) {
            (Some(cls), Some((hidden_w, logits_w)), true) if b.layers[current].info.id == LayerId::Head => {
                Some(b.classifier(cls, hidden_w, logits_w, current))
            }
            (_, _, true) => bail!("these weights have no classifier"),
            _ => None,
        };
        let grads = if options.train {
            b.buffers
                .iter()
                .map(|buf| ctx.values_buffer("grad", buf.size() as usize / precision.bytes(), precision))
                .collect()
        } else {
            Vec::new()
        };
        Ok(Self {
            width,
            height,
            precision,
            input: b.input,
            layers: b.layers,
            buffers: b.buffers,
            grads,
            image_grad: options.train.then(|| ctx.zeroed_buffer("image grad", 3 * width * height)),
            nodes: b.nodes,
            logits,
            ops: b.ops,
        })
    }

    /// Uploads an RGB image (planar, values in [0, 1]) and runs the whole pass: one submit.
    pub fn run(&self, ctx: &GpuContext, image_chw: &[f32]) -> Result<()> {
        self.upload(ctx, image_chw)?;
        kernels::run(ctx, &self.ops)
    }

    /// Writes an RGB image (planar, values in [0, 1]) into the plan's input buffer.
    pub fn upload(&self, ctx: &GpuContext, image_chw: &[f32]) -> Result<()> {
        if image_chw.len() != 3 * self.width * self.height {
            bail!("image has {} values, the plan expects {}", image_chw.len(), 3 * self.width * self.height);
        }
        ctx.queue.write_buffer(&self.input, 0, bytemuck::cast_slice(image_chw));
        Ok(())
    }

    /// How the plan stores activations and their gradients.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The forward dispatches, to record into a larger pass.
    pub fn ops(&self) -> &[BoundOp] {
        &self.ops
    }

    /// The planned layers in execution order.
    pub fn layers(&self) -> impl Iterator<Item = &LayerInfo> {
        self.layers.iter().map(|l| &l.info)
    }

    fn layer(&self, id: LayerId) -> Result<&Layer> {
        match self.layers.iter().find(|l| l.info.id == id) {
            Some(l) => Ok(l),
            None => bail!("layer \"{id}\" is not computed by this plan"),
        }
    }

    /// A layer's shape and activation buffer.
    pub fn layer_buffer(&self, id: LayerId) -> Result<(&LayerInfo, &wgpu::Buffer)> {
        let l = self.layer(id)?;
        Ok((&l.info, &self.buffers[l.storage]))
    }

    /// A layer's gradient buffer (training plans only).
    pub fn grad_buffer(&self, id: LayerId) -> Result<&wgpu::Buffer> {
        let l = self.layer(id)?;
        match self.grads.get(l.storage) {
            Some(g) => Ok(g),
            None => bail!("the plan was not made for training"),
        }
    }

    /// The gradient with respect to the input image (training plans only).
    pub fn image_grad(&self) -> Option<&wgpu::Buffer> {
        self.image_grad.as_ref()
    }

    /// Reads a layer's activations back (CHW).
    pub fn read_layer(&self, ctx: &GpuContext, id: LayerId) -> Result<Vec<f32>> {
        let (info, buffer) = self.layer_buffer(id)?;
        ctx.read_values(buffer, info.channels * info.height * info.width, self.precision)
    }

    /// Reads the classifier's logits back.
    pub fn read_logits(&self, ctx: &GpuContext) -> Result<Vec<f32>> {
        let Some((buffer, n)) = &self.logits else { bail!("the plan has no classifier") };
        ctx.read_buffer(buffer, *n)
    }

    /// Number of dispatches per run.
    pub fn dispatch_count(&self) -> usize {
        self.ops.len()
    }
}

/// Builds the layers, nodes and dispatches of a plan in execution order.
struct Builder<'a> {
    ctx: &'a GpuContext,
    k: &'a Kernels,
    precision: Precision,
    train: bool,
    layers: Vec<Layer>,
    buffers: Vec<wgpu::Buffer>,
    nodes: Vec<Node>,
    ops: Vec<BoundOp>,
    input: wgpu::Buffer,
    until: Option<LayerId>,
    done: bool,
}

impl Builder<'_> {
    /// Allocates the buffer of a layer and returns its index.
    fn layer(&mut self, info: LayerInfo) -> usize {
        let values = info.channels * info.height * info.width;
        self.buffers.push(self.ctx.values_buffer(&info.id.to_string(), values, self.precision));
        self.push_layer(info, self.buffers.len() - 1)
    }

    /// A layer with the values (and buffer) of layer `of`.
    fn alias(&mut self, info: LayerInfo, of: usize) -> usize {
        self.push_layer(info, self.layers[of].storage)
    }

    fn push_layer(&mut self, info: LayerInfo, storage: usize) -> usize {
        if self.until == Some(info.id) {
            self.done = true;
        }
        self.layers.push(Layer { info, storage });
        self.layers.len() - 1
    }

    fn buffer(&self, layer: usize) -> &wgpu::Buffer {
        &self.buffers[self.layers[layer].storage]
    }

    fn info(&self, layer: usize) -> &LayerInfo {
        &self.layers[layer].info
    }

    /// What the backward pass of a layer with `values` outputs needs for its activation's
    /// derivative, when training a layer with an activation: a pre-activation buffer for the
    /// forward pass to fill, or nothing beyond the output.
    fn derivative(&self, conv: &Conv, values: usize) -> Option<Derivative> {
        if !self.train || conv.activation == arch::Activation::None {
            return None;
        }
        Some(if conv.derivative_from_output() {
            Derivative::Output
        } else {
            Derivative::Preact(self.ctx.values_buffer("preact", values, self.precision))
        })
    }

    /// The pre-activation buffer the forward pass of a layer writes (the placeholder if none).
    fn preact_buffer<'a>(&'a self, derivative: &'a Option<Derivative>) -> &'a wgpu::Buffer {
        match derivative {
            Some(Derivative::Preact(preact)) => preact,
            _ => self.k.placeholder(),
        }
    }

    fn stem(&mut self, net: &Network, weights: &wgpu::Buffer, width: usize, height: usize, info: LayerInfo) -> usize {
        let out = self.layer(info);
        let s = &net.stem;
        let derivative = self.derivative(s, info.channels * info.height * info.width);
        let params = ConvParams::new(
            s,
            net.padding,
            [3, height, width],
            net.input_scale,
            net.input_shift,
            stores_preact(&derivative),
        );
        let buffers = ConvForward {
            input: &self.input,
            weights,
            output: self.buffer(out),
            preact: self.preact_buffer(&derivative),
        };
        let op = self.k.conv.forward(self.ctx, buffers, &params);
        self.ops.push(op);
        if self.train {
            self.nodes.push(Node::Stem { weights: weights.clone(), params, derivative, out });
        }
        out
    }

    /// A 1×1 convolution producing a layer.
    fn pointwise(&mut self, conv: &Conv, weights: &wgpu::Buffer, input: usize, info: LayerInfo) -> usize {
        let out = self.layer(info);
        let pixels = self.info(out).height * self.info(out).width;
        let derivative = self.derivative(conv, conv.out_channels * pixels);
        let params = PointwiseParams::conv(conv, pixels, stores_preact(&derivative));
        let buffers = ProductBuffers {
            input: self.buffer(input),
            weights,
            output: self.buffer(out),
            aux: self.preact_buffer(&derivative),
        };
        let op = self.k.products.product(self.ctx, buffers, &params);
        self.ops.push(op);
        if self.train {
            self.nodes.push(Node::Pointwise { weights: weights.clone(), params, derivative, input, out });
        }
        out
    }

    /// A layer as `project` + `skip` (a residual connection).
    fn residual(&mut self, project: usize, skip: usize, info: LayerInfo) -> usize {
        let out = self.layer(info);
        let info = self.info(out);
        let n = info.channels * info.height * info.width;
        let buffers = ResidualForward { input: self.buffer(project), addend: self.buffer(skip), sum: self.buffer(out) };
        self.ops.push(self.k.products.residual_forward(self.ctx, buffers, &ResidualParams::new(n)));
        if self.train {
            self.nodes.push(Node::Residual { project, skip, out });
        }
        out
    }

    fn depthwise(
        &mut self,
        net: &Network,
        conv: &Conv,
        weights: &wgpu::Buffer,
        input: usize,
        info: LayerInfo,
    ) -> usize {
        let out = self.layer(info);
        let inp = *self.info(input);
        let derivative = self.derivative(conv, info.channels * info.height * info.width);
        let params = DepthwiseParams::new(conv, net.padding, [inp.height, inp.width], stores_preact(&derivative));
        let buffers = DepthwiseForward {
            input: self.buffer(input),
            weights,
            output: self.buffer(out),
            preact: self.preact_buffer(&derivative),
        };
        let op = self.k.depthwise.forward(self.ctx, buffers, &params);
        self.ops.push(op);
        if self.train {
            self.nodes.push(Node::Depthwise { weights: weights.clone(), params, derivative, input, out });
        }
        out
    }

    /// Squeeze-excite: mean, gate, scale.
    fn squeeze_excite(&mut self, se: &SqueezeExcite, weights: &wgpu::Buffer, input: usize, info: LayerInfo) -> usize {
        let out = self.layer(info);
        let inp = *self.info(input);
        let channels = inp.channels;
        let pixels = inp.height * inp.width;
        let means = self.ctx.zeroed_buffer("se.means", channels);
        let gates = self.ctx.zeroed_buffer("se.gates", channels);
        let params = SeParams::new(se, channels, pixels);
        let se_kernels = &self.k.squeeze_excite;
        let ops = [
            se_kernels.channel_mean(self.ctx, ChannelMean { input: self.buffer(input), output: &means }, &params),
            se_kernels.gate(self.ctx, SeGate { input: &means, aux: weights, output: &gates }, &params),
            se_kernels.channel_scale(
                self.ctx,
                ChannelScale { input: self.buffer(input), aux: &gates, output: self.buffer(out) },
                &params,
            ),
        ];
        self.ops.extend(ops);
        if self.train {
            self.nodes.push(Node::SqueezeExcite { weights: weights.clone(), params, means, gates, input, out });
        }
        out
    }

    fn classifier(
        &mut self,
        cls: &crate::model::Classifier,
        hidden_w: &wgpu::Buffer,
        logits_w: &wgpu::Buffer,
        head: usize,
    ) -> (wgpu::Buffer, usize) {
        let info = *self.info(head);
        let pooled = self.ctx.zeroed_buffer("pooled", info.channels);
        let hidden = self.ctx.zeroed_buffer("hidden", cls.hidden.out_channels);
        let logits = self.ctx.zeroed_buffer("logits", cls.logits.out_channels);
        let params = SeParams::pool(info.channels, info.height * info.width);
        let mean = self.k.squeeze_excite.channel_mean(
            self.ctx,
            ChannelMean { input: self.buffer(head), output: &pooled },
            &params,
        );
        self.ops.push(mean);
        for (conv, w, from, to) in
            [(&cls.hidden, hidden_w, &pooled, &hidden), (&cls.logits, logits_w, &hidden, &logits)]
        {
            let params = PointwiseParams::conv(conv, 1, false);
            let buffers = ProductBuffers { input: from, weights: w, output: to, aux: self.k.placeholder() };
            let op = self.k.products.product(self.ctx, buffers, &params);
            self.ops.push(op);
        }
        (logits, cls.logits.out_channels)
    }
}
