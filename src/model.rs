//! The feature network as plain float arrays: weights dequantized, batch-norm folded, laid out the
//! way the kernels read them. Loaders in [`crate::weights`] produce it; the GPU engine and the CPU
//! reference both consume it.

use crate::arch::{Activation, Arch, BlockPart, LayerId, Padding};

/// A convolution with its bias and activation.
///
/// Weight layouts: full convolution `[out][in][kh][kw]`; depthwise `[channel][kh][kw]`;
/// pointwise (1×1) `[out][in]`.
#[derive(Clone, Debug)]
pub struct Conv {
    /// Output channels.
    pub out_channels: usize,
    /// Input channels (equal to `out_channels` for depthwise).
    pub in_channels: usize,
    /// Kernel size (square).
    pub kernel: usize,
    /// Stride (both directions).
    pub stride: usize,
    /// Weights, layout above.
    pub weight: Vec<f32>,
    /// One bias per output channel.
    pub bias: Vec<f32>,
    /// Nonlinearity after the bias.
    pub activation: Activation,
    /// Upper clamp after the activation: the uint8 TFLite release has ReLUs that are only its
    /// quantized output range `[0, cap]`; float execution reproduces the clamp. `f32::INFINITY`
    /// elsewhere.
    pub cap: f32,
}

impl Conv {
    /// Whether the derivative of the activation can be read from the layer's output instead of
    /// a stored pre-activation: an unclamped ReLU, where relu'(z) = [z > 0] = [relu(z) > 0]
    /// (a clamp hides whether z passed the cap; hard-swish is not invertible).
    pub fn derivative_from_output(&self) -> bool {
        self.activation == Activation::Relu && self.cap == f32::INFINITY
    }
}

/// Squeeze-and-excite: mean → 1×1 conv + ReLU → 1×1 conv → gate → scale.
///
/// gate = clamp(x + `gate_add`, 0, `gate_max`) · `gate_mul`; hard-sigmoid is 3, 6 and 1/6, but the
/// TFLite graphs fold the +3 into the bias, quantize the 1/6 constant or clamp at the quantized
/// range, and we execute the graph's own constants.
#[derive(Clone, Debug)]
pub struct SqueezeExcite {
    /// Reduce convolution (expanded → squeeze channels), ReLU.
    pub reduce: Conv,
    /// Expand convolution (squeeze → expanded channels), followed by the gate.
    pub expand: Conv,
    /// Added before the clamp.
    pub gate_add: f32,
    /// Upper end of the clamp.
    pub gate_max: f32,
    /// Multiplied after the clamp.
    pub gate_mul: f32,
}

/// One bottleneck block.
#[derive(Clone, Debug)]
pub struct Block {
    /// Expansion 1×1 convolution, absent when the expansion equals the input width.
    pub expand: Option<Conv>,
    /// Depthwise convolution.
    pub depthwise: Conv,
    /// Squeeze-and-excite, when the block has one.
    pub se: Option<SqueezeExcite>,
    /// Projection 1×1 convolution (no activation).
    pub project: Conv,
    /// Whether the block input is added to the projection.
    pub residual: bool,
}

/// Classifier after the head: global mean → 1×1 conv + hard-swish → 1×1 conv to logits.
#[derive(Clone, Debug)]
pub struct Classifier {
    /// Hidden layer (1024 or 1280 wide), hard-swish.
    pub hidden: Conv,
    /// Logits layer.
    pub logits: Conv,
}

/// The whole feature network.
#[derive(Clone, Debug)]
pub struct Network {
    /// Which variant.
    pub arch: Arch,
    /// The weight format's padding rule.
    pub padding: Padding,
    /// Input normalization applied per RGB channel to pixels in [0, 1]: `x · scale + shift`.
    pub input_scale: [f32; 3],
    /// See `input_scale`.
    pub input_shift: [f32; 3],
    /// 3×3 stride-2 convolution, hard-swish.
    pub stem: Conv,
    /// Bottleneck blocks.
    pub blocks: Vec<Block>,
    /// Last 1×1 convolution, hard-swish.
    pub head: Conv,
    /// Classifier, when the weights have one.
    pub classifier: Option<Classifier>,
}

impl Network {
    /// The convolution computing layer `id`: the stem, the head, or a block's expansion,
    /// depthwise or projection convolution (`None` for other layers, or layers this network lacks).
    pub fn conv(&self, id: LayerId) -> Option<&Conv> {
        match id {
            LayerId::Stem => Some(&self.stem),
            LayerId::Head => Some(&self.head),
            LayerId::Block { index, part } => {
                let block = self.blocks.get(index)?;
                match part {
                    BlockPart::Expand => block.expand.as_ref(),
                    BlockPart::Depthwise => Some(&block.depthwise),
                    BlockPart::Project => Some(&block.project),
                    BlockPart::Se | BlockPart::Output => None,
                }
            }
        }
    }

    /// The squeeze-and-excite computing layer `id` (a block's `.se`; `None` for other layers, or
    /// blocks without one).
    pub fn squeeze_excite(&self, id: LayerId) -> Option<&SqueezeExcite> {
        match id {
            LayerId::Block { index, part: BlockPart::Se } => self.blocks.get(index)?.se.as_ref(),
            _ => None,
        }
    }
}
