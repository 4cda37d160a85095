//! Hostile and unusual input, one test per kind: EXIF orientation, transparency, corrupt weights
//! (on load and in the activations), a full or closed stdout, devices and oversized files, decoder
//! memory limits, misleading messages, and batches of images with bad ones among them.

mod common;
#[path = "support/synthetic.rs"]
mod synthetic;
#[path = "support/tflite_edit.rs"]
mod tflite_edit;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use neural_style::{image_io, weights};

/// An error's whole chain on one line, as the tool prints it.
fn one_line<T>(r: anyhow::Result<T>) -> String {
    let Err(e) = r else { panic!("expected an error") };
    let msg = format!("{e:#}");
    assert!(!msg.contains('\n'), "not one line: {msg}");
    msg
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

// Group 1: EXIF orientation.

#[test]
fn exif_orientation_is_applied_to_jpeg_and_png_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let img = synthetic::red_left_blue_right(64, 32);
    for (name, format) in [("phone.jpg", image::ImageFormat::Jpeg), ("phone.png", image::ImageFormat::Png)] {
        let path = dir.path().join(name);
        // Orientation 6: the stored picture must be turned 90° clockwise to be upright, so its
        // left (red) half ends up on top.
        std::fs::write(&path, synthetic::encode(&img, format, Some(6))).unwrap();
        assert_eq!(image_io::dimensions(&path).unwrap(), (32, 64), "{name}: header dimensions");
        let loaded = image_io::load_rgb(&path).unwrap();
        assert_eq!(loaded.dimensions(), (32, 64), "{name}");
        let top = loaded.get_pixel(16, 8);
        let bottom = loaded.get_pixel(16, 56);
        assert!(top[0] > 200 && top[2] < 60, "{name}: top should be red, is {top:?}");
        assert!(bottom[2] > 200 && bottom[0] < 60, "{name}: bottom should be blue, is {bottom:?}");
        // Without the tag nothing turns.
        std::fs::write(&path, synthetic::encode(&img, format, None)).unwrap();
        assert_eq!(image_io::load_rgb(&path).unwrap().dimensions(), (64, 32), "{name}");
    }
}

#[test]
fn features_reports_the_upright_size_of_a_rotated_photo() {
    if gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let photo = dir.path().join("portrait.jpg");
    std::fs::write(
        &photo,
        synthetic::encode(&synthetic::red_left_blue_right(48, 32), image::ImageFormat::Jpeg, Some(6)),
    )
    .unwrap();
    let out_path = dir.path().join("f.safetensors");
    let out = neural_style(&["features", path_str(&photo), "--layers", "stem", "--out", path_str(&out_path), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["width"].as_u64(), v["height"].as_u64()), (Some(32), Some(48)));
}

// Group 2: transparency.

#[test]
fn transparent_pixels_are_composited_onto_white() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alpha.png");
    // Left column: fully transparent black; right column: half-transparent red.
    let img =
        image::RgbaImage::from_fn(
            2,
            1,
            |x, _| if x == 0 { image::Rgba([0, 0, 0, 0]) } else { image::Rgba([255, 0, 0, 128]) },
        );
    img.save(&path).unwrap();
    let loaded = image_io::load_rgb(&path).unwrap();
    assert_eq!(loaded.get_pixel(0, 0).0, [255, 255, 255]);
    let half = loaded.get_pixel(1, 0).0;
    assert_eq!(half[0], 255);
    assert!((126..=128).contains(&half[1]) && half[1] == half[2], "half-transparent red over white: {half:?}");
}

// Group 3: corrupt weights.

#[test]
fn non_finite_tflite_scales_are_rejected_naming_the_tensor() {
    let real = std::fs::read(default_weights()).unwrap();
    let fields = tflite_edit::tensor_fields(&real);
    let stem = tflite_edit::stem_weights(&real, &fields);
    // Bias tensors are int32 with a scale.
    let bias = fields
        .iter()
        .find(|t| {
            t.dtype == neural_style::weights::tflite_schema::tflite::TensorType::INT32
                && t.scale.is_some()
                && t.data.is_some()
        })
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (t, value) in [(stem, f32::NAN), (bias, f32::INFINITY), (stem, 1e30)] {
        let mut bytes = real.clone();
        tflite_edit::put_f32(&mut bytes, t.scale.clone().unwrap().start, value);
        let path = dir.path().join("bad.tflite");
        std::fs::write(&path, &bytes).unwrap();
        let msg = one_line(weights::load(&path));
        assert!(msg.contains(&format!("{:?}", t.name)), "{value}: {msg:?} does not name {:?}", t.name);
    }
}

#[test]
fn non_finite_or_negative_variance_torchvision_tensors_are_rejected_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    std::fs::write(&path, synthetic::safetensors_bytes(&synthetic::torchvision_small(|_, _| {}))).unwrap();
    weights::load(&path).expect("the unedited synthetic weights load");
    let cases: [(&str, f32); 3] = [
        ("features.3.block.0.0.weight", f32::NAN),
        ("features.0.1.bias", f32::NEG_INFINITY),
        ("features.2.block.1.1.running_var", -0.5),
    ];
    for (victim, value) in cases {
        let tensors = synthetic::torchvision_small(|name, v| {
            if name == victim {
                v[1] = value;
            }
        });
        std::fs::write(&path, synthetic::safetensors_bytes(&tensors)).unwrap();
        let msg = one_line(weights::load(&path));
        assert!(msg.contains(victim), "{victim} = {value}: {msg:?}");
    }
}

/// The real model with every constant's scale times 10: each value is plausible, but the
/// activations grow tenfold per layer.
fn exploding_weights(dir: &Path) -> std::path::PathBuf {
    let mut bytes = std::fs::read(default_weights()).unwrap();
    for t in tflite_edit::tensor_fields(&bytes.clone()) {
        if let (Some(scale), Some(_)) = (&t.scale, &t.data) {
            for at in scale.clone().step_by(4) {
                let v = tflite_edit::get_f32(&bytes, at);
                tflite_edit::put_f32(&mut bytes, at, v * 10.0);
            }
        }
    }
    let path = dir.join("exploding.tflite");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn exploding_activations_are_reported_as_corrupt_weights() {
    if gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = exploding_weights(dir.path());
    let img = shared().join("images/cat.png");
    let out = neural_style(&["classify", "--weights", path_str(&w), path_str(&img)]);
    assert_one_line_error(&out, "weights look corrupt");
    assert!(out.stdout.is_empty(), "printed scores: {}", String::from_utf8_lossy(&out.stdout));
    let out_path = dir.path().join("f.safetensors");
    let out = neural_style(&[
        "features",
        path_str(&img),
        "--weights",
        path_str(&w),
        "--layers",
        "head",
        "--size",
        "64",
        "--out",
        path_str(&out_path),
    ]);
    assert_one_line_error(&out, "weights look corrupt");
    assert!(!out_path.exists());
}

// Group 11: a full or closed stdout.

#[cfg(unix)]
#[test]
fn full_stdout_is_a_one_line_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let img = shared().join("images/cat.png");
    let out_path = dir.path().join("f.safetensors");
    let mut commands: Vec<Vec<&str>> = vec![vec!["layers"], vec!["layers", "--json"], vec!["devices", "--json"]];
    if gpu().is_some() {
        commands.push(vec!["devices"]);
        commands.push(vec!["classify", path_str(&img)]);
        commands.push(vec!["classify", "--json", path_str(&img)]);
        commands.push(vec![
            "features",
            path_str(&img),
            "--layers",
            "stem",
            "--size",
            "32",
            "--out",
            path_str(&out_path),
        ]);
    }
    for args in commands {
        let out = Command::new(env!("CARGO_BIN_EXE_neural-style"))
            .args(&args)
            .env("NEURAL_STYLE_WEIGHTS", default_weights())
            .stdout(std::fs::File::create("/dev/full").unwrap())
            .output()
            .unwrap();
        assert_ne!(out.status.code(), Some(101), "{args:?} panicked: {}", String::from_utf8_lossy(&out.stderr));
        assert_one_line_error(&out, "cannot write to standard output");
    }
}

#[cfg(unix)]
#[test]
fn closed_stdout_ends_listing_commands_quietly() {
    use std::os::unix::process::ExitStatusExt;
    for args in [vec!["layers"], vec!["devices", "--json"]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_neural-style"))
            .args(&args)
            .env("NEURAL_STYLE_WEIGHTS", default_weights())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert!(out.stderr.is_empty(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() || out.status.signal() == Some(libc::SIGPIPE), "{args:?}: {:?}", out.status);
    }
}

// Group 12: devices and oversized files.

#[cfg(unix)]
#[test]
fn device_files_are_refused_before_reading() {
    let msg = one_line(image_io::load_rgb(Path::new("/dev/zero")));
    assert!(msg.contains("/dev/zero") && msg.contains("not a regular file"), "{msg}");
    let msg = one_line(image_io::dimensions(Path::new("/dev/zero")));
    assert!(msg.contains("not a regular file"), "{msg}");
    let msg = one_line(weights::load(Path::new("/dev/zero")));
    assert!(msg.contains("/dev/zero") && msg.contains("not a regular file"), "{msg}");
    assert_one_line_error(&neural_style(&["layers", "--weights", "/dev/zero"]), "not a regular file");
}

#[test]
fn files_above_the_size_caps_are_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    // Sparse files: no disk space used.
    let big_image = dir.path().join("big.png");
    std::fs::File::create(&big_image).unwrap().set_len(image_io::MAX_IMAGE_FILE_BYTES + 1).unwrap();
    let msg = one_line(image_io::load_rgb(&big_image));
    assert!(msg.contains("big.png") && msg.contains("256 MiB"), "{msg}");
    let big_weights = dir.path().join("big.tflite");
    std::fs::File::create(&big_weights).unwrap().set_len(weights::MAX_WEIGHTS_FILE_BYTES + 1).unwrap();
    let msg = one_line(weights::load(&big_weights));
    assert!(msg.contains("big.tflite") && msg.contains("1024 MiB"), "{msg}");
}

// Group 13: decoder memory limit.

#[test]
fn decoder_memory_limit_names_file_size_limit_and_remedy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.png");
    std::fs::write(&path, png_header_only(20_000, 20_000)).unwrap();
    let msg = one_line(image_io::load_rgb(&path));
    for needle in ["huge.png", "20000x20000", "512 MiB", "downscale"] {
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
    }
}

// Group 14: messages that mislead.

#[test]
fn negative_numbers_are_values_not_flags() {
    let dir = tempfile::tempdir().unwrap();
    let img = shared().join("images/cat.png");
    let out_path = dir.path().join("o.png");
    let base = ["stylize", "--content", path_str(&img), "--style", path_str(&img), "--output", path_str(&out_path)];
    for (flag, value) in
        [("--size", "-5"), ("--style-scale", "-2"), ("--learning-rate", "-1"), ("--lbfgs-history", "-3")]
    {
        let mut args = base.to_vec();
        args.extend([flag, value]);
        if flag == "--learning-rate" {
            // Only Adam uses (and checks) it.
            args.extend(["--optimizer", "adam"]);
        }
        let out = neural_style(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag} {value} was accepted");
        assert!(!stderr.contains("unexpected argument"), "{flag} {value}: {stderr}");
        // The range check answers, naming the option or the value.
        assert!(stderr.contains(value) || stderr.contains(flag), "{flag} {value}: {stderr}");
    }
    let out = neural_style(&["features", path_str(&img), "--layers", "stem", "--out", "x.safetensors", "--size", "-5"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("unexpected argument"));
    let out = neural_style(&["classify", "--top", "-1", path_str(&img)]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("unexpected argument"));
}

#[test]
fn negative_tflite_dimension_is_reported_as_negative() {
    let mut bytes = std::fs::read(default_weights()).unwrap();
    let fields = tflite_edit::tensor_fields(&bytes);
    let stem = tflite_edit::stem_weights(&bytes, &fields);
    tflite_edit::put_i32(&mut bytes, stem.shape.start, -1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dynamic.tflite");
    std::fs::write(&path, &bytes).unwrap();
    let msg = one_line(weights::load(&path));
    assert!(msg.contains("[-1, 3, 3, 3]") && msg.contains(&stem.name), "{msg}");
}

#[cfg(target_os = "linux")]
#[test]
fn backends_missing_on_this_platform_are_named_as_such() {
    for backend in ["metal", "dx12"] {
        let out = neural_style(&["devices", "--backend", backend]);
        assert_one_line_error(&out, &format!("the {backend} backend is not available on this platform"));
        assert!(String::from_utf8_lossy(&out.stderr).contains("vulkan"));
        let img = shared().join("images/cat.png");
        let out = neural_style(&["classify", "--backend", backend, path_str(&img)]);
        assert_one_line_error(&out, "not available on this platform");
    }
}

// Group 15: classify goes through the whole batch.

#[test]
fn classify_reports_every_bad_image_and_still_classifies_the_rest() {
    if gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cat = shared().join("images/cat.png");
    let missing = dir.path().join("missing.png");
    let text = dir.path().join("notes.jpg");
    std::fs::write(&text, "not an image").unwrap();
    let images = [path_str(&cat), path_str(&missing), path_str(&text), path_str(&cat)];
    let mut args = vec!["classify", "--json", "--top", "1"];
    args.extend(images);
    let out = neural_style(&args);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4, "one JSON line per image: {lines:?}");
    for (line, image) in lines.iter().zip(images) {
        assert_eq!(line["image"], image);
    }
    assert_eq!(lines[0]["top"][0]["index"], 286);
    assert_eq!(lines[3]["top"][0]["index"], 286);
    for (i, bad) in [(1, "missing.png"), (2, "notes.jpg")] {
        assert!(lines[i]["error"].as_str().unwrap().contains(bad), "{:?}", lines[i]);
        assert!(stderr.lines().any(|l| l.starts_with("error: ") && l.contains(bad)), "stderr lacks {bad}: {stderr}");
    }
    assert!(stderr.lines().last().unwrap().contains("2 of 4 images"), "{stderr}");
    // Without --json the good ones are printed as text, the bad ones only on stderr.
    let mut args = vec!["classify", "--top", "1"];
    args.extend(images);
    let out = neural_style(&args);
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).matches("Egyptian cat").count(), 2);
}

#[test]
fn duplicate_loss_layers_are_rejected_with_the_features_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.png");
    let run = stylize(&out, &["--style-layers", "stem,block1.expand,stem"]);
    assert_one_line_error(&run, "layer \"stem\" is listed twice in --style-layers");
    let run = stylize(&out, &["--content-layers", "block4.expand,block4.expand"]);
    assert_one_line_error(&run, "layer \"block4.expand\" is listed twice in --content-layers");
    assert!(!out.exists());
}

#[test]
fn huge_blend_weights_are_normalized_in_f64() {
    if gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let second_style = image("woman-with-hat-matisse.jpg");
    let run_with = |weights: &str| {
        let out = dir.path().join(format!("{}.png", weights.replace(',', "_")));
        let args = ["--size", "32", "--iterations", "2", "--style", &second_style, "--style-blend-weights", weights];
        let run = stylize(&out, &args);
        assert!(run.status.success(), "{weights}: {}", String::from_utf8_lossy(&run.stderr));
        std::fs::read(out).unwrap()
    };
    // 3e38 + 3e38 overflows an f32 sum, which made both weights 0 (no style at all).
    assert_eq!(run_with("3e38,3e38"), run_with("1,1"), "huge equal weights blend like equal weights");
    assert_ne!(run_with("1,1"), run_with("1,0"), "the blend matters at this size");
}

/// The names in `dir`.
fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

// Group 4: a loss that is not finite at the starting image.

#[test]
fn a_loss_not_finite_at_the_starting_image_writes_nothing_and_names_the_likely_causes() {
    if gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.png");
    // The classic content loss of the seeded noise (about 1.2 at 48 px) × 3.4e38 overflows f32 at
    // iteration 0.
    let args = ["--iterations", "3", "--init", "noise", "--content-weight", "3.4e38", "--loss-normalization", "none"];
    let run = stylize(&output, &args);
    assert_one_line_error(&run, "loss is NaN or infinite at the starting image");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("nothing was written") && stderr.contains("loss weights"), "{stderr}");
    assert!(!stderr.contains("wrote"), "{stderr}");
    assert_eq!(dir_entries(dir.path()), Vec::<String>::new(), "nothing is written");
}

// Group 5: an overflowing gradient stops the run like a non-finite loss.

#[test]
fn an_overflowing_gradient_stops_adam_instead_of_leaving_the_photo_unchanged() {
    if gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.png");
    // The loss is finite, but the gradient's square overflows: Adam's second moment became
    // infinite and every step was 0, a silent no-op.
    let run = stylize(&output, &["--iterations", "3", "--optimizer", "adam", "--style-weight", "1e37"]);
    assert_one_line_error(&run, "gradient of the loss");
    assert!(String::from_utf8_lossy(&run.stderr).contains("at the starting image"));
    assert_eq!(dir_entries(dir.path()), Vec::<String>::new(), "nothing is written");
}

/// `stylize` of the photo `content` (a path as given, relative to `cwd`) in the style of
/// `style`, at 32 px for a few iterations.
fn stylize_in(cwd: &Path, content: &str, style: &str, output: &str, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_neural-style"))
        .current_dir(cwd)
        .args(["stylize", "--content", content, "--style", style, "--output", output, "--size", "32"])
        .args(["--iterations", "2"])
        .args(extra)
        .env("NEURAL_STYLE_WEIGHTS", default_weights())
        .output()
        .unwrap()
}

// Group 8: the output may not overwrite an input.

#[cfg(unix)]
#[test]
fn an_output_that_is_an_input_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Copies: a failing check must never destroy the shared images.
    std::fs::copy(image("tubingen.jpg"), d.join("photo.jpg")).unwrap();
    std::fs::copy(image("starry_night.jpg"), d.join("painting.jpg")).unwrap();
    std::os::unix::fs::symlink("photo.jpg", d.join("link.jpg")).unwrap();
    std::fs::hard_link(d.join("painting.jpg"), d.join("hard.jpg")).unwrap();
    let before = |name: &str| std::fs::read(d.join(name)).unwrap();
    let (photo, painting) = (before("photo.jpg"), before("painting.jpg"));
    let absolute = d.join("photo.jpg");
    let cases: [(&str, &str, &str, &[&str], &str); 6] = [
        (absolute.to_str().unwrap(), "painting.jpg", absolute.to_str().unwrap(), &[], "--content"),
        ("./photo.jpg", "painting.jpg", "photo.jpg", &[], "--content"),
        ("link.jpg", "painting.jpg", "./photo.jpg", &[], "--content"),
        ("photo.jpg", "painting.jpg", "link.jpg", &[], "--content"),
        ("photo.jpg", "painting.jpg", "hard.jpg", &[], "--style"),
        ("photo.jpg", "painting.jpg", "sub/../painting.jpg", &["--init", "painting.jpg"], "--style"),
    ];
    std::fs::create_dir(d.join("sub")).unwrap();
    for (content, style, output, extra, flag) in cases {
        let run = stylize_in(d, content, style, output, extra);
        assert_one_line_error(&run, "refusing to overwrite an input");
        assert!(String::from_utf8_lossy(&run.stderr).contains(&format!("the {flag} image")), "{output}");
        assert!(run.stdout.is_empty(), "{output}: work was done: {}", String::from_utf8_lossy(&run.stdout));
        assert_eq!((before("photo.jpg"), before("painting.jpg")), (photo.clone(), painting.clone()), "{output}");
    }
    let run = stylize_in(d, "photo.jpg", "painting.jpg", "out.jpg", &["--init", "./link.jpg"]);
    assert_eq!(run.status.success(), gpu().is_some(), "{}", String::from_utf8_lossy(&run.stderr));
    let run = stylize_in(d, "photo.jpg", "painting.jpg", "link.jpg", &["--init", "noise"]);
    assert_one_line_error(&run, "refusing to overwrite an input");
    assert_eq!(before("photo.jpg"), photo);
}

// Group 9: an output that cannot be written is found before the run, not after it.

#[test]
fn unwritable_outputs_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("taken.png")).unwrap();
    std::fs::write(d.join("notes.txt"), "a file").unwrap();
    let mut cases = vec![
        (d.join("taken.png"), "is a directory"),
        (d.join("taken.png/"), "names a directory"),
        (d.join("new.png/"), "names a directory"),
        (d.join("notes.txt/out.png"), "is not a directory"),
        (d.join("missing/out.png"), "does not exist"),
    ];
    // A read-only directory stops everyone but root (the tests may run as root).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let locked = d.join("locked");
        std::fs::create_dir(&locked).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
        if std::fs::write(locked.join("probe"), "x").is_err() {
            cases.push((locked.join("out.png"), "cannot create a file in"));
        }
    }
    for (output, needle) in cases {
        let shown = output.to_str().unwrap().to_string();
        let run = stylize(&output, &["--iterations", "3", "--print-every", "1"]);
        assert_one_line_error(&run, needle);
        assert!(run.stdout.is_empty(), "{shown}: the run started: {}", String::from_utf8_lossy(&run.stdout));
        assert!(String::from_utf8_lossy(&run.stderr).contains(&shown), "{shown}");
    }
    std::fs::create_dir(d.join("taken.safetensors")).unwrap();
    for (out, needle) in
        [(d.join("taken.safetensors"), "is a directory"), (d.join("notes.txt/f.safetensors"), "is not a directory")]
    {
        let run = neural_style(&["features", &image("cat.png"), "--layers", "stem", "--out", out.to_str().unwrap()]);
        assert_one_line_error(&run, needle);
    }
    assert!(!dir_entries(d).iter().any(|n| n.ends_with(".tmp")), "{:?}", dir_entries(d));
}

// Group 11: progress is best effort for stylize; other output errors are one line.

/// The stylize arguments of the shared pair at 48 px into `output`.
fn stylize_args(output: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["stylize", "--content", &image("tubingen.jpg"), "--style", &image("starry_night.jpg")]
        .map(String::from)
        .to_vec();
    args.extend(["--output", output.to_str().unwrap(), "--size", "48"].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Lines of stderr that are not empty.
fn stderr_lines(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr).lines().filter(|l| !l.trim().is_empty()).map(String::from).collect()
}

#[cfg(unix)]
#[test]
fn stylize_writes_its_image_when_the_reader_of_its_progress_goes_away() {
    use std::io::BufRead;
    if gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.png");
    // `neural-style stylize … | head -1`.
    let mut child = Command::new(env!("CARGO_BIN_EXE_neural-style"))
        .args(stylize_args(&output, &["--iterations", "30", "--print-every", "1"]))
        .env("NEURAL_STYLE_WEIGHTS", default_weights())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.starts_with("iteration 0:"), "{first}");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(image::open(&output).is_ok(), "the image is written");
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "the closed pipe is reported once: {lines:?}");
    assert!(lines[0].starts_with("warning: standard output was closed"), "{lines:?}");
}

#[cfg(unix)]
#[test]
fn a_full_stdout_silences_stylize_progress_and_is_a_one_line_error_elsewhere() {
    let full = || Stdio::from(std::fs::File::create("/dev/full").unwrap());
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[String]| {
        Command::new(env!("CARGO_BIN_EXE_neural-style"))
            .args(args)
            .env("NEURAL_STYLE_WEIGHTS", default_weights())
            .env("NEURAL_STYLE_CACHE_DIR", dir.path().join("cache"))
            .stdout(full())
            .output()
            .unwrap()
    };
    let strings = |args: &[&str]| args.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    for args in [strings(&["weights", "path"]), strings(&["weights", "list"])] {
        assert_one_line_error(&run(&args), "cannot write to standard output");
    }
    if gpu().is_none() {
        return;
    }
    let output = dir.path().join("out.png");
    for json in [false, true] {
        let extra: &[&str] = if json { &["--iterations", "3", "--json"] } else { &["--iterations", "3"] };
        let out = run(&stylize_args(&output, extra));
        assert!(out.status.success(), "{:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
        let lines = stderr_lines(&out);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("warning: cannot write to standard output"), "{lines:?}");
        assert!(image::open(&output).is_ok());
    }
    let bench = strings(&["bench", "--size", "32", "--iterations", "1", "--warmup", "0"]);
    for args in [bench.clone(), [bench, strings(&["--json"])].concat()] {
        assert_one_line_error(&run(&args), "cannot write to standard output");
    }
    let quality = strings(&["quality", "--content", &image("tubingen.jpg"), "--style", &image("starry_night.jpg")]);
    assert_one_line_error(&run(&[quality, vec![output.to_str().unwrap().to_string()]].concat()), "cannot write");
}

// Group 14: messages that mislead (continued).

#[test]
fn an_output_name_that_is_only_an_extension_is_called_empty() {
    let dir = tempfile::tempdir().unwrap();
    for name in [".png", ".JPG", ".jpeg"] {
        let run = stylize(&dir.path().join(name), &[]);
        assert_one_line_error(&run, "the file name is empty");
        assert!(!String::from_utf8_lossy(&run.stderr).contains("must end in"), "{name}");
    }
}

#[test]
fn an_lbfgs_history_longer_than_one_binding_runs_on_several_pages() {
    if gpu().is_none() {
        return;
    }
    // 1000 pairs of the 100×75 image take 172 MiB: two pages under a 128 MiB binding (lavapipe,
    // phones), one on devices that bind more. Either way the run goes.
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.png");
    let run = stylize(&output, &["--size", "100", "--lbfgs-history", "1000", "--iterations", "2", "--scales", "1"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(output.exists());
}

#[test]
fn the_learning_rate_is_checked_only_for_adam_which_uses_it() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.png");
    let run = stylize(&output, &["--learning-rate", "0", "--optimizer", "adam"]);
    assert_one_line_error(&run, "--learning-rate must be positive");
    if gpu().is_none() {
        return;
    }
    for optimizer in ["lbfgs", "lbfgs-bounded"] {
        let run =
            stylize(&output, &["--size", "32", "--iterations", "1", "--learning-rate", "0", "--optimizer", optimizer]);
        assert!(run.status.success(), "{optimizer}: {}", String::from_utf8_lossy(&run.stderr));
    }
}

#[cfg(feature = "viewer")]
#[test]
fn window_errors_name_no_source_file_of_the_build_machine() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.png");
    let run = Command::new(env!("CARGO_BIN_EXE_neural-style"))
        .args(stylize_args(&output, &["--viewer"]))
        .env("NEURAL_STYLE_WEIGHTS", default_weights())
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    assert_one_line_error(&run, "cannot open a window: ");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!stderr.contains(".rs:") && !stderr.contains("os error at"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn snapshots_of_a_non_utf8_output_name_keep_that_name() {
    use std::os::unix::ffi::OsStrExt;
    if gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join(std::ffi::OsStr::from_bytes(b"caf\xe9.png"));
    let mut args: Vec<std::ffi::OsString> =
        stylize_args(Path::new("placeholder"), &["--iterations", "2", "--save-every", "1", "--json"])
            .into_iter()
            .map(Into::into)
            .collect();
    let at = args.iter().position(|a| a == "placeholder").unwrap();
    args[at] = output.clone().into_os_string();
    let run = Command::new(env!("CARGO_BIN_EXE_neural-style"))
        .args(&args)
        .env("NEURAL_STYLE_WEIGHTS", default_weights())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let mut names: Vec<Vec<u8>> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().as_bytes().to_vec()).collect();
    names.sort();
    let want: Vec<&[u8]> = vec![b"caf\xe9.png", b"caf\xe9_1.png", b"caf\xe9_2.png"];
    assert_eq!(names, want);
}

// Issue 20, group 2: no input is overwritten, by the output or a snapshot, and a replaced output
// keeps its mode.

#[cfg(unix)]
#[test]
fn snapshots_and_outputs_never_overwrite_an_input_or_the_weights() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(image("tubingen.jpg"), d.join("out_1.png")).unwrap();
    std::fs::copy(image("starry_night.jpg"), d.join("painting.jpg")).unwrap();
    std::fs::copy(image("starry_night.jpg"), d.join("m_s2_1.png")).unwrap();
    std::fs::copy(default_weights(), d.join("w_1.png")).unwrap();
    std::fs::copy(default_weights(), d.join("w.png")).unwrap();
    std::fs::copy(default_weights(), d.join("w.safetensors")).unwrap();
    std::os::unix::fs::symlink("painting.jpg", d.join("link_1.png")).unwrap();
    let snapshot = d.join("m_s2_1.png");
    let weights_1 = d.join("w_1.png");
    let protected = ["out_1.png", "painting.jpg", "m_s2_1.png", "w_1.png", "w.png", "w.safetensors"];
    let before: Vec<Vec<u8>> = protected.iter().map(|n| std::fs::read(d.join(n)).unwrap()).collect();
    let cases: [(&str, &str, &str, Vec<&str>, &str); 5] = [
        ("out_1.png", "painting.jpg", "out.png", vec!["--save-every", "1"], "the --content image"),
        ("out_1.png", "painting.jpg", "link.png", vec!["--save-every", "1"], "the --style image"),
        (
            "out_1.png",
            "m_s2_1.png",
            "m.png",
            vec!["--save-every", "1", "--scales", "2", "--min-size", "16"],
            "the --style image",
        ),
        (
            "out_1.png",
            "painting.jpg",
            "w.png",
            vec!["--save-every", "1", "--weights", weights_1.to_str().unwrap()],
            "the weights file",
        ),
        ("out_1.png", "painting.jpg", "w.png", vec!["--weights", "w.png"], "the weights file"),
    ];
    for (content, style, output, extra, needle) in cases {
        let run = stylize_in(d, content, style, output, &extra);
        assert_one_line_error(&run, needle);
        assert!(String::from_utf8_lossy(&run.stderr).contains("refusing to overwrite an input"), "{output}");
        assert!(run.stdout.is_empty(), "{output}: work was done");
    }
    // $NEURAL_STYLE_WEIGHTS is the weights file too.
    let run = Command::new(env!("CARGO_BIN_EXE_neural-style"))
        .current_dir(d)
        .args(["stylize", "--content", "out_1.png", "--style", "painting.jpg", "--output", "w.png", "--size", "32"])
        .env("NEURAL_STYLE_WEIGHTS", d.join("w.png"))
        .output()
        .unwrap();
    assert_one_line_error(&run, "the weights file");
    // features --out: its image, or the weights file.
    let snapshot_out = snapshot.with_extension("safetensors");
    std::fs::copy(d.join("out_1.png"), &snapshot_out).unwrap();
    for (image_arg, out, weights, needle) in [
        (snapshot_out.to_str().unwrap(), snapshot_out.to_str().unwrap(), d.join("w.png"), "the image"),
        ("out_1.png", "w.safetensors", d.join("w.safetensors"), "the weights file"),
    ] {
        let run = Command::new(env!("CARGO_BIN_EXE_neural-style"))
            .current_dir(d)
            .args(["features", image_arg, "--layers", "stem", "--size", "32", "--out", out])
            .env("NEURAL_STYLE_WEIGHTS", weights)
            .output()
            .unwrap();
        assert_one_line_error(&run, needle);
    }
    let after: Vec<Vec<u8>> = protected.iter().map(|n| std::fs::read(d.join(n)).unwrap()).collect();
    assert!(before == after, "an input was overwritten");
}

#[cfg(unix)]
#[test]
fn an_output_replaced_keeps_its_mode() {
    use std::os::unix::fs::PermissionsExt;
    if gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("private.png");
    std::fs::write(&output, "old").unwrap();
    std::fs::set_permissions(&output, std::fs::Permissions::from_mode(0o600)).unwrap();
    let run = stylize(&output, &["--size", "32", "--iterations", "1"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(image::open(&output).is_ok());
    assert_eq!(std::fs::metadata(&output).unwrap().permissions().mode() & 0o777, 0o600);
    let fresh = dir.path().join("fresh.png");
    assert!(stylize(&fresh, &["--size", "32", "--iterations", "1"]).status.success());
    assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o644, "a new file is 0644");
}

// Issue 20, group 4: a full stderr, a huge fetch timeout and a closed stdout do not panic.

#[cfg(unix)]
#[test]
fn a_full_stderr_loses_messages_but_the_run_writes_its_image() {
    let full = || Stdio::from(std::fs::File::create("/dev/full").unwrap());
    // An error, said nowhere, is still a failure and not a panic.
    let out = Command::new(env!("CARGO_BIN_EXE_neural-style"))
        .args(["layers", "--size", "0x0"])
        .stderr(full())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    if gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.png");
    // Two scales: the plan line goes to stderr; a closed stdout adds the progress warning.
    let args = stylize_args(&output, &["--iterations", "2", "--scales", "2", "--min-size", "16"]);
    let out = Command::new(env!("CARGO_BIN_EXE_neural-style"))
        .args(&args)
        .env("NEURAL_STYLE_WEIGHTS", default_weights())
        .stdout(full())
        .stderr(full())
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    assert!(image::open(&output).is_ok(), "the image is written");
}

#[test]
fn a_fetch_timeout_beyond_a_duration_is_a_one_line_error_naming_the_variable() {
    for value in ["1e308", "99999999999999999999", "inf", "-1", "0"] {
        let out = Command::new(env!("CARGO_BIN_EXE_neural-style"))
            .args(["weights", "fetch", "--url", "http://127.0.0.1:9/w.tflite"])
            .env("NEURAL_STYLE_FETCH_TIMEOUT", value)
            .env("NEURAL_STYLE_CACHE_DIR", std::env::temp_dir().join("neural-style-no-cache"))
            .output()
            .unwrap();
        assert_one_line_error(&out, "NEURAL_STYLE_FETCH_TIMEOUT must be a positive number of seconds");
    }
}

#[cfg(unix)]
#[test]
fn a_closed_stdout_is_an_error_for_listing_commands_as_a_full_one_is() {
    use std::os::unix::process::CommandExt;
    let closed = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_neural-style"));
        command.args(args).env("NEURAL_STYLE_WEIGHTS", default_weights());
        // SAFETY: only an async-signal-safe call between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::close(1);
                Ok(())
            });
        }
        command.output().unwrap()
    };
    for args in [&["layers"][..], &["layers", "--json"], &["devices", "--json"], &["weights", "path"]] {
        assert_one_line_error(&closed(args), "cannot write to standard output");
    }
    // `>/dev/null` is no error.
    let out = Command::new(env!("CARGO_BIN_EXE_neural-style")).args(["layers"]).stdout(Stdio::null()).output().unwrap();
    assert!(out.status.success());
}

// Issue 20, group 5: every name a run writes is checked before any work; a snapshot that fails
// later is a warning.

#[test]
fn output_and_snapshot_names_too_long_or_taken_by_a_directory_fail_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("o_2.png")).unwrap();
    let long = |n: usize| d.join(format!("{}.png", "a".repeat(n)));
    for (output, extra, needle) in [
        (long(300), vec![], "longer than the"),
        (long(250), vec!["--save-every", "1", "--iterations", "12"], "--save-every snapshot: cannot write"),
        (d.join("o.png"), vec!["--save-every", "2", "--iterations", "4"], "it is a directory"),
    ] {
        let run = stylize(&output, &[&["--print-every", "1"][..], &extra].concat());
        assert_one_line_error(&run, needle);
        assert!(run.stdout.is_empty(), "the run started: {}", String::from_utf8_lossy(&run.stdout));
    }
    // 249 + "_2.png" fits: only --iterations 12 reaches 3 digits... of 255, so this one runs.
    if gpu().is_some() {
        let output = long(248);
        let run = stylize(&output, &["--size", "32", "--save-every", "1", "--iterations", "2"]);
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    }
}

#[cfg(unix)]
#[test]
fn a_snapshot_that_cannot_be_written_is_a_warning_and_the_output_is_written() {
    if gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("o.png");
    let mut child = Command::new(env!("CARGO_BIN_EXE_neural-style"))
        .args(stylize_args(&output, &["--iterations", "40", "--save-every", "20", "--print-every", "1"]))
        .env("NEURAL_STYLE_WEIGHTS", default_weights())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the run is under way, the first snapshot's name is taken by a directory.
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut first).unwrap();
    std::fs::create_dir(dir.path().join("o_20.png")).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(image::open(&output).is_ok(), "the output is written");
    assert!(image::open(dir.path().join("o_40.png")).is_ok(), "the later snapshot too");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warning: ") && stderr.contains("o_20.png"), "{stderr}");
}

// Issue 20, group 3: every file read is a regular file, bounded, before a byte is read; errors
// name the user's file.

/// Runs `weights import` into an empty cache in `dir`.
fn import(dir: &Path, file: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_neural-style"))
        .args(["weights", "import", path_str(file)])
        .env("NEURAL_STYLE_CACHE_DIR", dir.join("cache"))
        .output()
        .unwrap()
}

#[cfg(unix)]
#[test]
fn imports_and_labels_of_devices_fifos_and_huge_files_are_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fifo = d.join("pipe.tflite");
    let fifo_c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid path.
    assert_eq!(unsafe { libc::mkfifo(fifo_c.as_ptr(), 0o600) }, 0);
    for file in [Path::new("/dev/zero"), Path::new("/dev/urandom"), &fifo] {
        assert_one_line_error(&import(d, file), "not a regular file");
    }
    // Sparse files: no disk space used.
    for (name, needle) in [("big.tflite", "1024 MiB"), ("big.tgz", "1024 MiB"), ("big.txt", "1 MiB")] {
        let big = d.join(name);
        std::fs::File::create(&big).unwrap().set_len((1 << 31) + 1).unwrap();
        let out = import(d, &big);
        assert_one_line_error(&out, needle);
        assert!(String::from_utf8_lossy(&out.stderr).contains(name), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let nul = d.join("nul.txt");
    std::fs::write(&nul, vec![0u8; 4096]).unwrap();
    assert_one_line_error(&import(d, &nul), "nul.txt is not a text file");
    let few = d.join("z.txt");
    std::fs::write(&few, "cat\ndog\n").unwrap();
    assert_one_line_error(&import(d, &few), "z.txt has 2 labels");
    let labels_fifo = d.join("labels.fifo");
    let c = std::ffi::CString::new(labels_fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for labels in [Path::new("/dev/zero"), &labels_fifo] {
        let msg = one_line(weights::read_labels(labels));
        assert!(msg.contains("not a regular file"), "{msg}");
    }
    let msg = one_line(weights::read_labels(&nul));
    assert!(msg.contains("nul.txt") && msg.contains("not a text file"), "{msg}");
}

// Issue 20, group 6: labels in index:label form go to their indexes; too few labels are an error.

#[test]
fn indexed_labels_go_to_their_indexes_and_too_few_labels_are_an_error() {
    assert_eq!(weights::parse_labels("2:two\n0:zero\n"), ["zero", "", "two"]);
    assert_eq!(weights::parse_labels("zero\none\n"), ["zero", "one"]);
    assert_eq!(weights::parse_labels("a:b\n1:one\n"), ["a:b", "1:one"], "not every line indexed: by line");
    if gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // ImageNet's 1001 labels (`0:background` …), the lines listed backwards.
    let real = std::fs::read_to_string(shared().join("weights/imagenet_labels_1001.txt")).unwrap();
    let reversed: String = real.lines().rev().map(|l| format!("{l}\n")).collect();
    let (forward, backward) = (dir.path().join("forward.txt"), dir.path().join("backward.txt"));
    std::fs::write(&forward, &real).unwrap();
    std::fs::write(&backward, reversed).unwrap();
    let cat = shared().join("images/cat.png");
    let top = |labels: &Path| {
        let out = neural_style(&["classify", "--top", "1", "--labels", path_str(labels), path_str(&cat)]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(top(&forward), top(&backward));
    let few = dir.path().join("few.txt");
    std::fs::write(&few, "cat\ndog\n").unwrap();
    let out = neural_style(&["classify", "--labels", path_str(&few), path_str(&cat)]);
    assert_one_line_error(&out, "has 2 labels for the model's");
}

// Issue 20, group 6: a scene-linear photo is encoded as sRGB, as a viewer shows it.

#[test]
fn an_openexr_photo_is_read_as_srgb_not_as_dark_linear_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gray.exr");
    // Linear 0.2140 is sRGB 0.5 (level 128); read as if it were sRGB it would be level 55.
    let linear = image::Rgb32FImage::from_pixel(8, 4, image::Rgb([0.2140, 0.2140, 0.2140]));
    image::DynamicImage::ImageRgb32F(linear).save(&path).unwrap();
    let img = image_io::load_rgb(&path).unwrap();
    assert_eq!(img.dimensions(), (8, 4));
    let level = img.get_pixel(3, 2)[0];
    assert!((127..=129).contains(&level), "level {level}");
}

// Issue 20, group 7: messages name the flag, the file, the variable.

#[test]
fn option_errors_name_their_flag_and_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("o.png");
    for (extra, message) in [
        (&["--size", "0"][..], "--size must be at least 1"),
        (&["--scales", "200,100"], "--scales must increase"),
        (&["--scales", "0,10"], "--scales must be sizes of at least 1"),
        (&["--size", "200", "--scales", "100,300"], "--scales must not exceed the size (200)"),
        (&["--min-size", "0"], "--min-size must be at least 1"),
        (
            &["--iterations", "1", "--scales", "3", "--min-size", "16"],
            "--iterations (1) must be at least the number of scales (3)",
        ),
        (&["--average", "1"], "--average must be at least 0 and below 1, got 1"),
        (&["--style-scale", "inf"], "--style-scale must be positive and finite"),
    ] {
        assert_one_line_error(&stylize(&output, extra), message);
    }
    let long = format!("{}/o.png", "d".repeat(4200));
    assert_one_line_error(&stylize(Path::new(&long), &[]), "the name is too long");
}

#[test]
fn cache_dirs_that_are_files_archives_with_two_models_and_upper_case_names_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = d.join("cache-file");
    std::fs::write(&file, "x").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_neural-style"))
        .args(["weights", "list"])
        .env("NEURAL_STYLE_CACHE_DIR", &file)
        .output()
        .unwrap();
    assert_one_line_error(&out, "NEURAL_STYLE_CACHE_DIR");
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a directory"));
    let model = std::fs::read(default_weights()).unwrap();
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for name in ["a/one.tflite", "b/two.TFLITE"] {
        let mut header = tar::Header::new_gnu();
        header.set_size(model.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, model.as_slice()).unwrap();
    }
    let archive = d.join("two.tgz");
    std::fs::write(&archive, builder.into_inner().unwrap().finish().unwrap()).unwrap();
    let cache = d.join("cache");
    let out = import(d, &archive);
    assert_one_line_error(&out, "a/one.tflite, b/two.TFLITE");
    let upper = d.join("MODEL.TFLITE");
    std::fs::copy(default_weights(), &upper).unwrap();
    let out = import(d, &upper);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(cache.join("MODEL.TFLITE").is_file());
}
