//! TFLite MobileNetV3 files: the flatbuffer is read with the generated reader (verified, bounds
//! checked), every constant is dequantized, and the graph's convolutions are matched one by one
//! against the architecture table. The graph is not interpreted generically: it must have the
//! MobileNetV3 layer sequence, and each deviation is an error naming the tensor.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};

use super::LayerReader;
use super::tflite_schema::tflite as fb;
use crate::arch::{Activation, Arch, BlockPart, ConvSpec, LayerId, LayerOp, LayerSpec, Padding};
use crate::model::{Classifier, Conv, Network, SqueezeExcite};

/// A tensor of the graph with its dequantization parameters.
struct TensorInfo<'a> {
    name: String,
    shape: Vec<usize>,
    dtype: fb::TensorType,
    data: &'a [u8],
    scales: Vec<f32>,
    zero_points: Vec<i64>,
    quantized_dimension: usize,
}

impl TensorInfo<'_> {
    fn is_constant(&self) -> bool {
        !self.data.is_empty()
    }

    fn elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// Dequantizes a constant tensor and checks that every value is finite and plausible.
    fn dequantize(&self) -> Result<Vec<f32>> {
        let values = self.dequantize_unchecked()?;
        super::validate::tensor_values(&self.name, &values)?;
        Ok(values)
    }

    /// Dequantizes a constant tensor: real = (q − zero_point) · scale, per channel when the
    /// tensor has one scale per slice of its quantized dimension.
    fn dequantize_unchecked(&self) -> Result<Vec<f32>> {
        let n = self.elements();
        let elem = match self.dtype {
            fb::TensorType::FLOAT32 | fb::TensorType::INT32 => 4,
            fb::TensorType::INT8 | fb::TensorType::UINT8 => 1,
            other => bail!("tensor {:?} has unsupported type {:?}", self.name, other),
        };
        if self.data.len() != n * elem {
            bail!(
                "tensor {:?} has {} bytes of data, its shape {:?} needs {}",
                self.name,
                self.data.len(),
                self.shape,
                n * elem
            );
        }
        let raw: Vec<f64> = match self.dtype {
            fb::TensorType::FLOAT32 => {
                return Ok(bytemuck::pod_collect_to_vec(self.data));
            }
            fb::TensorType::INT32 => {
                bytemuck::pod_collect_to_vec::<u8, i32>(self.data).into_iter().map(f64::from).collect()
            }
            fb::TensorType::INT8 => self.data.iter().map(|&b| b as i8 as f64).collect(),
            _ => self.data.iter().map(|&b| b as f64).collect(),
        };
        if self.scales.is_empty() {
            bail!("tensor {:?} is quantized but has no scale", self.name);
        }
        let channels = self.scales.len();
        // Stride between consecutive indices of the quantized dimension.
        let (dim_len, inner) = if channels == 1 {
            (1, 1)
        } else {
            let d = self.quantized_dimension;
            if d >= self.shape.len() || self.shape[d] != channels {
                bail!("tensor {:?}: {} scales do not match its shape {:?}", self.name, channels, self.shape);
            }
            (self.shape[d], self.shape[d + 1..].iter().product::<usize>())
        };
        let zp = |c: usize| *self.zero_points.get(c).or(self.zero_points.first()).unwrap_or(&0) as f64;
        Ok(raw
            .iter()
            .enumerate()
            .map(|(i, &q)| {
                let c = if channels == 1 { 0 } else { (i / inner) % dim_len };
                ((q - zp(c)) * self.scales[c] as f64) as f32
            })
            .collect())
    }

    /// The single value of a scalar constant.
    fn scalar(&self) -> Result<f32> {
        let v = self.dequantize()?;
        if v.len() != 1 {
            bail!("tensor {:?} should be a scalar, has shape {:?}", self.name, self.shape);
        }
        Ok(v[0])
    }
}

/// A convolution found in the graph, with what the ops after it do to its output.
struct ConvRecord {
    depthwise: bool,
    weight: usize,
    bias: Option<usize>,
    output: usize,
    stride: (i32, i32),
    same_padding: bool,
    fused: fb::ActivationFunctionType,
    hard_swish: bool,
    post_add: f32,
    post_add_output: Option<usize>,
    post_mul: f32,
}

/// Where a tensor's value comes from, as far as the matcher cares.
#[derive(Clone, Copy)]
enum Source {
    /// The graph input after an affine map `x · a + b` (x: the value fed to the graph).
    Input { a: f32, b: f32 },
    /// A convolution's output after elementwise ops that were recorded on it.
    Conv(usize),
}

/// Reads a TFLite MobileNetV3 into a [`Network`].
pub fn load(bytes: &[u8]) -> Result<Network> {
    let opts = flatbuffers::VerifierOptions { max_tables: 10_000_000, ..Default::default() };
    let model = fb::root_as_model_with_opts(&opts, bytes).map_err(|e| anyhow::anyhow!("corrupt TFLite file: {e}"))?;
    let buffers = model.buffers().context("TFLite file has no buffers")?;
    let graph = model.subgraphs().and_then(|s| s.iter().next()).context("TFLite file has no subgraph")?;
    let codes: Vec<i32> = model
        .operator_codes()
        .context("TFLite file has no operator codes")?
        .iter()
        .map(|c| c.builtin_code().0.max(c.deprecated_builtin_code() as i32))
        .collect();

    let mut tensors = Vec::new();
    for t in graph.tensors().context("TFLite subgraph has no tensors")? {
        let q = t.quantization();
        let data = buffers.iter().nth(t.buffer() as usize).and_then(|b| b.data()).map(|d| d.bytes()).unwrap_or(&[]);
        if !data.is_empty() {
            super::validate::constant_shape(
                t.name().unwrap_or(""),
                &t.shape().map(|s| s.iter().collect::<Vec<_>>()).unwrap_or_default(),
            )?;
        }
        tensors.push(TensorInfo {
            name: t.name().unwrap_or("").to_string(),
            shape: t.shape().map(|s| s.iter().map(|d| d.max(0) as usize).collect()).unwrap_or_default(),
            dtype: t.type_(),
            data,
            scales: q.and_then(|q| q.scale()).map(|s| s.iter().collect()).unwrap_or_default(),
            zero_points: q.and_then(|q| q.zero_point()).map(|z| z.iter().collect()).unwrap_or_default(),
            quantized_dimension: q.map_or(0, |q| q.quantized_dimension().max(0) as usize),
        });
    }
    let tensor = |i: i32| -> Result<&TensorInfo> {
        usize::try_from(i)
            .ok()
            .and_then(|i| tensors.get(i))
            .with_context(|| format!("operator refers to missing tensor {i}"))
    };

    let input_index = graph.inputs().and_then(|v| v.iter().next()).context("TFLite graph has no input")?;
    let input = tensor(input_index)?;
    // Pixels in [0, 1] are fed as floats, or as uint8 codes 255·p when the input is quantized.
    let mut sources: HashMap<i32, Source> = HashMap::new();
    let input_source = match input.dtype {
        fb::TensorType::FLOAT32 => Source::Input { a: 1.0, b: 0.0 },
        fb::TensorType::UINT8 if !input.scales.is_empty() => {
            let s = input.scales[0];
            let zp = *input.zero_points.first().unwrap_or(&0) as f32;
            Source::Input { a: 255.0 * s, b: -zp * s }
        }
        other => bail!("unsupported TFLite input type {other:?}"),
    };
    sources.insert(input_index, input_source);

    let mut convs: Vec<ConvRecord> = Vec::new();
    let operators = graph.operators().context("TFLite subgraph has no operators")?;
    for op in operators {
        let code = *codes.get(op.opcode_index() as usize).context("operator has an invalid opcode index")?;
        let ins: Vec<i32> = op.inputs().map(|v| v.iter().collect()).unwrap_or_default();
        let outs: Vec<i32> = op.outputs().map(|v| v.iter().collect()).unwrap_or_default();
        let (Some(&in0), Some(&out0)) = (ins.first(), outs.first()) else {
            continue;
        };
        let src = sources.get(&in0).copied();
        match fb::BuiltinOperator(code) {
            fb::BuiltinOperator::CONV_2D | fb::BuiltinOperator::DEPTHWISE_CONV_2D => {
                let depthwise = fb::BuiltinOperator(code) == fb::BuiltinOperator::DEPTHWISE_CONV_2D;
                let (padding, stride, fused, dilation) = if depthwise {
                    let o =
                        op.builtin_options_as_depthwise_conv_2_doptions().context("depthwise conv without options")?;
                    (
                        o.padding(),
                        (o.stride_h(), o.stride_w()),
                        o.fused_activation_function(),
                        (o.dilation_h_factor(), o.dilation_w_factor()),
                    )
                } else {
                    let o = op.builtin_options_as_conv_2_doptions().context("conv without options")?;
                    (
                        o.padding(),
                        (o.stride_h(), o.stride_w()),
                        o.fused_activation_function(),
                        (o.dilation_h_factor(), o.dilation_w_factor()),
                    )
                };
                if dilation != (1, 1) {
                    bail!("convolution {:?} is dilated, MobileNetV3 has no dilation", tensor(out0)?.name);
                }
                // Every index is checked here; records keep only valid ones.
                let weight = *ins.get(1).context("convolution without weights")?;
                tensor(weight)?;
                tensor(out0)?;
                let bias = ins.get(2).copied().filter(|&b| b >= 0);
                if let Some(b) = bias {
                    tensor(b)?;
                }
                convs.push(ConvRecord {
                    depthwise,
                    weight: weight as usize,
                    bias: bias.map(|b| b as usize),
                    output: out0 as usize,
                    stride,
                    same_padding: padding == fb::Padding::SAME,
                    fused,
                    hard_swish: false,
                    post_add: 0.0,
                    post_add_output: None,
                    post_mul: 1.0,
                });
                sources.insert(out0, Source::Conv(convs.len() - 1));
            }
            fb::BuiltinOperator::HARD_SWISH => {
                if let Some(Source::Conv(c)) = src {
                    convs[c].hard_swish = true;
                    sources.insert(out0, Source::Conv(c));
                }
            }
            fb::BuiltinOperator::QUANTIZE | fb::BuiltinOperator::DEQUANTIZE | fb::BuiltinOperator::RESHAPE => {
                if let Some(s) = src {
                    sources.insert(out0, s);
                }
            }
            op_code @ (fb::BuiltinOperator::MUL | fb::BuiltinOperator::ADD | fb::BuiltinOperator::SUB) => {
                // Only elementwise ops with a constant scalar operand change what we track.
                let constant = match ins.get(1) {
                    Some(&i) if tensor(i)?.is_constant() => Some(tensor(i)?.scalar()?),
                    _ => None,
                };
                let (Some(s), Some(k)) = (src, constant) else {
                    continue;
                };
                let s = match (op_code, s) {
                    (fb::BuiltinOperator::MUL, Source::Input { a, b }) => Source::Input { a: a * k, b: b * k },
                    (fb::BuiltinOperator::ADD, Source::Input { a, b }) => Source::Input { a, b: b + k },
                    (fb::BuiltinOperator::SUB, Source::Input { a, b }) => Source::Input { a, b: b - k },
                    (fb::BuiltinOperator::MUL, Source::Conv(c)) => {
                        convs[c].post_mul *= k;
                        s
                    }
                    (fb::BuiltinOperator::ADD, Source::Conv(c)) => {
                        if convs[c].post_mul != 1.0 {
                            bail!("unsupported: addition after a multiplication on {:?}", tensor(in0)?.name);
                        }
                        convs[c].post_add += k;
                        tensor(out0)?;
                        convs[c].post_add_output = Some(out0 as usize);
                        s
                    }
                    _ => bail!("unexpected constant subtraction after {:?}", tensor(in0)?.name),
                };
                sources.insert(out0, s);
            }
            _ => {}
        }
    }

    let depthwise_count = convs.iter().filter(|c| c.depthwise).count();
    let arch = match depthwise_count {
        11 => Arch::Small,
        15 => Arch::Large,
        n => bail!("not a MobileNetV3: the graph has {n} depthwise convolutions (MobileNetV3-Small has 11, -Large 15)"),
    };
    let first = convs.first().context("graph has no convolution")?;
    let stem_input = operators
        .iter()
        .find(|op| op.outputs().and_then(|o| o.iter().next()) == Some(first.output as i32))
        .and_then(|op| op.inputs())
        .and_then(|i| i.iter().next())
        .context("stem convolution has no input")?;
    let (scale, shift) = match sources.get(&stem_input) {
        Some(Source::Input { a, b }) => (*a, *b),
        _ => bail!("the stem convolution does not read the graph input"),
    };
    Matcher { tensors: &tensors, convs: &convs, next: 0, arch }.network(scale, shift)
}

/// Walks the convolutions in graph order against the architecture's walk.
struct Matcher<'t, 'a> {
    tensors: &'t [TensorInfo<'a>],
    convs: &'t [ConvRecord],
    next: usize,
    arch: Arch,
}

impl Matcher<'_, '_> {
    fn network(mut self, scale: f32, shift: f32) -> Result<Network> {
        let (stem, blocks, head) = super::read_layers(self.arch, &mut self)?;
        let classifier = if self.next < self.convs.len() {
            let hidden_width = self.arch.classifier_hidden();
            let hidden = self.conv(
                "classifier.hidden",
                false,
                hidden_width,
                self.arch.head_channels(),
                1,
                1,
                Activation::HardSwish,
            )?;
            let classes = self.tensor_shape_out(self.next)?;
            let logits = self.conv("classifier.logits", false, classes, hidden_width, 1, 1, Activation::None)?;
            Some(Classifier { hidden, logits })
        } else {
            None
        };
        if self.next != self.convs.len() {
            bail!("graph has {} convolutions after the classifier; not a MobileNetV3", self.convs.len() - self.next);
        }
        Ok(Network {
            arch: self.arch,
            padding: Padding::TfSame,
            input_scale: [scale; 3],
            input_shift: [shift; 3],
            stem,
            blocks,
            head,
            classifier,
        })
    }

    fn tensor_shape_out(&self, conv: usize) -> Result<usize> {
        let w = &self.tensors[self.convs[conv].weight];
        w.shape.first().copied().context("logits weights have no shape")
    }

    /// Takes the next convolution and checks it is what the table says.
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        layer: &str,
        depthwise: bool,
        out: usize,
        cin: usize,
        kernel: usize,
        stride: usize,
        activation: Activation,
    ) -> Result<Conv> {
        let arch = self.arch.name();
        let rec = self.convs.get(self.next).with_context(|| format!("graph ends before {layer} of {arch}"))?;
        self.next += 1;
        let w = &self.tensors[rec.weight];
        let expected = if depthwise { vec![1, kernel, kernel, out] } else { vec![out, kernel, kernel, cin] };
        if rec.depthwise != depthwise || w.shape != expected {
            bail!(
                "weights do not match {arch}: tensor {:?} ({layer} weights) has shape {:?}, expected {:?}{}",
                w.name,
                w.shape,
                expected,
                if rec.depthwise != depthwise { " (wrong convolution kind)" } else { "" }
            );
        }
        if rec.stride != (stride as i32, stride as i32) || !rec.same_padding {
            bail!(
                "weights do not match {arch}: {layer} ({:?}) has stride {:?}, expected {stride} with SAME padding",
                w.name,
                rec.stride
            );
        }
        if (activation == Activation::HardSwish) != rec.hard_swish {
            bail!(
                "weights do not match {arch}: {layer} ({:?}) hard-swish expected: {}",
                w.name,
                activation == Activation::HardSwish
            );
        }
        let raw = w.dequantize()?;
        // TFLite [out, kh, kw, in] → [out][in][kh][kw]; depthwise [1, kh, kw, C] → [C][kh][kw].
        let k2 = kernel * kernel;
        let weight = if depthwise {
            (0..out).flat_map(|c| (0..k2).map(move |t| (c, t))).map(|(c, t)| raw[t * out + c]).collect()
        } else {
            (0..out)
                .flat_map(|o| (0..cin).flat_map(move |i| (0..k2).map(move |t| (o, i, t))))
                .map(|(o, i, t)| raw[(o * k2 + t) * cin + i])
                .collect()
        };
        let bias = match rec.bias {
            Some(b) => {
                let t = &self.tensors[b];
                let v = t.dequantize()?;
                if v.len() != out {
                    bail!(
                        "weights do not match {arch}: bias {:?} of {layer} has {} values, expected {out}",
                        t.name,
                        v.len()
                    );
                }
                v
            }
            None => vec![0.0; out],
        };
        let output = &self.tensors[rec.output];
        let cap = match (activation, rec.fused) {
            (_, fb::ActivationFunctionType::RELU6) if activation == Activation::Relu => 6.0,
            // uint8 release: a ReLU that is only the output's quantized range [0, 255·scale].
            (Activation::Relu, fb::ActivationFunctionType::NONE)
                if output.dtype == fb::TensorType::UINT8 && output.zero_points.first() == Some(&0) =>
            {
                255.0 * output.scales.first().copied().unwrap_or(f32::INFINITY)
            }
            _ => f32::INFINITY,
        };
        Ok(Conv {
            out_channels: out,
            in_channels: if depthwise { out } else { cin },
            kernel,
            stride,
            weight,
            bias,
            activation,
            cap,
        })
    }
}

impl LayerReader for Matcher<'_, '_> {
    fn read_conv(&mut self, layer: &LayerSpec, conv: &ConvSpec) -> Result<Conv> {
        let depthwise = matches!(layer.op, LayerOp::Depthwise(_));
        let cin = if depthwise { 1 } else { conv.in_channels };
        self.conv(&layer.id.to_string(), depthwise, layer.channels, cin, conv.kernel, conv.stride, conv.activation)
    }

    fn read_squeeze_excite(&mut self, layer: &LayerSpec, squeeze: usize) -> Result<SqueezeExcite> {
        let (id, channels) = (layer.id, layer.channels);
        let reduce = self.conv(&format!("{id}.reduce"), false, squeeze, channels, 1, 1, Activation::Relu)?;
        let gate_index = self.next;
        let expand = self.conv(&format!("{id}.expand"), false, channels, squeeze, 1, 1, Activation::None)?;
        let rec = &self.convs[gate_index];
        // The gate's upper clamp: a fused RELU6, or (uint8 release) the quantized range of the
        // addition's output.
        let gate_max = match rec.post_add_output.map(|t| &self.tensors[t]) {
            Some(t) if t.dtype == fb::TensorType::UINT8 && t.zero_points.first() == Some(&0) => {
                255.0 * t.scales.first().copied().unwrap_or(6.0)
            }
            _ if rec.fused == fb::ActivationFunctionType::RELU6 => 6.0,
            _ => {
                let block = match id {
                    LayerId::Block { index, .. } => LayerId::block(index, BlockPart::Output),
                    other => other,
                };
                bail!("weights do not match {}: {block} squeeze-excite gate has no [0, 6] clamp", self.arch.name())
            }
        };
        Ok(SqueezeExcite { reduce, expand, gate_add: rec.post_add, gate_max, gate_mul: rec.post_mul })
    }
}
