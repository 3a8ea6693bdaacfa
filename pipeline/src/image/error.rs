//! The one error type of the image codecs: each variant says what is wrong with the input.

/// Why a request image could not be decoded, or a response image encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// No data at all (an empty string, only whitespace, or a data URL with nothing after the comma).
    #[error("the image is empty: expected base64-encoded JPEG, PNG or WebP data")]
    Empty,
    /// The text is not standard base64 (`A-Z a-z 0-9 + /`, `=` padding, whitespace ignored).
    #[error("the image is not valid base64: {reason} at offset {offset}")]
    NotBase64 {
        /// Byte offset in the string given (data URL prefix included).
        offset: usize,
        /// What was found there.
        reason: String,
    },
    /// A `data:` URL without a comma or not marked `;base64`.
    #[error("the image data URL is malformed: {0}")]
    DataUrl(String),
    /// The bytes are a known image format that kiln does not accept.
    #[error("{format} images are not accepted; accepted formats: JPEG, PNG, WebP")]
    UnsupportedFormat {
        /// The format recognised from the bytes (for example `GIF`).
        format: String,
    },
    /// The bytes are no image format kiln recognises.
    #[error("unknown image format (the data starts with {head}); accepted formats: JPEG, PNG, WebP")]
    UnknownFormat {
        /// The first bytes in hexadecimal.
        head: String,
    },
    /// The data looks like the format but does not decode.
    #[error("the {format} data is corrupt: {reason}")]
    Corrupt {
        /// `JPEG`, `PNG` or `WebP`.
        format: &'static str,
        /// The decoder's reason.
        reason: String,
    },
    /// The file uses a feature of its format the decoder does not implement.
    #[error("the {format} image uses an unsupported feature: {reason}")]
    UnsupportedFeature {
        /// `JPEG`, `PNG` or `WebP`.
        format: &'static str,
        /// The decoder's reason.
        reason: String,
    },
    /// Width or height over [`MAX_SIDE`](super::MAX_SIDE).
    #[error("the image is {width} x {height} pixels; the largest accepted is {max} x {max}")]
    TooLarge {
        /// Width from the image header.
        width: u32,
        /// Height from the image header.
        height: u32,
        /// The largest accepted side.
        max: u32,
    },
    /// Decoding would need more memory than [`MAX_DECODE_BYTES`](super::MAX_DECODE_BYTES).
    #[error("{}", memory_text(format, *.width, *.height, *.needed_mib, *.limit_mib))]
    TooMuchMemory {
        /// `JPEG`, `PNG` or `WebP`.
        format: &'static str,
        /// Width from the image header (0 when the header was not read yet).
        width: u32,
        /// Height from the image header (0 when the header was not read yet).
        height: u32,
        /// The decoded size in MiB, rounded up; `None` when the decoder ran out of its allowance
        /// while decoding (a chunk or buffer beyond the cap).
        needed_mib: Option<u64>,
        /// The cap in MiB.
        limit_mib: u64,
    },
    /// The encoder refused the image (for example a zero-sized one).
    #[error("could not encode the image as {format}: {reason}")]
    Encode {
        /// `JPEG` or `PNG`.
        format: &'static str,
        /// The encoder's reason.
        reason: String,
    },
}

/// The message of [`ImageError::TooMuchMemory`].
fn memory_text(format: &str, width: u32, height: u32, needed_mib: Option<u64>, limit_mib: u64) -> String {
    let size = if width == 0 || height == 0 { String::new() } else { format!(" ({width} x {height})") };
    let needed = needed_mib.map_or_else(|| "more than".to_string(), |mib| format!("{mib} MiB, over"));
    format!("decoding this {format} image{size} needs {needed} the {limit_mib} MiB decoder memory cap")
}
