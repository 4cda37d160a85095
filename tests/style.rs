//! The style-transfer objective and optimizers against the independent PyTorch reference
//! (`tools/reference_style.py`: float64 autograd through the same TFLite graph), and the CPU
//! reference's backward pass against finite differences.

mod common;

use common::*;
use neural_style::engine::FeatureNet;
use neural_style::reference::{self, Tensor};
use neural_style::stylize::optimizer::{Adam, Lbfgs};
use neural_style::stylize::{LossNormalization, LossSpec, Objective, PlanarImage, Targets};
use neural_style::weights;

struct Fixture {
    tensors: std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>,
    spec: LossSpec,
}

fn fixture_chain() -> Fixture {
    let bytes = std::fs::read(fixture("style_chain.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let settings: serde_json::Value = serde_json::from_str(&meta.metadata().as_ref().unwrap()["settings"]).unwrap();
    let spec = LossSpec {
        content_layers: settings["content_layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().parse().unwrap())
            .collect(),
        style_layers: settings["style_layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v[0].as_str().unwrap().parse().unwrap(), v[1].as_f64().unwrap() as f32))
            .collect(),
        content_weight: settings["content_weight"].as_f64().unwrap() as f32,
        style_weight: settings["style_weight"].as_f64().unwrap() as f32,
        tv_weight: settings["tv_weight"].as_f64().unwrap() as f32,
        normalize_gradients: false,
        gram_margin: 0,
        padding: 0,
        normalization: LossNormalization::None,
        strength: 1.0,
    };
    Fixture { tensors: read_fixture("style_chain.safetensors"), spec }
}

impl Fixture {
    fn image(&self, name: &str) -> PlanarImage {
        let (shape, data) = &self.tensors[name];
        PlanarImage { width: shape[2], height: shape[1], data: data.clone() }
    }
    fn values(&self, name: &str) -> &[f32] {
        &self.tensors[name].1
    }
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-30)
}

#[test]
fn gpu_objective_matches_pytorch_losses_gradient_and_targets() {
    let Some(ctx) = gpu() else { return };
    let fx = fixture_chain();
    let fnet = FeatureNet::new(&ctx, weights::load(&default_weights()).unwrap());
    let content = fx.image("content");
    let targets = Targets::compute(&ctx, &fnet, &fx.spec, &content, &[(fx.image("style"), 1.0)]).unwrap();
    let values = targets.read(&ctx).unwrap();
    let (content_t, style_t) = (values.content, values.style);
    for (name, got) in fx.spec.content_layers.iter().zip(&content_t) {
        let err = rel_l2(got, fx.values(&format!("content_target.{name}")));
        assert!(err <= 1e-4, "content target {name}: {err:e}");
    }
    for ((name, _), got) in fx.spec.style_layers.iter().zip(&style_t) {
        let err = rel_l2(got, fx.values(&format!("gram_target.{name}")));
        assert!(err <= 1e-4, "Gram target {name}: {err:e}");
    }
    let init = fx.image("init");
    let x = ctx.storage_buffer("image", &init.data);
    let objective = Objective::new(&ctx, &fnet, &fx.spec, targets, &x, init.width, init.height).unwrap();
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    objective.record(&mut encoder);
    ctx.queue.submit([encoder.finish()]);
    let losses = ctx.read_buffer(objective.losses(), 4).unwrap();
    let grad = ctx.read_buffer(objective.image_grad(), init.data.len()).unwrap();
    for (i, name) in ["loss_content", "loss_style", "loss_tv", "loss_total"].iter().enumerate() {
        let want = fx.values(name)[0] as f64;
        let err = rel(losses[i] as f64, want);
        eprintln!("{name}: GPU {} PyTorch {want} rel {err:.2e}", losses[i]);
        assert!(err <= 1e-4, "{name}: GPU {} vs PyTorch {want}: relative error {err:e} > 1e-4", losses[i]);
    }
    let err = rel_l2(&grad, fx.values("grad"));
    eprintln!("image gradient rel L2 {err:.2e}");
    assert!(err <= 1e-3, "image gradient: relative L2 error {err:e} > 1e-3");
}

#[test]
fn cpu_reference_objective_matches_pytorch() {
    let fx = fixture_chain();
    let net = weights::load(&default_weights()).unwrap();
    let to_t = |img: &PlanarImage| Tensor::from_f32(3, img.height, img.width, &img.data);
    let objective = reference::Objective {
        content: fx
            .spec
            .content_layers
            .iter()
            .map(|n| {
                let (s, v) = &fx.tensors[&format!("content_target.{n}")];
                (*n, Tensor::from_f32(s[0], s[1], s[2], v))
            })
            .collect(),
        style: fx
            .spec
            .style_layers
            .iter()
            .map(|(n, w)| (*n, *w as f64, fx.values(&format!("gram_target.{n}")).iter().map(|&v| v as f64).collect()))
            .collect(),
        content_weight: fx.spec.content_weight as f64,
        style_weight: fx.spec.style_weight as f64,
        tv_weight: fx.spec.tv_weight as f64,
        gram_margin: 0,
        padding: 0,
    };
    let (losses, grad) = reference::objective_and_grad(&net, &to_t(&fx.image("init")), &objective);
    for (got, name) in [
        (losses.content, "loss_content"),
        (losses.style, "loss_style"),
        (losses.tv, "loss_tv"),
        (losses.total, "loss_total"),
    ] {
        let err = rel(got, fx.values(name)[0] as f64);
        assert!(err <= 1e-5, "{name}: CPU reference {got} vs PyTorch {}: {err:e}", fx.values(name)[0]);
    }
    let want: Vec<f64> = fx.values("grad").iter().map(|&v| v as f64).collect();
    let err = reference::relative_l2(&grad.data, &want);
    assert!(err <= 1e-5, "CPU reference gradient: relative L2 error {err:e}");
}

#[test]
fn adam_reproduces_pytorch_loss_trajectory() {
    let Some(ctx) = gpu() else { return };
    let fx = fixture_chain();
    let fnet = FeatureNet::new(&ctx, weights::load(&default_weights()).unwrap());
    let targets = Targets::compute(&ctx, &fnet, &fx.spec, &fx.image("content"), &[(fx.image("style"), 1.0)]).unwrap();
    let init = fx.image("init");
    let x = ctx.storage_buffer("image", &init.data);
    let objective = Objective::new(&ctx, &fnet, &fx.spec, targets, &x, init.width, init.height).unwrap();
    let mut adam = Adam::new(&ctx, &fnet.kernels, &x, objective.image_grad(), init.data.len(), 0.02);
    let want = fx.values("adam_losses");
    for (k, &want_k) in want.iter().enumerate() {
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        objective.record(&mut encoder);
        ctx.queue.submit([encoder.finish()]);
        let got = ctx.read_buffer(objective.losses(), 4).unwrap()[3];
        let err = rel(got as f64, want_k as f64);
        eprintln!("adam k={k}: GPU {got} PyTorch {want_k} rel {err:.2e}");
        assert!(err <= 1e-3, "Adam iteration {k}: GPU loss {got} vs PyTorch {want_k}: relative error {err:e} > 1e-3");
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        neural_style::kernels::record(&mut encoder, std::slice::from_ref(adam.next_step(&ctx)));
        ctx.queue.submit([encoder.finish()]);
    }
}

#[test]
fn lbfgs_reproduces_pytorch_loss_trajectory() {
    let Some(ctx) = gpu() else { return };
    let fx = fixture_chain();
    let fnet = FeatureNet::new(&ctx, weights::load(&default_weights()).unwrap());
    let targets = Targets::compute(&ctx, &fnet, &fx.spec, &fx.image("content"), &[(fx.image("style"), 1.0)]).unwrap();
    let init = fx.image("init");
    let n = init.data.len();
    let x = ctx.storage_buffer("image", &init.data);
    let objective = Objective::new(&ctx, &fnet, &fx.spec, targets, &x, init.width, init.height).unwrap();
    let lbfgs = Lbfgs::new(&ctx, &fnet.kernels, &x, objective.image_grad(), n, 10, 1.0, None);
    let want = fx.values("lbfgs_losses");
    for (k, &want_k) in want.iter().enumerate() {
        // One submit per iteration: evaluate, then (except after the last) update.
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        objective.record(&mut encoder);
        if k + 1 < want.len() {
            neural_style::kernels::record(&mut encoder, lbfgs.ops());
        }
        ctx.queue.submit([encoder.finish()]);
        let got = ctx.read_buffer(objective.losses(), 4).unwrap()[3];
        let err = rel(got as f64, want_k as f64);
        eprintln!("lbfgs k={k}: GPU {got} PyTorch {want_k} rel {err:.2e}");
        assert!(err <= 1e-3, "L-BFGS iteration {k}: GPU loss {got} vs PyTorch {want_k}: relative error {err:e} > 1e-3");
    }
    let final_image = ctx.read_buffer(&x, n).unwrap();
    let err = rel_l2(&final_image, fx.values("lbfgs_final"));
    assert!(err <= 1e-3, "L-BFGS final image: relative L2 error {err:e}");
}

#[test]
fn style_loss_of_the_style_image_itself_is_zero_at_512_px() {
    // At 512 px the stem has 65536 pixels: the style target's Gram and the objective's must be
    // summed alike (both split over pixels), or one long f32 sum drifts from the other by far
    // more than the style loss itself (it once read 0.04 instead of 0).
    let Some(ctx) = gpu() else { return };
    let fnet = FeatureNet::new(&ctx, weights::load(&default_weights()).unwrap());
    let img = neural_style::bench::synthetic_style(512);
    let planar = PlanarImage { width: 512, height: 512, data: neural_style::image_io::to_chw(&img) };
    let spec = LossSpec::default();
    let targets = Targets::compute(&ctx, &fnet, &spec, &planar, &[(planar.clone(), 1.0)]).unwrap();
    let x = ctx.storage_buffer("image", &planar.data);
    let objective = Objective::new(&ctx, &fnet, &spec, targets, &x, 512, 512).unwrap();
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    objective.record(&mut encoder);
    ctx.queue.submit([encoder.finish()]);
    let losses = ctx.read_buffer(objective.losses(), 4).unwrap();
    assert_eq!(losses[0], 0.0, "content loss of the content image itself");
    assert!(losses[1].abs() <= 1e-12, "style loss of the style image itself: {}", losses[1]);
    assert!(losses[2] > 0.0);
}
