//! Image codecs for requests and responses: base64 JPEG / PNG / WebP in, JPEG or PNG out.
//!
//! - [`decode_base64`] / [`decode_bytes`]: request images (plain base64 or `data:` URLs) to pixels,
//!   with decoder limits so a hostile image is a typed [`ImageError`], never an out-of-memory abort;
//! - [`to_rgb`] / [`to_mask`]: the pixels diffusers' `VaeImageProcessor` would see (alpha dropped as
//!   PIL's `convert("RGB")` does, PIL's Lanczos resize bit for bit, PIL's `convert("L")` luma for
//!   masks);
//! - [`fill_masked`]: push-pull fill of the masked area for outpainting;
//! - [`full_res`]: `inpaint_full_res`, A1111's crop around the mask and paste back;
//! - [`encode`] / [`encode_base64`]: response images; [`rgb_from_rgb8`] takes the VAE's output.

pub mod canny;
pub mod clip;
mod decode;
mod encode;
mod error;
mod fill;
pub mod full_res;
mod payload;
mod prepare;
mod resample;

pub use decode::{MAX_DECODE_BYTES, MAX_SIDE, decode_base64, decode_bytes};
pub use encode::{JPEG_QUALITY, encode, encode_base64, rgb_from_rgb8};
pub use error::ImageError;
pub use fill::fill_masked;
pub use prepare::{MASK_THRESHOLD, luma, to_mask, to_rgb};

/// The encoding of response images (OctoAI's `image_encoding`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageEncoding {
    /// Baseline JPEG (OctoAI's default).
    #[default]
    Jpeg,
    /// Lossless PNG.
    Png,
}

impl ImageEncoding {
    /// The file extension for saved images.
    pub fn extension(self) -> &'static str {
        match self {
            ImageEncoding::Jpeg => "jpg",
            ImageEncoding::Png => "png",
        }
    }
}
