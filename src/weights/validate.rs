//! Plausibility checks on loaded weights and on the activations they produce: a corrupt file
//! (a flipped byte in a scale, a NaN in a tensor) must fail with a line naming the tensor rather
//! than load and compute NaN or huge numbers.

use anyhow::{Result, bail};

use crate::model::{Conv, Network};

/// Largest magnitude accepted for a weight, a bias or an activation. Real MobileNetV3 values stay
/// below about 1e3; anything near this bound comes from a corrupt file.
pub const MAX_MAGNITUDE: f32 = 1e6;

/// Finite and at most [`MAX_MAGNITUDE`] in magnitude.
fn plausible(v: f32) -> bool {
    v.is_finite() && v.abs() <= MAX_MAGNITUDE
}

/// Every value of the tensor `name` is finite and at most [`MAX_MAGNITUDE`] in magnitude.
pub(super) fn tensor_values(name: &str, values: &[f32]) -> Result<()> {
    if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !plausible(**v)) {
        bail!("tensor {name:?} holds {v} at index {i}: the weights file is corrupt");
    }
    Ok(())
}

/// A batch-norm running variance is never negative.
pub(super) fn variance(name: &str, values: &[f32]) -> Result<()> {
    if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| **v < 0.0) {
        bail!("tensor {name:?} holds the negative variance {v} at index {i}: the weights file is corrupt");
    }
    Ok(())
}

/// A constant tensor has no negative (dynamic) dimension.
pub(super) fn constant_shape(name: &str, shape: &[i32]) -> Result<()> {
    if shape.iter().any(|&d| d < 0) {
        bail!("constant tensor {name:?} has shape {shape:?}: a dimension is negative");
    }
    Ok(())
}

/// The parameters the loaders derive (input normalization, clamps, gates, folded weights) are
/// plausible too.
pub(super) fn network(net: &Network) -> Result<()> {
    for (c, (scale, shift)) in net.input_scale.iter().zip(&net.input_shift).enumerate() {
        if !plausible(*scale) || !plausible(*shift) {
            bail!("the input normalization of channel {c} is x · {scale} + {shift}: the weights file is corrupt");
        }
    }
    let mut convs: Vec<(String, &Conv)> = vec![("stem".into(), &net.stem)];
    for (i, b) in net.blocks.iter().enumerate() {
        convs.extend(b.expand.iter().map(|c| (format!("block{i} expansion"), c)));
        convs.push((format!("block{i} depthwise"), &b.depthwise));
        if let Some(se) = &b.se {
            convs.push((format!("block{i} squeeze-excite reduction"), &se.reduce));
            convs.push((format!("block{i} squeeze-excite expansion"), &se.expand));
            if ![se.gate_add, se.gate_max, se.gate_mul].into_iter().all(plausible) || se.gate_max <= 0.0 {
                bail!(
                    "block{i} squeeze-excite gate clamp(x + {}, 0, {}) · {}: the weights file is corrupt",
                    se.gate_add,
                    se.gate_max,
                    se.gate_mul
                );
            }
        }
        convs.push((format!("block{i} projection"), &b.project));
    }
    convs.push(("head".into(), &net.head));
    if let Some(c) = &net.classifier {
        convs.push(("classifier hidden layer".into(), &c.hidden));
        convs.push(("classifier logits".into(), &c.logits));
    }
    for (layer, conv) in convs {
        if conv.cap.is_nan() || conv.cap <= 0.0 {
            bail!("the {layer} clamps its output at {}: the weights file is corrupt", conv.cap);
        }
        if conv.weight.iter().chain(&conv.bias).any(|v| !v.is_finite()) {
            bail!("the {layer} has weights that are not finite: the weights file is corrupt");
        }
    }
    Ok(())
}

/// Fails when an activation of `layer` is not finite or above [`MAX_MAGNITUDE`]: real weights on
/// an image in [0, 1] never get there, so the weights are corrupt.
pub fn check_activations(layer: &str, values: &[f32]) -> Result<()> {
    if let Some(v) = values.iter().find(|v| !plausible(**v)) {
        bail!(
            "{layer} reached the value {v} (real weights stay far below {MAX_MAGNITUDE:e}): the weights look corrupt"
        );
    }
    Ok(())
}
