//! neural-style: Gatys-style neural style transfer on the GPU with a MobileNetV3 feature network,
//! every numeric kernel written in WGSL and run through wgpu.
//!
//! This crate currently provides the feature network: weight loading ([`weights`]), the GPU
//! forward pass ([`engine`]), and the f64 CPU reference it is tested against ([`reference`]).

#![deny(missing_docs)]

pub mod arch;
pub mod atomic;
pub mod engine;
pub mod gpu;
pub mod image_io;
pub mod kernels;
pub mod model;
pub mod reference;
pub mod stylize;
#[cfg(feature = "viewer")]
pub mod viewer;
pub mod weights;
