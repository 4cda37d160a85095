//! torchvision-style safetensors (`features.0.0.weight` …): MobileNetV3-Small or -Large state dicts
//! as saved from `torchvision.models.mobilenet_v3_*`. Batch-norm (eps 0.001) is folded into the
//! convolutions at load; inputs use ImageNet mean/std; padding is symmetric.

use anyhow::{Context, Result, bail};
use safetensors::{Dtype, SafeTensors};

use crate::arch::{Activation, Arch, BlockSpec, Padding, STEM_CHANNELS};
use crate::model::{Block, Classifier, Conv, Network, SqueezeExcite};

const BN_EPS: f64 = 1e-3;
const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Reads a torchvision MobileNetV3 state dict.
pub fn load(bytes: &[u8]) -> Result<Network> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| anyhow::anyhow!("corrupt safetensors file: {e}"))?;
    let arch = if st.names().iter().any(|n| n.starts_with("features.16.")) { Arch::Large } else { Arch::Small };
    let reader = Reader { st: &st, arch };
    let stem = reader.conv_bn("features.0", false, STEM_CHANNELS, 3, 3, 2, Activation::HardSwish)?;
    let mut blocks = Vec::new();
    for (i, spec) in arch.blocks().iter().enumerate() {
        blocks.push(reader.block(i, spec)?);
    }
    let n = arch.blocks().len() + 1;
    let last = arch.blocks().last().unwrap().out;
    let head =
        reader.conv_bn(&format!("features.{n}"), false, arch.head_channels(), last, 1, 1, Activation::HardSwish)?;
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
        let values: Vec<f32> = t.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        super::validate::tensor_values(name, &values)?;
        Ok(values)
    }

    fn block(&self, i: usize, spec: &BlockSpec) -> Result<Block> {
        let cin = self.arch.block_input_channels(i);
        let prefix = format!("features.{}.block", i + 1);
        let mut j = 0;
        let mut next = || {
            j += 1;
            format!("{prefix}.{}", j - 1)
        };
        let expand = if spec.has_expand(cin) {
            Some(self.conv_bn(&next(), false, spec.expanded, cin, 1, 1, spec.activation)?)
        } else {
            None
        };
        let depthwise = self.conv_bn(&next(), true, spec.expanded, 1, spec.kernel, spec.stride, spec.activation)?;
        let se = if spec.se {
            let p = next();
            let s = spec.se_channels();
            let reduce = self.dense(&format!("{p}.fc1"), Some(s), spec.expanded, true, Activation::Relu)?;
            let expand = self.dense(&format!("{p}.fc2"), Some(spec.expanded), s, true, Activation::None)?;
            Some(SqueezeExcite { reduce, expand, gate_add: 3.0, gate_max: 6.0, gate_mul: 1.0 / 6.0 })
        } else {
            None
        };
        let project = self.conv_bn(&next(), false, spec.out, spec.expanded, 1, 1, Activation::None)?;
        Ok(Block { expand, depthwise, se, project, residual: spec.has_residual(cin) })
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
