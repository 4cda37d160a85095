//! torchvision-style safetensors (`features.0.0.weight` …): MobileNetV3-Small or -Large state dicts
//! as saved from `torchvision.models.mobilenet_v3_*`. Batch-norm (eps 0.001) is folded into the
//! convolutions at load; inputs use ImageNet mean/std; padding is symmetric.

use anyhow::{Context, Result, bail};
use safetensors::{Dtype, SafeTensors};

use super::LayerReader;
use crate::arch::{Activation, Arch, ConvSpec, LayerId, LayerOp, LayerSpec, Padding};
use crate::model::{Classifier, Conv, Network, SqueezeExcite};

const BN_EPS: f64 = 1e-3;
const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Reads a torchvision MobileNetV3 state dict.
pub fn load(bytes: &[u8]) -> Result<Network> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| anyhow::anyhow!("corrupt safetensors file: {e}"))?;
    let arch = if st.names().iter().any(|n| n.starts_with("features.16.")) { Arch::Large } else { Arch::Small };
    let mut reader = Reader { st: &st, arch, block: 0, module: 0 };
    let (stem, blocks, head) = super::read_layers(arch, &mut reader)?;
    let classifier = if st.names().iter().any(|n| n.starts_with("classifier.")) {
        let hidden_width = arch.classifier_hidden();
        let hidden =
            reader.dense("classifier.0", Some(hidden_width), arch.head_channels(), false, Activation::HardSwish)?;
        let logits = reader.dense("classifier.3", None, hidden_width, false, Activation::None)?;
        Some(Classifier { hidden, logits })
    } else {
        None
    };
    Ok(Network {
        arch,
        padding: Padding::Symmetric,
        input_scale: std::array::from_fn(|c| 1.0 / IMAGENET_STD[c]),
        input_shift: std::array::from_fn(|c| -IMAGENET_MEAN[c] / IMAGENET_STD[c]),
        stem,
        blocks,
        head,
        classifier,
    })
}

struct Reader<'a, 'b> {
    st: &'a SafeTensors<'b>,
    arch: Arch,
    /// The block last read, and how many of its modules (`features.{block + 1}.block.{module}`).
    block: usize,
    module: usize,
}

impl Reader<'_, '_> {
    /// A float32 tensor with exactly the expected shape.
    fn tensor(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let arch = self.arch.name();
        let t = self
            .st
            .tensor(name)
            .map_err(|_| anyhow::anyhow!("weights do not match {arch}: tensor {name:?} is missing"))?;
        if t.shape() != expected {
            bail!("weights do not match {arch}: tensor {name:?} has shape {:?}, expected {:?}", t.shape(), expected);
        }
        if t.dtype() != Dtype::F32 {
            bail!("tensor {name:?} has dtype {:?}; only F32 safetensors are supported", t.dtype());
        }
        let values: Vec<f32> = bytemuck::pod_collect_to_vec(t.data());
        super::validate::tensor_values(name, &values)?;
        Ok(values)
    }

    /// The module computing layer `id`: `features.0` (stem), `features.{i + 1}.block.{j}` (the
    /// j-th module of block i: expansion, depthwise, squeeze-excite, projection as it has them),
    /// `features.{blocks + 1}` (head). Called in walk order.
    fn module(&mut self, id: LayerId) -> String {
        match id {
            LayerId::Stem => "features.0".into(),
            LayerId::Head => format!("features.{}", self.arch.blocks().len() + 1),
            LayerId::Block { index, .. } => {
                if index != self.block {
                    (self.block, self.module) = (index, 0);
                }
                self.module += 1;
                format!("features.{}.block.{}", index + 1, self.module - 1)
            }
        }
    }

    /// `prefix.0.weight` convolution followed by `prefix.1.*` batch-norm, folded.
    #[allow(clippy::too_many_arguments)]
    fn conv_bn(
        &self,
        prefix: &str,
        depthwise: bool,
        out: usize,
        cin: usize,
        kernel: usize,
        stride: usize,
        activation: Activation,
    ) -> Result<Conv> {
        let mut weight = self.tensor(&format!("{prefix}.0.weight"), &[out, cin, kernel, kernel])?;
        let gamma = self.tensor(&format!("{prefix}.1.weight"), &[out])?;
        let beta = self.tensor(&format!("{prefix}.1.bias"), &[out])?;
        let mean = self.tensor(&format!("{prefix}.1.running_mean"), &[out])?;
        let var = self.tensor(&format!("{prefix}.1.running_var"), &[out])?;
        super::validate::variance(&format!("{prefix}.1.running_var"), &var)?;
        let per_out = weight.len() / out;
        let mut bias = vec![0.0; out];
        for o in 0..out {
            let s = gamma[o] as f64 / (var[o] as f64 + BN_EPS).sqrt();
            for w in &mut weight[o * per_out..(o + 1) * per_out] {
                *w = (*w as f64 * s) as f32;
            }
            bias[o] = (beta[o] as f64 - mean[o] as f64 * s) as f32;
        }
        Ok(Conv {
            out_channels: out,
            in_channels: if depthwise { out } else { cin },
            kernel,
            stride,
            weight,
            bias,
            activation,
            cap: f32::INFINITY,
        })
    }

    /// A 1×1 layer with bias: a squeeze-excite convolution (`[out, in, 1, 1]`) or a classifier
    /// linear layer (`[out, in]`); `out = None` accepts any output count (the logits).
    fn dense(&self, prefix: &str, out: Option<usize>, cin: usize, conv: bool, activation: Activation) -> Result<Conv> {
        let name = format!("{prefix}.weight");
        let out =
            match out {
                Some(out) => out,
                None => self.st.tensor(&name).ok().and_then(|t| t.shape().first().copied()).with_context(|| {
                    format!("weights do not match {}: tensor {name:?} is missing", self.arch.name())
                })?,
            };
        let shape = if conv { vec![out, cin, 1, 1] } else { vec![out, cin] };
        let weight = self.tensor(&name, &shape)?;
        let bias = self.tensor(&format!("{prefix}.bias"), &[out])?;
        Ok(Conv {
            out_channels: out,
            in_channels: cin,
            kernel: 1,
            stride: 1,
            weight,
            bias,
            activation,
            cap: f32::INFINITY,
        })
    }
}

impl LayerReader for Reader<'_, '_> {
    fn read_conv(&mut self, layer: &LayerSpec, conv: &ConvSpec) -> Result<Conv> {
        let depthwise = matches!(layer.op, LayerOp::Depthwise(_));
        let cin = if depthwise { 1 } else { conv.in_channels };
        let prefix = self.module(layer.id);
        self.conv_bn(&prefix, depthwise, layer.channels, cin, conv.kernel, conv.stride, conv.activation)
    }

    fn read_squeeze_excite(&mut self, layer: &LayerSpec, squeeze: usize) -> Result<SqueezeExcite> {
        let (p, channels) = (self.module(layer.id), layer.channels);
        let reduce = self.dense(&format!("{p}.fc1"), Some(squeeze), channels, true, Activation::Relu)?;
        let expand = self.dense(&format!("{p}.fc2"), Some(channels), squeeze, true, Activation::None)?;
        Ok(SqueezeExcite { reduce, expand, gate_add: 3.0, gate_max: 6.0, gate_mul: 1.0 / 6.0 })
    }
}
