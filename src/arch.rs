//! MobileNetV3 architecture tables (Howard et al. 2019, tables 1 and 2), the padding rules of the
//! two weight formats, and the layer names and shapes the commands expose.

use anyhow::{Result, bail};

/// Which MobileNetV3 variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Arch {
    /// MobileNetV3-Small (11 bottleneck blocks, 576-channel head).
    Small,
    /// MobileNetV3-Large (15 bottleneck blocks, 960-channel head).
    Large,
}

/// Activation applied after a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// Identity.
    None,
    /// max(x, 0).
    Relu,
    /// x · relu6(x + 3) / 6.
    HardSwish,
}

/// One bottleneck block ("bneck" row of the paper's table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSpec {
    /// Depthwise kernel size (3 or 5).
    pub kernel: usize,
    /// Expanded channel count.
    pub expanded: usize,
    /// Output channel count.
    pub out: usize,
    /// Whether the block has squeeze-and-excite.
    pub se: bool,
    /// Nonlinearity of the expansion and depthwise convolutions.
    pub activation: Activation,
    /// Depthwise stride (1 or 2).
    pub stride: usize,
}

const fn b(kernel: usize, expanded: usize, out: usize, se: bool, hs: bool, stride: usize) -> BlockSpec {
    BlockSpec {
        kernel,
        expanded,
        out,
        se,
        activation: if hs { Activation::HardSwish } else { Activation::Relu },
        stride,
    }
}

const SMALL: [BlockSpec; 11] = [
    b(3, 16, 16, true, false, 2),
    b(3, 72, 24, false, false, 2),
    b(3, 88, 24, false, false, 1),
    b(5, 96, 40, true, true, 2),
    b(5, 240, 40, true, true, 1),
    b(5, 240, 40, true, true, 1),
    b(5, 120, 48, true, true, 1),
    b(5, 144, 48, true, true, 1),
    b(5, 288, 96, true, true, 2),
    b(5, 576, 96, true, true, 1),
    b(5, 576, 96, true, true, 1),
];

const LARGE: [BlockSpec; 15] = [
    b(3, 16, 16, false, false, 1),
    b(3, 64, 24, false, false, 2),
    b(3, 72, 24, false, false, 1),
    b(5, 72, 40, true, false, 2),
    b(5, 120, 40, true, false, 1),
    b(5, 120, 40, true, false, 1),
    b(3, 240, 80, false, true, 2),
    b(3, 200, 80, false, true, 1),
    b(3, 184, 80, false, true, 1),
    b(3, 184, 80, false, true, 1),
    b(3, 480, 112, true, true, 1),
    b(3, 672, 112, true, true, 1),
    b(5, 672, 160, true, true, 2),
    b(5, 960, 160, true, true, 1),
    b(5, 960, 160, true, true, 1),
];

/// Channels of the stem convolution (3×3, stride 2, hard-swish).
pub const STEM_CHANNELS: usize = 16;

impl Arch {
    /// The bottleneck blocks in order.
    pub fn blocks(self) -> &'static [BlockSpec] {
        match self {
            Arch::Small => &SMALL,
            Arch::Large => &LARGE,
        }
    }

    /// Channels of the last 1×1 convolution (`head`).
    pub fn head_channels(self) -> usize {
        match self {
            Arch::Small => 576,
            Arch::Large => 960,
        }
    }

    /// Width of the classifier's hidden layer.
    pub fn classifier_hidden(self) -> usize {
        match self {
            Arch::Small => 1024,
            Arch::Large => 1280,
        }
    }

    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Small => "MobileNetV3-Small",
            Arch::Large => "MobileNetV3-Large",
        }
    }

    /// Input channels of block `i`.
    pub fn block_input_channels(self, i: usize) -> usize {
        if i == 0 { STEM_CHANNELS } else { self.blocks()[i - 1].out }
    }
}

impl BlockSpec {
    /// Whether the block has an expansion 1×1 convolution (it has none when expanded == input).
    pub fn has_expand(&self, in_channels: usize) -> bool {
        self.expanded != in_channels
    }

    /// Whether the block adds its input to its output.
    pub fn has_residual(&self, in_channels: usize) -> bool {
        self.stride == 1 && in_channels == self.out
    }

    /// Channels of the squeeze-excite bottleneck: expanded/4 rounded to a multiple of 8.
    pub fn se_channels(&self) -> usize {
        make_divisible(self.expanded / 4, 8)
    }
}

/// Rounds `v` to the nearest multiple of `divisor`, never going below 90% of `v`
/// (the rule both TensorFlow and torchvision use for channel counts).
pub fn make_divisible(v: usize, divisor: usize) -> usize {
    let rounded = ((v + divisor / 2) / divisor * divisor).max(divisor);
    if (rounded as f64) < 0.9 * v as f64 { rounded + divisor } else { rounded }
}

/// How a convolution pads its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Padding {
    /// TensorFlow "SAME": output = ceil(in / stride); padding split with the extra pixel after.
    TfSame,
    /// PyTorch style: (k − 1) / 2 on both sides.
    Symmetric,
}

impl Padding {
    /// Output size and padding before, for one spatial dimension.
    pub fn geometry(self, input: usize, kernel: usize, stride: usize) -> (usize, usize) {
        match self {
            Padding::TfSame => {
                let out = input.div_ceil(stride);
                let total = ((out - 1) * stride + kernel).saturating_sub(input);
                (out, total / 2)
            }
            Padding::Symmetric => {
                let pad = (kernel - 1) / 2;
                ((input + 2 * pad - kernel) / stride + 1, pad)
            }
        }
    }
}

/// A named feature map and its shape (channels, height, width).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LayerInfo {
    /// Layer name, e.g. `block3.expand`.
    pub name: String,
    /// Channels.
    pub channels: usize,
    /// Height.
    pub height: usize,
    /// Width.
    pub width: usize,
}

/// Every named layer for an input of `width`×`height`, in execution order.
pub fn layers(arch: Arch, padding: Padding, width: usize, height: usize) -> Vec<LayerInfo> {
    let mut out = Vec::new();
    let push = |out: &mut Vec<LayerInfo>, name: String, c: usize, h: usize, w: usize| {
        out.push(LayerInfo { name, channels: c, height: h, width: w });
    };
    let (mut h, _) = padding.geometry(height, 3, 2);
    let (mut w, _) = padding.geometry(width, 3, 2);
    push(&mut out, "stem".into(), STEM_CHANNELS, h, w);
    for (i, block) in arch.blocks().iter().enumerate() {
        let cin = arch.block_input_channels(i);
        if block.has_expand(cin) {
            push(&mut out, format!("block{i}.expand"), block.expanded, h, w);
        }
        h = padding.geometry(h, block.kernel, block.stride).0;
        w = padding.geometry(w, block.kernel, block.stride).0;
        push(&mut out, format!("block{i}.depthwise"), block.expanded, h, w);
        if block.se {
            push(&mut out, format!("block{i}.se"), block.expanded, h, w);
        }
        push(&mut out, format!("block{i}.project"), block.out, h, w);
        push(&mut out, format!("block{i}"), block.out, h, w);
    }
    push(&mut out, "head".into(), arch.head_channels(), h, w);
    out
}

/// Checks that every name is a layer of `arch`; the error lists the valid names.
pub fn check_layer_names(arch: Arch, names: &[String]) -> Result<()> {
    let known = layers(arch, Padding::TfSame, 224, 224);
    for name in names {
        if !known.iter().any(|l| &l.name == name) {
            let valid: Vec<&str> = known.iter().map(|l| l.name.as_str()).collect();
            bail!("unknown layer {name:?} for {}; valid layers: {}", arch.name(), valid.join(", "));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf_same_padding_is_asymmetric_at_stride_two() {
        assert_eq!(Padding::TfSame.geometry(224, 3, 2), (112, 0));
        assert_eq!(Padding::TfSame.geometry(37, 3, 2), (19, 1));
        assert_eq!(Padding::TfSame.geometry(28, 5, 2), (14, 1));
        assert_eq!(Padding::Symmetric.geometry(224, 3, 2), (112, 1));
        assert_eq!(Padding::Symmetric.geometry(37, 5, 2), (19, 2));
    }

    #[test]
    fn squeeze_channels_match_the_paper() {
        let se: Vec<usize> = Arch::Small.blocks().iter().filter(|b| b.se).map(|b| b.se_channels()).collect();
        assert_eq!(se, [8, 24, 64, 64, 32, 40, 72, 144, 144]);
        let se: Vec<usize> = Arch::Large.blocks().iter().filter(|b| b.se).map(|b| b.se_channels()).collect();
        assert_eq!(se, [24, 32, 32, 120, 168, 168, 240, 240]);
    }

    #[test]
    fn small_layer_shapes_at_224() {
        let l = layers(Arch::Small, Padding::TfSame, 224, 224);
        let find = |n: &str| l.iter().find(|x| x.name == n).unwrap().clone();
        assert_eq!((find("stem").channels, find("stem").height), (16, 112));
        assert_eq!((find("block3.expand").channels, find("block3.expand").height), (96, 28));
        assert_eq!((find("block10").channels, find("block10").height), (96, 7));
        assert_eq!(find("head").channels, 576);
        assert!(!l.iter().any(|x| x.name == "block0.expand"));
    }
}
