//! The GPU L-BFGS (dot-product formulation, history on pages) against the plain CPU reference of
//! PyTorch's vector loop, on a function whose gradient the test computes on the CPU.

mod common;

use common::gpu;
use neural_style::kernels::optimizers::LbfgsParams;
use neural_style::reference;
use neural_style::stylize::optimizer::Lbfgs;

/// A separable non-convex function: Σ a_i/2 (x_i − c_i)² + b cos(3 x_i), with its gradient.
struct Function {
    a: Vec<f64>,
    c: Vec<f64>,
    b: f64,
}

impl Function {
    fn new(n: usize, b: f64) -> Self {
        let mut rng = common::Rng::new(7);
        let a = (0..n).map(|_| 0.1 + 9.9 * f64::from(rng.next()).abs()).collect();
        let c = (0..n).map(|_| f64::from(rng.next())).collect();
        Self { a, c, b }
    }

    fn value(&self, x: &[f64]) -> f64 {
        x.iter()
            .zip(self.a.iter().zip(&self.c))
            .map(|(x, (a, c))| a / 2.0 * (x - c).powi(2) + self.b * (3.0 * x).cos())
            .sum()
    }

    fn grad(&self, x: &[f64]) -> Vec<f64> {
        x.iter()
            .zip(self.a.iter().zip(&self.c))
            .map(|(x, (a, c))| a * (x - c) - 3.0 * self.b * (3.0 * x).sin())
            .collect()
    }
}

/// What a comparison saw: the worst relative L2 gap of x, and the pairs the reference rejected
/// and its backtracks.
struct Gaps {
    worst: f64,
    rejected: usize,
    backtracks: usize,
}

/// Runs both optimizers for `iterations` steps, the GPU's history on pages of at most
/// `pairs_per_page` pairs, both backtracking when `line_search`.
fn compare_with(n: usize, history: usize, pairs_per_page: usize, iterations: usize, b: f64, line_search: bool) -> Gaps {
    let ctx = gpu().expect("GPU");
    let f = Function::new(n, b);
    let x0: Vec<f64> = (0..n).map(|i| ((i * 37 % 101) as f64 / 101.0) - 0.5).collect();
    let x_gpu = ctx.storage_buffer("x", &x0.iter().map(|&v| v as f32).collect::<Vec<_>>());
    let grad = ctx.zeroed_buffer("grad", n);
    let kernels = neural_style::kernels::Kernels::new(&ctx);
    // The objective's losses buffer: the total loss in slot 3.
    let losses = ctx.zeroed_buffer("losses", neural_style::kernels::losses::LOSS_SLOTS);
    let params = LbfgsParams::new(n, history, 1.0, line_search);
    let lbfgs = Lbfgs::paged(&ctx, &kernels, &x_gpu, &grad, n, params, &losses, pairs_per_page);
    assert_eq!(lbfgs.page_count(), history.div_ceil(pairs_per_page));
    let mut reference = reference::Lbfgs::with_line_search(history, 1.0, line_search);
    let mut x_ref = x0;
    let mut worst: f64 = 0.0;
    for k in 0..iterations {
        let x_now: Vec<f64> = ctx.read_buffer(&x_gpu, n).unwrap().into_iter().map(f64::from).collect();
        let g: Vec<f32> = f.grad(&x_now).into_iter().map(|v| v as f32).collect();
        ctx.queue.write_buffer(&grad, 0, bytemuck::cast_slice(&g));
        ctx.queue.write_buffer(&losses, 12, bytemuck::bytes_of(&(f.value(&x_now) as f32)));
        neural_style::kernels::run(&ctx, lbfgs.ops()).unwrap();
        let (g_ref, f_ref) = (f.grad(&x_ref), f.value(&x_ref));
        reference.step_at(&mut x_ref, &g_ref, f_ref);
        let got: Vec<f64> = ctx.read_buffer(&x_gpu, n).unwrap().into_iter().map(f64::from).collect();
        let err = reference::relative_l2(&got, &x_ref);
        eprintln!("iteration {k}: relative L2 gap of x {err:.2e}");
        worst = worst.max(err);
    }
    Gaps { worst, rejected: reference.rejected, backtracks: reference.backtracks }
}

/// [`compare_with`] without the line search (PyTorch's semantics): the worst gap and the
/// rejected pairs.
fn compare(n: usize, history: usize, pairs_per_page: usize, iterations: usize, b: f64) -> (f64, usize) {
    let gaps = compare_with(n, history, pairs_per_page, iterations, b, false);
    (gaps.worst, gaps.rejected)
}

#[test]
fn lbfgs_matches_the_vector_two_loop_reference_through_history_eviction() {
    // 12 iterations with room for 3 pairs: the ring wraps several times. The gap peaks near 1e-4
    // from f32 rounding alone (PyTorch's vector loop run in f32 on the GPU shows the same gaps).
    let (worst, _) = compare(3000, 3, 3, 12, 0.0);
    assert!(worst <= 1e-3, "GPU L-BFGS drifted from the reference: relative L2 {worst:e}");
}

#[test]
fn lbfgs_matches_the_reference_when_curvature_pairs_are_rejected() {
    // Strong cosine terms make yᵀs negative on some steps: those pairs must be skipped alike.
    let (worst, rejected) = compare(500, 4, 4, 10, 3.0);
    assert!(rejected > 0, "the function should produce rejected pairs");
    assert!(worst <= 1e-3, "GPU L-BFGS drifted from the reference: relative L2 {worst:e}");
}

#[test]
fn lbfgs_with_its_history_split_over_pages_matches_the_reference() {
    // 5 pairs on pages of 2, 2 and 1: the ring wraps across page boundaries, and the accepted
    // pair lands on every page in turn; one pair a page is the most a page can be split.
    for pairs_per_page in [2, 1] {
        let (worst, _) = compare(3000, 5, pairs_per_page, 14, 0.0);
        assert!(worst <= 1e-3, "{pairs_per_page} pairs a page: relative L2 {worst:e}");
    }
    let (worst, rejected) = compare(500, 4, 3, 10, 3.0);
    assert!(rejected > 0, "the function should produce rejected pairs");
    assert!(worst <= 1e-3, "pages of 3 and 1 with rejected pairs: relative L2 {worst:e}");
}

#[test]
fn lbfgs_pages_hold_as_many_pairs_as_one_binding() {
    // A pair of n f32 values is 8n bytes.
    assert_eq!(Lbfgs::pairs_per_binding(1000, 8000), 1);
    assert_eq!(Lbfgs::pairs_per_binding(1000, 7999), 0);
    // 1024×768 under a phone's 128 MiB binding: 7 pairs a page, so the default 10 take 2 pages.
    assert_eq!(Lbfgs::pairs_per_binding(3 * 1024 * 768, 128 << 20), 7);
}

#[test]
fn lbfgs_backtracks_like_the_reference_when_a_step_does_not_decrease_the_loss() {
    // The cosine terms make quasi-Newton steps overshoot: those are backtracked, and the
    // accepted points, the history and the directions must stay the reference's.
    let gaps = compare_with(3000, 4, 2, 16, 3.0, true);
    assert!(gaps.backtracks > 0, "the function should make steps that need backtracking");
    assert!(gaps.worst <= 1e-3, "GPU L-BFGS with backtracking drifted: relative L2 {:e}", gaps.worst);
    // On a quadratic the steps decrease the loss: no backtrack, and the same path as without.
    let quadratic = compare_with(3000, 4, 4, 10, 0.0, true);
    assert_eq!(quadratic.backtracks, 0);
    assert!(quadratic.worst <= 1e-3, "relative L2 {:e}", quadratic.worst);
}

#[test]
fn backtracking_ends_lower_than_unchecked_steps_on_a_rough_function() {
    let f = Function::new(3000, 3.0);
    let end = |line_search: bool| {
        let mut opt = reference::Lbfgs::with_line_search(4, 1.0, line_search);
        let mut x: Vec<f64> = (0..3000).map(|i| ((i * 37 % 101) as f64 / 101.0) - 0.5).collect();
        for _ in 0..30 {
            let (g, v) = (f.grad(&x), f.value(&x));
            opt.step_at(&mut x, &g, v);
        }
        f.value(&x)
    };
    let (checked, unchecked) = (end(true), end(false));
    assert!(checked < unchecked, "backtracking {checked} vs unchecked {unchecked}");
}
