//! Command-line arguments (clap derive), all in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use neural_style::arch::Arch;
use neural_style::gpu::BackendChoice;

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
        #[arg(long, default_value_t = 5)]
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
        #[arg(long)]
        size: Option<u32>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// List every layer name with its shape for an input size.
    Layers {
        /// Input size as WxH (or N for NxN).
        #[arg(long, default_value = "224x224")]
        size: String,
        /// Architecture when no weights are given (the weights' own architecture wins otherwise).
        #[arg(long, value_enum)]
        arch: Option<Arch>,
        /// Weights file (.tflite or .safetensors); default: $NEURAL_STYLE_WEIGHTS.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Options shared by the commands that run the network.
#[derive(Args, Debug)]
pub struct CommonArgs {
    /// Weights file (.tflite or .safetensors); default: $NEURAL_STYLE_WEIGHTS.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Graphics API to use.
    #[arg(long, value_enum)]
    pub backend: Option<BackendChoice>,
    /// Use the first adapter whose name contains this text (see `neural-style devices`).
    #[arg(long)]
    pub adapter: Option<String>,
    /// Machine-readable JSON output.
    #[arg(long)]
    pub json: bool,
}
