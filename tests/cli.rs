//! The command-line tool end to end: classification of real photos with both shared models,
//! feature export, and every kind of bad input ending in one clear line and a non-zero exit.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use neural_style::weights::tflite_schema::tflite as fb;

fn gpu_available() -> bool {
    gpu().is_some()
}

fn top1(weights: &Path, image: &str) -> (u64, String) {
    let img = shared().join("images").join(image);
    let out = neural_style(&[
        "classify",
        "--json",
        "--top",
        "3",
        "--weights",
        weights.to_str().unwrap(),
        img.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["image"], img.to_str().unwrap());
    let best = &v["top"][0];
    (best["index"].as_u64().unwrap(), best["label"].as_str().unwrap().to_string())
}

#[test]
fn default_model_classifies_grace_hopper_and_cat() {
    if !gpu_available() {
        return;
    }
    assert_eq!(top1(&default_weights(), "grace_hopper.jpg"), (653, "military uniform".into()));
    assert_eq!(top1(&default_weights(), "cat.png"), (286, "Egyptian cat".into()));
}

#[test]
fn uint8_release_gives_the_same_top1() {
    if !gpu_available() {
        return;
    }
    assert_eq!(top1(&uint8_weights(), "grace_hopper.jpg").0, 653);
    assert_eq!(top1(&uint8_weights(), "cat.png").0, 286);
}

#[test]
fn features_writes_requested_layers_as_nchw_safetensors() {
    if !gpu_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f.safetensors");
    let img = shared().join("images/cat.png");
    let res = neural_style(&[
        "features",
        img.to_str().unwrap(),
        "--layers",
        "stem,block3.expand,block5,head",
        "--size",
        "61",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (w0, h0) = neural_style::image_io::dimensions(&img).unwrap();
    let (w, h) = neural_style::image_io::scaled_size(w0, h0, 61);
    let layers = neural_style::arch::layers(
        neural_style::arch::Arch::Small,
        neural_style::arch::Padding::TfSame,
        w as usize,
        h as usize,
    );
    for name in ["stem", "block3.expand", "block5", "head"] {
        let t = st.tensor(name).unwrap();
        let l = layers.iter().find(|l| l.id.to_string() == name).unwrap();
        assert_eq!(t.shape(), [1, l.channels, l.height, l.width], "{name}");
        let v: Vec<f32> = bytemuck::pod_collect_to_vec(t.data());
        assert!(v.iter().all(|x| x.is_finite()) && v.iter().any(|&x| x != 0.0), "{name} is empty or not finite");
    }
    assert_eq!(st.names().len(), 4);
}

#[test]
fn layers_lists_names_and_shapes_for_odd_sizes() {
    let out = neural_style(&["layers", "--size", "37x23", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layers = v["layers"].as_array().unwrap();
    let find = |n: &str| layers.iter().find(|l| l["name"] == n).unwrap().clone();
    assert_eq!((find("stem")["height"].as_u64(), find("stem")["width"].as_u64()), (Some(12), Some(19)));
    assert_eq!(find("head")["channels"], 576);
    // stem, 11 × (depthwise, project, block), 10 expansions, 9 squeeze-excites, head.
    assert_eq!(layers.len(), 1 + 33 + 10 + 9 + 1);
}

#[test]
fn missing_image_is_a_one_line_error() {
    assert_one_line_error(&neural_style(&["classify", "/nonexistent/photo.jpg"]), "/nonexistent/photo.jpg");
}

#[test]
fn truncated_and_non_image_files_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let jpg = std::fs::read(shared().join("images/grace_hopper.jpg")).unwrap();
    let truncated = dir.path().join("truncated.jpg");
    std::fs::write(&truncated, &jpg[..jpg.len() / 3]).unwrap();
    assert_one_line_error(&neural_style(&["classify", truncated.to_str().unwrap()]), "truncated.jpg");
    let png = std::fs::read(shared().join("images/cat.png")).unwrap();
    let truncated_png = dir.path().join("truncated.png");
    std::fs::write(&truncated_png, &png[..png.len() / 2]).unwrap();
    assert_one_line_error(&neural_style(&["classify", truncated_png.to_str().unwrap()]), "truncated.png");
    let text = dir.path().join("notes.png");
    std::fs::write(&text, "this is not an image").unwrap();
    assert_one_line_error(&neural_style(&["classify", text.to_str().unwrap()]), "notes.png");
}

#[test]
fn truncated_or_foreign_weights_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let img = shared().join("images/cat.png");
    let real = std::fs::read(default_weights()).unwrap();
    let truncated = dir.path().join("truncated.tflite");
    std::fs::write(&truncated, &real[..real.len() / 2]).unwrap();
    let out = neural_style(&["classify", "--weights", truncated.to_str().unwrap(), img.to_str().unwrap()]);
    assert_one_line_error(&out, "corrupt TFLite file");
    let text = dir.path().join("weights.bin");
    std::fs::write(&text, "definitely not weights").unwrap();
    let out = neural_style(&["classify", "--weights", text.to_str().unwrap(), img.to_str().unwrap()]);
    assert_one_line_error(&out, "neither a TFLite model nor a safetensors file");
    let missing = neural_style(&["classify", "--weights", "/nonexistent/w.tflite", img.to_str().unwrap()]);
    assert_one_line_error(&missing, "/nonexistent/w.tflite");
}

/// Appends a float32 tensor (with constant data when given) and returns its index.
fn add_tensor<'a>(
    b: &mut flatbuffers::FlatBufferBuilder<'a>,
    buffers: &mut Vec<flatbuffers::WIPOffset<fb::Buffer<'a>>>,
    tensors: &mut Vec<flatbuffers::WIPOffset<fb::Tensor<'a>>>,
    name: &str,
    shape: &[i32],
    data: Option<Vec<f32>>,
) -> i32 {
    let buffer = match data {
        Some(d) => {
            let bytes: Vec<u8> = d.iter().flat_map(|v| v.to_le_bytes()).collect();
            let data = b.create_vector(&bytes);
            buffers.push(fb::Buffer::create(b, &fb::BufferArgs { data: Some(data) }));
            buffers.len() as u32 - 1
        }
        None => 0,
    };
    let name = b.create_string(name);
    let shape = b.create_vector(shape);
    tensors.push(fb::Tensor::create(
        b,
        &fb::TensorArgs {
            shape: Some(shape),
            type_: fb::TensorType::FLOAT32,
            buffer,
            name: Some(name),
            ..Default::default()
        },
    ));
    tensors.len() as i32 - 1
}

/// A TFLite graph shaped like MobileNetV1's start (32-channel stem) with 11 depthwise convolutions;
/// `bad_bias` makes the first convolution's bias refer to a tensor that does not exist.
fn other_architecture_tflite(bad_bias: bool) -> Vec<u8> {
    let mut b = flatbuffers::FlatBufferBuilder::new();
    let mut buffers = vec![fb::Buffer::create(&mut b, &fb::BufferArgs { data: None })];
    let mut tensors = Vec::new();
    let input = add_tensor(&mut b, &mut buffers, &mut tensors, "input", &[1, 224, 224, 3], None);
    let mut ops = Vec::new();
    let mut x = input;
    for i in 0..12 {
        let depthwise = i > 0;
        let (wname, wshape) = if depthwise {
            (format!("MobilenetV1/Conv2d_{i}_depthwise/weights"), vec![1, 3, 3, 32])
        } else {
            ("MobilenetV1/Conv2d_0/weights".to_string(), vec![32, 3, 3, 3])
        };
        let n: i32 = wshape.iter().product();
        let w = add_tensor(&mut b, &mut buffers, &mut tensors, &wname, &wshape, Some(vec![0.01; n as usize]));
        let bias = add_tensor(&mut b, &mut buffers, &mut tensors, &format!("{wname}/bias"), &[32], Some(vec![0.0; 32]));
        let y = add_tensor(&mut b, &mut buffers, &mut tensors, &format!("out{i}"), &[1, 112, 112, 32], None);
        let bias = if bad_bias && i == 0 { 999 } else { bias };
        let inputs = b.create_vector(&[x, w, bias]);
        let outputs = b.create_vector(&[y]);
        let (options_type, options) = if depthwise {
            let o = fb::DepthwiseConv2DOptions::create(
                &mut b,
                &fb::DepthwiseConv2DOptionsArgs {
                    stride_w: 1,
                    stride_h: 1,
                    depth_multiplier: 1,
                    dilation_w_factor: 1,
                    dilation_h_factor: 1,
                    ..Default::default()
                },
            );
            (fb::BuiltinOptions::DepthwiseConv2DOptions, o.as_union_value())
        } else {
            let o = fb::Conv2DOptions::create(
                &mut b,
                &fb::Conv2DOptionsArgs {
                    stride_w: 2,
                    stride_h: 2,
                    dilation_w_factor: 1,
                    dilation_h_factor: 1,
                    ..Default::default()
                },
            );
            (fb::BuiltinOptions::Conv2DOptions, o.as_union_value())
        };
        ops.push(fb::Operator::create(
            &mut b,
            &fb::OperatorArgs {
                opcode_index: depthwise as u32,
                inputs: Some(inputs),
                outputs: Some(outputs),
                builtin_options_type: options_type,
                builtin_options: Some(options),
            },
        ));
        x = y;
    }
    let codes = [fb::BuiltinOperator::CONV_2D, fb::BuiltinOperator::DEPTHWISE_CONV_2D].map(|c| {
        fb::OperatorCode::create(
            &mut b,
            &fb::OperatorCodeArgs {
                deprecated_builtin_code: c.0 as i8,
                builtin_code: c,
                version: 1,
                custom_code: None,
            },
        )
    });
    let tensors = b.create_vector(&tensors);
    let ops = b.create_vector(&ops);
    let graph_inputs = b.create_vector(&[input]);
    let graph_outputs = b.create_vector(&[x]);
    let graph = fb::SubGraph::create(
        &mut b,
        &fb::SubGraphArgs {
            tensors: Some(tensors),
            inputs: Some(graph_inputs),
            outputs: Some(graph_outputs),
            operators: Some(ops),
            name: None,
        },
    );
    let subgraphs = b.create_vector(&[graph]);
    let codes = b.create_vector(&codes);
    let buffers = b.create_vector(&buffers);
    let model = fb::Model::create(
        &mut b,
        &fb::ModelArgs {
            version: 3,
            operator_codes: Some(codes),
            subgraphs: Some(subgraphs),
            description: None,
            buffers: Some(buffers),
        },
    );
    fb::finish_model_buffer(&mut b, model);
    b.finished_data().to_vec()
}

#[test]
fn tflite_operator_referring_to_a_missing_tensor_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.tflite");
    std::fs::write(&path, other_architecture_tflite(true)).unwrap();
    let out = neural_style(&["layers", "--weights", path.to_str().unwrap()]);
    assert_one_line_error(&out, "operator refers to missing tensor 999");
}

#[test]
fn weights_of_another_architecture_name_the_mismatched_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.tflite");
    std::fs::write(&path, other_architecture_tflite(false)).unwrap();
    let out = neural_style(&["layers", "--weights", path.to_str().unwrap()]);
    assert_one_line_error(
        &out,
        "tensor \"MobilenetV1/Conv2d_0/weights\" (stem weights) has shape [32, 3, 3, 3], expected [16, 3, 3, 3]",
    );

    // The same for a torchvision-style file whose stem is 32 wide.
    let stem = vec![0u8; 32 * 27 * 4];
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![32, 3, 3, 3], &stem).unwrap();
    let st_path = dir.path().join("resnetish.safetensors");
    safetensors::serialize_to_file([("features.0.0.weight", view)], None, &st_path).unwrap();
    let out = neural_style(&["layers", "--weights", st_path.to_str().unwrap()]);
    assert_one_line_error(&out, "tensor \"features.0.0.weight\" has shape [32, 3, 3, 3], expected [16, 3, 3, 3]");
}

#[test]
fn unknown_layer_name_is_a_one_line_error() {
    if !gpu_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("f.safetensors");
    let img = shared().join("images/cat.png");
    let out = neural_style(&[
        "features",
        img.to_str().unwrap(),
        "--layers",
        "stem,block99.expand",
        "--out",
        out_path.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, "unknown layer \"block99.expand\"");
    assert!(!out_path.exists());
    let out = neural_style(&[
        "features",
        img.to_str().unwrap(),
        "--layers",
        "stem,stem",
        "--out",
        out_path.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, "layer \"stem\" is listed twice");
    assert!(!out_path.exists());
}

#[test]
fn image_larger_than_device_buffer_limits_is_a_one_line_error() {
    if !gpu_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge.png");
    std::fs::write(&huge, png_header_only(60_000, 40_000)).unwrap();
    let out_path = dir.path().join("f.safetensors");
    let out =
        neural_style(&["features", huge.to_str().unwrap(), "--layers", "stem", "--out", out_path.to_str().unwrap()]);
    assert_one_line_error(&out, "image 60000x40000 is too large for this device");
    assert!(!out_path.exists());
}

#[test]
fn output_in_a_missing_directory_is_a_one_line_error() {
    if !gpu_available() {
        return;
    }
    let img = shared().join("images/cat.png");
    let out = neural_style(&[
        "features",
        img.to_str().unwrap(),
        "--layers",
        "stem",
        "--size",
        "32",
        "--out",
        "/nonexistent/dir/f.safetensors",
    ]);
    assert_one_line_error(&out, "directory /nonexistent/dir does not exist");
}

#[test]
fn no_adapter_is_a_one_line_error_with_install_hint() {
    let empty = tempfile::tempdir().unwrap();
    let img = shared().join("images/cat.png");
    let out = Command::new(env!("CARGO_BIN_EXE_neural-style"))
        .args(["classify", img.to_str().unwrap()])
        .env("NEURAL_STYLE_WEIGHTS", default_weights())
        .env("VK_ICD_FILENAMES", empty.path().join("none.json"))
        .env("VK_DRIVER_FILES", empty.path().join("none.json"))
        .output()
        .unwrap();
    assert_one_line_error(&out, "mesa-vulkan-drivers");
}

#[test]
fn gpu_tests_fail_instead_of_skipping_when_a_gpu_is_required() {
    // Re-run one GPU test of this binary with no Vulkan driver visible.
    let empty = tempfile::tempdir().unwrap();
    let run = |required: bool| {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "default_model_classifies_grace_hopper_and_cat"])
            .env("VK_ICD_FILENAMES", empty.path().join("none.json"))
            .env("VK_DRIVER_FILES", empty.path().join("none.json"))
            .env_remove("NEURAL_STYLE_REQUIRE_GPU");
        if required {
            cmd.env("NEURAL_STYLE_REQUIRE_GPU", "1");
        }
        cmd.output().unwrap()
    };
    assert!(run(false).status.success(), "without the requirement the test skips");
    let out = run(true);
    assert!(!out.status.success(), "with NEURAL_STYLE_REQUIRE_GPU=1 the test must fail");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("NEURAL_STYLE_REQUIRE_GPU=1 but no GPU")
            || String::from_utf8_lossy(&out.stderr).contains("NEURAL_STYLE_REQUIRE_GPU=1 but no GPU")
    );
}

#[test]
fn readme_shows_the_current_help_output() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let mut args = vec![vec!["--help"]];
    let commands = ["devices", "classify", "features", "stylize", "bench", "view", "layers", "quality"];
    args.extend(commands.map(|c| vec![c, "-h"]));
    for a in args {
        let out = neural_style(&a);
        assert!(out.status.success());
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(
            readme.contains(help.trim_end()),
            "README.md lacks the current output of `neural-style {}`",
            a.join(" ")
        );
    }
}

#[cfg(unix)]
#[test]
fn closed_stdout_ends_the_process_quietly_without_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    if !gpu_available() {
        return;
    }
    // The reader goes away before the tool prints anything (it first opens the device and
    // plans), as with `neural-style bench | head -0`.
    let mut child = Command::new(env!("CARGO_BIN_EXE_neural-style"))
        .args(["bench", "--size", "32", "--iterations", "1", "--warmup", "0"])
        .env("NEURAL_STYLE_WEIGHTS", default_weights())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run neural-style");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "panicked on a closed pipe: {stderr}");
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "status {:?}, stderr: {stderr}", out.status);
}
