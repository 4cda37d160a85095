//! The installed weights: a cache directory holding model files, the ImageNet labels and a pointer
//! to the default model; the files `neural-style weights fetch` knows how to download; unpacking,
//! checking and installing a file (atomically, so a failure leaves nothing in the cache).
//!
//! The cache directory is `$NEURAL_STYLE_CACHE_DIR` if set, else the platform's user cache
//! directory (`$XDG_CACHE_HOME` or `~/.cache` on Linux) + `neural-style`.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::arch::Arch;
use crate::{atomic, weights};

/// Environment variable that replaces the cache directory (tests, machines with a shared cache).
pub const CACHE_DIR_ENV: &str = "NEURAL_STYLE_CACHE_DIR";
/// File in the cache directory that names the default model (one file name and a newline).
const DEFAULT_POINTER: &str = "default-weights";
/// The name the ImageNet labels are installed under; `classify` finds it next to the weights.
pub const LABELS_FILE: &str = "imagenet_labels.txt";
/// The largest download or archive member accepted (a guard against a runaway server).
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// A file `neural-style weights fetch` knows where to get.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Asset {
    /// MobileNetV3-Small 1.0/224, float32 TFLite (Google's official release): the default model.
    SmallFloat,
    /// MobileNetV3-Large 1.0/224, float32 TFLite (Google's official release).
    LargeFloat,
    /// MobileNetV3-Small 1.0/224, uint8 TFLite (Google's quantization-aware trained release).
    SmallUint8,
    /// The 1001 ImageNet class names (index 0 = background) for `classify`.
    Labels,
}

/// Where an [`Asset`] comes from and what it must be.
#[derive(Clone, Copy, Debug)]
pub struct AssetInfo {
    /// Download address.
    pub url: &'static str,
    /// The file name it is installed under (for an archive: the model file inside it).
    pub file_name: &'static str,
    /// SHA-256 of the installed file, where known; without one the file is checked by loading it.
    pub sha256: Option<&'static str>,
    /// The architecture of a model; `None` for the labels.
    pub arch: Option<Arch>,
    /// One line about it.
    pub description: &'static str,
}

impl Asset {
    /// Every known asset, in the order `weights list` prints them.
    pub const ALL: [Asset; 4] = [Asset::SmallFloat, Asset::LargeFloat, Asset::SmallUint8, Asset::Labels];
    /// The model `weights fetch` installs without a name.
    pub const DEFAULT_MODEL: Asset = Asset::SmallFloat;

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Asset::SmallFloat => "small-float",
            Asset::LargeFloat => "large-float",
            Asset::SmallUint8 => "small-uint8",
            Asset::Labels => "labels",
        }
    }

    /// Where it comes from and what it must be.
    pub fn info(self) -> AssetInfo {
        match self {
            Asset::SmallFloat => AssetInfo {
                url: "https://storage.googleapis.com/mobilenet_v3/checkpoints/v3-small_224_1.0_float.tgz",
                file_name: "v3-small_224_1.0_float.tflite",
                sha256: None,
                arch: Some(Arch::Small),
                description: "MobileNetV3-Small 1.0/224, float32 TFLite (Google, Apache-2.0)",
            },
            Asset::LargeFloat => AssetInfo {
                url: "https://storage.googleapis.com/mobilenet_v3/checkpoints/v3-large_224_1.0_float.tgz",
                file_name: "v3-large_224_1.0_float.tflite",
                sha256: None,
                arch: Some(Arch::Large),
                description: "MobileNetV3-Large 1.0/224, float32 TFLite (Google, Apache-2.0)",
            },
            Asset::SmallUint8 => AssetInfo {
                url: "https://storage.googleapis.com/mobilenet_v3/checkpoints/v3-small_224_1.0_uint8.tgz",
                file_name: "v3-small_224_1.0_uint8.tflite",
                // The checksum the project's test data lists for this release's .tflite.
                sha256: Some("da341cf06fa50127a72dcbeb140ee5ee98013630aa044260a4c3d45c43fc89ce"),
                arch: Some(Arch::Small),
                description: "MobileNetV3-Small 1.0/224, uint8 TFLite (Google, Apache-2.0)",
            },
            Asset::Labels => AssetInfo {
                url: "https://storage.googleapis.com/download.tensorflow.org/data/ImageNetLabels.txt",
                file_name: LABELS_FILE,
                sha256: None,
                arch: None,
                description: "ImageNet class names, 1001 lines (index 0 = background)",
            },
        }
    }
}

/// What a file to install is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A model, of this architecture if one is required.
    Model(Option<Arch>),
    /// An ImageNet labels file.
    Labels,
}

impl Kind {
    /// The kind of a file by its name: `.txt` is labels, anything else a model.
    pub fn of_file_name(name: &str) -> Kind {
        if has_extension(name, "txt") { Kind::Labels } else { Kind::Model(None) }
    }
}

/// A file just installed.
#[derive(Clone, Debug)]
pub struct Installed {
    /// Where it now is.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its SHA-256, lowercase hex.
    pub sha256: String,
    /// Whether that matched a known or given checksum (else it was only checked by loading it).
    pub checksum_verified: bool,
    /// The architecture of a model (`None` for labels).
    pub arch: Option<Arch>,
}

/// The cache directory (which may not exist yet).
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(CACHE_DIR_ENV).filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        if dir.exists() && !dir.is_dir() {
            bail!("{CACHE_DIR_ENV} {} is not a directory", dir.display());
        }
        return Ok(dir);
    }
    dirs::cache_dir()
        .map(|d| d.join("neural-style"))
        .with_context(|| format!("cannot find the user's cache directory: set {CACHE_DIR_ENV}"))
}

/// The default model installed by `weights fetch` or `weights import`, if there is one.
pub fn installed_default() -> Option<PathBuf> {
    let dir = cache_dir().ok()?;
    let name = std::fs::read_to_string(dir.join(DEFAULT_POINTER)).ok()?;
    // Only the line end goes: a name may start or end with spaces.
    let name = name.strip_suffix('\n').unwrap_or(&name);
    let name = name.strip_suffix('\r').unwrap_or(name);
    let path = dir.join(plain_file_name(name).ok()?);
    path.is_file().then_some(path)
}

/// The files installed in the cache directory (not the default pointer), with their sizes, sorted.
pub fn installed_files() -> Result<Vec<(PathBuf, u64)>> {
    let dir = cache_dir()?;
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let meta = entry.metadata().with_context(|| format!("cannot read {}", entry.path().display()))?;
        if meta.is_file() && !name.starts_with('.') && name != DEFAULT_POINTER {
            files.push((entry.path(), meta.len()));
        }
    }
    files.sort();
    Ok(files)
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a checksum given on the command line: 64 hex digits (returned lowercase).
pub fn parse_sha256(text: &str) -> Result<String> {
    let text = text.trim();
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("a SHA-256 checksum is 64 hexadecimal digits, got {text:?}");
    }
    Ok(text.to_ascii_lowercase())
}

/// The file to install from a download or a local file: a `.tgz` archive is unpacked and its one
/// model file (`.tflite` or `.safetensors`; `preferred` picks among several) taken; anything else
/// is the file itself, named `source_name`. Returns the file name and its bytes.
pub fn unpack(bytes: Vec<u8>, source_name: &str, preferred: Option<&str>) -> Result<(String, Vec<u8>)> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok((source_name.to_string(), bytes));
    }
    let corrupt = || format!("corrupt archive {source_name}");
    // The whole stream is decompressed first so its CRC is checked, not just the members read.
    let mut tar_bytes = Vec::new();
    flate2::read::GzDecoder::new(bytes.as_slice())
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut tar_bytes)
        .with_context(corrupt)?;
    if tar_bytes.len() as u64 > MAX_FILE_BYTES {
        bail!("archive {source_name} unpacks to more than {} MiB", MAX_FILE_BYTES >> 20);
    }
    let mut models = Vec::new();
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    for entry in archive.entries().with_context(corrupt)? {
        let mut entry = entry.with_context(corrupt)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().with_context(corrupt)?.into_owned();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
        if is_model_file(&name) {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).with_context(corrupt)?;
            models.push((name, path.display().to_string(), data));
        }
    }
    if models.len() > 1
        && let Some(i) = models.iter().position(|(n, _, _)| Some(n.as_str()) == preferred)
    {
        let (name, _, data) = models.swap_remove(i);
        return Ok((name, data));
    }
    match models.len() {
        0 => bail!("archive {source_name} holds no .tflite or .safetensors file"),
        1 => {
            let (name, _, data) = models.remove(0);
            Ok((name, data))
        }
        _ => {
            let paths: Vec<_> = models.iter().map(|(_, p, _)| p.as_str()).collect();
            bail!("archive {source_name} holds several model files ({}); unpack it and import one", paths.join(", "))
        }
    }
}

/// Whether `name` ends in `.ext`, in any case (`MODEL.TFLITE`).
fn has_extension(name: &str, ext: &str) -> bool {
    Path::new(name).extension().is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// Whether `name` is a model file's: `.tflite` or `.safetensors`, in any case.
fn is_model_file(name: &str) -> bool {
    has_extension(name, "tflite") || has_extension(name, "safetensors")
}

/// Checks a file and installs it into the cache as `file_name` (labels as [`LABELS_FILE`]): the checksum when one is expected,
/// then by loading it (a model against the architecture tables, labels by counting them). A model
/// also becomes the default. On any error nothing is written.
pub fn install(file_name: &str, bytes: &[u8], kind: Kind, expected_sha256: Option<&str>) -> Result<Installed> {
    // Messages name the file as the user gave it; labels are installed under LABELS_FILE.
    let source_name = file_name;
    let file_name = plain_file_name(if kind == Kind::Labels { LABELS_FILE } else { file_name })?;
    let sha256 = sha256_hex(bytes);
    if let Some(expected) = expected_sha256
        && !expected.eq_ignore_ascii_case(&sha256)
    {
        bail!("checksum mismatch for {file_name}: expected sha256 {expected}, got {sha256}; nothing was installed");
    }
    let arch = match kind {
        Kind::Model(expected_arch) => {
            if !is_model_file(file_name) {
                bail!("{file_name} is not a .tflite or .safetensors file; nothing was installed");
            }
            let net = weights::load_bytes(bytes)
                .with_context(|| format!("{file_name} is not a usable model; nothing was installed"))?;
            if let Some(arch) = expected_arch
                && net.arch != arch
            {
                bail!("{file_name} is a {}, expected a {}; nothing was installed", net.arch.name(), arch.name());
            }
            Some(net.arch)
        }
        Kind::Labels => {
            let text = weights::labels_text(bytes)
                .map_err(|_| anyhow::anyhow!("{source_name} is not a text file; nothing was installed"))?;
            let count = weights::parse_labels(text).len();
            if count != 1000 && count != 1001 {
                bail!("{source_name} has {count} labels, expected ImageNet's 1000 or 1001; nothing was installed");
            }
            None
        }
    };
    let dir = cache_dir()?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(file_name);
    atomic::write(&path, bytes)?;
    if arch.is_some() {
        atomic::write(&dir.join(DEFAULT_POINTER), format!("{file_name}\n").as_bytes())?;
    }
    Ok(Installed { path, bytes: bytes.len() as u64, sha256, checksum_verified: expected_sha256.is_some(), arch })
}

/// A bare file name (no directories, not hidden), as files in the cache are named.
fn plain_file_name(name: &str) -> Result<&str> {
    let is_plain = Path::new(name).file_name().and_then(|n| n.to_str()) == Some(name);
    if !is_plain || name.starts_with('.') || name == DEFAULT_POINTER {
        bail!("cannot install a file named {name:?}");
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tgz(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        for (name, data) in members {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, *data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn unpack_takes_the_one_model_file_from_an_archive() {
        let archive = tgz(&[("release/model.pb", b"graph"), ("release/model.tflite", b"model bytes")]);
        let (name, bytes) = unpack(archive, "release.tgz", None).unwrap();
        assert_eq!((name.as_str(), bytes.as_slice()), ("model.tflite", b"model bytes".as_slice()));
    }

    #[test]
    fn unpack_passes_a_plain_file_through() {
        let (name, bytes) = unpack(b"TFL3 not gzip".to_vec(), "x.tflite", None).unwrap();
        assert_eq!((name.as_str(), bytes.as_slice()), ("x.tflite", b"TFL3 not gzip".as_slice()));
    }

    #[test]
    fn unpack_picks_the_preferred_member_among_several_and_refuses_to_guess_otherwise() {
        let archive = tgz(&[("a.tflite", b"a"), ("b.tflite", b"b")]);
        assert_eq!(unpack(archive.clone(), "x.tgz", Some("b.tflite")).unwrap().1, b"b");
        let err = unpack(archive, "x.tgz", None).unwrap_err().to_string();
        assert!(err.contains("several model files (a.tflite, b.tflite)"), "{err}");
    }

    #[test]
    fn unpack_rejects_a_corrupt_or_truncated_archive() {
        let archive = tgz(&[("m.tflite", &[7u8; 5000])]);
        let truncated = archive[..archive.len() / 2].to_vec();
        assert!(format!("{:#}", unpack(truncated, "x.tgz", None).unwrap_err()).contains("corrupt archive x.tgz"));
        let mut flipped = archive.clone();
        let last = flipped.len() - 12;
        flipped[last] ^= 0xff; // inside the deflate stream or its CRC
        assert!(unpack(flipped, "x.tgz", None).is_err());
        let empty = tgz(&[("README", b"no model")]);
        assert!(unpack(empty, "x.tgz", None).unwrap_err().to_string().contains("no .tflite or .safetensors"));
    }

    #[test]
    fn checksums_are_64_hex_digits() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "the FIPS 180-2 test vector"
        );
        assert_eq!(parse_sha256(&"AB".repeat(32)).unwrap(), "ab".repeat(32));
        assert!(parse_sha256("abc").is_err());
        assert!(parse_sha256(&"g".repeat(64)).is_err());
    }

    #[test]
    fn cache_file_names_are_bare_names() {
        assert!(plain_file_name("model.tflite").is_ok());
        for bad in ["../model.tflite", "/tmp/model.tflite", ".hidden.tflite", "", DEFAULT_POINTER] {
            assert!(plain_file_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_known_asset_is_a_https_download_with_a_bare_file_name() {
        for asset in Asset::ALL {
            let info = asset.info();
            assert!(info.url.starts_with("https://"), "{}", info.url);
            assert!(plain_file_name(info.file_name).is_ok());
            assert_eq!(info.arch.is_none(), asset == Asset::Labels);
            assert_eq!(clap::ValueEnum::to_possible_value(&asset).unwrap().get_name(), asset.name());
            if let Some(sha) = info.sha256 {
                assert_eq!(parse_sha256(sha).unwrap(), sha);
            }
        }
    }
}
