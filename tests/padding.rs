//! Mirror padding (`LossSpec::padding`, `--padding`) and per-layer loss normalization
//! (`LossNormalization::PerLayer`, `--loss-normalization`): the GPU padding kernel and its adjoint
//! against the f64 reference, and the whole objective (targets, losses, image gradient) against
//! the reference run on the padded image with the padding's rows and columns out of the Gram
//! matrices and each layer's loss divided by its target's mean square.

mod common;

use common::*;
use neural_style::engine::FeatureNet;
use neural_style::kernels::scales::{Resize, ResizeParams, mirror_pad_size};
use neural_style::reference::{self, Tensor};
use neural_style::stylize::{LossNormalization, LossSpec, Objective, PlanarImage, Targets};
use neural_style::weights;

fn tensor(img: &PlanarImage) -> Tensor {
    Tensor::from_f32(3, img.height, img.width, &img.data)
}

#[test]
fn mirror_pad_kernel_and_its_adjoint_match_the_reference() {
    let Some(ctx) = gpu() else { return };
    let fnet = FeatureNet::new(&ctx, weights::load(&default_weights()).unwrap());
    let mut rng = Rng::new(5);
    // Pads of 1, of the side − 1 (the most: every pixel but the edge's is read three times along
    // the short side), and clamped from a larger request.
    for (w, h, asked) in [(9, 6, 1), (9, 6, 5), (5, 4, 40)] {
        let pad = mirror_pad_size(asked, w, h);
        assert_eq!(pad, asked.min(w - 1).min(h - 1));
        let img = random_image(&mut rng, w as usize, h as usize);
        let p = ResizeParams { src_w: w, src_h: h, dst_w: w + 2 * pad, dst_h: h + 2 * pad };
        let src = ctx.storage_buffer("image", &img.data);
        let padded = ctx.zeroed_buffer("padded", 3 * (p.dst_w * p.dst_h) as usize);
        let grad = rng.vec(3 * (p.dst_w * p.dst_h) as usize, 1.0);
        let grad_buffer = ctx.storage_buffer("padded gradient", &grad);
        let folded = ctx.zeroed_buffer("folded", 3 * (w * h) as usize);
        let k = &fnet.kernels.scales;
        let back = ResizeParams { src_w: p.dst_w, src_h: p.dst_h, dst_w: w, dst_h: h };
        let ops = [
            k.mirror_pad(&ctx, Resize { src: &src, dst: &padded }, &p),
            k.mirror_pad_backward(&ctx, Resize { src: &grad_buffer, dst: &folded }, &back),
        ];
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        neural_style::kernels::record(&mut encoder, &ops);
        ctx.queue.submit([encoder.finish()]);
        let want = reference::mirror_pad(&tensor(&img), pad as usize);
        let got = ctx.read_buffer(&padded, want.data.len()).unwrap();
        assert_eq!(to_f64(&got), want.data, "{w}×{h} padded by {pad}");
        let g = Tensor::from_f32(3, p.dst_h as usize, p.dst_w as usize, &grad);
        let want = reference::mirror_pad_adjoint(&g, pad as usize, h as usize, w as usize);
        let got = ctx.read_buffer(&folded, want.data.len()).unwrap();
        let err = reference::relative_l2(&to_f64(&got), &want.data);
        assert!(err <= 1e-6, "{w}×{h} padded by {pad}: adjoint relative L2 error {err:e}");
    }
}

#[test]
fn padded_and_normalized_objective_matches_cpu_reference() {
    let Some(ctx) = gpu() else { return };
    let net = weights::load(&default_weights()).unwrap();
    let fnet = FeatureNet::new(&ctx, net.clone());
    let mut rng = Rng::new(41);
    let (w, h) = (37, 29);
    let (content, style, init) =
        (random_image(&mut rng, w, h), random_image(&mut rng, 23, 41), random_image(&mut rng, w, h));
    let pad = 8;
    let spec = LossSpec {
        content_layers: vec![layer("block3.expand")],
        style_layers: vec![(layer("stem"), 1.0), (layer("block1.expand"), 0.5), (layer("block3.expand"), 2.0)],
        content_weight: 2.0,
        style_weight: 300.0,
        tv_weight: 0.5,
        normalize_gradients: false,
        gram_margin: 1,
        padding: pad,
        normalization: LossNormalization::PerLayer,
        strength: 0.5,
    };
    let targets = Targets::compute(&ctx, &fnet, &spec, &content, &[(style.clone(), 1.0)]).unwrap();
    let values = targets.read(&ctx).unwrap();

    // The targets: the padded images through the network, the style's Gram matrices without
    // the padding's rows and columns (pad · layer side / input side) nor the margin of 1.
    let padded_style = reference::mirror_pad(&tensor(&style), pad as usize);
    let style_acts = reference::forward(&net, &padded_style);
    for ((id, _), got) in spec.style_layers.iter().zip(&values.style) {
        let f = style_acts.layer(*id).unwrap();
        let margin = reference::style_margin(f.h, f.w, padded_style.h, padded_style.w, pad as usize, 1);
        assert!(margin > 1, "{id}: the padding adds to the margin");
        let want = reference::gram(f, margin);
        let err = reference::relative_l2(&to_f64(got), &want);
        assert!(err <= 1e-4, "{id} style target: relative L2 error {err:e}");
    }
    let content_acts = reference::forward(&net, &reference::mirror_pad(&tensor(&content), pad as usize));
    let content_target = content_acts.layer(layer("block3.expand")).unwrap().clone();
    let err = reference::relative_l2(&to_f64(&values.content[0]), &content_target.data);
    assert!(err <= 1e-4, "content target: relative L2 error {err:e}");

    let x = ctx.storage_buffer("image", &init.data);
    let objective = Objective::new(&ctx, &fnet, &spec, targets, &x, w, h).unwrap();
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    objective.record(&mut encoder);
    ctx.queue.submit([encoder.finish()]);

    // Per-layer normalization is each layer's weight divided by its target's mean square (and a
    // style layer's also by the number of style layers); the strength multiplies the style weight.
    let mean_square = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64;
    let layers = spec.style_layers.len() as f64;
    let cpu = reference::Objective {
        content: vec![(layer("block3.expand"), content_target.clone())],
        style: spec
            .style_layers
            .iter()
            .zip(&values.style)
            .map(|(&(id, wl), g)| {
                let g = to_f64(g);
                (id, wl as f64 / (layers * mean_square(&g)), g)
            })
            .collect(),
        content_weight: spec.content_weight as f64 / mean_square(&content_target.data),
        style_weight: (spec.style_weight * spec.strength) as f64,
        tv_weight: spec.tv_weight as f64,
        gram_margin: 1,
        padding: pad as usize,
    };
    let (losses, want) = reference::objective_and_grad(&net, &tensor(&init), &cpu);
    let l = ctx.read_buffer(objective.losses(), 4).unwrap();
    let content = losses.content / mean_square(&content_target.data);
    for (got, want, name) in [(l[0], content, "content"), (l[1], losses.style, "style"), (l[3], losses.total, "total")]
    {
        let err = (got as f64 - want).abs() / want.abs();
        assert!(err <= 1e-4, "{name} loss {got} vs reference {want}");
    }
    let got = ctx.read_buffer(objective.image_grad(), want.data.len()).unwrap();
    let err = reference::relative_l2(&to_f64(&got), &want.data);
    assert!(err <= 1e-4, "image gradient: relative L2 error {err:e}");
    // The image's border gets style gradient (no photo-like band): the outermost columns' share
    // of the gradient is not small next to the interior's.
    let column = |x: usize| (0..3 * h).map(|r| f64::from(got[r * w + x]).abs()).sum::<f64>();
    let inner = (2..w - 2).map(column).sum::<f64>() / (w - 4) as f64;
    assert!(
        column(0) > 0.2 * inner && column(w - 1) > 0.2 * inner,
        "edge columns {} {}, inner {inner}",
        column(0),
        column(w - 1)
    );
}
