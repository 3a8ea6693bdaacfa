//! Thumbnails: each image shrunk to at most [`THUMB_SIDE`] pixels a side, as a JPEG in
//! `DIR/thumbs/` (a few kB each, so a page of 200 loads quickly).

use std::path::Path;

use ::image::RgbImage;
use ::image::codecs::jpeg::JpegEncoder;
use ::image::imageops::{self, FilterType};

use super::{ContactError, THUMB_SIDE, THUMBS_DIR, write_atomically};
use crate::runner::assets::file_stem;

/// JPEG quality of the thumbnails.
const QUALITY: u8 = 85;

/// `thumbs/{stem}_{k}.jpg`, relative to the output directory (the stem as `--save-images`
/// names files: safe characters, a hash when the id needed changing).
pub(super) fn file_name(id: &str, k: usize) -> String {
    format!("{THUMBS_DIR}/{}_{k}.jpg", file_stem(id))
}

/// The thumbnail size of a `width` x `height` image: the longest side [`THUMB_SIDE`] (never
/// enlarged), the other in proportion, at least 1.
pub(super) fn size(width: u32, height: u32) -> (u32, u32) {
    let longest = width.max(height).max(1);
    if longest <= THUMB_SIDE {
        return (width.max(1), height.max(1));
    }
    let scale =
        |side: u32| ((side as u64 * THUMB_SIDE as u64 + longest as u64 / 2) / longest as u64).max(1) as u32;
    (scale(width), scale(height))
}

/// Shrinks `picture` (triangle filter: smooth at a fraction of Lanczos' cost) and writes it to
/// `path`; returns the thumbnail's size.
pub(super) fn write(picture: &RgbImage, path: &Path) -> Result<(u32, u32), ContactError> {
    let (w, h) = size(picture.width(), picture.height());
    let small = imageops::resize(picture, w, h, FilterType::Triangle);
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, QUALITY)
        .encode_image(&small)
        .map_err(|source| ContactError::Image { path: path.to_path_buf(), source })?;
    write_atomically(path, &bytes)?;
    Ok((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_keep_the_aspect_and_never_enlarge() {
        assert_eq!(size(1024, 1024), (160, 160));
        assert_eq!(size(512, 768), (107, 160));
        assert_eq!(size(1536, 640), (160, 67));
        assert_eq!(size(100, 60), (100, 60));
        assert_eq!(size(4000, 3), (160, 1));
    }

    #[test]
    fn file_names_are_safe_and_distinct() {
        assert_eq!(file_name("boat", 2), "thumbs/boat_2.jpg");
        let odd = file_name("../<b>", 0);
        assert!(odd.starts_with("thumbs/") && !odd[7..].contains('/') && !odd.contains('<'), "{odd}");
        assert_ne!(file_name("a/b", 0), file_name("a_b", 0));
    }
}
