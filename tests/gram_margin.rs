//! `LossSpec::gram_margin` (`--gram-margin`, default 0; 1 was the default before mirror padding): the style layers' border rows and
//! columns are left out of their Gram matrices. The GPU targets, losses and image gradient
//! against the f64 CPU reference of the same rule, and the border really is left out.

mod common;

use common::*;
use neural_style::engine::FeatureNet;
use neural_style::reference::{self, Tensor};
use neural_style::stylize::{LossNormalization, LossSpec, Objective, PlanarImage, Targets};
use neural_style::weights;

fn tensor(img: &PlanarImage) -> Tensor {
    Tensor::from_f32(3, img.height, img.width, &img.data)
}

#[test]
fn gram_without_the_border_matches_cpu_reference() {
    let Some(ctx) = gpu() else { return };
    let net = weights::load(&default_weights()).unwrap();
    let fnet = FeatureNet::new(&ctx, net.clone());
    let mut rng = Rng::new(31);
    let (w, h) = (37, 29);
    // A style image of another size and aspect; block5.expand (3×2 at 37×29) has no interior
    // and keeps every pixel.
    let (content, style, init) =
        (random_image(&mut rng, w, h), random_image(&mut rng, 23, 41), random_image(&mut rng, w, h));
    let spec = LossSpec {
        content_layers: vec![layer("block3.expand")],
        style_layers: vec![
            (layer("stem"), 1.0),
            (layer("block1.expand"), 0.5),
            (layer("block3.expand"), 2.0),
            (layer("block5.expand"), 1.0),
        ],
        content_weight: 2.0,
        style_weight: 300.0,
        tv_weight: 0.5,
        normalize_gradients: false,
        gram_margin: 1,
        padding: 0,
        normalization: LossNormalization::None,
        strength: 1.0,
    };
    let targets = Targets::compute(&ctx, &fnet, &spec, &content, &[(style.clone(), 1.0)]).unwrap();
    let values = targets.read(&ctx).unwrap();

    let style_acts = reference::forward(&net, &tensor(&style));
    for ((id, _), got) in spec.style_layers.iter().zip(&values.style) {
        let f = style_acts.layer(*id).unwrap();
        let want = reference::gram(f, 1);
        let err = reference::relative_l2(&to_f64(got), &want);
        assert!(err <= 1e-4, "{id} style target: relative L2 error {err:e}");
        // The border changes the Gram matrix wherever there is an interior to keep.
        let full = reference::gram(f, 0);
        if f.h > 2 && f.w > 2 {
            assert!(reference::relative_l2(&want, &full) > 1e-3, "{id}: the margin left the Gram matrix unchanged");
        } else {
            assert_eq!(want, full, "{id}: a layer without interior keeps every pixel");
        }
    }

    let x = ctx.storage_buffer("image", &init.data);
    let objective = Objective::new(&ctx, &fnet, &spec, targets, &x, w, h).unwrap();
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    objective.record(&mut encoder);
    ctx.queue.submit([encoder.finish()]);

    let content_acts = reference::forward(&net, &tensor(&content));
    let cpu = reference::Objective {
        content: vec![(layer("block3.expand"), content_acts.layer(layer("block3.expand")).unwrap().clone())],
        style: spec.style_layers.iter().zip(&values.style).map(|(&(id, wl), g)| (id, wl as f64, to_f64(g))).collect(),
        content_weight: spec.content_weight as f64,
        style_weight: spec.style_weight as f64,
        tv_weight: spec.tv_weight as f64,
        gram_margin: 1,
        padding: 0,
    };
    let (losses, want) = reference::objective_and_grad(&net, &tensor(&init), &cpu);
    let l = ctx.read_buffer(objective.losses(), 4).unwrap();
    for (got, want, name) in [(l[1], losses.style, "style"), (l[3], losses.total, "total")] {
        let err = (got as f64 - want).abs() / want.abs();
        assert!(err <= 1e-4, "{name} loss {got} vs reference {want}");
    }
    let got = ctx.read_buffer(objective.image_grad(), want.data.len()).unwrap();
    let err = reference::relative_l2(&to_f64(&got), &want.data);
    eprintln!("image gradient with margin 1: relative L2 {err:.2e}");
    assert!(err <= 1e-4, "image gradient: relative L2 error {err:e}");

    // The style gradient of a layer is 0 on its border.
    let stem = layer("stem");
    let grads =
        reference::layer_gradients(&reference::forward(&net, &tensor(&init)), &cpu, reference::GradientRule::Exact).1;
    let g = &grads.iter().find(|(id, _)| *id == stem).unwrap().1;
    assert!((0..g.c).all(|c| (0..g.w).all(|x| g.data[c * g.h * g.w + x] == 0.0)), "stem's top row got style gradient");
}
