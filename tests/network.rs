//! The whole network against the independent Python reference (tools/reference.py fixtures), and
//! classification of real photos with the shared weights.

mod common;

use common::*;
use neural_style::engine::{FeatureNet, ForwardPlan, PlanOptions};
use neural_style::gpu::{DeviceRequest, LimitsProfile};
use neural_style::reference::{self, Tensor};
use neural_style::weights;

/// Runs the GPU forward pass on the fixture's input and compares stem, every block, head and
/// (when present) the logits; the CPU reference is checked against the same fixture.
fn compare_with_fixture(weights_path: &std::path::Path, fixture_name: &str, request: DeviceRequest) {
    let Some(ctx) = gpu_with(request) else { return };
    let fx = read_fixture(fixture_name);
    let (shape, input) = &fx["input"];
    let (h, w) = (shape[1], shape[2]);
    let net = weights::load(weights_path).unwrap_or_else(|e| panic!("{e:#}"));
    let cpu = reference::forward(&net, &Tensor::from_f32(3, h, w, input));
    let fnet = FeatureNet::new(&ctx, net);
    let plan = ForwardPlan::new(&ctx, &fnet, w, h, &PlanOptions { classify: true, ..Default::default() }).unwrap();
    plan.run(&ctx, input).unwrap();
    let mut compared = 0;
    let layers = cpu.layers.iter().map(|(id, t)| (id.to_string(), Some(*id), t));
    for (name, id, cpu_out) in layers.chain(cpu.logits.iter().map(|t| ("logits".to_string(), None, t))) {
        let Some((_, want)) = fx.get(&name) else {
            continue;
        };
        let got = match id {
            Some(id) => plan.read_layer(&ctx, id).unwrap(),
            None => plan.read_logits(&ctx).unwrap(),
        };
        let gpu_err = rel_l2(&got, want);
        let cpu_f32: Vec<f32> = cpu_out.data.iter().map(|&v| v as f32).collect();
        let cpu_err = rel_l2(&cpu_f32, want);
        eprintln!("{fixture_name} {name}: GPU rel L2 {gpu_err:.2e}, CPU reference rel L2 {cpu_err:.2e}");
        assert!(gpu_err <= 1e-4, "{fixture_name} {name}: GPU relative L2 error {gpu_err:e} > 1e-4");
        assert!(cpu_err <= 1e-5, "{fixture_name} {name}: CPU reference relative L2 error {cpu_err:e} > 1e-5");
        compared += 1;
    }
    assert!(compared >= 14, "only {compared} layers compared");
}

#[test]
fn int8_model_matches_python_reference_at_37x23() {
    compare_with_fixture(&default_weights(), "tflite_int8_37x23.safetensors", DeviceRequest::default());
}

#[test]
fn int8_model_matches_python_reference_at_64x48() {
    compare_with_fixture(&default_weights(), "tflite_int8_64x48.safetensors", DeviceRequest::default());
}

#[test]
fn uint8_model_with_implicit_relu_clamps_matches_python_reference() {
    compare_with_fixture(&uint8_weights(), "tflite_uint8_37x23.safetensors", DeviceRequest::default());
}

#[test]
fn full_forward_pass_runs_under_the_phone_profile() {
    let request = DeviceRequest { limits: LimitsProfile::Phone, ..Default::default() };
    compare_with_fixture(&default_weights(), "tflite_int8_37x23.safetensors", request);
}

/// Writes the synthetic torchvision state dict that `tools/reference.py torchvision` uses: tensor
/// names and shapes from the fixture's JSON list, values from the shared integer formula.
fn synthetic_torchvision_weights(arch: &str) -> tempfile::TempPath {
    let list: Vec<(String, Vec<usize>)> =
        serde_json::from_slice(&std::fs::read(fixture(&format!("torchvision_{arch}_tensors.json"))).unwrap()).unwrap();
    let mut data: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (t, (name, shape)) in list.iter().enumerate() {
        let n: usize = shape.iter().product();
        let fan_in: usize = shape[1..].iter().product();
        let values: Vec<f32> = (0..n)
            .map(|i| {
                let u = ((i as u64 + 1) * 2_654_435_761 + (t as u64 + 1) * 97_531) % (1u64 << 32);
                let r = u as f64 / (1u64 << 32) as f64;
                let v = if shape.len() >= 2 {
                    (r - 0.5) * 2.0 * (6.0 / fan_in as f64).sqrt()
                } else if name.ends_with(".weight") || name.ends_with(".running_var") {
                    0.5 + r
                } else {
                    (r - 0.5) * 0.2
                };
                v as f32
            })
            .collect();
        data.push((name.clone(), shape.clone(), bytemuck::cast_slice(&values).to_vec()));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(n, s, b)| {
            (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap())
        })
        .collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    safetensors::serialize_to_file(views, None, file.path()).unwrap();
    file.into_temp_path()
}

#[test]
fn torchvision_small_safetensors_match_python_reference() {
    let path = synthetic_torchvision_weights("small");
    compare_with_fixture(&path, "torchvision_small_41x29.safetensors", DeviceRequest::default());
}

#[test]
fn torchvision_large_safetensors_match_python_reference() {
    let path = synthetic_torchvision_weights("large");
    compare_with_fixture(&path, "torchvision_large_41x29.safetensors", DeviceRequest::default());
}
