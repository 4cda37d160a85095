//! Command-line arguments (clap derive), all in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use neural_style::arch::Arch;
use neural_style::bench::{BenchLosses, BenchOptions};
use neural_style::gpu::{BackendChoice, LimitsProfile};
use neural_style::stylize::{LineSearch, LossNormalization, OptimizerKind};

/// Gatys-style neural style transfer on the GPU with a MobileNetV3 feature network (WGSL kernels via wgpu).
#[derive(Parser, Debug)]
#[command(name = "neural-style", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// List the GPU adapters wgpu can see (name, backend, type, key limits).
    Devices {
        /// Only this graphics API.
        #[arg(long, value_enum)]
        backend: Option<BackendChoice>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Classify images (resized to 224x224) and print the top classes.
    Classify {
        /// Image files.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// How many classes to print per image.
        #[arg(long, default_value_t = 5, allow_negative_numbers = true)]
        top: usize,
        /// Labels file (`index:label` or one label per line); default: a labels file next to the weights.
        #[arg(long)]
        labels: Option<PathBuf>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Write the activations of chosen layers of one image to a safetensors file (float32 NCHW).
    Features {
        /// Image file.
        image: PathBuf,
        /// Comma-separated layer names (see `neural-style layers`).
        #[arg(long, value_delimiter = ',', required = true)]
        layers: Vec<String>,
        /// Output .safetensors file.
        #[arg(long)]
        out: PathBuf,
        /// Resize so the longer side is N pixels (default: keep the image's size).
        #[arg(long, allow_negative_numbers = true)]
        size: Option<u32>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Paint the content photo in the style of the style image(s) (Gatys et al.).
    Stylize(Box<StylizeArgs>),
    /// Score stylized images: artifacts, chroma, luma, texture, content, color and style128 (one
    /// line, or JSON object, per output).
    Quality {
        /// Content photo the outputs were made from.
        #[arg(long)]
        content: PathBuf,
        /// Style image the outputs were made with.
        #[arg(long)]
        style: PathBuf,
        /// Stylized images to score.
        #[arg(required = true)]
        outputs: Vec<PathBuf>,
        /// Another picture of the same pair (e.g. the classic's) to score beside each output, at
        /// that output's size.
        #[arg(long)]
        reference: Option<PathBuf>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Time the stylize loop (default losses, layers and optimizer) on synthetic square images:
    /// iterations per second, GPU time per kernel family, dispatches, plan memory.
    Bench {
        /// Image sizes (pixels per side), comma-separated.
        #[arg(
            long = "size",
            value_delimiter = ',',
            default_values_t = BenchOptions::default().sizes,
            allow_negative_numbers = true
        )]
        sizes: Vec<u32>,
        /// Timed iterations per size.
        #[arg(long, default_value_t = BenchOptions::default().iterations, allow_negative_numbers = true)]
        iterations: usize,
        /// Untimed iterations before timing.
        #[arg(long, default_value_t = BenchOptions::default().warmup, allow_negative_numbers = true)]
        warmup: usize,
        /// Optimizer.
        #[arg(long, value_enum, default_value_t = BenchOptions::default().optimizer)]
        optimizer: OptimizerKind,
        /// Losses: the product's defaults, or those `tools/bench_pytorch.py` computes (for a
        /// comparison with PyTorch on the same algorithm).
        #[arg(long, value_enum, default_value_t = BenchOptions::default().losses)]
        losses: BenchLosses,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Show an image in a window (checks that presenting works on this machine).
    #[cfg(feature = "viewer")]
    View {
        /// Image file.
        image: PathBuf,
        /// Graphics API to use.
        #[arg(long, value_enum)]
        backend: Option<BackendChoice>,
        /// Use the first adapter whose name contains this text.
        #[arg(long)]
        adapter: Option<String>,
    },
    /// Download, import and show the installed weights (the model every command uses by default).
    Weights {
        /// What to do with them.
        #[command(subcommand)]
        action: WeightsCommand,
    },
    /// List every layer name with its shape for an input size.
    Layers {
        /// Input size as WxH (or N for NxN).
        #[arg(long, default_value = "224x224")]
        size: String,
        /// Architecture when no weights are given (the weights' own architecture wins otherwise).
        #[arg(long, value_enum)]
        arch: Option<Arch>,
        /// Weights file (.tflite or .safetensors); default: $NEURAL_STYLE_WEIGHTS, else the installed
        /// default (`neural-style weights path`).
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `neural-style weights …`.
#[derive(Subcommand, Debug)]
pub enum WeightsCommand {
    /// The known downloads (URL, checksum), what is installed, and the default model.
    List,
    /// Download a known model (default: small-float) and the ImageNet labels, check them, and install
    /// them into the cache directory ($NEURAL_STYLE_CACHE_DIR, else the user's cache dir).
    Fetch {
        /// Which download.
        #[arg(value_enum)]
        name: Option<neural_style::weights::store::Asset>,
        /// Download from this address instead (a .tgz, .tflite, .safetensors or, for `labels`, .txt);
        /// only this file is fetched.
        #[arg(long)]
        url: Option<String>,
        /// Expected SHA-256 of the model file (after unpacking); default: the known one, if any.
        #[arg(long)]
        sha256: Option<String>,
    },
    /// Check a local file (.tflite, .safetensors, a .tgz release, or a labels .txt) and install it.
    Import {
        /// The file.
        file: PathBuf,
        /// Expected SHA-256 of the model file (after unpacking).
        #[arg(long)]
        sha256: Option<String>,
    },
    /// Print the weights file the other commands use without --weights: $NEURAL_STYLE_WEIGHTS, else the
    /// installed default.
    Path,
}

/// Options shared by the commands that run the network.
#[derive(Args, Debug)]
pub struct CommonArgs {
    /// Weights file (.tflite or .safetensors); default: $NEURAL_STYLE_WEIGHTS, else the installed
    /// default (`neural-style weights path`).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Graphics API to use.
    #[arg(long, value_enum)]
    pub backend: Option<BackendChoice>,
    /// Use the first adapter whose name contains this text (see `neural-style devices`).
    #[arg(long)]
    pub adapter: Option<String>,
    /// Device limits to open the GPU with; `phone` checks on a desktop that a run fits a phone.
    #[arg(long, value_enum, default_value = "adapter")]
    pub limits: LimitsProfile,
    /// Kernel variants: `auto` times each eligible variant on the plan's shapes the first time
    /// they are seen on this adapter and caches the fastest (tuning.json in the cache
    /// directory); `off` uses the GPU-shaped kernels without measuring; `always` measures again.
    #[arg(long, value_enum, default_value_t = neural_style::tuning::Tune::default())]
    pub tune: neural_style::tuning::Tune,
    /// How activations and their gradients are stored: `f16` halves their memory (the image,
    /// Gram matrices, losses and optimizer state stay f32; kernels compute in f32) and needs an
    /// adapter with 16-bit floats in shaders; `auto` uses f16 where the adapter has it and f16
    /// kernels measure faster.
    #[arg(long, value_enum, default_value_t = neural_style::gpu::PrecisionChoice::default())]
    pub precision: neural_style::gpu::PrecisionChoice,
    /// Machine-readable JSON output.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `stylize`, named like jcjohnson/neural-style where they exist.
#[derive(Args, Debug)]
pub struct StylizeArgs {
    /// Content photo.
    #[arg(long)]
    pub content: PathBuf,
    /// Style image; repeat for several.
    #[arg(long = "style", required = true)]
    pub styles: Vec<PathBuf>,
    /// Blend weights of the style images, comma-separated (normalized to sum to 1).
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    pub style_blend_weights: Option<Vec<f32>>,
    /// Output image (.png or .jpg), written atomically.
    #[arg(long)]
    pub output: PathBuf,
    /// Longest side of the output; the content photo is resized to it.
    #[arg(long, default_value_t = 512, allow_negative_numbers = true)]
    pub size: u32,
    /// Style images are resized to longest side size × this.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub style_scale: f32,
    /// Optimizer updates.
    #[arg(long, default_value_t = 500, allow_negative_numbers = true)]
    pub iterations: i64,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerKind::LbfgsBounded)]
    pub optimizer: OptimizerKind,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 0.02, allow_negative_numbers = true)]
    pub learning_rate: f32,
    /// L-BFGS history size.
    #[arg(long, default_value_t = 10, allow_negative_numbers = true)]
    pub lbfgs_history: usize,
    /// What L-BFGS does after a step that does not decrease the loss enough (off with
    /// --normalize-gradients, whose gradient is not the loss's).
    #[arg(long, value_enum, default_value_t = LineSearch::Backtracking)]
    pub lbfgs_line_search: LineSearch,
    /// Weight of the content loss.
    #[arg(long, default_value_t = neural_style::stylize::DEFAULT_CONTENT_WEIGHT, allow_negative_numbers = true)]
    pub content_weight: f32,
    /// Weight of the style loss (with --loss-normalization per-layer, per-layer relative units).
    #[arg(long, default_value_t = neural_style::stylize::DEFAULT_STYLE_WEIGHT, allow_negative_numbers = true)]
    pub style_weight: f32,
    /// How painted: multiplies the style weight (1 is the default look; about 0.1 keeps the photo
    /// with a hint of the painting, 10 lets the painting take over). The viewer's +/- double and
    /// halve it.
    #[arg(long, default_value_t = neural_style::stylize::LossSpec::default().strength, allow_negative_numbers = true)]
    pub strength: f32,
    /// How each layer's loss is scaled: `per-layer` divides it by its target's mean square (and
    /// the style layers by their count), so every layer counts alike at any size; `none` is the
    /// classic loss of jcjohnson/neural-style (then --style-weight 5000 was the old default).
    #[arg(long, value_enum, default_value_t = neural_style::stylize::LossSpec::default().normalization)]
    pub loss_normalization: LossNormalization,
    /// Pixels of mirror padding the network sees around the image: the border is painted like
    /// the rest, and the padding's rows and columns are left out of the Gram matrices. 0: none
    /// (the classic network input).
    #[arg(long, default_value_t = neural_style::stylize::DEFAULT_PADDING)]
    pub padding: u32,
    /// Weight of the total-variation loss.
    #[arg(long, default_value_t = neural_style::stylize::DEFAULT_TV_WEIGHT, allow_negative_numbers = true)]
    pub tv_weight: f32,
    /// Rows and columns at each edge of a style layer left out of its Gram matrix besides the
    /// padding's: with --padding 0, zero padding makes the activations there many times larger
    /// than inside, so they would dominate the style loss (1 was the old default). 0 keeps every
    /// pixel (the classic loss).
    #[arg(long, default_value_t = neural_style::stylize::DEFAULT_GRAM_MARGIN)]
    pub gram_margin: u32,
    /// Content layers, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = neural_style::stylize::DEFAULT_CONTENT_LAYERS)]
    pub content_layers: Vec<String>,
    /// Style layers, comma-separated, each optionally `layer:weight`.
    #[arg(long, value_delimiter = ',', default_value = neural_style::stylize::DEFAULT_STYLE_LAYERS)]
    pub style_layers: Vec<String>,
    /// Starting image: `palette` (the content photo in the style's colors), `content`, `noise`,
    /// or an image file.
    #[arg(long, default_value = "palette")]
    pub init: String,
    /// Seed of the noise initialization.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub seed: u64,
    /// Report the losses every N iterations (and at the end).
    #[arg(long, default_value_t = 50, allow_negative_numbers = true)]
    pub print_every: usize,
    /// Coarse-to-fine schedule: `auto` (from --min-size to --size, ×√2 per scale; one scale when
    /// --size ≤ --min-size), `1` (one scale at --size), a number of scales, or a comma-separated
    /// list of longest sides (--size is appended when the list does not end with it). --iterations
    /// is split over them.
    #[arg(long, default_value = "auto")]
    pub scales: String,
    /// Longest side of the first scale of `--scales auto` or `--scales N` (never above --size).
    #[arg(long, default_value_t = 128, allow_negative_numbers = true)]
    pub min_size: u32,
    /// Write (and seed each next scale with) the exponential moving average of the iterates with
    /// this decay, bias corrected; 0 writes the best evaluated iterate.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub average: f32,
    /// Every N iterations also write <output stem>_<iteration>.<ext> next to the output
    /// (<output stem>_s<scale>_<iteration>.<ext> with more than one scale).
    #[arg(long, allow_negative_numbers = true)]
    pub save_every: Option<usize>,
    /// Watch the image converge in a window (Space pause, S snapshot, +/- style weight, Tab content,
    /// Esc stop and write); `auto` falls back to headless without a display.
    #[cfg(feature = "viewer")]
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "on", default_value = "off")]
    pub viewer: ViewerMode,
    /// Keep the content photo's colors: the written image (and snapshots) take the result's
    /// luma with the photo's chroma (YCbCr, BT.601 full range), as jcjohnson's -original_colors 1.
    #[arg(long)]
    pub original_colors: bool,
    /// Divide each content and style loss's gradient by its L1 norm before it enters the backward
    /// pass (jcjohnson's -normalize_gradients); the reported losses are unchanged.
    #[arg(long)]
    pub normalize_gradients: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Whether `stylize` opens the live viewer.
#[cfg(feature = "viewer")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ViewerMode {
    /// Headless.
    Off,
    /// Open a window; fail without a display.
    On,
    /// Open a window when there is a display, else run headless with a warning.
    Auto,
}

impl CommonArgs {
    /// The device these options ask for.
    pub fn device_request(&self) -> neural_style::gpu::DeviceRequest {
        neural_style::gpu::DeviceRequest {
            backend: self.backend,
            adapter: self.adapter.clone(),
            limits: self.limits,
            tune: self.tune,
            precision: self.precision,
        }
    }
}
