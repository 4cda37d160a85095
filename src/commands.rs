//! The subcommands, each reading its arguments and printing text or JSON.

use std::path::{Path, PathBuf};

use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use neural_style::arch::{self, LayerId, Padding};
use neural_style::engine::{FeatureNet, ForwardPlan, PlanOptions};
use neural_style::gpu::{self, GpuContext, PrecisionChoice};
use neural_style::kernels::Precision;
use neural_style::remedy::{NeedsRemedy, Remedy};
use neural_style::stylize::{OptionError, OptionName, ScaleInfo, ScalePlan, Scales};
use neural_style::{atomic, image_io, weights};
use serde_json::json;

use crate::cli::{Command, CommonArgs, StylizeArgs, WeightsCommand};

/// Side of the square the classifier's input is resized to.
const CLASSIFY_SIZE: u32 = 224;

/// Runs one command.
pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Devices { backend, json } => devices(backend, json),
        Command::Classify { images, top, labels, common } => classify(&images, top, labels.as_deref(), &common),
        Command::Features { image, layers, out, size, common } => features(&image, &layers, &out, size, &common),
        Command::Layers { size, arch, weights, json } => layers(&size, arch, weights.as_deref(), json),
        Command::Weights { action } => weights_command(action),
        Command::Stylize(args) => stylize(&args),
        Command::Quality { content, style, outputs, reference, common } => {
            quality(&content, &style, &outputs, reference.as_deref(), &common)
        }
        Command::Bench { sizes, iterations, warmup, optimizer, losses, common } => {
            bench(&neural_style::bench::BenchOptions { sizes, iterations, warmup, optimizer, losses }, &common)
        }
        #[cfg(feature = "viewer")]
        Command::View { image, backend, adapter } => view(&image, backend, adapter),
    }
}

fn devices(backend: Option<gpu::BackendChoice>, json: bool) -> Result<()> {
    gpu::check_backend_available(backend)?;
    let adapters = gpu::list_adapters(backend);
    for a in &adapters {
        if let Some(warning) = neural_style::graphics_driver::old_lavapipe_warning(&a.name, &a.driver) {
            errln!("warning: {warning}");
        }
    }
    if json {
        outln!("{}", serde_json::to_string(&adapters)?)?;
        return Ok(());
    }
    if adapters.is_empty() {
        bail!("no GPU adapter found: install a Vulkan driver (e.g. `apt-get install mesa-vulkan-drivers`)");
    }
    for a in adapters {
        outln!("{} ({}, {}, {})", a.name, a.backend, a.device_type, a.driver)?;
        outln!(
            "    max buffer {} MiB, max storage binding {} MiB, {} storage buffers/stage, {} invocations/workgroup, {} KiB workgroup memory",
            a.max_buffer_size >> 20,
            a.max_storage_buffer_binding_size >> 20,
            a.max_storage_buffers_per_shader_stage,
            a.max_compute_invocations_per_workgroup,
            a.max_compute_workgroup_storage_size >> 10
        )?;
    }
    Ok(())
}

/// Loads the weights and opens the device.
fn open(common: &CommonArgs) -> Result<(GpuContext, FeatureNet, PathBuf)> {
    open_at(common, None)
}

/// As [`open`], the kernels storing activations in `precision` when given (else the device's).
fn open_at(common: &CommonArgs, precision: Option<Precision>) -> Result<(GpuContext, FeatureNet, PathBuf)> {
    let path = weights::resolve_path(common.weights.as_deref())?;
    let net = weights::load(&path)?;
    let ctx = GpuContext::new(&common.device_request())?;
    let fnet = FeatureNet::with_precision(&ctx, net, precision.unwrap_or(ctx.precision()));
    Ok((ctx, fnet, path))
}

fn classify(images: &[PathBuf], top: usize, labels: Option<&Path>, common: &CommonArgs) -> Result<()> {
    if common.precision == PrecisionChoice::F16 {
        bail!("classify runs in f32 only: drop --precision f16");
    }
    let (ctx, fnet, weights_path) = open_at(common, Some(Precision::F32))?;
    let labels_path = labels.map(Path::to_path_buf).or_else(|| weights::default_labels_path(&weights_path));
    let labels = match &labels_path {
        Some(p) => weights::read_labels(p)?,
        None => Vec::new(),
    };
    let side = CLASSIFY_SIZE as usize;
    let plan = ForwardPlan::new(&ctx, &fnet, side, side, &PlanOptions { classify: true, ..Default::default() })?;
    // A bad image in a batch is reported and skipped; the batch goes on and fails at the end.
    let mut unreadable = 0;
    for path in images {
        let img = match image_io::load_rgb(path) {
            Ok(img) => image_io::resize_exact(&img, CLASSIFY_SIZE, CLASSIFY_SIZE),
            Err(e) => {
                let error = format!("{e:#}").replace('\n', " ");
                if common.json {
                    outln!("{}", json!({"image": path.to_string_lossy(), "error": error}))?;
                }
                if images.len() == 1 {
                    return Err(e);
                }
                errln!("error: {error}");
                unreadable += 1;
                continue;
            }
        };
        plan.run(&ctx, &image_io::to_chw(&img))?;
        let logits = plan.read_logits(&ctx)?;
        weights::check_activations("the logits", &logits)
            .with_context(|| format!("weights {}", weights_path.display()))?;
        if let Some(p) = &labels_path
            && labels.len() < logits.len()
        {
            bail!("labels {} has {} labels for the model's {} classes", p.display(), labels.len(), logits.len());
        }
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        let best: Vec<_> = order
            .iter()
            .take(top)
            .map(|&i| json!({"index": i, "label": labels.get(i).cloned().unwrap_or_default(), "score": logits[i]}))
            .collect();
        if common.json {
            outln!("{}", json!({"image": path.to_string_lossy(), "top": best}))?;
        } else {
            outln!("{}", path.display())?;
            for b in &best {
                outln!(
                    "  {:>5}  {:>8.3}  {}",
                    b["index"],
                    b["score"].as_f64().unwrap_or(f64::NAN),
                    b["label"].as_str().unwrap_or("")
                )?;
            }
        }
    }
    if unreadable > 0 {
        bail!("{unreadable} of {} images could not be classified (each is reported above)", images.len());
    }
    Ok(())
}

fn features(image: &Path, names: &[String], out: &Path, size: Option<u32>, common: &CommonArgs) -> Result<()> {
    if out.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        bail!("--out must name a .safetensors file, got {}", out.display());
    }
    atomic::check_writable(out)?;
    let weights_file = weights::resolve_path(common.weights.as_deref()).ok();
    let inputs = std::iter::once(("image", image)).chain(weights_file.as_deref().map(|w| ("weights file", w)));
    refuse_overwriting_inputs("--out", out, inputs)?;
    let (ctx, fnet, weights_path) = open(common)?;
    let ids = names.iter().map(|n| fnet.net.arch.parse_layer(n)).collect::<Result<Vec<_>>>()?;
    if let Some(dup) = ids.iter().enumerate().find_map(|(i, id)| ids[..i].contains(id).then_some(id)) {
        bail!("layer \"{dup}\" is listed twice in --layers");
    }
    // Plan from the header's size first, so an image too large for the device fails before decoding.
    let (w, h) = image_io::dimensions(image)?;
    let (w, h) = match size {
        Some(0) => bail!("--size must be at least 1"),
        Some(n) => image_io::scaled_size(w, h, n),
        None => (w, h),
    };
    let plan = ForwardPlan::new(&ctx, &fnet, w as usize, h as usize, &PlanOptions::default())?;
    let img = image_io::load_rgb(image)?;
    let img = image_io::resize_exact(&img, w, h);
    plan.run(&ctx, &image_io::to_chw(&img))?;
    let mut tensors = Vec::new();
    for &id in &ids {
        let (&info, _) = plan.layer_buffer(id)?;
        let data = plan.read_layer(&ctx, id)?;
        weights::check_activations(&format!("layer {id}"), &data)
            .with_context(|| format!("weights {}", weights_path.display()))?;
        tensors.push((info, bytemuck::cast_slice::<f32, u8>(&data).to_vec()));
    }
    let views = tensors
        .iter()
        .map(|(info, bytes)| {
            let shape = vec![1, info.channels, info.height, info.width];
            Ok((info.id.to_string(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, bytes)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, None)?;
    atomic::write(out, &bytes)?;
    if common.json {
        let layers: Vec<_> =
            tensors.iter().map(|(i, _)| json!({"name": i.id, "shape": [1, i.channels, i.height, i.width]})).collect();
        outln!(
            "{}",
            json!({"image": image.to_string_lossy(), "output": out.to_string_lossy(), "width": w, "height": h, "layers": layers})
        )?;
    } else {
        outln!("wrote {} layer(s) of {} ({}x{}) to {}", tensors.len(), image.display(), w, h, out.display())?;
    }
    Ok(())
}

fn parse_size(s: &str) -> Result<(usize, usize)> {
    let parse = |v: &str| v.trim().parse::<usize>().ok().filter(|&n| n > 0);
    let parsed = match s.split_once(['x', 'X']) {
        Some((w, h)) => parse(w).zip(parse(h)),
        None => parse(s).map(|n| (n, n)),
    };
    parsed.with_context(|| format!("invalid size {s:?}: expected WxH, e.g. 224x224"))
}

fn layers(size: &str, arch: Option<arch::Arch>, weights_path: Option<&Path>, json: bool) -> Result<()> {
    let (w, h) = parse_size(size)?;
    let (arch, padding) = match (weights::resolve_path(weights_path), arch) {
        (Ok(path), _) if weights_path.is_some() || arch.is_none() => {
            let net = weights::load(&path)?;
            (net.arch, net.padding)
        }
        (_, a) => (a.unwrap_or(arch::Arch::Small), Padding::TfSame),
    };
    let layers = arch::layers(arch, padding, w, h);
    if json {
        outln!("{}", json!({"arch": arch, "padding": padding, "width": w, "height": h, "layers": layers}))?;
    } else {
        outln!("{} ({:?} padding), input {}x{}", arch.name(), padding, w, h)?;
        for l in layers {
            outln!("  {:<18} {:>4} x {:>4} x {:>4}", l.id, l.channels, l.height, l.width)?;
        }
    }
    Ok(())
}

/// The image format for an output path, from its extension.
fn output_format(path: &Path) -> Result<image::ImageFormat> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase());
    if let Some(ext) = name.as_deref().and_then(|n| n.strip_prefix('.')).filter(|e| ["png", "jpg", "jpeg"].contains(e))
    {
        bail!(
            "cannot write {}: the file name is empty, only the extension .{ext} is given (e.g. out.{ext})",
            path.display()
        );
    }
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("png") => Ok(image::ImageFormat::Png),
        Some("jpg" | "jpeg") => Ok(image::ImageFormat::Jpeg),
        _ => bail!("cannot write {}: the output must end in .png, .jpg or .jpeg", path.display()),
    }
}

/// Encodes an image in the format of `path` and writes it atomically.
fn write_image(img: &image::RgbImage, path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    match output_format(path)? {
        image::ImageFormat::Jpeg => {
            let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95);
            img.write_with_encoder(encoder)?;
        }
        format => img.write_to(&mut std::io::Cursor::new(&mut bytes), format)?,
    }
    atomic::write(path, &bytes)
}

/// Fails when `output` (what the option `flag` writes) already exists as one of the `inputs`
/// (what it is, path): the same file through any spelling of its path, a symbolic link or a hard
/// link.
fn refuse_overwriting_inputs<'a>(
    flag: &str,
    output: &Path,
    inputs: impl IntoIterator<Item = (&'a str, &'a Path)>,
) -> Result<()> {
    if !output.exists() {
        return Ok(());
    }
    for (what, input) in inputs {
        if same_file(output, input) {
            bail!("{flag} {} is the {what} {}: refusing to overwrite an input", output.display(), input.display());
        }
    }
    Ok(())
}

/// Checks the snapshots a run through `plan` writes every `every` iterations, before any work:
/// the longest names fit the file system, and no file already there under a snapshot's name is
/// a directory or one of the `inputs`.
fn check_snapshots(output: &Path, plan: &[ScalePlan], every: usize, inputs: &[(&str, &Path)]) -> Result<()> {
    let scale = |index: usize| ScaleInfo { index, count: plan.len(), width: 0, height: 0 };
    for (i, s) in plan.iter().enumerate() {
        let last = s.iterations / every * every;
        if last > 0 {
            atomic::check_name(&snapshot_path(output, scale(i + 1), last)).context("--save-every snapshot")?;
        }
    }
    let Ok(entries) = std::fs::read_dir(atomic::destination_dir(output)?) else { return Ok(()) };
    for entry in entries.flatten() {
        let path = output.with_file_name(entry.file_name());
        let written = (1..=plan.len()).any(|index| {
            let iterations = plan[index - 1].iterations;
            let name = |it: usize| snapshot_path(output, scale(index), it) == path;
            snapshot_iteration(output, &entry.file_name(), scale(index))
                .is_some_and(|it| it > 0 && it.is_multiple_of(every) && it <= iterations && name(it))
        });
        if !written {
            continue;
        }
        if path.is_dir() {
            bail!("cannot write the --save-every snapshot {}: it is a directory", path.display());
        }
        refuse_overwriting_inputs("--save-every snapshot", &path, inputs.iter().copied())?;
    }
    Ok(())
}

/// The iteration of the snapshot of `scale` named `name` (see [`snapshot_path`]), if it is one.
fn snapshot_iteration(output: &Path, name: &std::ffi::OsStr, scale: ScaleInfo) -> Option<usize> {
    let mut rest = name.as_encoded_bytes().strip_prefix(output.file_stem()?.as_encoded_bytes())?;
    if let Some(ext) = output.extension() {
        rest = rest.strip_suffix(ext.as_encoded_bytes())?.strip_suffix(b".")?;
    }
    if scale.count > 1 {
        rest = rest.strip_prefix(format!("_s{}", scale.index).as_bytes())?;
    }
    std::str::from_utf8(rest.strip_prefix(b"_")?).ok()?.parse().ok()
}

/// Whether two paths name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// `layer` or `layer:weight`.
fn parse_style_layer(s: &str) -> Result<(LayerId, f32)> {
    match s.split_once(':') {
        Some((name, w)) => {
            let w: f32 = w.parse().with_context(|| format!("invalid style layer weight in {s:?}"))?;
            Ok((name.trim().parse()?, w))
        }
        None => Ok((s.trim().parse()?, 1.0)),
    }
}

/// `out.png` at iteration 100 → `out_100.png` in the same directory; with more than one scale,
/// `out_s2_100.png` at iteration 100 of scale 2. The name is built from the output's own
/// (possibly non-UTF-8) stem and extension.
fn snapshot_path(output: &Path, scale: ScaleInfo, iteration: usize) -> PathBuf {
    let mut name = output.file_stem().unwrap_or_default().to_os_string();
    if scale.count > 1 {
        name.push(format!("_s{}", scale.index));
    }
    name.push(format!("_{iteration}"));
    if let Some(ext) = output.extension() {
        name.push(".");
        name.push(ext);
    }
    output.with_file_name(name)
}

/// `auto`, a number of scales, or a comma-separated list of longest sides.
fn parse_scales(s: &str) -> Result<Scales> {
    let bad = || anyhow!("--scales must be auto, a number of scales or a comma-separated list of sizes, got {s:?}");
    if s == "auto" {
        return Ok(Scales::Auto);
    }
    if !s.contains(',') {
        return match s.trim().parse::<usize>() {
            Ok(0) => bail!("--scales must be at least 1"),
            Ok(n) => Ok(Scales::Count(n)),
            Err(_) => Err(bad()),
        };
    }
    Ok(Scales::Sizes(s.split(',').map(|v| v.trim().parse::<u32>().map_err(|_| bad())).collect::<Result<_>>()?))
}

/// Prints the schedule and how activations are stored (`precision`: `f32`, `f16`, or `auto`
/// where the viewer resolves it): a line on stderr with more than one scale or activations not
/// in f32, or a JSON line on stdout (best effort, as progress).
fn print_plan(plan: &[ScalePlan], precision: &str, json: bool) {
    let total: usize = plan.iter().map(|s| s.iterations).sum();
    if json {
        let scales: Vec<_> = plan
            .iter()
            .enumerate()
            .map(|(i, s)| json!({"scale": i + 1, "size": [s.width, s.height], "iterations": s.iterations}))
            .collect();
        progressln!("{}", json!({"plan": scales, "iterations": total, "precision": precision}));
    } else if plan.len() > 1 || precision != Precision::F32.name() {
        let scales: Vec<String> =
            plan.iter().map(|s| format!("{}×{} for {}", s.width, s.height, s.iterations)).collect();
        let count = if plan.len() == 1 { "1 scale".to_string() } else { format!("{} scales", plan.len()) };
        errln!("plan: {count}, {total} iterations: {}; activations in {precision}", scales.join(", "));
    }
}

/// The CLI's name for an option of the library's [`StylizeOptions`](neural_style::stylize::StylizeOptions).
fn flag(option: OptionName) -> &'static str {
    match option {
        OptionName::Size => "--size",
        OptionName::StyleScale => "--style-scale",
        OptionName::Iterations => "--iterations",
        OptionName::LearningRate => "--learning-rate",
        OptionName::LbfgsHistory => "--lbfgs-history",
        OptionName::ContentWeight => "--content-weight",
        OptionName::StyleWeight => "--style-weight",
        OptionName::TvWeight => "--tv-weight",
        OptionName::Strength => "--strength",
        OptionName::ContentLayers => "--content-layers",
        OptionName::StyleLayers => "--style-layers",
        OptionName::StyleBlendWeights => "--style-blend-weights",
        OptionName::Scales => "--scales",
        OptionName::MinSize => "--min-size",
        OptionName::Average => "--average",
    }
}

/// An error as one line for stderr, with the flag that fixes it when the library names a
/// [`Remedy`].
pub fn error_line(error: &anyhow::Error) -> String {
    let text = format!("{error:#}").replace('\n', " ");
    let hint = error.downcast_ref::<NeedsRemedy>().map(|e| match e.remedy {
        Remedy::SmallerImage => " (use --size to scale the image down)",
        Remedy::OtherBackend => ", or pick another --backend",
        Remedy::WeightsFile => ", or pass --weights FILE",
    });
    text + hint.unwrap_or("")
}

/// A library error about a bad option, restated with the option's flag.
fn with_flag_names(error: anyhow::Error) -> anyhow::Error {
    match error.downcast_ref::<OptionError>() {
        Some(e) => anyhow!(e.message(flag(e.option()))),
        None => error,
    }
}

fn stylize(args: &StylizeArgs) -> Result<()> {
    use neural_style::stylize::{Control, Event, Init, LossSpec, StylizeOptions, Stylizer, plan};
    // Everything that can be checked before the long run is checked first.
    output_format(&args.output)?;
    atomic::check_writable(&args.output)?;
    let init_file = (!matches!(args.init.as_str(), "palette" | "content" | "noise")).then(|| Path::new(&args.init));
    // The weights file is an input too (when it resolves: a missing one is reported later).
    let weights_file = weights::resolve_path(args.common.weights.as_deref()).ok();
    let inputs: Vec<(&str, &Path)> = std::iter::once(("--content image", args.content.as_path()))
        .chain(args.styles.iter().map(|s| ("--style image", s.as_path())))
        .chain(init_file.map(|i| ("--init image", i)))
        .chain(weights_file.as_deref().map(|w| ("weights file", w)))
        .collect();
    refuse_overwriting_inputs("--output", &args.output, inputs.iter().copied())?;
    if args.iterations < 1 {
        bail!("--iterations must be at least 1, got {}", args.iterations);
    }
    let content_layers = args.content_layers.iter().map(|s| s.parse()).collect::<Result<Vec<LayerId>, _>>()?;
    let style_layers = args.style_layers.iter().map(|s| parse_style_layer(s)).collect::<Result<Vec<_>>>()?;
    let content = image_io::load_rgb(&args.content)?;
    let styles = args.styles.iter().map(|p| image_io::load_rgb(p)).collect::<Result<Vec<_>>>()?;
    let init = match args.init.as_str() {
        "palette" => Init::Palette,
        "content" => Init::Content,
        "noise" => Init::Noise,
        file => Init::Image(image_io::load_rgb(Path::new(file))?),
    };
    let options = StylizeOptions {
        size: args.size,
        style_scale: args.style_scale,
        iterations: args.iterations as usize,
        optimizer: args.optimizer,
        learning_rate: args.learning_rate,
        lbfgs_history: args.lbfgs_history,
        lbfgs_line_search: args.lbfgs_line_search,
        loss: LossSpec {
            content_layers,
            style_layers,
            content_weight: args.content_weight,
            style_weight: args.style_weight,
            tv_weight: args.tv_weight,
            normalize_gradients: args.normalize_gradients,
            gram_margin: args.gram_margin,
            padding: args.padding,
            normalization: args.loss_normalization,
            strength: args.strength,
        },
        style_blend_weights: args.style_blend_weights.clone(),
        init,
        seed: args.seed,
        report_every: args.print_every.max(1),
        snapshot_every: args.save_every.filter(|&n| n > 0),
        original_colors: args.original_colors,
        scales: parse_scales(&args.scales)?,
        min_size: args.min_size,
        average: args.average,
    };
    let schedule = plan(content.width(), content.height(), &options).map_err(with_flag_names)?;
    if let Some(every) = options.snapshot_every {
        check_snapshots(&args.output, &schedule, every, &inputs)?;
    }
    #[cfg(feature = "viewer")]
    let viewer = open_viewer(args.viewer)?;
    #[cfg(not(feature = "viewer"))]
    let viewer: Option<std::convert::Infallible> = None;
    let net = weights::load(&weights::resolve_path(args.common.weights.as_deref())?)?;
    neural_style::stylize::validate(&net, &options, styles.len()).map_err(with_flag_names)?;
    let request = args.common.device_request();
    let json = args.common.json;
    // Presentation: a window, or headless a progress bar on a terminal, or a line per report.
    let bar = (viewer.is_none() && !json && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
        let bar = indicatif::ProgressBar::new(options.iterations as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} iterations, {per_sec}, eta {eta} {msg}")
                .expect("valid template"),
        );
        bar
    });
    // The same events from the same driver either way.
    // Snapshots are named by the scale of the last progress event (each scale reports first).
    let current_scale = std::cell::Cell::new(None);
    let on_event = |event: Event| -> Result<()> {
        match event {
            Event::Progress { iteration, losses, elapsed_s, scale } => {
                current_scale.set(Some(scale));
                let before: usize = schedule[..scale.index - 1].iter().map(|s| s.iterations).sum();
                let prefix = if scale.count > 1 {
                    format!("scale {}/{} ({}×{}) ", scale.index, scale.count, scale.width, scale.height)
                } else {
                    String::new()
                };
                match &bar {
                    Some(bar) => {
                        bar.set_position((before + iteration) as u64);
                        bar.set_message(format!("{prefix}loss {:.4}", losses.loss));
                    }
                    None if json => progressln!(
                        "{}",
                        json!({"scale": scale.index, "size": [scale.width, scale.height], "iteration": iteration,
                               "loss": losses.loss, "content": losses.content, "style": losses.style,
                               "tv": losses.tv, "elapsed_s": elapsed_s})
                    ),
                    None => progressln!(
                        "{prefix}iteration {iteration}: loss {:.6} (content {:.6}, style {:.6}, tv {:.6}) {elapsed_s:.1}s",
                        losses.loss,
                        losses.content,
                        losses.style,
                        losses.tv
                    ),
                }
            }
            Event::Snapshot { iteration, image } => {
                let scale = current_scale.get().unwrap_or(ScaleInfo {
                    index: 1,
                    count: schedule.len(),
                    width: image.width(),
                    height: image.height(),
                });
                // A snapshot that cannot be written does not end the run (its names were checked).
                let path = snapshot_path(&args.output, scale, iteration);
                if let Err(e) = write_image(image, &path) {
                    errln!("warning: {e:#}; the run goes on");
                }
            }
        }
        Ok(())
    };
    let outcome = match viewer {
        #[cfg(feature = "viewer")]
        Some(viewer) => {
            use neural_style::viewer::ViewerEvent;
            let precision = match request.precision {
                PrecisionChoice::F32 => Precision::F32.name(),
                PrecisionChoice::F16 => Precision::F16.name(),
                PrecisionChoice::Auto => "auto",
            };
            print_plan(&schedule, precision, json);
            viewer.with_cancel_flag(crate::signals::cancel_on_signal()).stylize(
                &request,
                net,
                content,
                styles,
                options,
                |event| match event {
                    ViewerEvent::Step(event) => on_event(event),
                    ViewerEvent::Finished { image } => write_image(image, &args.output),
                },
            )
        }
        #[cfg(not(feature = "viewer"))]
        Some(never) => match never {},
        None => {
            let ctx = Arc::new(GpuContext::new(&request)?);
            let fnet = Arc::new(FeatureNet::new(&ctx, net));
            let precision = ctx.precision().name();
            Stylizer::new(ctx, fnet).drive(&content, &styles, &options).and_then(|driver| {
                print_plan(driver.plan(), precision, json);
                driver
                    .with_cancel_flag(crate::signals::cancel_on_signal())
                    .run(|event| on_event(event).map(|()| Control::Continue))
            })
        }
    }
    .map_err(with_flag_names)?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    finish_stylize(args, &outcome, schedule.len())
}

/// `neural-style quality`: the measures of `neural_style::quality` for each output, and with a
/// reference picture its measures beside them (the reference resized to each output's size).
fn quality(
    content: &Path,
    style: &Path,
    outputs: &[PathBuf],
    reference: Option<&Path>,
    common: &CommonArgs,
) -> Result<()> {
    let content = image_io::load_rgb(content)?;
    let style = image_io::load_rgb(style)?;
    let reference = reference.map(image_io::load_rgb).transpose()?;
    let (ctx, fnet, _) = open(common)?;
    let judge = neural_style::quality::Judge::new(&ctx, &fnet);
    for path in outputs {
        let output = image_io::load_rgb(path)?;
        let s = judge.score(&output, &content, &style)?;
        let r = match &reference {
            Some(r) => {
                Some(judge.score(&image_io::resize_exact(r, output.width(), output.height()), &content, &style)?)
            }
            None => None,
        };
        if common.json {
            let mut line = json!({"output": path.to_string_lossy()});
            line.as_object_mut().expect("an object").extend(scores_json(&s));
            if let Some(r) = &r {
                line["reference"] = serde_json::Value::Object(scores_json(r));
            }
            outln!("{line}")?;
        } else {
            let text = |s: &neural_style::quality::Scores| {
                format!(
                    "artifacts {:.3}, chroma {:.3}, luma {:.3}, texture {:.3}, content {:.3}, color {:.3}, style128 {:.3}",
                    s.artifacts, s.chroma, s.luma, s.texture, s.content, s.color, s.style128
                )
            };
            outln!("{}: {}", path.display(), text(&s))?;
            if let Some(r) = &r {
                outln!("  reference: {}", text(r))?;
            }
        }
    }
    Ok(())
}

/// The measures as JSON fields (non-finite ones as `null`).
fn scores_json(s: &neural_style::quality::Scores) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(s).expect("scores serialize") {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("a struct serializes to an object"),
    }
}

fn bench(options: &neural_style::bench::BenchOptions, common: &CommonArgs) -> Result<()> {
    let (ctx, fnet, path) = open(common)?;
    neural_style::bench::validate(&ctx, &fnet, options).map_err(with_flag_names)?;
    let (ctx, fnet) = (Arc::new(ctx), Arc::new(fnet));
    let network_bytes = ctx.allocated_bytes();
    let info = &ctx.info;
    let timestamps = ctx.device.features().contains(wgpu::Features::TIMESTAMP_QUERY);
    if !common.json {
        outln!("{} ({:?}, {} {}), weights {}", info.name, info.backend, info.driver, info.driver_info, path.display())?;
        if !timestamps {
            outln!("(no TIMESTAMP_QUERY on this adapter: no GPU time per kernel family)")?;
        }
    }
    let mut results = Vec::new();
    for &size in &options.sizes {
        let r = neural_style::bench::run_size(&ctx, &fnet, size, options)?;
        if !common.json {
            print_bench(&r)?;
        }
        results.push(r);
    }
    if common.json {
        let device = json!({"name": info.name, "backend": format!("{:?}", info.backend), "driver": info.driver,
                            "driver_info": info.driver_info, "timestamps": timestamps,
                            "max_storage_buffer_binding_size": ctx.limits.max_storage_buffer_binding_size});
        let out = json!({"tool": "neural-style", "version": env!("CARGO_PKG_VERSION"), "device": device,
                         "weights": path.display().to_string(), "network_bytes": network_bytes,
                         "results": results});
        outln!("{}", serde_json::to_string_pretty(&out)?)?;
    }
    Ok(())
}

fn print_bench(r: &neural_style::bench::BenchResult) -> Result<()> {
    let p = &r.profile;
    outln!(
        "{0}x{0} {1} {9}: {2:.2} it/s, {3:.1} ms/iteration ({11:.1} on the host; {4} iterations), {5} \
         dispatches/iteration, plan {6:.1} MiB{10}, largest buffer {7:.1} MiB, final loss {8:.4}",
        r.size,
        clap::ValueEnum::to_possible_value(&r.optimizer).map_or_else(String::new, |v| v.get_name().to_string()),
        r.iterations_per_second,
        r.ms_per_iteration,
        r.iterations,
        p.dispatches,
        r.plan_bytes as f64 / (1 << 20) as f64,
        r.largest_buffer_bytes as f64 / (1 << 20) as f64,
        r.final_loss,
        r.precision.name(),
        r.resident_bytes.map_or_else(String::new, |b| format!(" ({:.1} MiB resident)", b as f64 / (1 << 20) as f64)),
        r.host_ms_per_iteration,
    )?;
    outln!(
        "    work per iteration: {:.3} GFLOP, {:.1} MB moved at least; achieved {:.2} GFLOP/s",
        r.work.flops / 1e9,
        r.work.bytes / 1e6,
        r.gflops_per_second
    )?;
    for f in &p.families {
        match (f.gpu_ms, p.gpu_ms) {
            (Some(ms), Some(total)) => outln!(
                "    {:<15} {:>4} dispatches {:>9.2} ms {:>5.1}%",
                f.family.name(),
                f.dispatches,
                ms,
                100.0 * ms / total.max(f64::MIN_POSITIVE)
            )?,
            _ => outln!("    {:<15} {:>4} dispatches", f.family.name(), f.dispatches)?,
        }
    }
    if let Some(total) = p.gpu_ms {
        outln!("    {:<15} {:>4} dispatches {:>9.2} ms (timed one dispatch per pass)", "total", p.dispatches, total)?;
        outln!("    slowest dispatches:")?;
        for d in &p.slowest {
            let [x, y, z] = d.workgroups;
            outln!(
                "      #{:<4} {:<20} {:<15} {x}x{y}x{z} workgroups {:>9.2} ms",
                d.index,
                d.kernel,
                d.family.name(),
                d.gpu_ms
            )?;
        }
    }
    let counts = r.variant_counts();
    if !counts.is_empty() {
        let families: Vec<String> = counts
            .iter()
            .map(|(family, variants)| {
                let v: Vec<String> = variants.iter().map(|(name, n)| format!("{name} ×{n}")).collect();
                format!("{family} {}", v.join(", "))
            })
            .collect();
        outln!("    variants (--tune {}): {}", tune_name(r.tune), families.join("; "))?;
    }
    Ok(())
}

/// The name of a `--tune` mode as the command line spells it.
fn tune_name(tune: neural_style::tuning::Tune) -> String {
    clap::ValueEnum::to_possible_value(&tune).map_or_else(String::new, |v| v.get_name().to_string())
}

/// What a non-finite evaluation was about, for its message.
fn non_finite_what(non_finite: neural_style::stylize::NonFinite) -> &'static str {
    if non_finite.gradient { "gradient of the loss (or its squared norm)" } else { "loss" }
}

/// Writes the result of a run through `scales` scales and reports how it ended.
fn finish_stylize(args: &StylizeArgs, outcome: &neural_style::stylize::Outcome, scales: usize) -> Result<()> {
    let json = args.common.json;
    if let Some(non_finite) = outcome.non_finite_at.filter(|n| n.at_start()) {
        bail!(
            "the {} is NaN or infinite at the starting image, before any update, so nothing was written: the loss \
             weights are likely too large (lower --content-weight, --style-weight or --tv-weight), or the weights file \
             is corrupt",
            non_finite_what(non_finite)
        );
    }
    write_image(&outcome.image, &args.output)?;
    if let Some(non_finite) = outcome.non_finite_at {
        let scale = if scales > 1 { format!(" of scale {}", non_finite.scale + 1) } else { String::new() };
        bail!(
            "the {} became NaN or infinite by iteration {}{scale}; stopped and wrote the best image with a finite loss \
             to {} (lower the loss weights or the learning rate)",
            non_finite_what(non_finite),
            non_finite.iteration,
            args.output.display()
        );
    }
    let per_s = outcome.iterations as f64 / outcome.seconds.max(1e-9);
    // The written image's losses (the result's, as the last progress line reported them).
    let losses = outcome.losses.unwrap_or_default();
    let json_losses = json!({"loss": losses.loss, "content": losses.content, "style": losses.style, "tv": losses.tv});
    let with_losses = |mut line: serde_json::Value| {
        if let (Some(line), Some(l)) = (line.as_object_mut(), json_losses.as_object()) {
            line.extend(l.clone());
        }
        line
    };
    if let Some(signal) = crate::signals::received() {
        let name = crate::signals::name(signal);
        if json {
            progressln!(
                "{}",
                with_losses(json!({"done": false, "interrupted": name, "output": args.output.to_string_lossy(),
                       "iterations": outcome.iterations, "seconds": outcome.seconds, "iterations_per_s": per_s}))
            );
        }
        let message = format!(
            "{name} after {} of {} iterations; wrote the current image to {}",
            outcome.iterations,
            args.iterations,
            args.output.display()
        );
        return Err(crate::Interrupted { signal, message }.into());
    }
    if json {
        progressln!(
            "{}",
            with_losses(
                json!({"done": true, "output": args.output.to_string_lossy(), "iterations": outcome.iterations,
                   "seconds": outcome.seconds, "iterations_per_s": per_s})
            )
        );
    } else {
        progressln!(
            "wrote {} ({} iterations, {:.1}s, {:.2} iterations/s, loss {:.6})",
            args.output.display(),
            outcome.iterations,
            outcome.seconds,
            per_s,
            losses.loss
        );
    }
    Ok(())
}

/// Connects to the display as `--viewer` asks: `None` runs headless.
#[cfg(feature = "viewer")]
fn open_viewer(mode: crate::cli::ViewerMode) -> Result<Option<neural_style::viewer::Viewer>> {
    use crate::cli::ViewerMode;
    use neural_style::viewer::Viewer;
    match mode {
        ViewerMode::Off => Ok(None),
        ViewerMode::On => match Viewer::new() {
            Ok(v) => Ok(Some(v)),
            Err(e) => Err(anyhow!("{e:#}; use --viewer=auto to run headless")),
        },
        ViewerMode::Auto => match Viewer::new() {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                errln!("warning: {e:#}; running headless");
                Ok(None)
            }
        },
    }
}

/// `neural-style view IMAGE`.
#[cfg(feature = "viewer")]
fn view(image: &Path, backend: Option<gpu::BackendChoice>, adapter: Option<String>) -> Result<()> {
    let img = image_io::load_rgb(image)?;
    let viewer = neural_style::viewer::Viewer::new()?;
    viewer.show(&gpu::DeviceRequest { backend, adapter, ..Default::default() }, img)
}

/// `neural-style weights …`.
fn weights_command(action: WeightsCommand) -> Result<()> {
    match action {
        WeightsCommand::List => weights_list(),
        WeightsCommand::Fetch { name, url, sha256 } => {
            let expected = sha256.as_deref().map(weights::store::parse_sha256).transpose()?;
            weights_fetch(name, url.as_deref(), expected.as_deref())
        }
        WeightsCommand::Import { file, sha256 } => {
            let expected = sha256.as_deref().map(weights::store::parse_sha256).transpose()?;
            weights_import(&file, expected.as_deref())
        }
        WeightsCommand::Path => {
            outln!("{}", weights::resolve_path(None)?.display())?;
            Ok(())
        }
    }
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn weights_list() -> Result<()> {
    use weights::store::{self, Asset};
    let dir = store::cache_dir()?;
    outln!("cache directory: {}", dir.display())?;
    match weights::resolve_path(None) {
        Ok(path) => outln!("default weights: {}", path.display())?,
        Err(_) => {
            outln!("default weights: none (run `neural-style weights fetch` or `neural-style weights import FILE`)")?
        }
    }
    let installed = store::installed_files()?;
    for asset in Asset::ALL {
        let info = asset.info();
        let default = if asset == Asset::DEFAULT_MODEL { " (what `weights fetch` gets)" } else { "" };
        outln!("{:<12} {}{default}", asset.name(), info.description)?;
        outln!("    {}", info.url)?;
        match info.sha256 {
            Some(sha) => outln!("    sha256 {sha}")?,
            None if info.arch.is_some() => outln!("    sha256 unknown (checked by loading it)")?,
            None => outln!("    sha256 unknown (checked by counting its labels)")?,
        }
        match installed.iter().find(|(p, _)| p.file_name().is_some_and(|n| n == info.file_name)) {
            Some((path, bytes)) => outln!("    installed: {} ({})", path.display(), megabytes(*bytes))?,
            None => outln!("    not installed")?,
        }
    }
    let known: Vec<&str> = Asset::ALL.iter().map(|a| a.info().file_name).collect();
    let others: Vec<_> =
        installed.iter().filter(|(p, _)| p.file_name().is_none_or(|n| !known.iter().any(|k| n == *k))).collect();
    if !others.is_empty() {
        outln!("other installed files:")?;
        for (path, bytes) in others {
            outln!("    {} ({})", path.display(), megabytes(*bytes))?;
        }
    }
    Ok(())
}

/// Prints what was installed.
fn report_installed(what: &str, installed: &weights::store::Installed) -> Result<()> {
    let kind = installed.arch.map_or("labels", |a| a.name());
    outln!("installed {what}: {} ({kind}, {})", installed.path.display(), megabytes(installed.bytes))?;
    if installed.checksum_verified {
        outln!("    sha256 {} (matches the expected checksum)", installed.sha256)?;
    } else if installed.arch.is_some() {
        outln!("    sha256 {} (no known checksum: checked by loading it against the architecture)", installed.sha256)?;
    } else {
        outln!("    sha256 {} (no known checksum: checked by counting its labels)", installed.sha256)?;
    }
    Ok(())
}

fn weights_import(file: &Path, expected_sha256: Option<&str>) -> Result<()> {
    use weights::store;
    let source_name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // Bounded and checked to be a regular file before a byte is read (a device or FIFO never ends).
    let (what, cap) = match store::Kind::of_file_name(&source_name) {
        store::Kind::Labels => ("labels", weights::MAX_LABELS_FILE_BYTES),
        store::Kind::Model(_) => ("weights", store::MAX_FILE_BYTES),
    };
    let bytes = neural_style::input::read_regular_file(file, what, cap)?;
    let (name, data) = store::unpack(bytes, &source_name, None)?;
    let installed = store::install(&name, &data, store::Kind::of_file_name(&name), expected_sha256)?;
    report_installed(&name, &installed)?;
    Ok(())
}

#[cfg(not(all(feature = "fetch", not(target_os = "android"))))]
fn weights_fetch(_: Option<weights::store::Asset>, _: Option<&str>, _: Option<&str>) -> Result<()> {
    bail!(
        "this neural-style was built without the downloader (cargo feature `fetch`, not on Android): download \
         the file elsewhere and install it with `neural-style weights import FILE`"
    )
}

#[cfg(all(feature = "fetch", not(target_os = "android")))]
fn weights_fetch(name: Option<weights::store::Asset>, url: Option<&str>, expected_sha256: Option<&str>) -> Result<()> {
    use weights::store::{self, Asset, Kind};
    let timeout = weights::fetch::timeout()?;
    let Some(asset) = name.or(url.is_none().then_some(Asset::DEFAULT_MODEL)) else {
        // Only --url: a file of its own, named as the download names it.
        let url = url.unwrap_or_default();
        let (file_name, data) = store::unpack(download(url, timeout)?, url_file_name(url), None)?;
        let installed = store::install(&file_name, &data, Kind::of_file_name(&file_name), expected_sha256)?;
        report_installed(&file_name, &installed)?;
        return Ok(());
    };
    let info = asset.info();
    let kind = match info.arch {
        Some(arch) => Kind::Model(Some(arch)),
        None => Kind::Labels,
    };
    let source = url.unwrap_or(info.url);
    let (_, data) = store::unpack(download(source, timeout)?, url_file_name(source), Some(info.file_name))?;
    let installed = store::install(info.file_name, &data, kind, expected_sha256.or(info.sha256))?;
    report_installed(asset.name(), &installed)?;
    let labels_installed = installed.path.with_file_name(store::LABELS_FILE).is_file();
    if url.is_none() && asset != Asset::Labels && !labels_installed {
        let labels = Asset::Labels.info();
        let data = download(labels.url, timeout)?;
        let installed = store::install(labels.file_name, &data, Kind::Labels, labels.sha256)?;
        report_installed(Asset::Labels.name(), &installed)?;
    }
    Ok(())
}

/// The last path segment of a URL, without query or fragment.
#[cfg(all(feature = "fetch", not(target_os = "android")))]
fn url_file_name(url: &str) -> &str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or("download")
}

/// Downloads with a progress bar on a terminal (a line on stdout otherwise).
#[cfg(all(feature = "fetch", not(target_os = "android")))]
fn download(url: &str, timeout: std::time::Duration) -> Result<Vec<u8>> {
    use indicatif::{ProgressBar, ProgressStyle};
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        outln!("downloading {url}")?;
        return weights::fetch::download(url, timeout, |_, _| {});
    }
    let bar = ProgressBar::no_length().with_message(url_file_name(url).to_string());
    let mut styled = false;
    let data = weights::fetch::download(url, timeout, |received, total| {
        if !styled {
            let template = match total {
                Some(total) => {
                    bar.set_length(total);
                    "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
                }
                None => "{msg} {bytes} {bytes_per_sec}",
            };
            bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
            styled = true;
        }
        bar.set_position(received);
    });
    bar.finish_and_clear();
    data
}
