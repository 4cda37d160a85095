//! neural-style: Gatys-style neural style transfer on the GPU with a MobileNetV3 feature network,
//! every numeric kernel written in WGSL and run through wgpu.
//!
//! Modules: weight loading ([`weights`]) into the network description ([`model`], [`arch`]); the
//! GPU engine ([`gpu`]; [`kernels`], one module per WGSL kernel family with typed calls;
//! [`engine`]: forward and backward passes); style transfer
//! ([`stylize`]: targets, losses, optimizers, the steppable session); the live window
//! (`viewer`, feature `viewer`); and the f64 CPU reference everything is tested against
//! ([`reference`]).

#![deny(missing_docs)]

pub mod arch;
pub mod atomic;
pub mod bench;
#[cfg(feature = "viewer")]
pub mod controls;
pub mod engine;
pub mod gpu;
pub mod graphics_driver;
pub mod image_io;
pub mod input;
pub mod kernels;
pub mod model;
pub mod palette;
pub mod profile;
pub mod quality;
pub mod reference;
pub mod remedy;
pub mod stylize;
pub mod tuning;
#[cfg(feature = "viewer")]
pub mod viewer;
pub mod weights;
