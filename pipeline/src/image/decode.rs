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
use ::image::{ColorType, DynamicImage, ImageDecoder, Limits};

use super::ImageError;
use super::payload::base64_bytes;

/// The largest accepted width and height: 8192 pixels, well above SDXL's largest output
/// (1536 on a side) so any reasonable photo passes, and small enough that the decoded image
/// fits [`MAX_DECODE_BYTES`].
pub const MAX_SIDE: u32 = 8192;

/// The memory one request image may take while it is decoded and prepared: the decoded pixels,
/// the WebP decoder's second buffer, and the 8-bit RGB copy [`super::to_rgb`] makes of any other
/// layout. An 8-bit RGB image at the largest accepted size (192 MiB) fits; an 8-bit RGBA PNG fits
/// up to about 57 Mpixels (8192 x 7000), a WebP up to about 36 to 57 Mpixels. (A 2.6 KB lossless WebP of
/// 8192 x 8192 pixels used to take 473 MB.)
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
            let cleaned = png_for_decoding(bytes);
            let bytes = cleaned.as_deref().unwrap_or(bytes);
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

/// PNG chunks kiln never reads whose contents are zlib-compressed: an ICC profile (`iCCP`; kiln,
/// like diffusers with PIL, does no colour management) and compressed text (`zTXt`, `iTXt`). The
/// decoder would inflate them, so a few kilobytes could become hundreds of megabytes; they are
/// dropped before decoding instead.
const UNUSED_COMPRESSED_CHUNKS: [&[u8; 4]; 3] = [b"iCCP", b"zTXt", b"iTXt"];

/// The PNG's bytes as kiln decodes them, when they differ from `bytes`: without
/// [`UNUSED_COMPRESSED_CHUNKS`], and with an `IEND` chunk appended when every chunk is whole but
/// the last `IEND` is missing (a writer that stopped early, or a file cut exactly there: PIL
/// loads such a file, the png crate would call it truncated). A file cut inside a chunk is left
/// for the decoder to call truncated, as PIL does.
fn png_for_decoding(bytes: &[u8]) -> Option<Vec<u8>> {
    /// Length 0, `IEND`, and the CRC of `IEND`.
    const IEND: [u8; 12] = [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xae, 0x42, 0x60, 0x82];
    // The signature, then each chunk kept.
    let mut kept: Vec<std::ops::Range<usize>> = Vec::new();
    kept.push(0..8);
    let (mut at, mut ended, mut dropped) = (8, false, false);
    while !ended && at < bytes.len() {
        let Some(header) = bytes.get(at..at + 8) else { break }; // cut inside a chunk header
        let len = u32::from_be_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let end = (at + 12).saturating_add(len);
        let kind = &header[4..];
        ended = kind == b"IEND";
        if UNUSED_COMPRESSED_CHUNKS.iter().any(|unused| kind == *unused) {
            dropped = true;
        } else {
            kept.push(at..end.min(bytes.len()));
        }
        at = end;
    }
    if at < bytes.len() {
        kept.push(at..bytes.len()); // after IEND, or a partial chunk header: as it is
    }
    let add_end = !ended && at == bytes.len();
    if !dropped && !add_end {
        return None;
    }
    let mut out: Vec<u8> = kept.into_iter().flat_map(|range| &bytes[range]).copied().collect();
    if add_end {
        out.extend_from_slice(&IEND);
    }
    Some(out)
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
    let working = needed + working_copies(format, decoder.color_type(), width, height);
    if working > MAX_DECODE_BYTES {
        return Err(ImageError::TooMuchMemory {
            format,
            width,
            height,
            needed_mib: Some(working.div_ceil(1 << 20)),
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

/// Bytes held beside the decoded pixels while the image is decoded and prepared
/// ([`MAX_DECODE_BYTES`]).
fn working_copies(format: &str, color: ColorType, width: u32, height: u32) -> u64 {
    let pixels = u64::from(width) * u64::from(height);
    // image-webp decodes into 4-byte pixels of its own (measured: 8192 x 8192 took 473 MB), then
    // copies out.
    let webp = if format == "WebP" { pixels * 4 } else { 0 };
    let rgb = match color {
        ColorType::Rgb8 => 0,
        // 16-bit: a 16-bit RGB copy, then its 8-bit high bytes.
        ColorType::L16 | ColorType::La16 | ColorType::Rgb16 | ColorType::Rgba16 => pixels * 9,
        _ => pixels * 3,
    };
    webp + rgb
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

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        [&(data.len() as u32).to_be_bytes()[..], kind, data, &crc.sum().to_be_bytes()].concat()
    }

    #[test]
    fn compressed_metadata_chunks_are_dropped_and_the_rest_kept_in_order() {
        let signature = b"\x89PNG\r\n\x1a\n".to_vec();
        let kept = [chunk(b"IHDR", &[7; 13]), chunk(b"eXIf", b"MM\0*"), chunk(b"IDAT", &[1, 2, 3])];
        let dropped =
            [chunk(b"iCCP", b"p\0\0xyz"), chunk(b"zTXt", b"k\0\0abc"), chunk(b"iTXt", b"k\0\0\0\0\0t")];
        let end = chunk(b"IEND", &[]);
        let png = [&signature, &kept[0], &dropped[0], &kept[1], &dropped[1], &kept[2], &dropped[2], &end]
            .map(Vec::as_slice)
            .concat();
        let expected = [&signature, &kept[0], &kept[1], &kept[2], &end].map(Vec::as_slice).concat();
        assert_eq!(png_for_decoding(&png), Some(expected.clone()));
        assert_eq!(png_for_decoding(&expected), None, "nothing to change");
        // Without IEND, it is appended; cut inside a chunk, the cut is kept for the decoder.
        let no_end = &expected[..expected.len() - 12];
        assert_eq!(png_for_decoding(no_end), Some(expected.clone()));
        assert_eq!(png_for_decoding(&expected[..expected.len() - 14]), None);
    }
}
