//! Decoded images to 8-bit RGB, as diffusers' `VaeImageProcessor.postprocess` does for PIL
//! output: `(x / 2 + 0.5).clamp(0, 1)`, times 255, rounded half to even (numpy's `round`).

use kiln_runtime::Tensor;

use super::super::{ModelError, Result};

/// One 8-bit RGB image, row-major, `height * width * 3` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rgb8Image {
    /// Pixels per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `[height, width, 3]` bytes, interleaved R, G, B.
    pub pixels: Vec<u8>,
}

/// Converts decoder output `images [N, H, W, 3]` (about [-1, 1], any dtype or device) to one
/// [`Rgb8Image`] per batch entry.
pub fn to_rgb8(images: &Tensor) -> Result<Vec<Rgb8Image>> {
    let [n, height, width, c] = images.dims_n::<4>("to_rgb8")?;
    if c != 3 {
        return Err(ModelError::input(
            "vae",
            format!("to_rgb8 needs [N, H, W, 3] images, got {:?}", images.dims()),
        ));
    }
    let values = images.to_vec_f32()?;
    let per_image = height * width * 3;
    Ok((0..n)
        .map(|i| Rgb8Image {
            width,
            height,
            pixels: values[i * per_image..(i + 1) * per_image].iter().map(|&v| to_byte(v)).collect(),
        })
        .collect())
}

/// One channel value in [-1, 1] to a byte, with diffusers' f32 arithmetic (NaN maps to 0).
fn to_byte(v: f32) -> u8 {
    let unit = (v / 2.0 + 0.5).clamp(0.0, 1.0);
    (unit * 255.0).round_ties_even() as u8
}
