//! Image codecs for requests and responses: base64 JPEG / PNG / WebP in, JPEG or PNG out.

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
