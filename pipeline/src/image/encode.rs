//! Response images: 8-bit RGB to JPEG or PNG bytes, or to base64 for `image_b64`.

use ::image::codecs::jpeg::JpegEncoder;
use ::image::codecs::png::PngEncoder;
use ::image::{ExtendedColorType, ImageEncoder, RgbImage};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{ImageEncoding, ImageError};
use crate::models::vae::Rgb8Image;

/// JPEG quality of response images: 90, where 4:2:0 JPEG artefacts are hard to see and files
/// stay several times smaller than PNG.
pub const JPEG_QUALITY: u8 = 90;

/// Encodes `image` as JPEG (quality [`JPEG_QUALITY`]) or PNG (the encoder's default compression).
pub fn encode(image: &RgbImage, encoding: ImageEncoding) -> Result<Vec<u8>, ImageError> {
    let (width, height) = image.dimensions();
    let format = match encoding {
        ImageEncoding::Jpeg => "JPEG",
        ImageEncoding::Png => "PNG",
    };
    if width == 0 || height == 0 {
        return Err(ImageError::Encode {
            format,
            reason: format!("the image has no pixels ({width} x {height})"),
        });
    }
    let mut bytes = Vec::new();
    let result = match encoding {
        ImageEncoding::Jpeg => JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY).write_image(
            image.as_raw(),
            width,
            height,
            ExtendedColorType::Rgb8,
        ),
        ImageEncoding::Png => {
            PngEncoder::new(&mut bytes).write_image(image.as_raw(), width, height, ExtendedColorType::Rgb8)
        }
    };
    result.map_err(|error| ImageError::Encode { format, reason: error.to_string() })?;
    Ok(bytes)
}

/// [`encode`], then standard base64 with padding (OctoAI's `image_b64`).
pub fn encode_base64(image: &RgbImage, encoding: ImageEncoding) -> Result<String, ImageError> {
    Ok(STANDARD.encode(encode(image, encoding)?))
}

/// The VAE's 8-bit output as an [`RgbImage`], moving its pixel buffer (no copy). `pixels` must hold
/// `width * height * 3` bytes, as [`to_rgb8`](crate::models::vae::to_rgb8) makes them; a buffer of
/// another length is cut or padded with black, and a size beyond `u32` gives an empty image.
pub fn rgb_from_rgb8(image: Rgb8Image) -> RgbImage {
    let Rgb8Image { width, height, mut pixels } = image;
    let (Ok(w), Ok(h), Some(len)) = (
        u32::try_from(width),
        u32::try_from(height),
        width.checked_mul(height).and_then(|n| n.checked_mul(3)),
    ) else {
        return RgbImage::new(0, 0);
    };
    pixels.resize(len, 0);
    RgbImage::from_raw(w, h, pixels).unwrap_or_default()
}
