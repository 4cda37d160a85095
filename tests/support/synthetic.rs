//! Synthetic inputs built in the test: a torchvision MobileNetV3-Small state dict with small
//! deterministic values, and images encoded in memory.
#![allow(dead_code)]

use std::path::PathBuf;

/// `(name, shape)` of every tensor of a torchvision MobileNetV3-Small state dict.
pub fn torchvision_small_tensors() -> Vec<(String, Vec<usize>)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torchvision_small_tensors.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Values for one tensor: weights of fan-in-scaled size, batch-norm scales and variances near 1,
/// biases and means near 0.
pub fn torchvision_values(name: &str, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let fan_in: usize = shape[1..].iter().product::<usize>().max(1);
    (0..n)
        .map(|i| {
            let r = ((i * 7919 + name.len() * 31) % 1000) as f32 / 1000.0;
            if shape.len() >= 2 {
                (r - 0.5) * 2.0 * (6.0 / fan_in as f32).sqrt()
            } else if name.ends_with(".weight") || name.ends_with(".running_var") {
                0.5 + r
            } else {
                (r - 0.5) * 0.2
            }
        })
        .collect()
}

/// Serializes `(name, shape, values)` tensors as a float32 safetensors file.
pub fn safetensors_bytes(tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, s, v)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), bytemuck::cast_slice(v))
                    .unwrap();
            (n.clone(), view)
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

/// The synthetic state dict's tensors, with `edit` applied to each tensor's values.
pub fn torchvision_small(mut edit: impl FnMut(&str, &mut Vec<f32>)) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    torchvision_small_tensors()
        .into_iter()
        .map(|(name, shape)| {
            let mut values = torchvision_values(&name, &shape);
            edit(&name, &mut values);
            (name, shape, values)
        })
        .collect()
}

/// A `width`×`height` RGB image: left half red, right half blue.
pub fn red_left_blue_right(width: u32, height: u32) -> image::RgbImage {
    image::RgbImage::from_fn(width, height, |x, _| {
        if x < width / 2 { image::Rgb([255, 0, 0]) } else { image::Rgb([0, 0, 255]) }
    })
}

/// An EXIF (TIFF, big-endian) block holding only an orientation tag.
pub fn exif_orientation(orientation: u16) -> Vec<u8> {
    let mut exif = b"MM\0\x2a\0\0\0\x08".to_vec(); // byte order, magic, first IFD at 8
    exif.extend(1u16.to_be_bytes()); // one entry
    exif.extend(0x0112u16.to_be_bytes()); // Orientation
    exif.extend(3u16.to_be_bytes()); // SHORT
    exif.extend(1u32.to_be_bytes()); // one value
    exif.extend(orientation.to_be_bytes());
    exif.extend([0, 0]); // value padding
    exif.extend(0u32.to_be_bytes()); // no next IFD
    exif
}

/// Encodes `img` as JPEG (quality 95) or PNG, with an EXIF orientation when given.
pub fn encode(img: &image::RgbImage, format: image::ImageFormat, orientation: Option<u16>) -> Vec<u8> {
    use image::ImageEncoder;
    let mut bytes = Vec::new();
    let (w, h) = img.dimensions();
    match format {
        image::ImageFormat::Jpeg => {
            let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95);
            if let Some(o) = orientation {
                enc.set_exif_metadata(exif_orientation(o)).unwrap();
            }
            enc.write_image(img.as_raw(), w, h, image::ExtendedColorType::Rgb8).unwrap();
        }
        image::ImageFormat::Png => {
            let mut enc = image::codecs::png::PngEncoder::new(&mut bytes);
            if let Some(o) = orientation {
                enc.set_exif_metadata(exif_orientation(o)).unwrap();
            }
            enc.write_image(img.as_raw(), w, h, image::ExtendedColorType::Rgb8).unwrap();
        }
        other => panic!("no encoder for {other:?} here"),
    }
    bytes
}
