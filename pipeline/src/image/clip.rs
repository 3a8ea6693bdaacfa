//! The pixels a CLIP vision tower takes, as transformers' `CLIPImageProcessor` makes them with its
//! PIL backend and the settings diffusers' IP-Adapter loader gives it (`size` = `crop_size` =
//! the encoder's image size, 224): transparency composited onto white (PIL's `alpha_composite`),
//! the shortest edge resized to 224 with PIL's bicubic on 8-bit pixels (the long edge truncated:
//! `int(224 * long / short)`), a centre crop (offsets rounded down), then `x / 255` in f64 taken
//! to f32 and normalised with CLIP's mean and std in f32. Bit for bit on the test images
//! (`fixtures/ip_adapter/clip_*`). (With torchvision installed transformers resizes with
//! torchvision's antialiased bicubic instead, which differs by a level here and there.)

use image::{DynamicImage, Rgb, RgbImage};

use super::prepare::to_rgb;
use super::resample::{Filter, resize};

/// OpenAI CLIP's per-channel mean (transformers' `OPENAI_CLIP_MEAN`).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// OpenAI CLIP's per-channel standard deviation (`OPENAI_CLIP_STD`).
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// The 8-bit `size x size` image the processor normalises.
pub fn clip_crop(image: &DynamicImage, size: u32) -> RgbImage {
    let rgb = on_white(image);
    let (w, h) = rgb.dimensions();
    let (short, long) = (w.min(h), w.max(h));
    let scaled_long =
        if short == 0 { size } else { (f64::from(size) * f64::from(long) / f64::from(short)) as u32 };
    let (nw, nh) = if w <= h { (size, scaled_long) } else { (scaled_long, size) };
    let resized = resize(&rgb, nw, nh, Filter::Bicubic);
    let (top, left) = (nh.saturating_sub(size) / 2, nw.saturating_sub(size) / 2);
    RgbImage::from_fn(size, size, |x, y| {
        let (sx, sy) = (x + left, y + top);
        if sx < nw && sy < nh { *resized.get_pixel(sx, sy) } else { Rgb([0, 0, 0]) }
    })
}

/// [`clip_crop`] normalised: `[size, size, 3]` f32, channels last (the processor's
/// `pixel_values` are the same numbers channels first).
pub fn clip_pixels(image: &DynamicImage, size: u32) -> Vec<f32> {
    normalize(&clip_crop(image, size))
}

/// `(x / 255 - mean) / std` per channel, as the processor computes it.
pub fn normalize(image: &RgbImage) -> Vec<f32> {
    image
        .pixels()
        .flat_map(|p| {
            (0..3).map(move |c| ((f64::from(p[c]) * (1.0 / 255.0)) as f32 - CLIP_MEAN[c]) / CLIP_STD[c])
        })
        .collect()
}

/// The image as RGB, any alpha composited onto opaque white as PIL's `alpha_composite` does.
fn on_white(image: &DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        let (w, h) = (image.width(), image.height());
        return to_rgb(image, w, h);
    }
    let rgba = image.to_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y).0;
        let a = u32::from(p[3]);
        if a == 0 {
            return Rgb([255, 255, 255]);
        }
        // Pillow's AlphaComposite.c with an opaque destination: coef1 = a * 128, coef2 =
        // (255 - a) * 128 (7 fraction bits), rounded through SHIFTFORDIV255.
        let blend = |c: u8| {
            let tmp = u32::from(c) * a * 128 + 255 * (255 - a) * 128 + (0x80 << 7);
            ((((tmp >> 8) + tmp) >> 8) >> 7).min(255) as u8
        };
        Rgb([blend(p[0]), blend(p[1]), blend(p[2])])
    })
}
