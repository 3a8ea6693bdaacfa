//! Decoded request images to the pixels diffusers' pipelines see.
//!
//! diffusers' `load_image` converts every image with PIL's `convert("RGB")`, which drops an alpha
//! channel without compositing (a transparent pixel keeps its stored colour); kiln does the same.
//! `VaeImageProcessor.preprocess` then resizes to the output size with `resample="lanczos"` (PIL's
//! Lanczos, a = 3) when the size differs; kiln reproduces PIL's fixed-point resampler exactly
//! (`resample.rs`). The mask processor resizes first and then takes PIL's `convert("L")` luma, in
//! that order.
//!
//! 16-bit images keep each sample's high byte, as PIL reads 16-bit RGB PNGs (PIL clips 16-bit
//! grayscale to 255 instead, which whitens it; kiln scales it as colour). CMYK JPEGs use the
//! decoder's conversion. All rare in requests.

use std::borrow::Cow;

use ::image::{DynamicImage, GrayImage, ImageBuffer, Luma, Rgb, RgbImage};

use super::resample::resize_lanczos;

/// Mask pixels at or above this value are repainted: diffusers binarises `value / 255` at 0.5.
pub const MASK_THRESHOLD: u8 = 128;

/// The image as 8-bit RGB (alpha dropped, as PIL's `convert("RGB")`), Lanczos-resized to
/// `width x height` when its size differs.
pub fn to_rgb(image: &DynamicImage, width: u32, height: u32) -> RgbImage {
    let rgb = match image {
        DynamicImage::ImageRgb8(rgb) => Cow::Borrowed(rgb),
        DynamicImage::ImageRgb16(_)
        | DynamicImage::ImageRgba16(_)
        | DynamicImage::ImageLuma16(_)
        | DynamicImage::ImageLumaA16(_) => Cow::Owned(high_bytes(&image.to_rgb16())),
        other => Cow::Owned(other.to_rgb8()),
    };
    if rgb.dimensions() == (width, height) {
        return rgb.into_owned();
    }
    resize_lanczos(rgb.as_ref(), width, height)
}

/// 16-bit RGB to 8-bit as PIL reads 16-bit PNGs: each sample's high byte (the image crate would
/// round instead, a difference of one level).
fn high_bytes(image: &ImageBuffer<Rgb<u16>, Vec<u16>>) -> RgbImage {
    RgbImage::from_fn(image.width(), image.height(), |x, y| {
        Rgb(image.get_pixel(x, y).0.map(|v| (v >> 8) as u8))
    })
}

/// An inpainting mask at `width x height`: RGB, resized as [`to_rgb`], then PIL's `convert("L")`.
/// White (at least [`MASK_THRESHOLD`]) marks the pixels to repaint.
pub fn to_mask(image: &DynamicImage, width: u32, height: u32) -> GrayImage {
    luma(&to_rgb(image, width, height))
}

/// PIL's `convert("L")`: ITU-R 601-2 luma `0.299 R + 0.587 G + 0.114 B` in PIL's 16-bit fixed
/// point (weights 19595, 38470, 7471 summing to 2^16, rounded half up), so gray stays gray.
pub fn luma(image: &RgbImage) -> GrayImage {
    let (width, height) = image.dimensions();
    let mut out = GrayImage::new(width, height);
    for (target, source) in out.pixels_mut().zip(image.pixels()) {
        let [r, g, b] = source.0.map(u32::from);
        let value = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
        *target = Luma([value as u8]);
    }
    out
}
