//! MobileNetV3 architecture tables (Howard et al. 2019, tables 1 and 2), the padding rules of the
//! two weight formats, and the layer names and shapes the commands expose.

use anyhow::{Result, anyhow};

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

/// The part of a bottleneck block a layer is, in execution order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BlockPart {
    /// `blockN.expand`: the expansion 1×1 convolution (absent when the expansion equals the input).
    Expand,
    /// `blockN.depthwise`: the depthwise convolution.
    Depthwise,
    /// `blockN.se`: squeeze-and-excite (absent in blocks without it).
    Se,
    /// `blockN.project`: the projection 1×1 convolution.
    Project,
    /// `blockN`: the block's output (after the residual add, when it has one).
    Output,
}

impl BlockPart {
    /// The suffix after `blockN` in the layer name (empty for the output).
    fn suffix(self) -> &'static str {
        match self {
            BlockPart::Expand => ".expand",
            BlockPart::Depthwise => ".depthwise",
            BlockPart::Se => ".se",
            BlockPart::Project => ".project",
            BlockPart::Output => "",
        }
    }
}

/// A layer of the network; ordered in execution order. Written and parsed as the layer names the
/// commands take (`stem`, `block3.expand`, `block5`, `head`); whether a variant has the layer is
/// [`Arch::layer`]'s question.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LayerId {
    /// `stem`: the first convolution.
    Stem,
    /// A part of bottleneck block `index` (counted from 0).
    Block {
        /// Block number.
        index: usize,
        /// Which part of the block.
        part: BlockPart,
    },
    /// `head`: the last 1×1 convolution.
    Head,
}

impl LayerId {
    /// Part `part` of block `index`.
    pub fn block(index: usize, part: BlockPart) -> Self {
        LayerId::Block { index, part }
    }
}

impl std::fmt::Display for LayerId {
    /// The layer's name; honours width and alignment (`{:<18}`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayerId::Stem => f.pad("stem"),
            LayerId::Block { index, part } => f.pad(&format!("block{index}{}", part.suffix())),
            LayerId::Head => f.pad("head"),
        }
    }
}

/// A layer name that names no layer of any variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseLayerIdError {
    text: String,
}

impl std::fmt::Display for ParseLayerIdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unknown layer {:?}: layer names are stem, blockN, blockN.expand, blockN.depthwise, blockN.se, \
             blockN.project and head (see `neural-style layers`)",
            self.text
        )
    }
}

impl std::error::Error for ParseLayerIdError {}

impl std::str::FromStr for LayerId {
    type Err = ParseLayerIdError;

    /// Parses a name as [`LayerId`]'s `Display` writes it, and nothing else (no `block01`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || ParseLayerIdError { text: text.to_string() };
        match text {
            "stem" => return Ok(LayerId::Stem),
            "head" => return Ok(LayerId::Head),
            _ => {}
        }
        let rest = text.strip_prefix("block").ok_or_else(error)?;
        let (number, suffix) = rest.split_at(rest.find('.').unwrap_or(rest.len()));
        let canonical = number.bytes().all(|b| b.is_ascii_digit()) && (number == "0" || !number.starts_with('0'));
        let index = number.parse().ok().filter(|_| canonical).ok_or_else(error)?;
        let part = [BlockPart::Expand, BlockPart::Depthwise, BlockPart::Se, BlockPart::Project, BlockPart::Output]
            .into_iter()
            .find(|p| p.suffix() == suffix)
            .ok_or_else(error)?;
        Ok(LayerId::Block { index, part })
    }
}

impl serde::Serialize for LayerId {
    /// As its name.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Shape and nonlinearity of a convolution whose output is a layer of `channels` channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvSpec {
    /// Input channels (for a depthwise convolution, equal to the output's).
    pub in_channels: usize,
    /// Kernel size (square).
    pub kernel: usize,
    /// Stride (both directions).
    pub stride: usize,
    /// Nonlinearity after the bias.
    pub activation: Activation,
}

/// What computes a layer from the one before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerOp {
    /// The full convolution of the RGB image (`stem`).
    Stem(ConvSpec),
    /// A 1×1 convolution (expansion, projection, `head`).
    Pointwise(ConvSpec),
    /// A depthwise convolution.
    Depthwise(ConvSpec),
    /// Squeeze-and-excite with a bottleneck of `squeeze` channels.
    SqueezeExcite {
        /// Channels of the bottleneck.
        squeeze: usize,
    },
    /// The block output: its projection plus the block input.
    Residual,
    /// The block output: its projection itself (no residual).
    Alias,
}

/// A layer of a variant, independent of the input size: what it is, its channels, what computes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerSpec {
    /// Which layer.
    pub id: LayerId,
    /// Output channels.
    pub channels: usize,
    /// What computes it.
    pub op: LayerOp,
}

/// A layer at an input size: its shape (channels, height, width) and what computes it. Serializes
/// as `{"name", "channels", "height", "width"}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LayerInfo {
    /// Which layer (serialized as its name, e.g. `block3.expand`).
    #[serde(rename = "name")]
    pub id: LayerId,
    /// Channels.
    pub channels: usize,
    /// Height.
    pub height: usize,
    /// Width.
    pub width: usize,
    /// What computes it.
    #[serde(skip)]
    pub op: LayerOp,
}

impl Arch {
    /// Every layer in execution order: the one walk of the architecture table that the engine,
    /// the CPU reference, the weight loaders and the commands all follow.
    pub fn walk(self) -> Vec<LayerSpec> {
        let conv = |in_channels, kernel, stride, activation| ConvSpec { in_channels, kernel, stride, activation };
        let mut out = vec![LayerSpec {
            id: LayerId::Stem,
            channels: STEM_CHANNELS,
            op: LayerOp::Stem(conv(3, 3, 2, Activation::HardSwish)),
        }];
        for (index, block) in self.blocks().iter().enumerate() {
            let cin = self.block_input_channels(index);
            let mut push = |part, channels, op| out.push(LayerSpec { id: LayerId::block(index, part), channels, op });
            if block.has_expand(cin) {
                push(BlockPart::Expand, block.expanded, LayerOp::Pointwise(conv(cin, 1, 1, block.activation)));
            }
            let depthwise = conv(block.expanded, block.kernel, block.stride, block.activation);
            push(BlockPart::Depthwise, block.expanded, LayerOp::Depthwise(depthwise));
            if block.se {
                push(BlockPart::Se, block.expanded, LayerOp::SqueezeExcite { squeeze: block.se_channels() });
            }
            push(BlockPart::Project, block.out, LayerOp::Pointwise(conv(block.expanded, 1, 1, Activation::None)));
            let output = if block.has_residual(cin) { LayerOp::Residual } else { LayerOp::Alias };
            push(BlockPart::Output, block.out, output);
        }
        let last = self.blocks().last().map_or(STEM_CHANNELS, |b| b.out);
        out.push(LayerSpec {
            id: LayerId::Head,
            channels: self.head_channels(),
            op: LayerOp::Pointwise(conv(last, 1, 1, Activation::HardSwish)),
        });
        out
    }

    /// The layer `id` of this variant; an error listing the valid names when it has none (a block
    /// number past the last block, an `.expand` or `.se` of a block without one).
    pub fn layer(self, id: LayerId) -> Result<LayerSpec> {
        self.walk().into_iter().find(|l| l.id == id).ok_or_else(|| self.unknown_layer(&id.to_string()))
    }

    /// Parses a layer name and checks this variant has it; either error lists the valid names.
    pub fn parse_layer(self, text: &str) -> Result<LayerId> {
        let id = text.parse().map_err(|_| self.unknown_layer(text))?;
        self.layer(id).map(|l| l.id)
    }

    fn unknown_layer(self, name: &str) -> anyhow::Error {
        let valid: Vec<String> = self.walk().iter().map(|l| l.id.to_string()).collect();
        anyhow!("unknown layer {name:?} for {}; valid layers: {}", self.name(), valid.join(", "))
    }
}

/// Every layer for an input of `width`×`height`, in execution order: [`Arch::walk`] with the
/// shape each convolution's stride and `padding` give.
pub fn layers(arch: Arch, padding: Padding, width: usize, height: usize) -> Vec<LayerInfo> {
    let (mut h, mut w) = (height, width);
    arch.walk()
        .into_iter()
        .map(|LayerSpec { id, channels, op }| {
            if let LayerOp::Stem(c) | LayerOp::Depthwise(c) = op {
                h = padding.geometry(h, c.kernel, c.stride).0;
                w = padding.geometry(w, c.kernel, c.stride).0;
            }
            LayerInfo { id, channels, height: h, width: w, op }
        })
        .collect()
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
        let find = |n: &str| *l.iter().find(|x| x.id.to_string() == n).unwrap();
        assert_eq!((find("stem").channels, find("stem").height), (16, 112));
        assert_eq!((find("block3.expand").channels, find("block3.expand").height), (96, 28));
        assert_eq!((find("block10").channels, find("block10").height), (96, 7));
        assert_eq!(find("head").channels, 576);
        assert!(!l.iter().any(|x| x.id == LayerId::block(0, BlockPart::Expand)));
    }

    #[test]
    fn every_layer_name_of_both_variants_parses_back_to_its_id() {
        for arch in [Arch::Small, Arch::Large] {
            for layer in arch.walk() {
                let name = layer.id.to_string();
                assert_eq!(name.parse::<LayerId>(), Ok(layer.id), "{name}");
                assert_eq!(arch.parse_layer(&name).unwrap(), layer.id);
            }
        }
    }

    #[test]
    fn small_layer_names_are_the_published_ones_in_execution_order() {
        let names: Vec<String> = Arch::Small.walk().iter().map(|l| l.id.to_string()).collect();
        let mut want = vec!["stem".to_string()];
        for (i, (expand, se)) in [
            (false, true),
            (true, false),
            (true, false),
            (true, true),
            (true, true),
            (true, true),
            (true, true),
            (true, true),
            (true, true),
            (true, true),
            (true, true),
        ]
        .into_iter()
        .enumerate()
        {
            let parts = [(expand, ".expand"), (true, ".depthwise"), (se, ".se"), (true, ".project"), (true, "")];
            want.extend(
                parts.into_iter().filter(|(has, _)| *has).map(|(_, suffix)| ["block", &i.to_string(), suffix].concat()),
            );
        }
        want.push("head".into());
        assert_eq!(names, want);
        let ids: Vec<LayerId> = Arch::Large.walk().iter().map(|l| l.id).collect();
        assert!(ids.is_sorted_by(|a, b| a < b), "Ord is execution order");
        assert!(Arch::Small.walk().iter().map(|l| l.id).is_sorted_by(|a, b| a < b));
        assert_eq!(format!("[{:<8}]", LayerId::Stem), "[stem    ]");
    }

    /// The shapes as the layer table computed them before the walk: block by block from the
    /// paper's rows.
    fn table_shapes(arch: Arch, padding: Padding, width: usize, height: usize) -> Vec<(LayerId, usize, usize, usize)> {
        let (mut h, _) = padding.geometry(height, 3, 2);
        let (mut w, _) = padding.geometry(width, 3, 2);
        let mut out = vec![(LayerId::Stem, STEM_CHANNELS, h, w)];
        for (i, block) in arch.blocks().iter().enumerate() {
            let cin = arch.block_input_channels(i);
            if block.has_expand(cin) {
                out.push((LayerId::block(i, BlockPart::Expand), block.expanded, h, w));
            }
            h = padding.geometry(h, block.kernel, block.stride).0;
            w = padding.geometry(w, block.kernel, block.stride).0;
            out.push((LayerId::block(i, BlockPart::Depthwise), block.expanded, h, w));
            if block.se {
                out.push((LayerId::block(i, BlockPart::Se), block.expanded, h, w));
            }
            out.push((LayerId::block(i, BlockPart::Project), block.out, h, w));
            out.push((LayerId::block(i, BlockPart::Output), block.out, h, w));
        }
        out.push((LayerId::Head, arch.head_channels(), h, w));
        out
    }

    #[test]
    fn walk_at_odd_sizes_gives_the_table_shapes() {
        for arch in [Arch::Small, Arch::Large] {
            for padding in [Padding::TfSame, Padding::Symmetric] {
                for (w, h) in [(37, 23), (41, 29), (1, 1), (224, 224), (3, 200)] {
                    let got: Vec<_> =
                        layers(arch, padding, w, h).iter().map(|l| (l.id, l.channels, l.height, l.width)).collect();
                    assert_eq!(got, table_shapes(arch, padding, w, h), "{arch:?} {padding:?} {w}x{h}");
                }
            }
        }
        let stem = serde_json::to_string(&layers(Arch::Small, Padding::TfSame, 37, 23)[0]).unwrap();
        assert_eq!(stem, r#"{"name":"stem","channels":16,"height":12,"width":19}"#);
    }

    #[test]
    fn walk_ops_follow_the_table() {
        let small = Arch::Small.walk();
        let op = |id: &str| small.iter().find(|l| l.id.to_string() == id).unwrap().op;
        let dw = ConvSpec { in_channels: 96, kernel: 5, stride: 2, activation: Activation::HardSwish };
        assert_eq!(op("block3.depthwise"), LayerOp::Depthwise(dw));
        assert_eq!(op("block3.se"), LayerOp::SqueezeExcite { squeeze: 24 });
        assert_eq!(op("block3"), LayerOp::Alias);
        assert_eq!(op("block4"), LayerOp::Residual);
        let head = ConvSpec { in_channels: 96, kernel: 1, stride: 1, activation: Activation::HardSwish };
        assert_eq!(op("head"), LayerOp::Pointwise(head));
        let stem = ConvSpec { in_channels: 3, kernel: 3, stride: 2, activation: Activation::HardSwish };
        assert_eq!(op("stem"), LayerOp::Stem(stem));
        let project = ConvSpec { in_channels: 96, kernel: 1, stride: 1, activation: Activation::None };
        assert_eq!(op("block3.project"), LayerOp::Pointwise(project));
    }

    #[test]
    fn layers_a_variant_lacks_are_rejected_with_the_valid_names() {
        let valid = "valid layers: stem, block0.depthwise, block0.se, block0.project, block0, block1.expand,";
        for (arch, id, name) in [
            (Arch::Small, LayerId::block(99, BlockPart::Output), "block99"),
            (Arch::Small, LayerId::block(0, BlockPart::Expand), "block0.expand"),
            (Arch::Small, LayerId::block(1, BlockPart::Se), "block1.se"),
            (Arch::Small, LayerId::block(11, BlockPart::Depthwise), "block11.depthwise"),
        ] {
            let e = arch.layer(id).unwrap_err().to_string();
            assert!(e.starts_with(&format!("unknown layer \"{name}\" for MobileNetV3-Small; {valid}")), "{e}");
            assert!(e.ends_with("block10.project, block10, head"), "{e}");
            assert_eq!(arch.parse_layer(name).unwrap_err().to_string(), e);
        }
        assert!(Arch::Large.layer(LayerId::block(14, BlockPart::Se)).is_ok());
        assert!(Arch::Large.layer(LayerId::block(0, BlockPart::Expand)).is_err());
        let e = Arch::Small.parse_layer("nope").unwrap_err().to_string();
        assert!(e.starts_with(&format!("unknown layer \"nope\" for MobileNetV3-Small; {valid}")), "{e}");
    }

    #[test]
    fn names_that_are_no_layer_do_not_parse_and_the_error_names_them() {
        for text in [
            "",
            "nope",
            "Stem",
            "stem ",
            "block",
            "block.se",
            "block01",
            "block+1",
            "block-1",
            "block1.",
            "block1.foo",
            "block1.se.reduce",
            "block99999999999999999999999",
            "head.project",
        ] {
            let e = text.parse::<LayerId>().unwrap_err().to_string();
            assert!(e.starts_with(&format!("unknown layer {text:?}: layer names are stem, blockN")), "{e}");
        }
        assert_eq!("block0".parse(), Ok(LayerId::block(0, BlockPart::Output)));
        assert_eq!("block10.se".parse(), Ok(LayerId::block(10, BlockPart::Se)));
    }
}
