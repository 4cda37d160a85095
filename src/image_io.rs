//! Reading images into the planar RGB layout the kernels use, and resizing them.

use std::path::Path;

use anyhow::{Context, Result, bail};
use image::{ImageFormat, ImageReader, RgbImage, imageops::FilterType};

/// Reads only the header: the image's width and height.
pub fn dimensions(path: &Path) -> Result<(u32, u32)> {
    ImageReader::open(path)
        .with_context(|| format!("cannot open image {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read image {}", path.display()))?
        .into_dimensions()
        .map_err(|e| anyhow::anyhow!("cannot read image {}: {}", path.display(), e))
}

/// Decodes an image file to 8-bit RGB. Truncated files are errors, also for JPEG, whose decoder
/// would otherwise fill the missing part with gray.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot open image {}", path.display()))?;
    let reader = ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .with_context(|| format!("cannot read image {}", path.display()))?;
    if reader.format() == Some(ImageFormat::Jpeg) && !jpeg_is_complete(&bytes) {
        bail!("cannot decode image {}: the JPEG data is truncated (no end-of-image marker)", path.display());
    }
    let img = reader.decode().map_err(|e| anyhow::anyhow!("cannot decode image {}: {}", path.display(), e))?;
    Ok(img.to_rgb8())
}

/// Whether an end-of-image marker (FF D9) follows the last start-of-scan (FF DA). Entropy-coded
/// data escapes every FF byte, so a marker found there is real.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last_scan = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    let end = bytes.windows(2).rposition(|w| w == [0xFF, 0xD9]);
    matches!((last_scan, end), (Some(s), Some(e)) if e > s)
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
