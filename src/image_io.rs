//! Reading images into the planar RGB layout the kernels use, and resizing them.
//!
//! Every image is read the way a viewer shows it: turned upright by its EXIF orientation, and with
//! any transparency composited onto white.

use std::path::Path;

use anyhow::{Context, Result, bail};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, RgbImage, imageops::FilterType};

use crate::input;

/// Largest image file read, in bytes (256 MiB); larger files are refused before reading.
pub const MAX_IMAGE_FILE_BYTES: u64 = 256 << 20;

/// Reads only the header: the image's width and height once turned upright.
pub fn dimensions(path: &Path) -> Result<(u32, u32)> {
    input::check_regular_file(path, "image", MAX_IMAGE_FILE_BYTES)?;
    let mut decoder = ImageReader::open(path)
        .with_context(|| format!("cannot open image {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read image {}", path.display()))?
        .into_decoder()
        .map_err(|e| anyhow::anyhow!("cannot read image {}: {}", path.display(), e))?;
    let (w, h) = decoder.dimensions();
    Ok(if swaps_sides(orientation(&mut decoder)) { (h, w) } else { (w, h) })
}

/// Decodes an image file to 8-bit RGB, upright (EXIF orientation applied), with transparency
/// composited onto white, and scene-linear formats (OpenEXR, Radiance HDR) encoded as sRGB, as a
/// viewer shows them. Truncated files are errors, also for JPEG, whose decoder would
/// otherwise fill the missing part with gray. Only regular files of at most
/// [`MAX_IMAGE_FILE_BYTES`] are read.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = input::read_regular_file(path, "image", MAX_IMAGE_FILE_BYTES)?;
    let reader = ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .with_context(|| format!("cannot read image {}", path.display()))?;
    let linear = matches!(reader.format(), Some(ImageFormat::OpenExr | ImageFormat::Hdr));
    if reader.format() == Some(ImageFormat::Jpeg) && !jpeg_is_complete(&bytes) {
        bail!("cannot decode image {}: the JPEG data is truncated (no end-of-image marker)", path.display());
    }
    let mut decoder = reader.into_decoder().map_err(|e| decode_error(path, None, e))?;
    let size = decoder.dimensions();
    let orientation = orientation(&mut decoder);
    let needed = decoder.total_bytes();
    if image::Limits::default().max_alloc.is_some_and(|max| needed > max) {
        return Err(decode_error(
            path,
            Some(size),
            ImageError::Limits(image::error::LimitErrorKind::InsufficientMemory.into()),
        ));
    }
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| decode_error(path, Some(size), e))?;
    img.apply_orientation(orientation);
    if linear {
        img = srgb_encoded(img);
    }
    Ok(onto_white(img))
}

/// A scene-linear image encoded with the sRGB transfer function (values clamped to [0, 1] first;
/// alpha unchanged).
fn srgb_encoded(img: DynamicImage) -> DynamicImage {
    let mut rgba = img.into_rgba32f();
    for p in rgba.pixels_mut() {
        for c in &mut p.0[..3] {
            let v = if c.is_nan() { 0.0 } else { c.clamp(0.0, 1.0) };
            *c = if v <= 0.003_130_8 { 12.92 * v } else { 1.055 * v.powf(1.0 / 2.4) - 0.055 };
        }
    }
    DynamicImage::ImageRgba32F(rgba)
}

/// The EXIF orientation, or none when the file has no (readable) orientation tag.
fn orientation(decoder: &mut impl ImageDecoder) -> Orientation {
    decoder.orientation().unwrap_or(Orientation::NoTransforms)
}

/// Whether turning the image upright exchanges its width and height.
fn swaps_sides(o: Orientation) -> bool {
    matches!(
        o,
        Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH
    )
}

/// A one-line decoding error; the decoder's memory limit is explained with the image's size.
fn decode_error(path: &Path, size: Option<(u32, u32)>, e: ImageError) -> anyhow::Error {
    match (e, size) {
        (ImageError::Limits(_), Some((w, h))) => {
            let max = image::Limits::default().max_alloc.unwrap_or(u64::MAX);
            anyhow::anyhow!(
                "cannot decode image {}: at {w}x{h} pixels it needs more memory than the decoder's {} MiB limit; \
                 downscale it (e.g. to at most 8000 pixels on its longer side) and try again",
                path.display(),
                max >> 20
            )
        }
        (e, _) => anyhow::anyhow!("cannot decode image {}: {}", path.display(), e),
    }
}

/// RGB, with any transparency composited onto white (as a viewer shows it).
fn onto_white(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.to_rgb8();
    }
    let rgba = img.to_rgba16();
    let (w, h) = rgba.dimensions();
    RgbImage::from_fn(w, h, |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0.map(u64::from);
        let over_white = |c: u64| {
            let c16 = (c * a + 65535 * (65535 - a) + 32767) / 65535;
            ((c16 * 255 + 32767) / 65535) as u8
        };
        image::Rgb([over_white(r), over_white(g), over_white(b)])
    })
}

/// Whether the JPEG's marker segments run, through every scan, up to an end-of-image marker
/// (data after it, as in motion photos, is ignored).
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let mut i = 2; // after start-of-image
    loop {
        // A marker: FF (possibly repeated as fill), then its code.
        while bytes.get(i) == Some(&0xFF) && bytes.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        let (Some(&0xFF), Some(&code)) = (bytes.get(i), bytes.get(i + 1)) else { return false };
        i += 2;
        match code {
            0xD9 => return true,
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let Some(len) = bytes.get(i..i + 2).map(|l| u16::from_be_bytes([l[0], l[1]]) as usize) else { return false };
        i += len;
        if code == 0xDA {
            // Entropy-coded data: FF is escaped as FF 00; restart markers may appear inside.
            loop {
                match (bytes.get(i), bytes.get(i + 1)) {
                    (Some(&0xFF), Some(&next)) if next == 0x00 || (0xD0..=0xD7).contains(&next) => i += 2,
                    (Some(&0xFF), Some(_)) => break,
                    (Some(_), _) => i += 1,
                    (None, _) => return false,
                }
            }
        }
    }
}

/// Resizes to exactly `width`×`height` with a bicubic (Catmull-Rom) filter.
pub fn resize_exact(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    if img.dimensions() == (width, height) {
        return img.clone();
    }
    image::imageops::resize(img, width, height, FilterType::CatmullRom)
}

/// Resizes so the longer side is `max_side`, keeping the aspect ratio.
pub fn resize_max_side(img: &RgbImage, max_side: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let (nw, nh) = scaled_size(w, h, max_side);
    resize_exact(img, nw, nh)
}

/// The size with the longer side equal to `max_side` and the aspect ratio kept.
pub fn scaled_size(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let long = width.max(height) as f64;
    let scale = max_side as f64 / long;
    (((width as f64 * scale).round() as u32).max(1), ((height as f64 * scale).round() as u32).max(1))
}

/// Planar RGB floats in [0, 1]: all red values, then green, then blue.
pub fn to_chw(img: &RgbImage) -> Vec<f32> {
    let (w, h) = img.dimensions();
    let n = w as usize * h as usize;
    let mut out = vec![0.0; 3 * n];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * n + i] = p[c] as f32 / 255.0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::jpeg_is_complete;

    /// SOI, a comment segment, a scan with escaped FF and a restart marker, then EOI.
    const JPEG: &[u8] = &[
        0xFF, 0xD8, 0xFF, 0xFE, 0x00, 0x04, b'h', b'i', 0xFF, 0xDA, 0x00, 0x02, 0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0,
        0x56, 0xFF, 0xD9,
    ];

    #[test]
    fn complete_jpeg_passes_even_with_trailing_data() {
        assert!(jpeg_is_complete(JPEG));
        let mut with_trailer = JPEG.to_vec();
        with_trailer.extend([0x00, 0xFF, 0xDA, 0x12, 0xFF, 0xD8]); // e.g. an appended video
        assert!(jpeg_is_complete(&with_trailer));
    }

    #[test]
    fn truncated_jpeg_is_detected() {
        for cut in 3..JPEG.len() - 1 {
            assert!(!jpeg_is_complete(&JPEG[..cut]), "cut at {cut}");
        }
    }
}
