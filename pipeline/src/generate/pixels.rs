//! Images to the tensors the VAE and UNet take, as diffusers' `VaeImageProcessor` prepares them.

use ::image::{GrayImage, RgbImage};
use kiln_runtime::{DType, Device, Tensor};

use crate::image::MASK_THRESHOLD;

/// A byte to [-1, 1]: `2 * (v / 255) - 1` in f32, as diffusers normalises.
fn unit(v: u8) -> f32 {
    (f32::from(v) / 255.0) * 2.0 - 1.0
}

/// RGB images (one size) to `[N, H, W, 3]` in [-1, 1] (see [`unit`]).
pub(super) fn image_tensor(
    images: &[&RgbImage],
    dtype: DType,
    device: Device,
) -> kiln_runtime::Result<Tensor> {
    let (width, height) = images.first().map_or((0, 0), |i| i.dimensions());
    let values = images.iter().flat_map(|image| image.as_raw().iter()).map(|&v| unit(v)).collect();
    Tensor::from_f32(values, &[images.len(), height as usize, width as usize, 3], dtype, device)
}

/// Whether a mask pixel is repainted (diffusers binarises `v / 255` at 0.5, which is the
/// byte threshold the codecs' outpainting fill uses too).
fn repainted(v: u8) -> bool {
    v >= MASK_THRESHOLD
}

/// The masked image diffusers' inpainting encodes: `image * (mask < 0.5)`, i.e. repainted
/// pixels set to 0 (mid grey), `[N, H, W, 3]`.
pub(super) fn masked_image_tensor(
    pairs: &[(&RgbImage, &GrayImage)],
    dtype: DType,
    device: Device,
) -> kiln_runtime::Result<Tensor> {
    let (width, height) = pairs.first().map_or((0, 0), |(i, _)| i.dimensions());
    let mut values = Vec::with_capacity(pairs.len() * (width * height * 3) as usize);
    for (image, mask) in pairs {
        for (rgb, m) in image.pixels().zip(mask.pixels()) {
            let keep = if repainted(m.0[0]) { 0.0 } else { 1.0 };
            values.extend(rgb.0.iter().map(|&v| unit(v) * keep));
        }
    }
    Tensor::from_f32(values, &[pairs.len(), height as usize, width as usize, 3], dtype, device)
}

/// Binarised masks at the latent size `[N, H / factor, W / factor, 1]`, sampled by nearest
/// neighbour as `torch.nn.functional.interpolate` does (pixel `(factor i, factor j)`).
pub(super) fn latent_mask(
    masks: &[&GrayImage],
    factor: usize,
    dtype: DType,
    device: Device,
) -> kiln_runtime::Result<Tensor> {
    let (width, height) = masks.first().map_or((0, 0), |m| m.dimensions());
    let (h, w) = (height as usize / factor, width as usize / factor);
    let mut values = Vec::with_capacity(masks.len() * h * w);
    for mask in masks {
        for i in 0..h {
            for j in 0..w {
                let v = mask.get_pixel((j * factor) as u32, (i * factor) as u32).0[0];
                values.push(if repainted(v) { 1.0 } else { 0.0 });
            }
        }
    }
    Tensor::from_f32(values, &[masks.len(), h, w, 1], dtype, device)
}
