//! `--normalize-gradients`: the GPU objective with each content and style loss's gradient
//! divided by its L1 norm against the f64 CPU reference of the same rule
//! (`reference::GradientRule::L1Normalized`): the gradient of a layer that has both a content and
//! a style loss, the whole image gradient through the network, and both again after the weights
//! change; the losses themselves are those of the plain objective.

mod common;

use common::*;
use neural_style::engine::FeatureNet;
use neural_style::reference::{self, GradientRule, Tensor};
use neural_style::stylize::{LossNormalization, LossSpec, Objective, Targets};
use neural_style::weights;

#[test]
fn normalized_gradients_match_cpu_reference() {
    let Some(ctx) = gpu() else { return };
    let net = weights::load(&default_weights()).unwrap();
    let fnet = FeatureNet::new(&ctx, net.clone());
    let mut rng = Rng::new(21);
    let (w, h) = (29, 23);
    let (content, style, init) =
        (random_image(&mut rng, w, h), random_image(&mut rng, 19, 21), random_image(&mut rng, w, h));
    // block3.expand, the deepest layer, has a content and a style loss; stem and block1.expand
    // send their style gradients into layers that also receive gradient from deeper ones.
    let spec = LossSpec {
        content_layers: vec![layer("block3.expand")],
        style_layers: vec![(layer("stem"), 1.0), (layer("block1.expand"), 0.5), (layer("block3.expand"), 2.0)],
        content_weight: 3.0,
        style_weight: 50.0,
        tv_weight: 0.5,
        normalize_gradients: true,
        gram_margin: 0,
        padding: 0,
        normalization: LossNormalization::None,
        strength: 1.0,
    };
    let targets = Targets::compute(&ctx, &fnet, &spec, &content, &[(style, 1.0)]).unwrap();
    let values = targets.read(&ctx).unwrap();
    let x = ctx.storage_buffer("image", &init.data);
    let objective = Objective::new(&ctx, &fnet, &spec, targets, &x, w, h).unwrap();

    let init_t = Tensor::from_f32(3, h, w, &init.data);
    let acts = reference::forward(&net, &init_t);
    let deepest = layer("block3.expand");
    let shape = acts.layer(deepest).unwrap();
    let mut cpu = reference::Objective {
        content: vec![(deepest, Tensor::from_f32(shape.c, shape.h, shape.w, &values.content[0]))],
        style: spec.style_layers.iter().zip(&values.style).map(|(&(id, wl), g)| (id, wl as f64, to_f64(g))).collect(),
        content_weight: spec.content_weight as f64,
        style_weight: spec.style_weight as f64,
        tv_weight: spec.tv_weight as f64,
        gram_margin: spec.gram_margin as usize,
        padding: 0,
    };

    let check = |objective: &Objective, cpu: &reference::Objective, when: &str| {
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        objective.record(&mut encoder);
        ctx.queue.submit([encoder.finish()]);
        let (_, layer_grads) = reference::layer_gradients(&acts, cpu, GradientRule::L1Normalized);
        let want = &layer_grads.iter().find(|(id, _)| *id == deepest).unwrap().1;
        let got = ctx.read_buffer(objective.layer_grad(deepest).unwrap(), want.data.len()).unwrap();
        let err = reference::relative_l2(&to_f64(&got), &want.data);
        eprintln!("{when}: block3.expand gradient (content + style, normalized) relative L2 {err:.2e}");
        assert!(err <= 1e-4, "{when}: normalized layer gradient: relative L2 error {err:e}");

        let (losses, want) = reference::objective_and_grad_with(&net, &init_t, cpu, GradientRule::L1Normalized);
        let got = ctx.read_buffer(objective.image_grad(), want.data.len()).unwrap();
        let err = reference::relative_l2(&to_f64(&got), &want.data);
        eprintln!("{when}: image gradient relative L2 {err:.2e}");
        assert!(err <= 1e-4, "{when}: normalized image gradient: relative L2 error {err:e}");
        // The reported losses are the plain objective's.
        let (plain, exact) = reference::objective_and_grad(&net, &init_t, cpu);
        assert_eq!((plain.content, plain.style, plain.total), (losses.content, losses.style, losses.total));
        let l = ctx.read_buffer(objective.losses(), 4).unwrap();
        for (got, want, name) in
            [(l[0], plain.content, "content"), (l[1], plain.style, "style"), (l[3], plain.total, "total")]
        {
            let err = (got as f64 - want).abs() / want.abs();
            assert!(err <= 1e-4, "{when}: {name} loss {got} vs reference {want}");
        }
        // Normalizing does change the gradient.
        assert!(reference::relative_l2(&to_f64(&got), &exact.data) > 0.1, "{when}: normalization had no effect");
    };
    check(&objective, &cpu, "weights 3/50/0.5");
    objective.set_weights(&ctx, 0.5, 2000.0, 4.0);
    (cpu.content_weight, cpu.style_weight, cpu.tv_weight) = (0.5, 2000.0, 4.0);
    check(&objective, &cpu, "weights 0.5/2000/4");
}

#[test]
fn reference_l1_normalized_has_unit_norm() {
    let mut rng = Rng::new(2);
    let g = Tensor::from_f32(5, 7, 3, &rng.vec(105, 2.0));
    let n = reference::l1_normalized(&g);
    let norm: f64 = n.data.iter().map(|v| v.abs()).sum();
    assert!((norm - 1.0).abs() < 1e-9, "‖g / ‖g‖₁‖₁ = {norm}");
    assert!(reference::l1_normalized(&Tensor::zeros(2, 2, 2)).data.iter().all(|&v| v == 0.0));
}
