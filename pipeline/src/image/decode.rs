//! Request image bytes to pixels: JPEG, PNG or WebP, recognised from the bytes, decoded under
//! limits so that a hostile header (a 100000 x 100000 PNG, a 16-bit 8000 x 8000 bomb) is a typed
//! error before anything large is allocated.
//!
//! EXIF orientation is applied, as diffusers' `load_image` does with `ImageOps.exif_transpose`.

use std::io::Cursor;

use ::image::codecs::jpeg::JpegDecoder;
use ::image::codecs::png::PngDecoder;
use ::image::codecs::webp::WebPDecoder;
use ::image::error::LimitErrorKind;
use ::image::metadata::Orientation;
use ::image::{DynamicImage, ImageDecoder, Limits};

use super::ImageError;
use super::payload::base64_bytes;

/// The largest accepted width and height: 8192 pixels, well above SDXL's largest output
/// (1536 on a side) so any reasonable photo passes, and small enough that the decoded image
/// fits [`MAX_DECODE_BYTES`].
pub const MAX_SIDE: u32 = 8192;

/// The decoder memory cap: 384 MiB holds an 8-bit RGBA image at the largest accepted size
/// (256 MiB) plus the decoders' working buffers; 16-bit images that large are refused.
pub const MAX_DECODE_BYTES: u64 = 384 << 20;

/// Decodes a request image given as base64 text (plain, or a `data:image/...;base64,` URL).
pub fn decode_base64(data: &str) -> Result<DynamicImage, ImageError> {
    decode_bytes(&base64_bytes(data)?)
}

/// Decodes JPEG, PNG or WebP bytes; the format comes from the bytes, never from a name.
pub fn decode_bytes(bytes: &[u8]) -> Result<DynamicImage, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    let header_limits = limits(MAX_DECODE_BYTES, None);
    match sniff(bytes)? {
        Format::Png => {
            let completed = png_with_end_chunk(bytes);
            let bytes = completed.as_deref().unwrap_or(bytes);
            let decoder = PngDecoder::with_limits(Cursor::new(bytes), header_limits);
            finish(decoder.map_err(|e| decoder_error(e, "PNG", None))?, "PNG")
        }
        Format::Jpeg => {
            if !jpeg_has_end_marker(bytes) {
                let reason = "the data ends before the JPEG end marker (truncated file)".into();
                return Err(ImageError::Corrupt { format: "JPEG", reason });
            }
            let decoder = JpegDecoder::new(Cursor::new(bytes));
            finish(decoder.map_err(|e| decoder_error(e, "JPEG", None))?, "JPEG")
        }
        Format::WebP => {
            let decoder = WebPDecoder::new(Cursor::new(bytes));
            finish(decoder.map_err(|e| decoder_error(e, "WebP", None))?, "WebP")
        }
    }
}

/// The accepted formats.
enum Format {
    Png,
    Jpeg,
    WebP,
}

/// Recognises the format from its signature; anything else is named (when the image crate knows
/// it) or shown as its first bytes.
fn sniff(bytes: &[u8]) -> Result<Format, ImageError> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(Format::Png);
    }
    if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        return Ok(Format::Jpeg);
    }
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Ok(Format::WebP);
    }
    match ::image::guess_format(bytes) {
        Ok(format) => Err(ImageError::UnsupportedFormat { format: format!("{format:?}").to_uppercase() }),
        Err(_) => {
            let head: Vec<String> = bytes.iter().take(8).map(|byte| format!("{byte:02x}")).collect();
            Err(ImageError::UnknownFormat { head: head.join(" ") })
        }
    }
}

/// The PNG's bytes with an `IEND` chunk appended when every chunk is whole but the last `IEND`
/// is missing (a writer that stopped early, or a file cut exactly there): PIL loads such a file,
/// and the png crate would call it truncated. `None` when nothing is to be added (the file is
/// complete, or cut inside a chunk, which stays an error as it is for PIL).
fn png_with_end_chunk(bytes: &[u8]) -> Option<Vec<u8>> {
    /// Length 0, `IEND`, and the CRC of `IEND`.
    const IEND: [u8; 12] = [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xae, 0x42, 0x60, 0x82];
    let mut at = 8; // after the signature
    while at < bytes.len() {
        let header = bytes.get(at..at + 8)?;
        if &header[4..] == b"IEND" {
            return None;
        }
        let len = u32::from_be_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        at = at.checked_add(12)?.checked_add(len)?;
    }
    (at == bytes.len()).then(|| [bytes, &IEND[..]].concat())
}

/// Whether the JPEG's entropy-coded data is followed by an end-of-image marker. zune-jpeg decodes
/// a truncated file without complaint (grey below the cut); PIL refuses it ("image file is
/// truncated"), and so does kiln. Walks the marker segments to the first start-of-scan (so an EXIF
/// thumbnail's end marker does not count), then looks for `FF D9`, which byte stuffing keeps out
/// of scan data.
fn jpeg_has_end_marker(bytes: &[u8]) -> bool {
    let mut at = 2; // after SOI
    while at + 4 <= bytes.len() {
        match (bytes[at], bytes[at + 1]) {
            (0xff, 0xff) => at += 1, // fill byte
            (0xff, 0xda) => return bytes[at..].windows(2).any(|pair| pair == [0xff, 0xd9]),
            (0xff, _) => at += 2 + usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]])),
            _ => return true, // not a marker: malformed, and the decoder will say how
        }
    }
    false
}

/// Checks the header's size against the limits, then decodes and applies EXIF orientation.
fn finish(mut decoder: impl ImageDecoder, format: &'static str) -> Result<DynamicImage, ImageError> {
    let (width, height) = decoder.dimensions();
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(ImageError::TooLarge { width, height, max: MAX_SIDE });
    }
    if width == 0 || height == 0 {
        return Err(ImageError::Corrupt {
            format,
            reason: format!("the header says {width} x {height} pixels"),
        });
    }
    let needed = decoder.total_bytes();
    if needed > MAX_DECODE_BYTES {
        return Err(ImageError::TooMuchMemory {
            format,
            width,
            height,
            needed_mib: Some(needed.div_ceil(1 << 20)),
            limit_mib: MAX_DECODE_BYTES >> 20,
        });
    }
    let size = Some((width, height));
    decoder
        .set_limits(limits(MAX_DECODE_BYTES - needed, Some(MAX_SIDE)))
        .map_err(|e| decoder_error(e, format, size))?;
    // A damaged EXIF block must not reject a good image: PIL's exif_transpose ignores it too.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| decoder_error(e, format, size))?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// Decoder limits: at most `max_alloc` bytes allocated, at most `max_side` pixels on a side.
fn limits(max_alloc: u64, max_side: Option<u32>) -> Limits {
    let mut limits = Limits::default();
    limits.max_alloc = Some(max_alloc);
    limits.max_image_width = max_side;
    limits.max_image_height = max_side;
    limits
}

/// The image crate's error as ours. `size` is the header's size when known.
fn decoder_error(error: ::image::ImageError, format: &'static str, size: Option<(u32, u32)>) -> ImageError {
    use ::image::ImageError as E;
    let (width, height) = size.unwrap_or((0, 0));
    match error {
        E::Limits(limit) => match limit.kind() {
            LimitErrorKind::DimensionError => ImageError::TooLarge { width, height, max: MAX_SIDE },
            _ => ImageError::TooMuchMemory {
                format,
                width,
                height,
                needed_mib: None,
                limit_mib: MAX_DECODE_BYTES >> 20,
            },
        },
        E::Unsupported(reason) => ImageError::UnsupportedFeature { format, reason: reason.to_string() },
        // Reading from memory fails only at the end of the data: a truncated file.
        E::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            ImageError::Corrupt { format, reason: "the data ends early (truncated file)".into() }
        }
        other => ImageError::Corrupt { format, reason: other.to_string() },
    }
}
