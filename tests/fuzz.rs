//! Deterministic mutation fuzzing of everything the tool reads: the real TFLite model (byte flips,
//! truncations, edited flatbuffer fields), a synthetic torchvision safetensors file, and PNG and
//! JPEG images. Every case must either load (and then run the network to finite, plausible values,
//! or be refused by the activation check) or fail with an error; none may panic or hang.
//!
//! The default case counts keep a debug build under a minute; `NEURAL_STYLE_FUZZ_CASES=N` runs N
//! cases per file family instead. Each test prints how many cases it ran and how they ended.

mod common;
#[path = "support/synthetic.rs"]
mod synthetic;
#[path = "support/tflite_edit.rs"]
mod tflite_edit;

use std::ops::Range;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use neural_style::model::Network;
use neural_style::reference::{self, Tensor};
use neural_style::{image_io, weights};

/// Longer than any case takes; a case still running then is a hang.
const HANG_LIMIT: Duration = Duration::from_secs(120);

/// Cases per family: `NEURAL_STYLE_FUZZ_CASES`, or `default`.
fn case_count(default: usize) -> usize {
    match std::env::var("NEURAL_STYLE_FUZZ_CASES") {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("NEURAL_STYLE_FUZZ_CASES={v:?} is not a number")),
        Err(_) => default,
    }
}

/// SplitMix64: a small deterministic generator, one per case (seeded by the case number).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// Runs `f` on its own thread; fails the test, naming the case, when it panics or hangs.
fn guarded<T: Send + 'static>(case: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(HANG_LIMIT) {
        Ok(v) => {
            worker.join().unwrap();
            v
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{case}: still running after {HANG_LIMIT:?} (a hang)"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{case}: panicked (see its message above)"),
    }
}

/// An error as the tool reports it: the whole chain, on the line `main` prints.
fn report(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

/// How the cases of one family ended.
#[derive(Default, Debug)]
struct Tally {
    cases: usize,
    rejected: usize,
    loaded: usize,
    ran: usize,
    activations_refused: usize,
}

/// A small deterministic RGB image in [0, 1].
fn tiny_image(w: usize, h: usize) -> Vec<f32> {
    (0..3 * w * h).map(|i| ((i * 37) % 101) as f32 / 100.0).collect()
}

/// Runs the CPU reference on a 16×16 image; `Err` when an activation is refused as corrupt.
fn reference_forward(net: &Network) -> Result<(), String> {
    let image = Tensor::from_f32(3, 16, 16, &tiny_image(16, 16));
    let activations = reference::forward(net, &image);
    let named = activations.layers.iter().map(|(id, t)| (id.to_string(), t));
    for (layer, t) in named.chain(activations.logits.iter().map(|t| ("logits".to_string(), t))) {
        let values: Vec<f32> = t.data.iter().map(|&v| v as f32).collect();
        weights::check_activations(&layer, &values).map_err(|e| report(&e))?;
    }
    Ok(())
}

/// Loads mutated weights; a loaded network runs through the CPU reference (every `forward_every`
/// loaded case, to keep the suite fast).
fn weights_case(tally: &mut Tally, case: String, bytes: Vec<u8>, forward_every: usize) {
    let run_forward = tally.loaded.is_multiple_of(forward_every);
    let outcome = guarded(&case, move || match weights::load_bytes(&bytes) {
        Err(e) => Err(report(&e)),
        Ok(net) => Ok(run_forward.then(|| reference_forward(&net))),
    });
    tally.cases += 1;
    match outcome {
        Err(msg) => {
            assert!(!msg.trim().is_empty(), "{case}: empty error");
            tally.rejected += 1;
        }
        Ok(forward) => {
            tally.loaded += 1;
            match forward {
                None => {}
                Some(Ok(())) => tally.ran += 1,
                Some(Err(msg)) => {
                    assert!(msg.contains("weights look corrupt"), "{case}: {msg}");
                    tally.ran += 1;
                    tally.activations_refused += 1;
                }
            }
        }
    }
}

/// The complement of `taken` in `0..len`: the bytes outside every range.
fn outside(len: usize, mut taken: Vec<Range<usize>>) -> Vec<Range<usize>> {
    taken.sort_by_key(|r| r.start);
    let mut free = Vec::new();
    let mut at = 0;
    for r in taken {
        if r.start > at {
            free.push(at..r.start);
        }
        at = at.max(r.end);
    }
    if at < len {
        free.push(at..len);
    }
    free
}

/// A random byte position inside `ranges` (uniform over their bytes).
fn position_in(rng: &mut Rng, ranges: &[Range<usize>]) -> usize {
    let total: usize = ranges.iter().map(|r| r.len()).sum();
    let mut k = rng.below(total);
    for r in ranges {
        if k < r.len() {
            return r.start + k;
        }
        k -= r.len();
    }
    unreachable!()
}

fn flip_bytes(rng: &mut Rng, bytes: &mut [u8], ranges: &[Range<usize>], flips: usize) {
    for _ in 0..flips {
        let at = position_in(rng, ranges);
        bytes[at] ^= 1 + rng.below(255) as u8;
    }
}

/// A TFLite mutant: byte flips (mostly in the flatbuffer's tables rather than the weight data),
/// a truncation, an edited scale or shape, or an overwritten table word.
fn tflite_mutant(
    real: &[u8],
    fields: &[tflite_edit::TensorFields],
    structure: &[Range<usize>],
    seed: u64,
) -> (String, Vec<u8>) {
    let mut rng = Rng::new(seed);
    let mut bytes = real.to_vec();
    let whole = std::slice::from_ref(&(0..real.len())).to_vec();
    let label = match seed % 4 {
        0 => {
            let flips = 1 + rng.below(8);
            let ranges: &[Range<usize>] = if rng.below(4) == 0 { &whole } else { structure };
            flip_bytes(&mut rng, &mut bytes, ranges, flips);
            format!("{flips} byte flip(s)")
        }
        1 => {
            let len = if rng.below(3) == 0 { rng.below(4096) } else { rng.below(real.len()) };
            bytes.truncate(len);
            format!("truncated to {len} bytes")
        }
        2 => {
            let constants: Vec<&tflite_edit::TensorFields> = fields.iter().filter(|t| t.data.is_some()).collect();
            let t = constants[rng.below(constants.len())];
            match (&t.scale, rng.below(2)) {
                (Some(scale), 0) => {
                    let at = scale.start + 4 * rng.below(scale.len() / 4);
                    let v =
                        rng.pick(&[f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -1.0, 1e30, 1e-30, f32::MAX, 1e4]);
                    tflite_edit::put_f32(&mut bytes, at, v);
                    format!("scale of {:?} set to {v}", t.name)
                }
                _ => {
                    let dims = t.shape.len() / 4;
                    if dims == 0 {
                        return (format!("scalar {:?} unchanged", t.name), bytes);
                    }
                    let at = t.shape.start + 4 * rng.below(dims);
                    let old = i32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
                    let v = rng.pick(&[-1, 0, 1, i32::MAX, i32::MIN, old + 1, old * 2, old - 1]);
                    tflite_edit::put_i32(&mut bytes, at, v);
                    format!("dimension of {:?} set from {old} to {v}", t.name)
                }
            }
        }
        _ => {
            let at = position_in(&mut rng, structure) & !3;
            let old = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
            let random = rng.next() as u32;
            let v = rng.pick(&[
                0,
                1,
                u32::MAX,
                0x7FFF_FFFF,
                random,
                old.wrapping_add(1),
                old.wrapping_sub(4),
                old.wrapping_mul(2),
            ]);
            bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
            format!("word at {at} set from {old:#x} to {v:#x}")
        }
    };
    (format!("TFLite case {seed} ({label})"), bytes)
}

#[test]
fn mutated_tflite_files_load_cleanly_or_fail_with_an_error() {
    let real = std::fs::read(default_weights()).unwrap();
    let fields = tflite_edit::tensor_fields(&real);
    let structure = outside(real.len(), fields.iter().filter_map(|t| t.data.clone()).collect());
    let cases = case_count(48);
    let mut tally = Tally::default();
    for seed in 0..cases as u64 {
        let (case, bytes) = tflite_mutant(&real, &fields, &structure, seed);
        weights_case(&mut tally, case, bytes, 4);
    }
    eprintln!("TFLite mutants: {tally:?}");
    assert_eq!(tally.cases, cases);
    assert!(tally.rejected > 0 && tally.loaded > 0, "the mutations should both break and spare the file: {tally:?}");
}

/// A synthetic torchvision state dict's bytes, and the byte range of each tensor's data.
fn torchvision_file() -> (Vec<u8>, Vec<(String, Range<usize>)>) {
    let bytes = synthetic::safetensors_bytes(&synthetic::torchvision_small(|_, _| {}));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ranges = st
        .tensors()
        .into_iter()
        .map(|(name, t)| {
            let start = t.data().as_ptr() as usize - bytes.as_ptr() as usize;
            (name, start..start + t.data().len())
        })
        .collect();
    (bytes, ranges)
}

/// A safetensors mutant: flips in the JSON header, truncations, edited header text (digits,
/// dtypes, the length prefix), or edited values (NaN, infinities, negative variances).
fn safetensors_mutant(real: &[u8], tensors: &[(String, Range<usize>)], seed: u64) -> (String, Vec<u8>) {
    let mut rng = Rng::new(seed);
    let mut bytes = real.to_vec();
    let header_len = u64::from_le_bytes(real[..8].try_into().unwrap()) as usize;
    let header = 8..8 + header_len;
    let label = match seed % 5 {
        0 => {
            let flips = 1 + rng.below(4);
            flip_bytes(&mut rng, &mut bytes, std::slice::from_ref(&header), flips);
            format!("{flips} header byte flip(s)")
        }
        1 => {
            let len = if rng.below(2) == 0 { rng.below(8 + header_len) } else { rng.below(real.len()) };
            bytes.truncate(len);
            format!("truncated to {len} bytes")
        }
        2 => {
            let digits: Vec<usize> = header.clone().filter(|&i| real[i].is_ascii_digit()).collect();
            let at = digits[rng.below(digits.len())];
            bytes[at] = b'0' + rng.below(10) as u8;
            format!("header digit at {at} set to {}", bytes[at] as char)
        }
        3 => {
            let edit = rng.below(3);
            if edit == 0 {
                let v = rng.pick(&[0u64, 1, header_len as u64 + 1, header_len as u64 - 1, u64::MAX, real.len() as u64]);
                bytes[..8].copy_from_slice(&v.to_le_bytes());
                format!("header length set to {v}")
            } else {
                let text = String::from_utf8_lossy(&real[header.clone()]).into_owned();
                let starts: Vec<usize> = text.match_indices("\"F32\"").map(|(i, _)| i).collect();
                let at = 8 + starts[rng.below(starts.len())] + 1;
                let dtype = rng.pick(&[b"F16", b"I32", b"U8\"", b"F64", b"BOO"]);
                bytes[at..at + 3].copy_from_slice(dtype);
                format!("a dtype set to {}", String::from_utf8_lossy(dtype))
            }
        }
        _ => {
            let (name, range) = &tensors[rng.below(tensors.len())];
            let at = range.start + 4 * rng.below(range.len() / 4);
            let v = rng.pick(&[f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -1.0, 1e30, -1e-3, 0.0, 1e5]);
            tflite_edit::put_f32(&mut bytes, at, v);
            format!("a value of {name} set to {v}")
        }
    };
    (format!("safetensors case {seed} ({label})"), bytes)
}

#[test]
fn mutated_safetensors_files_load_cleanly_or_fail_with_an_error() {
    let (real, tensors) = torchvision_file();
    let cases = case_count(40);
    let mut tally = Tally::default();
    for seed in 0..cases as u64 {
        let (case, bytes) = safetensors_mutant(&real, &tensors, seed);
        weights_case(&mut tally, case, bytes, 3);
    }
    eprintln!("safetensors mutants: {tally:?}");
    assert_eq!(tally.cases, cases);
    assert!(tally.rejected > 0 && tally.loaded > 0, "the mutations should both break and spare the file: {tally:?}");
}

/// Loads a mutated image through both entry points; a loaded one must be consistent with its
/// header and in range.
fn image_case(tally: &mut Tally, dir: &Path, case: String, bytes: Vec<u8>) {
    let path = dir.join(format!("case-{}", tally.cases));
    std::fs::write(&path, &bytes).unwrap();
    let outcome = guarded(&case, move || {
        let header = image_io::dimensions(&path).map_err(|e| report(&e));
        let image = image_io::load_rgb(&path).map_err(|e| report(&e));
        (header, image.map(|img| (img.dimensions(), image_io::to_chw(&img))))
    });
    tally.cases += 1;
    match outcome {
        (_, Err(msg)) => {
            assert!(!msg.trim().is_empty(), "{case}: empty error");
            tally.rejected += 1;
        }
        (header, Ok((size, chw))) => {
            tally.loaded += 1;
            assert!(size.0 > 0 && size.1 > 0, "{case}: empty image");
            assert_eq!(header, Ok(size), "{case}: header and decoded sizes differ");
            assert!(chw.iter().all(|v| (0.0..=1.0).contains(v)), "{case}: pixels outside [0, 1]");
        }
    }
}

#[test]
fn mutated_images_load_cleanly_or_fail_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let rgb = synthetic::red_left_blue_right(24, 16);
    let mut rgba_png = Vec::new();
    image::DynamicImage::ImageRgba8(image::RgbaImage::from_fn(20, 12, |x, y| {
        image::Rgba([x as u8 * 10, y as u8 * 20, 99, (x * y) as u8])
    }))
    .write_to(&mut std::io::Cursor::new(&mut rgba_png), image::ImageFormat::Png)
    .unwrap();
    let originals = [
        ("JPEG with EXIF orientation", synthetic::encode(&rgb, image::ImageFormat::Jpeg, Some(6))),
        ("PNG", synthetic::encode(&rgb, image::ImageFormat::Png, None)),
        ("PNG with alpha", rgba_png),
    ];
    let cases = case_count(150);
    let mut tally = Tally::default();
    for seed in 0..cases as u64 {
        let mut rng = Rng::new(seed);
        let (kind, original) = &originals[seed as usize % originals.len()];
        let mut bytes = original.clone();
        let label = match rng.below(3) {
            0 => {
                let flips = 1 + rng.below(6);
                flip_bytes(&mut rng, &mut bytes, std::slice::from_ref(&(0..original.len())), flips);
                format!("{flips} byte flip(s)")
            }
            1 => {
                let len = rng.below(original.len());
                bytes.truncate(len);
                format!("truncated to {len} bytes")
            }
            _ => {
                // A word of the first 64 bytes (PNG IHDR's width and height, JPEG's first segments).
                let at = rng.below(60.min(original.len() - 4));
                let v = rng.pick(&[0u32, 1, 0xFFFF, 100_000, u32::MAX, 0x0001_0000]);
                bytes[at..at + 4].copy_from_slice(&v.to_be_bytes());
                format!("word at {at} set to {v}")
            }
        };
        image_case(&mut tally, dir.path(), format!("image case {seed} ({kind}, {label})"), bytes);
    }
    eprintln!("image mutants: {tally:?}");
    assert_eq!(tally.cases, cases);
    assert!(tally.rejected > 0 && tally.loaded > 0, "the mutations should both break and spare the files: {tally:?}");
}

/// A few mutants end to end on the GPU: the loaded ones run the real forward pass with the
/// classifier, and the logits are finite and plausible or refused as corrupt.
#[test]
fn mutated_tflite_files_that_load_run_on_the_gpu_or_are_refused() {
    let Some(ctx) = gpu() else { return };
    let real = std::fs::read(default_weights()).unwrap();
    let fields = tflite_edit::tensor_fields(&real);
    let structure = outside(real.len(), fields.iter().filter_map(|t| t.data.clone()).collect());
    let mut ran = 0;
    for seed in (0..).step_by(4) {
        // Byte flips (seed % 4 == 0) keep most files loadable.
        let (case, bytes) = tflite_mutant(&real, &fields, &structure, 1000 + seed);
        let Ok(net) = weights::load_bytes(&bytes) else { continue };
        let fnet = neural_style::engine::FeatureNet::new(&ctx, net);
        let options = neural_style::engine::PlanOptions { classify: true, ..Default::default() };
        let plan = neural_style::engine::ForwardPlan::new(&ctx, &fnet, 32, 32, &options).unwrap();
        plan.run(&ctx, &tiny_image(32, 32)).unwrap();
        let logits = plan.read_logits(&ctx).unwrap();
        if let Err(e) = weights::check_activations("logits", &logits) {
            assert!(report(&e).contains("weights look corrupt"), "{case}: {e:#}");
        }
        ran += 1;
        if ran == 3 {
            break;
        }
    }
    eprintln!("GPU forward passes of mutated TFLite files: {ran}");
}

/// A few mutants through the command itself: one line on stderr, never a panic.
#[test]
fn mutated_weights_fail_the_command_with_one_line() {
    let real = std::fs::read(default_weights()).unwrap();
    let fields = tflite_edit::tensor_fields(&real);
    let structure = outside(real.len(), fields.iter().filter_map(|t| t.data.clone()).collect());
    let dir = tempfile::tempdir().unwrap();
    for seed in [1u64, 2, 3, 5, 7] {
        let (case, bytes) = tflite_mutant(&real, &fields, &structure, seed);
        let path = dir.path().join("mutant.tflite");
        std::fs::write(&path, bytes).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_neural-style"))
            .args(["layers", "--weights", path.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{case}: {stderr}");
        if !out.status.success() {
            let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
            assert_eq!(lines.len(), 1, "{case}: {stderr}");
            assert!(lines[0].starts_with("error: "), "{case}: {stderr}");
        }
    }
}

/// Where a generated command line's file argument points.
#[derive(Clone, Copy, Debug)]
enum FileKind {
    /// A copy of the real file.
    Copy,
    /// A copy named with a leading space.
    LeadingSpace,
    /// A symbolic link to the real copy.
    Link,
    /// `/dev/zero`.
    Device,
    /// A FIFO nobody writes.
    Fifo,
    /// A directory.
    Directory,
    /// A sparse file of 2 GiB.
    Huge,
    /// 4 KiB of NUL bytes.
    Nuls,
    /// Nothing.
    Missing,
}

const FILE_KINDS: [FileKind; 9] = [
    FileKind::Copy,
    FileKind::LeadingSpace,
    FileKind::Link,
    FileKind::Device,
    FileKind::Fifo,
    FileKind::Directory,
    FileKind::Huge,
    FileKind::Nuls,
    FileKind::Missing,
];

/// Makes a file argument of `kind` in `dir` from the real file `real` (named `name`).
#[cfg(unix)]
fn file_arg(dir: &Path, real: &Path, name: &str, kind: FileKind) -> std::path::PathBuf {
    let copy = dir.join(name);
    if !copy.exists() {
        std::fs::copy(real, &copy).unwrap();
    }
    let path = dir.join(format!("{kind:?}-{name}"));
    match kind {
        FileKind::Copy => return copy,
        FileKind::LeadingSpace => {
            let spaced = dir.join(format!(" {name}"));
            std::fs::copy(real, &spaced).unwrap();
            return spaced;
        }
        FileKind::Link => std::os::unix::fs::symlink(&copy, &path).unwrap(),
        FileKind::Device => return "/dev/zero".into(),
        FileKind::Fifo => {
            let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
            // SAFETY: a valid path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        }
        FileKind::Directory => std::fs::create_dir(&path).unwrap(),
        FileKind::Huge => std::fs::File::create(&path).unwrap().set_len((2 << 30) + 1).unwrap(),
        FileKind::Nuls => std::fs::write(&path, vec![0u8; 4096]).unwrap(),
        FileKind::Missing => {}
    }
    path
}

/// The regular files of `dir` (by name) and their bytes, skipping sparse huge ones.
fn regular_files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()) && e.metadata().is_ok_and(|m| m.len() < 1 << 30))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect()
}

/// Generated command lines: `stylize` with snapshots whose names may fall on its inputs (the
/// content, the style, the weights), weights and labels paths of every kind (devices, FIFOs,
/// directories, huge sparse files, NUL files, leading spaces, links), and a standard error that is
/// a pipe, full or closed. None may panic or hang; a failure is one `error:` line (when stderr is
/// readable); no input file is ever changed, and a successful stylize writes its output.
#[cfg(unix)]
#[test]
fn generated_command_lines_never_panic_hang_or_overwrite_an_input() {
    use std::os::unix::process::CommandExt;
    let gpu = gpu().is_some();
    let cases = case_count(if gpu { 24 } else { 12 });
    let weights_file = default_weights();
    let labels_file = shared().join("weights/imagenet_labels_1001.txt");
    let (content_file, style_file) = (shared().join("images/tubingen.jpg"), shared().join("images/starry_night.jpg"));
    let mut tally = std::collections::BTreeMap::<String, usize>::new();
    for seed in 0..cases as u64 {
        let mut rng = Rng::new(seed);
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let weights_kind = if rng.below(2) == 0 { FileKind::Copy } else { rng.pick(&FILE_KINDS) };
        let weights = file_arg(d, &weights_file, "w.tflite", weights_kind);
        let command = rng.below(if gpu { 4 } else { 2 });
        let mut args: Vec<String> = Vec::new();
        let mut output = None;
        match command {
            0 => {
                let import = if rng.below(2) == 0 { &weights_file } else { &labels_file };
                let name = if import == &labels_file { "labels.txt" } else { "m.tflite" };
                args.extend(["weights".into(), "import".into()]);
                args.push(file_arg(d, import, name, rng.pick(&FILE_KINDS)).to_str().unwrap().into());
            }
            1 => args.extend(["layers".into(), "--weights".into(), weights.to_str().unwrap().into()]),
            2 => {
                let labels = file_arg(d, &labels_file, "labels.txt", rng.pick(&FILE_KINDS));
                let image = file_arg(d, &content_file, "photo.jpg", FileKind::Copy);
                args.extend(["classify", "--weights", weights.to_str().unwrap(), "--labels"].map(String::from));
                args.extend([labels.to_str().unwrap().into(), image.to_str().unwrap().into()]);
            }
            _ => {
                // The output's snapshots (o_1.png, o_s2_1.png …) may be the inputs themselves.
                let content = if rng.below(3) == 0 { "o_1.png" } else { "photo.jpg" };
                let style = if rng.below(3) == 0 { "o_s2_1.png" } else { "painting.jpg" };
                let content = file_arg(d, &content_file, content, FileKind::Copy);
                let style = file_arg(d, &style_file, style, FileKind::Copy);
                let out = match rng.below(4) {
                    0 => d.join("o.png"),
                    1 => d.join(format!("{}.png", "o".repeat(250))),
                    2 => d.join("o_link.png"),
                    _ => d.join(" o.png"),
                };
                if out.ends_with("o_link.png") {
                    std::os::unix::fs::symlink(&weights, &out).unwrap();
                }
                args.extend(
                    ["stylize", "--content", content.to_str().unwrap(), "--style", style.to_str().unwrap()]
                        .map(String::from),
                );
                args.extend(["--output", out.to_str().unwrap(), "--size", "16", "--weights"].map(String::from));
                args.push(weights.to_str().unwrap().into());
                let scales = rng.pick(&["1", "2"]);
                args.extend(["--iterations", "2", "--scales", scales, "--min-size", "8"].map(String::from));
                args.extend(["--save-every".into(), rng.pick(&["1", "2"]).into()]);
                output = Some(out);
            }
        }
        let before = regular_files(d);
        let stderr_kind = rng.below(3);
        let case = format!("case {seed}: {args:?}, stderr {}", ["piped", "full", "closed"][stderr_kind]);
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_neural-style"));
        child.args(&args).env("NEURAL_STYLE_CACHE_DIR", d.join("cache")).stdout(std::process::Stdio::null());
        match stderr_kind {
            0 => {}
            1 => {
                child.stderr(std::fs::File::create("/dev/full").unwrap());
            }
            _ => unsafe {
                // SAFETY: only an async-signal-safe call between fork and exec.
                child.pre_exec(|| {
                    libc::close(2);
                    Ok(())
                });
            },
        }
        let out = guarded(&case, move || child.output().unwrap());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.code().is_some_and(|c| c != 101), "{case}: {:?} {stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{case}: {stderr}");
        if stderr_kind == 0 && !out.status.success() {
            let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
            assert!(lines.len() == 1 && lines[0].starts_with("error: "), "{case}: {stderr}");
        }
        let after = regular_files(d);
        for (name, bytes) in &before {
            let written = output.as_ref().is_some_and(|o| o.file_name().unwrap().to_string_lossy() == *name);
            if !written {
                assert!(after.get(name) == Some(bytes), "{case}: {name} was changed");
            }
        }
        if out.status.success()
            && let Some(o) = &output
        {
            assert!(image::open(o).is_ok(), "{case}: no output");
        }
        *tally.entry(if out.status.success() { "ok".into() } else { "refused".into() }).or_default() += 1;
    }
    eprintln!("generated command lines: {tally:?}");
}
